// The ranks and their hardware: tokens/s per rank and in total, where the step
// time goes (per rank, averaged over recent steps), GPU utilisation or host
// memory over time, and a table of every rank's liveness, memory and device.

import { useMemo, useRef, type ReactNode } from 'react';
import { Bar } from 'react-chartjs-2';
import type { ChartData, ChartOptions } from 'chart.js';
import { TimeChart, type ChartLine } from '../charts/TimeChart';
import { rankColor } from '../charts/setup';
import { useRun } from '../context';
import { fmtBytes, fmtNum, fmtSeconds, fmtSi } from '../lib/format';
import { STEP_PHASES, type RankEntry, type Real } from '../protocol';
import type { RankData, TrainState } from '../state/reducer';
import { last, Smoother, type Point, type Series } from '../state/series';
import { Badge, Card, Empty } from '../components/ui';

const PHASE_COLORS: Record<string, string> = {
  data: '#8d9bb0',
  forward: '#4f8cff',
  backward: '#a970ff',
  reduce: '#f5a524',
  optimizer: '#2ec27e',
  other: '#5b6477',
};

/** One Smoother per named series, kept across renders. */
function useSmoothers(): (key: string, s: Series, weight: number) => Point[] {
  const map = useRef(new Map<string, Smoother>());
  return (key, s, weight) => {
    let sm = map.current.get(key);
    if (!sm) map.current.set(key, (sm = new Smoother()));
    return sm.update(s, weight);
  };
}

export function SystemView({ xMin, smoothing }: { xMin?: number; smoothing: number }) {
  const { state } = useRun();
  const ranks = sortedRanks(state);
  const hasGpu = ranks.some((r) => r.last?.gpu?.util !== undefined);
  const smooth = useSmoothers();

  const tpsLines = useMemo<ChartLine[]>(
    () => [
      {
        label: 'total',
        data: smooth('total', state.tokensPerSTotal, smoothing),
        color: '#e6e9f0',
        width: 2,
      },
      ...ranks.map((r) => ({
        label: `rank ${r.rank}`,
        data: smooth(`tps${r.rank}`, r.tokensPerS, smoothing),
        color: rankColor(r.rank),
        width: 1.3,
      })),
    ],
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [state.version, smoothing],
  );
  const stepLines = useMemo<ChartLine[]>(
    () =>
      ranks.map((r) => ({
        label: `rank ${r.rank}`,
        data: smooth(`st${r.rank}`, r.stepTime, smoothing),
        color: rankColor(r.rank),
        width: 1.3,
      })),
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [state.version, smoothing],
  );

  const utilLines = useMemo<ChartLine[]>(
    () =>
      ranks.map((r) => ({
        label: `rank ${r.rank}`,
        data: hasGpu ? r.gpuUtil.pts : r.hostRss.pts,
        color: rankColor(r.rank),
        width: 1.5,
      })),
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [state.version, hasGpu],
  );

  const total = last(state.tokensPerSTotal)?.y;
  return (
    <div className="view system-view">
      <div className="grid grid-2">
        <Card
          title="Throughput"
          subtitle={
            <>
              total <b className="mono">{fmtSi(total)}</b> tokens/s across {ranks.length} ranks
            </>
          }
          testId="card-throughput"
        >
          {ranks.length === 0 ? (
            <Empty>No steps yet.</Empty>
          ) : (
            <TimeChart
              lines={tpsLines}
              version={state.version}
              xMin={xMin}
              yTitle="tokens/s"
              testId="tps-chart"
            />
          )}
        </Card>
        <StepTimeBreakdown ranks={ranks} version={state.version} />
        <Card
          title={hasGpu ? 'GPU utilisation' : 'Host memory (RSS)'}
          subtitle={hasGpu ? 'percent, from NVML' : 'CPU-only run: resident memory of each rank'}
          testId="card-util"
        >
          {ranks.length === 0 ? (
            <Empty>No steps yet.</Empty>
          ) : (
            <TimeChart
              lines={utilLines}
              version={state.version}
              xMin={xMin}
              yMin={0}
              yFormat={hasGpu ? (v) => `${v.toFixed(0)}%` : fmtBytes}
              testId="util-chart"
            />
          )}
        </Card>
        <RanksTable
          ranks={ranks}
          liveness={state.liveness?.ranks ?? []}
          stragglers={state.stragglers}
        >
          {ranks.length > 0 && (
            <TimeChart
              lines={stepLines}
              version={state.version}
              xMin={xMin}
              yMin={0}
              yFormat={fmtSeconds}
              legend={false}
              testId="steptime-ranks-chart"
            />
          )}
        </RanksTable>
      </div>
    </div>
  );
}

/** The trainer's model-state accounting (extra fields of a step): on the
 * device after the step, its peak during the step, offloaded to the host.
 * Layer streaming shows as ~0 on the device with a peak of about two blocks. */
export function modelStates(extra: Record<string, Real> | undefined): string {
  const dev = extra?.model_state_bytes;
  if (dev === undefined || dev === null) return '—';
  const peak = extra?.model_state_peak_bytes;
  const host = extra?.offloaded_bytes;
  let out = `${fmtBytes(dev)} device`;
  if (peak !== undefined && peak !== null) out += ` (peak ${fmtBytes(peak)})`;
  if (host) out += ` · ${fmtBytes(host)} host`;
  return out;
}

export function sortedRanks(state: TrainState): RankData[] {
  return Object.values(state.ranks).sort((a, b) => a.rank - b.rank);
}

function StepTimeBreakdown({ ranks, version }: { ranks: RankData[]; version: number }) {
  const data = useMemo<ChartData<'bar'>>(
    () => ({
      labels: ranks.map((r) => `rank ${r.rank}`),
      datasets: STEP_PHASES.map((p) => ({
        label: p,
        data: ranks.map((r) => r.phases[p] * 1000),
        backgroundColor: PHASE_COLORS[p],
        borderWidth: 0,
        barThickness: 16,
      })),
    }),
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [version],
  );
  const options = useMemo<ChartOptions<'bar'>>(
    () => ({
      indexAxis: 'y',
      animation: false,
      scales: {
        x: { stacked: true, title: { display: true, text: 'ms per step (recent average)' } },
        y: { stacked: true, grid: { display: false } },
      },
      plugins: {
        legend: { position: 'top', align: 'end' },
        tooltip: { callbacks: { label: (i) => `${i.dataset.label}: ${fmtNum(i.parsed.x, 3)} ms` } },
      },
    }),
    [],
  );
  const mean = ranks.length ? ranks.reduce((a, r) => a + r.phases.total, 0) / ranks.length : 0;
  const reduceShare = ranks.length
    ? ranks.reduce((a, r) => a + r.phases.reduce, 0) / ranks.length / (mean || 1)
    : 0;
  return (
    <Card
      title="Step-time breakdown"
      subtitle={
        <>
          mean step <b className="mono">{fmtSeconds(mean)}</b> · communication{' '}
          <b className="mono">{(reduceShare * 100).toFixed(0)}%</b>
        </>
      }
      testId="card-steptime"
    >
      {ranks.length === 0 ? (
        <Empty>No steps yet.</Empty>
      ) : (
        <div className="chart-box" data-testid="steptime-chart">
          <Bar data={data} options={options} updateMode="none" />
        </div>
      )}
    </Card>
  );
}

function Meter({
  value,
  max,
  label,
  tone,
}: {
  value?: number;
  max?: number;
  label: string;
  tone?: string;
}) {
  if (value === undefined) return <span className="muted">—</span>;
  const frac = max ? Math.min(1, value / max) : 0;
  return (
    <div className="meter" title={label}>
      <div
        className={`meter-fill ${tone ?? (frac > 0.9 ? 'hot' : '')}`}
        style={{ width: `${(frac * 100).toFixed(1)}%` }}
      />
      <span className="meter-text">{label}</span>
    </div>
  );
}

function RanksTable({
  ranks,
  liveness,
  stragglers,
  children,
}: {
  ranks: RankData[];
  liveness: RankEntry[];
  stragglers: number[];
  children?: ReactNode;
}) {
  const byRank = new Map(liveness.map((l) => [l.rank, l]));
  return (
    <Card
      title="Ranks"
      subtitle="liveness from the aggregator, last values each rank reported; step time per rank below"
      testId="card-ranks"
      className="ranks-card"
    >
      {ranks.length === 0 ? (
        <Empty>No rank has reported yet.</Empty>
      ) : (
        <>
          <div className="ranks-table-wrap">
            <table className="table ranks-table" data-testid="ranks-table">
              <thead>
                <tr>
                  <th>rank</th>
                  <th>state</th>
                  <th>step</th>
                  <th>step time</th>
                  <th>tok/s</th>
                  <th>device</th>
                  <th>memory</th>
                  <th title="parameters, gradients and optimizer states on the compute device after the step (peak during it); what offload keeps on the host">
                    model states
                  </th>
                  <th>host RSS</th>
                </tr>
              </thead>
              <tbody>
                {ranks.map((r) => {
                  const live = byRank.get(r.rank);
                  const strag = live?.straggler || stragglers.includes(r.rank);
                  const m = r.last?.mem;
                  const g = r.last?.gpu;
                  const devUsed = g?.mem_used ?? m?.device_allocated;
                  const devTotal = g?.mem_total ?? m?.device_reserved;
                  return (
                    <tr
                      key={r.rank}
                      className={live?.state === 'dead' ? 'dead' : strag ? 'straggler' : ''}
                    >
                      <td>
                        <span className="rank-dot" style={{ background: rankColor(r.rank) }} />
                        {r.rank}
                      </td>
                      <td>
                        <Badge
                          tone={
                            live?.state === 'dead'
                              ? 'bad'
                              : live?.state === 'finished'
                                ? 'info'
                                : strag
                                  ? 'warn'
                                  : 'ok'
                          }
                        >
                          {live?.state === 'dead'
                            ? 'dead'
                            : strag
                              ? 'straggler'
                              : (live?.state ?? (r.bye ? 'finished' : 'alive'))}
                        </Badge>
                        {live?.dropped ? (
                          <span className="muted small"> {live.dropped} dropped</span>
                        ) : null}
                      </td>
                      <td className="mono">{r.last?.step.toLocaleString('en-US') ?? '—'}</td>
                      <td className="mono">{fmtSeconds(r.last?.time.total)}</td>
                      <td className="mono">{fmtSi(r.last?.tokens_per_s)}</td>
                      <td>
                        {g ? (
                          <Meter
                            value={g.util}
                            max={100}
                            label={`${fmtNum(g.util, 3)}% · ${g.temp_c ?? '—'}°C · ${g.power_w !== undefined ? fmtNum(g.power_w, 3) + ' W' : '—'}`}
                          />
                        ) : (
                          <span className="muted">
                            {r.last?.mem?.device_allocated !== undefined ? 'GPU' : 'CPU'}
                          </span>
                        )}
                      </td>
                      <td>
                        {devUsed !== undefined ? (
                          <Meter
                            value={devUsed}
                            max={devTotal}
                            label={`${fmtBytes(devUsed)}${devTotal ? ` / ${fmtBytes(devTotal)}` : ''}`}
                          />
                        ) : (
                          <span className="muted">—</span>
                        )}
                      </td>
                      <td className="mono small" data-testid={`model-states-${r.rank}`}>
                        {modelStates(r.last?.extra)}
                      </td>
                      <td>
                        <Meter
                          value={m?.host_rss}
                          max={m?.host_total}
                          label={`${fmtBytes(m?.host_rss)}${m?.host_total ? ` / ${fmtBytes(m.host_total)}` : ''}`}
                          tone="cool"
                        />
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
          {children}
        </>
      )}
    </Card>
  );
}
