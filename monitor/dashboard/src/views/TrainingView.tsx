// Training curves: loss (train and validation, smoothing, log scale), learning
// rate with the steps at which commands changed it, gradient norm against the
// clip threshold, and the train/validation comparison.

import { useMemo, useRef } from 'react';
import { TimeChart, type ChartLine } from '../charts/TimeChart';
import type { Marker } from '../charts/setup';
import { useRun } from '../context';
import { fmtLr, fmtNum } from '../lib/format';
import type { CommandEntry, TrainState } from '../state/reducer';
import { last, lowerBound, Smoother, type Point } from '../state/series';
import { Card, Empty, Segmented, Toggle } from '../components/ui';

export interface ChartSettings {
  smoothing: number;
  logY: boolean;
  window: number; // 0 = whole run
  band: boolean;
}

const C = {
  train: '#4f8cff',
  trainRaw: 'rgba(79, 140, 255, 0.28)',
  val: '#f5a524',
  lr: '#2ec27e',
  grad: '#a970ff',
  clip: '#e5484d',
};

function useSmoothed(points: TrainState['trainLoss'], weight: number): Point[] {
  const sm = useRef(new Smoother());
  return sm.current.update(points, weight);
}

export function TrainingView({
  settings,
  setSettings,
}: {
  settings: ChartSettings;
  setSettings: (s: ChartSettings) => void;
}) {
  const { state } = useRun();
  const xMin = settings.window > 0 ? Math.max(0, state.step - settings.window) : undefined;

  const lossSmooth = useSmoothed(state.trainLoss, settings.smoothing);
  const gradSmooth = useSmoothed(state.gradNorm, settings.smoothing);

  const lossLines = useMemo<ChartLine[]>(() => {
    const lines: ChartLine[] = [
      {
        label: 'train',
        data: settings.smoothing > 0 ? lossSmooth : state.trainLoss.pts,
        color: C.train,
        width: 2,
      },
      { label: 'validation', data: state.valLoss.pts, color: C.val, width: 2, points: true },
      {
        label: 'train (raw)',
        data: state.trainLoss.pts,
        color: C.trainRaw,
        width: 1,
        noLegend: settings.smoothing === 0,
      },
    ];
    if (settings.band) {
      lines.push(
        {
          label: 'rank min',
          data: state.trainLossMin.pts,
          color: '#8d9bb0',
          width: 0.5,
          noLegend: true,
        },
        {
          label: 'rank max',
          data: state.trainLossMax.pts,
          color: '#8d9bb0',
          width: 0.5,
          fillTo: 3,
          noLegend: true,
        },
      );
    }
    return lines;
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [state.version, settings.smoothing, settings.band]);

  const lrMarkers = useMemo(() => commandMarkers(state), [state.commands, state.commandOrder]); // eslint-disable-line react-hooks/exhaustive-deps
  const lrLines = useMemo<ChartLine[]>(
    () => [{ label: 'learning rate', data: state.lr.pts, color: C.lr, width: 2, stepped: true }],
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [state.version],
  );

  const clip = state.hparams?.clip;
  const gradLines = useMemo<ChartLine[]>(() => {
    const lines: ChartLine[] = [
      {
        label: 'grad norm',
        data: settings.smoothing > 0 ? gradSmooth : state.gradNorm.pts,
        color: C.grad,
        width: 2,
      },
      {
        label: 'grad norm (raw)',
        data: state.gradNorm.pts,
        color: 'rgba(169, 112, 255, 0.3)',
        width: 1,
        noLegend: true,
      },
    ];
    const first = state.gradNorm.pts[0];
    const lastP = last(state.gradNorm);
    if (clip && clip > 0 && first && lastP) {
      lines.push({
        label: `clip ${fmtNum(clip)}`,
        data: [
          { x: first.x, y: clip },
          { x: lastP.x, y: clip },
        ],
        color: C.clip,
        dash: [6, 4],
        width: 1.2,
      });
    }
    return lines;
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [state.version, settings.smoothing, clip]);

  const lossNow = last(state.trainLoss)?.y;
  const valNow = last(state.valLoss)?.y;

  return (
    <div className="view training-view">
      <div className="toolbar" data-testid="chart-toolbar">
        <label className="slider">
          smoothing
          <input
            type="range"
            min={0}
            max={0.99}
            step={0.01}
            value={settings.smoothing}
            data-testid="smoothing"
            onChange={(e) => setSettings({ ...settings, smoothing: Number(e.target.value) })}
          />
          <span className="mono">{settings.smoothing.toFixed(2)}</span>
        </label>
        <Toggle
          label="log scale"
          checked={settings.logY}
          onChange={(v) => setSettings({ ...settings, logY: v })}
          testId="log-scale"
        />
        <Toggle
          label="rank min/max"
          checked={settings.band}
          onChange={(v) => setSettings({ ...settings, band: v })}
        />
        <span className="toolbar-sep" />
        <span className="muted">steps</span>
        <Segmented
          value={settings.window}
          onChange={(w) => setSettings({ ...settings, window: w })}
          options={[
            { value: 0, label: 'all' },
            { value: 10000, label: 'last 10k' },
            { value: 1000, label: 'last 1k' },
            { value: 200, label: 'last 200' },
          ]}
        />
      </div>

      <div className="grid grid-2">
        <Card
          title="Loss"
          subtitle={
            <>
              train <b className="mono">{fmtNum(lossNow, 4)}</b> · validation{' '}
              <b className="mono">{fmtNum(valNow, 4)}</b>
            </>
          }
          testId="card-loss"
          className="span-2-wide"
        >
          {state.trainLoss.n === 0 ? (
            <Empty>Waiting for the first step…</Empty>
          ) : (
            <TimeChart
              lines={lossLines}
              version={state.version}
              yLog={settings.logY}
              xMin={xMin}
              testId="loss-chart"
            />
          )}
        </Card>

        <Card
          title="Learning rate"
          subtitle={
            <>
              now{' '}
              <b className="mono" data-testid="lr-now">
                {fmtLr(last(state.lr)?.y)}
              </b>
            </>
          }
          testId="card-lr"
        >
          {state.lr.n === 0 ? (
            <Empty>No learning rate reported yet.</Empty>
          ) : (
            <TimeChart
              lines={lrLines}
              version={state.version}
              yFormat={fmtLr}
              markers={lrMarkers}
              xMin={xMin}
              legend={false}
              testId="lr-chart"
            />
          )}
        </Card>

        <Card
          title="Gradient norm"
          subtitle={
            <>
              now <b className="mono">{fmtNum(last(state.gradNorm)?.y)}</b>
              {clip ? <> · clip {fmtNum(clip)}</> : null}
            </>
          }
          testId="card-grad"
        >
          {state.gradNorm.n === 0 ? (
            <Empty>No gradient norm reported yet.</Empty>
          ) : (
            <TimeChart
              lines={gradLines}
              version={state.version}
              yLog={settings.logY}
              xMin={xMin}
              testId="grad-chart"
            />
          )}
        </Card>

        <TrainValComparison smoothed={settings.smoothing > 0 ? lossSmooth : state.trainLoss.pts} />
      </div>
    </div>
  );
}

/** Labelled lines at the steps where hyperparameter commands took effect. */
export function commandMarkers(state: TrainState): Marker[] {
  const out: Marker[] = [];
  for (const id of state.commandOrder) {
    const c = state.commands[id];
    if (!c || c.phase !== 'acked' || c.step === undefined || c.stale) continue;
    const label = markerLabel(c);
    if (label)
      out.push({ x: c.step, label, color: c.command === 'set_lr' ? '#f5a524' : '#8d9bb0' });
  }
  return out.slice(-12);
}

function markerLabel(c: CommandEntry): string | null {
  const a = c.args ?? {};
  switch (c.command) {
    case 'set_lr':
      return a.lr !== undefined ? `lr → ${fmtLr(Number(a.lr))}` : 'lr set';
    case 'set_weight_decay':
      return a.weight_decay !== undefined ? `wd → ${fmtNum(Number(a.weight_decay))}` : 'wd set';
    case 'set_clip':
      return a.clip !== undefined ? `clip → ${fmtNum(Number(a.clip))}` : 'clip set';
    case 'set_batch':
      return a.micro_batch !== undefined ? `batch ${a.micro_batch}×${a.accumulation}` : 'batch set';
    case 'resume':
      return 'resumed';
    default:
      return null;
  }
}

function TrainValComparison({ smoothed }: { smoothed: Point[] }) {
  const { state } = useRun();
  const rows = useMemo(() => {
    let best = Infinity;
    for (const v of state.validations) if (v.loss !== null && v.loss < best) best = v.loss;
    return state.validations
      .slice(-12)
      .reverse()
      .map((v) => {
        const i = Math.min(smoothed.length - 1, lowerBound(smoothed, smoothed.length, v.step));
        const train = i >= 0 ? smoothed[i]?.y : undefined;
        return {
          v,
          train,
          gap: v.loss !== null && train !== undefined ? v.loss - train : null,
          best: v.loss === best,
        };
      });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [state.validations, state.version]);

  // The generalisation gap at every validation: what the table lists, over the whole run.
  const lines = useMemo<ChartLine[]>(() => {
    const gap = state.validations
      .filter((v) => v.loss !== null)
      .map((v) => {
        const i = Math.min(smoothed.length - 1, lowerBound(smoothed, smoothed.length, v.step));
        return { x: v.step, y: i >= 0 ? (v.loss as number) - smoothed[i].y : NaN };
      });
    return [{ label: 'validation − train', data: gap, color: C.val, width: 2, points: true }];
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [state.validations, state.version]);

  return (
    <Card
      title="Train vs validation"
      subtitle="generalisation gap: validation loss minus smoothed train loss at the same step"
      testId="card-trainval"
    >
      {state.validations.length === 0 ? (
        <Empty>No validation yet.</Empty>
      ) : (
        <div className="trainval">
          <TimeChart
            lines={lines}
            version={state.version}
            legend={false}
            yTitle="gap"
            yFormat={(v) => fmtNum(v, 2)}
          />
          <div className="trainval-table">
            <table className="table compact">
              <thead>
                <tr>
                  <th>step</th>
                  <th>val loss</th>
                  <th>ppl</th>
                  <th>train</th>
                  <th>gap</th>
                </tr>
              </thead>
              <tbody>
                {rows.map(({ v, train, gap, best }) => (
                  <tr key={v.step} className={best ? 'best' : ''}>
                    <td className="mono">{v.step.toLocaleString('en-US')}</td>
                    <td className="mono">
                      {fmtNum(v.loss, 4)} {best && <span className="badge tone-ok tiny">best</span>}
                    </td>
                    <td className="mono">
                      {fmtNum(v.perplexity ?? (v.loss !== null ? Math.exp(v.loss) : null), 4)}
                    </td>
                    <td className="mono">{fmtNum(train, 4)}</td>
                    <td className={`mono ${gap !== null && gap > 0.1 ? 'tone-text-warn' : ''}`}>
                      {gap === null ? '—' : (gap >= 0 ? '+' : '') + fmtNum(gap, 3)}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </div>
      )}
    </Card>
  );
}
