// The Evaluate tab: the run's evaluation reports (`shardlm eval run --out
// RUN_DIR/eval/NAME.json`, `shardlm eval compare --out RUN_DIR/eval/NAME.md`,
// listed by the aggregator at /api/evals) as charts: per-task metrics with
// their bootstrap intervals, an ablation table across several reports, top-1
// and top-5 next-token accuracy over training (from the validation messages)
// and by position in the context, calibration (confidence against accuracy),
// and the items on which two models disagree.

import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { Bar, Line } from 'react-chartjs-2';
import type { ChartData, ChartOptions, Plugin } from 'chart.js';
import { Card, Empty, Segmented, Toggle } from '../components/ui';
import { TimeChart } from '../charts/TimeChart';
import { PALETTE } from '../charts/setup';
import { useRun } from '../context';
import { fmtNum } from '../lib/format';
import { monitorUrl } from '../lib/token';
import {
  disagreements,
  metricNames,
  metricOf,
  modelsOf,
  taskNames,
  type EvaluatedModel,
  type ReportItem,
} from '../lib/evals';
import type { Point } from '../state/series';

/** http://HOST:PORT of the aggregator the page talks to. */
export function apiBase(wsUrl: string = monitorUrl()): string {
  const u = new URL(wsUrl);
  return `${u.protocol === 'wss:' ? 'https:' : 'http:'}//${u.host}`;
}

async function getJson(base: string, path: string, token: string | null): Promise<unknown> {
  const r = await fetch(`${base}${path}`, {
    headers: token ? { Authorization: `Bearer ${token}` } : {},
  });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${(await r.text()).slice(0, 200)}`);
  return r.json();
}

export function EvaluateView() {
  const { token, url } = useRun();
  const base = apiBase(url);
  const [items, setItems] = useState<ReportItem[] | null>(null);
  const [dir, setDir] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [selected, setSelected] = useState<string[]>([]);
  const [loaded, setLoaded] = useState<Record<string, unknown>>({});
  const asked = useRef(new Set<string>()); // reports fetched or being fetched

  const refresh = useCallback(() => {
    asked.current.clear();
    setLoaded({});
    getJson(base, '/api/evals', token)
      .then((j) => {
        const list = (j as { items: ReportItem[]; dir: string }).items ?? [];
        setItems(list);
        setDir((j as { dir: string }).dir ?? '');
        setError(null);
        setSelected((sel) =>
          sel.length
            ? sel
            : list
                .filter((x) => x.kind === 'compare' || x.kind === 'run')
                .slice(-1)
                .map((x) => x.name),
        );
      })
      .catch((e: unknown) => setError(String(e)));
  }, [token, base]);
  useEffect(refresh, [refresh]);
  useEffect(() => {
    for (const name of selected)
      if (!(name in loaded) && !asked.current.has(name) && asked.current.add(name))
        getJson(base, `/api/evals/${encodeURIComponent(name)}`, token)
          .then((j) => setLoaded((l) => ({ ...l, [name]: j })))
          .catch((e: unknown) => {
            asked.current.delete(name);
            setError(String(e));
          });
  }, [selected, loaded, token, base]);

  const models = useMemo(
    () => selected.flatMap((n) => (n in loaded ? modelsOf(n, loaded[n]) : [])),
    [selected, loaded],
  );
  const toggle = (name: string) =>
    setSelected((s) => (s.includes(name) ? s.filter((x) => x !== name) : [...s, name]));

  return (
    <div className="view evaluate-view">
      <div className="toolbar eval-toolbar" data-testid="eval-reports">
        <span className="muted small">reports in {dir || 'RUN_DIR/eval'}:</span>
        {items === null && !error && <span className="muted small">loading…</span>}
        {items?.length === 0 && (
          <span className="muted small">
            none yet: shardlm eval run --out RUN_DIR/eval/NAME.json, or eval compare --out
            RUN_DIR/eval/NAME.md
          </span>
        )}
        {items?.map((it) => (
          <label key={it.name} className="report-chip" data-testid={`eval-report-${it.name}`}>
            <input
              type="checkbox"
              checked={selected.includes(it.name)}
              onChange={() => toggle(it.name)}
              disabled={it.kind === 'unreadable' || it.kind === 'other'}
            />
            {it.name}
            <span className="muted small"> {it.kind}</span>
          </label>
        ))}
        <button type="button" className="btn small" onClick={refresh} data-testid="eval-refresh">
          Reload
        </button>
        {error && <span className="tone-bad small">{error}</span>}
      </div>
      <div className="eval-grid">
        <TaskCharts models={models} />
        <AccuracyOverTraining />
        <ByPosition models={models} />
        <Calibration models={models} />
        <Ablation models={models} />
        <Disagreements models={models} />
      </div>
    </div>
  );
}

// ---- per-task metrics with intervals ------------------------------------------------------

/** Draws each bar's 95% interval (dataset option `ci`: [lo, hi] per bar) as a whisker. */
const whiskers: Plugin<'bar'> = {
  id: 'ciWhiskers',
  afterDatasetsDraw(chart) {
    const ctx = chart.ctx;
    chart.data.datasets.forEach((ds, di) => {
      const ci = (ds as unknown as { ci?: ([number | null, number | null] | null)[] }).ci;
      if (!ci) return;
      const meta = chart.getDatasetMeta(di);
      const y = chart.scales.y;
      meta.data.forEach((bar, i) => {
        const c = ci[i];
        if (!c || c[0] === null || c[1] === null) return;
        const x = (bar as unknown as { x: number }).x;
        const lo = y.getPixelForValue(c[0]);
        const hi = y.getPixelForValue(c[1]);
        ctx.save();
        ctx.strokeStyle = '#e6e9f0';
        ctx.lineWidth = 1.4;
        ctx.beginPath();
        ctx.moveTo(x, lo);
        ctx.lineTo(x, hi);
        ctx.moveTo(x - 6, lo);
        ctx.lineTo(x + 6, lo);
        ctx.moveTo(x - 6, hi);
        ctx.lineTo(x + 6, hi);
        ctx.stroke();
        ctx.restore();
      });
    });
  },
};

/**
 * The value axis of a task chart reaches every interval's ends, not only the
 * bars (Chart.js scales to the data alone, and a whisker above the top was cut).
 */
export function axisRangeWithIntervals(
  values: (number | null)[],
  ci: (readonly (number | null)[] | null)[],
): { suggestedMin?: number; suggestedMax?: number } {
  const finite = (v: number | null): v is number => v !== null && Number.isFinite(v);
  const all = [...values, ...ci.flatMap((c) => c ?? [])].filter(finite);
  if (all.length === 0) return {};
  return { suggestedMin: Math.min(...all), suggestedMax: Math.max(...all) };
}

function TaskCharts({ models }: { models: EvaluatedModel[] }) {
  const tasks = taskNames(models);
  return (
    <Card
      title="Metrics per task"
      subtitle="value and 95% bootstrap interval per model (↑ higher is better, ↓ lower)"
      testId="card-eval-tasks"
      className="span-2 eval-tasks"
    >
      {models.length === 0 ? (
        <Empty>Select a report above.</Empty>
      ) : (
        <div className="task-chart-grid">
          {tasks.map((t) => (
            <TaskChart key={t} task={t} models={models} />
          ))}
        </div>
      )}
    </Card>
  );
}

function TaskChart({ task, models }: { task: string; models: EvaluatedModel[] }) {
  const metrics = metricNames(models, task);
  const [metric, setMetric] = useState(metrics[0] ?? '');
  const m = metrics.includes(metric) ? metric : (metrics[0] ?? '');
  const withTask = models.filter((x) => metricOf(x, task, m));
  const values = withTask.map((x) => metricOf(x, task, m)?.value ?? null);
  const ci = withTask.map((x) => metricOf(x, task, m)?.ci95 ?? null);
  const hib = withTask.length ? metricOf(withTask[0], task, m)?.higher_is_better : true;
  const data: ChartData<'bar'> = {
    labels: withTask.map((x) => x.key),
    datasets: [
      {
        label: m,
        data: values.map((v) => v ?? NaN),
        backgroundColor: withTask.map((_, i) => PALETTE[i % PALETTE.length]),
        borderRadius: 3,
        maxBarThickness: 56,
        ...({ ci } as object),
      },
    ],
  };
  const options: ChartOptions<'bar'> = {
    animation: false,
    plugins: {
      legend: { display: false },
      tooltip: { callbacks: { label: (it) => `${m}: ${fmtNum(it.parsed.y, 4)}` } },
    },
    scales: {
      y: {
        beginAtZero:
          hib !== false || (values.every((v) => v !== null && v >= 0) && m !== 'perplexity'),
        ticks: { maxTicksLimit: 5 },
        ...axisRangeWithIntervals(values, ci),
      },
      x: { ticks: { autoSkip: false, maxRotation: 30 } },
    },
  };
  return (
    <div
      className="task-chart"
      data-testid={`eval-chart-${task}`}
      data-metric={m}
      data-labels={JSON.stringify(withTask.map((x) => x.key))}
      data-values={JSON.stringify(values)}
      data-ci={JSON.stringify(ci)}
    >
      <div className="task-chart-head">
        <b>{task}</b>
        <select
          value={m}
          onChange={(e) => setMetric(e.target.value)}
          data-testid={`eval-metric-${task}`}
        >
          {metrics.map((x) => (
            <option key={x} value={x}>
              {x}{' '}
              {metricOf(withTask[0] ?? models[0], task, x)?.higher_is_better === false ? '↓' : '↑'}
            </option>
          ))}
        </select>
      </div>
      <div className="chart-box small-chart">
        <Bar data={data} options={options} plugins={[whiskers]} />
      </div>
    </div>
  );
}

// ---- accuracy over training, by position, calibration -------------------------------------

function AccuracyOverTraining() {
  const { state } = useRun();
  const lines = useMemo(() => {
    const pick = (k: string): Point[] =>
      state.validations
        .filter((v) => typeof v.metrics?.[k] === 'number')
        .map((v) => ({ x: v.step, y: v.metrics?.[k] as number }));
    return [
      { label: 'top-1', data: pick('accuracy_top1'), color: '#4f8cff', points: true },
      { label: 'top-5', data: pick('accuracy_top5'), color: '#2ec27e', points: true },
    ];
  }, [state.validations]);
  return (
    <Card
      title="Next-token accuracy over training"
      subtitle="top-1 and top-5, from the run's validation"
      testId="card-eval-acc"
    >
      {lines[0].data.length === 0 ? (
        <Empty>No validation with accuracy yet.</Empty>
      ) : (
        <TimeChart
          lines={lines}
          version={state.version}
          yFormat={(v) => `${(v * 100).toFixed(0)}%`}
          testId="eval-acc-chart"
        />
      )}
    </Card>
  );
}

/** Models whose report has token detail (perplexity tasks), with that task's name. */
function detailed(models: EvaluatedModel[]) {
  const out: {
    model: EvaluatedModel;
    task: string;
    detail: NonNullable<EvaluatedModel['tasks'][number]['detail']>;
  }[] = [];
  for (const m of models)
    for (const t of m.tasks) if (t.detail) out.push({ model: m, task: t.name, detail: t.detail });
  return out;
}

function ByPosition({ models }: { models: EvaluatedModel[] }) {
  const [k, setK] = useState<'top1' | 'top5'>('top1');
  const rows = detailed(models);
  const data: ChartData<'line'> = {
    datasets: rows.map((r, i) => ({
      label: `${r.model.key} · ${r.task}`,
      data: r.detail.by_position[k].map((y, x) => ({ x: x + 1, y: y ?? NaN })),
      borderColor: PALETTE[i % PALETTE.length],
      backgroundColor: PALETTE[i % PALETTE.length],
      pointRadius: 0,
      borderWidth: 1.6,
    })),
  };
  const options: ChartOptions<'line'> = {
    animation: false,
    parsing: false,
    scales: {
      x: { type: 'linear', title: { display: true, text: 'tokens of context' }, min: 1 },
      y: { min: 0, max: 1, ticks: { callback: (v) => `${(Number(v) * 100).toFixed(0)}%` } },
    },
    plugins: { legend: { position: 'top', align: 'end' } },
  };
  return (
    <Card
      title="Accuracy by position in the context"
      subtitle="perplexity tasks of the selected reports"
      testId="card-eval-position"
      actions={
        <Segmented
          value={k}
          onChange={setK}
          options={[
            { value: 'top1', label: 'top-1' },
            { value: 'top5', label: 'top-5' },
          ]}
          testId="eval-position-k"
        />
      }
    >
      {rows.length === 0 ? (
        <Empty>No perplexity task with token detail in the selected reports.</Empty>
      ) : (
        <div className="chart-box" data-testid="eval-position-chart">
          <Line data={data} options={options} />
        </div>
      )}
    </Card>
  );
}

function Calibration({ models }: { models: EvaluatedModel[] }) {
  const rows = detailed(models);
  const data: ChartData<'line'> = {
    datasets: [
      {
        label: 'perfect calibration',
        data: [
          { x: 0, y: 0 },
          { x: 1, y: 1 },
        ],
        borderColor: 'rgba(154,164,184,0.5)',
        borderDash: [4, 4],
        pointRadius: 0,
        borderWidth: 1,
      },
      ...rows.map((r, i) => ({
        label: `${r.model.key} · ${r.task} (ECE ${fmtNum(r.detail.calibration.ece, 2)})`,
        data: r.detail.calibration.bins
          .filter((b) => b.count > 0 && b.confidence !== null)
          .map((b) => ({ x: b.confidence as number, y: b.accuracy as number })),
        borderColor: PALETTE[i % PALETTE.length],
        backgroundColor: PALETTE[i % PALETTE.length],
        pointRadius: 3,
        borderWidth: 1.6,
      })),
    ],
  };
  const options: ChartOptions<'line'> = {
    animation: false,
    parsing: false,
    scales: {
      x: {
        type: 'linear',
        min: 0,
        max: 1,
        title: { display: true, text: 'confidence (top-1 probability)' },
      },
      y: { min: 0, max: 1, title: { display: true, text: 'accuracy' } },
    },
    plugins: { legend: { position: 'top', align: 'end' } },
  };
  return (
    <Card
      title="Calibration"
      subtitle="accuracy of the top-1 token against its probability, in 10 bins"
      testId="card-eval-calibration"
    >
      {rows.length === 0 ? (
        <Empty>No perplexity task with token detail in the selected reports.</Empty>
      ) : (
        <div className="chart-box" data-testid="eval-calibration-chart">
          <Line data={data} options={options} />
        </div>
      )}
    </Card>
  );
}

// ---- ablation and disagreements ------------------------------------------------------------

function Ablation({ models }: { models: EvaluatedModel[] }) {
  const tasks = taskNames(models);
  return (
    <Card
      title="Ablation"
      subtitle="every selected model on the same metrics; the best of a row in bold"
      testId="card-eval-ablation"
      className="span-2 scroll"
    >
      {models.length < 1 ? (
        <Empty>Select one or more reports above.</Empty>
      ) : (
        <table className="table ablation" data-testid="eval-ablation">
          <thead>
            <tr>
              <th>task</th>
              <th>metric</th>
              {models.map((m) => (
                <th key={m.key} className="num">
                  {m.key}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {tasks.flatMap((t) =>
              metricNames(models, t).map((mn) => {
                const vals = models.map((m) => metricOf(m, t, mn));
                const hib = vals.find((v) => v)?.higher_is_better !== false;
                const finite = vals
                  .map((v) => v?.value)
                  .filter((v): v is number => v !== null && v !== undefined);
                const best =
                  finite.length > 1 ? (hib ? Math.max(...finite) : Math.min(...finite)) : null;
                return (
                  <tr key={`${t}/${mn}`}>
                    <td>{t}</td>
                    <td>
                      {mn} <span className="muted">{hib ? '↑' : '↓'}</span>
                    </td>
                    {vals.map((v, i) => (
                      <td
                        key={models[i].key}
                        className={`num mono ${v?.value === best ? 'best' : ''}`}
                      >
                        {v ? fmtNum(v.value, 4) : '—'}
                        {v?.ci95 && (
                          <span className="muted small">
                            {' '}
                            [{fmtNum(v.ci95[0], 3)}, {fmtNum(v.ci95[1], 3)}]
                          </span>
                        )}
                      </td>
                    ))}
                  </tr>
                );
              }),
            )}
          </tbody>
        </table>
      )}
    </Card>
  );
}

function Disagreements({ models }: { models: EvaluatedModel[] }) {
  const [ia, setA] = useState(0);
  const [ib, setB] = useState(1);
  const [only, setOnly] = useState(true);
  const a = models[Math.min(ia, models.length - 1)];
  const b = models[Math.min(ib, models.length - 1)];
  const tasks = taskNames(models).filter(
    (t) => (a?.tasks.find((x) => x.name === t)?.samples.length ?? 0) > 0,
  );
  const [task, setTask] = useState('');
  const tk = tasks.includes(task) ? task : (tasks[0] ?? '');
  const rows = a && b && a !== b ? disagreements(a, b, tk) : [];
  const shown = only ? rows.filter((r) => r.disagree) : rows;
  const pick = (value: number, set: (v: number) => void, testId: string) => (
    <select value={value} onChange={(e) => set(Number(e.target.value))} data-testid={testId}>
      {models.map((m, i) => (
        <option key={m.key} value={i}>
          {m.key}
        </option>
      ))}
    </select>
  );
  return (
    <Card
      title="Where two models disagree"
      subtitle="per item: the input, each model's answer and whether it scored"
      testId="card-eval-disagree"
      className="span-2 scroll"
      actions={
        models.length >= 2 ? (
          <div className="toolbar inline">
            {pick(ia, setA, 'eval-dis-a')} vs {pick(ib, setB, 'eval-dis-b')}
            <select
              value={tk}
              onChange={(e) => setTask(e.target.value)}
              data-testid="eval-dis-task"
            >
              {tasks.map((t) => (
                <option key={t}>{t}</option>
              ))}
            </select>
            <Toggle
              label="only disagreements"
              checked={only}
              onChange={setOnly}
              testId="eval-dis-only"
            />
          </div>
        ) : undefined
      }
    >
      {models.length < 2 ? (
        <Empty>Select a comparison report, or two reports, to compare items.</Empty>
      ) : (
        <table
          className="table disagree"
          data-testid="eval-disagreements"
          data-rows={shown.length}
          data-total={rows.length}
        >
          <thead>
            <tr>
              <th>#</th>
              <th>input</th>
              <th>{a?.key}</th>
              <th>{b?.key}</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((r) => (
              <tr key={r.index}>
                <td>{r.index + 1}</td>
                <td className="cell-text">{r.input}</td>
                {[r.a, r.b].map((v, i) => (
                  <td
                    key={i}
                    className={`cell-text ${v.score === null ? '' : v.score > 0 ? 'tone-ok' : 'tone-bad'}`}
                  >
                    {v.output}
                    {v.score !== null && (
                      <span className="muted small"> ({fmtNum(v.score, 2)})</span>
                    )}
                  </td>
                ))}
              </tr>
            ))}
            {shown.length === 0 && (
              <tr>
                <td colSpan={4} className="muted">
                  No disagreements on this task.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
    </Card>
  );
}
