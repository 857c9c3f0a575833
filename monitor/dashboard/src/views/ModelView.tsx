// Model inspection: attention heatmaps per layer and head, a PCA map of the
// token embeddings with search, activation statistics per layer, and the
// architecture as a tree. Each view sends an `inspect` request through the
// aggregator to rank 0 and draws the `inspect_result`; when nothing answers
// (no rank connected, a trainer without inspection, a timeout, a payload of
// another shape) it says so and offers to retry, it never breaks the page.

import { useEffect, useMemo, useRef, useState, type ReactNode } from 'react';
import { Bar, Scatter } from 'react-chartjs-2';
import type { ChartData, ChartOptions, Plugin } from 'chart.js';
import { Card, Empty, Segmented } from '../components/ui';
import { useRun } from '../context';
import { fmtNum, fmtSi } from '../lib/format';
import {
  asInspectData,
  type ActivationsData,
  type ArchNode,
  type ArchitectureData,
  type AttentionData,
  type EmbeddingsData,
} from '../inspect';
import type { InspectWhat } from '../protocol';
import type { InspectEntry } from '../state/reducer';

type Tab = InspectWhat;

export function ModelView() {
  const [tab, setTab] = useState<Tab>('attention');
  return (
    <div className="view model-view">
      <div className="toolbar">
        <Segmented
          value={tab}
          onChange={setTab}
          testId="inspect-tabs"
          options={[
            { value: 'attention', label: 'Attention' },
            { value: 'embeddings', label: 'Embeddings' },
            { value: 'activations', label: 'Activations' },
            { value: 'architecture', label: 'Architecture' },
          ]}
        />
        <span className="muted small">served by rank 0 of the live run through the aggregator</span>
      </div>
      {tab === 'attention' && <AttentionView />}
      {tab === 'embeddings' && <EmbeddingsView />}
      {tab === 'activations' && <ActivationsView />}
      {tab === 'architecture' && <ArchitectureView />}
    </div>
  );
}

// ---- request plumbing ---------------------------------------------------------------------

/**
 * The latest request this page made for `what` (kept in the reducer, so a
 * result survives switching tabs), and a function to make another. With
 * `auto`, the first visit asks at once with `auto`'s arguments.
 */
function useInspect(
  what: InspectWhat,
  auto?: () => Record<string, unknown> | undefined,
): [InspectEntry | undefined, (args?: Record<string, unknown>) => void, string | null] {
  const { state, requestInspect, socket } = useRun();
  const [sendError, setSendError] = useState<string | null>(null);
  let entry: InspectEntry | undefined;
  for (const e of Object.values(state.inspects))
    if (e.what === what && (!entry || e.at >= entry.at)) entry = e;
  const request = (args?: Record<string, unknown>) => {
    const sent = requestInspect(what, args);
    setSendError(sent ? null : 'Not connected to the aggregator.');
  };
  const asked = useRef(false);
  const open = socket.status === 'open';
  useEffect(() => {
    if (auto && open && !entry && !asked.current) {
      asked.current = true;
      request(auto());
    }
  });
  return [entry, request, sendError];
}

/** Draws `render(data)` when the answer has the right shape, else the reason it is not there. */
function InspectBody<W extends InspectWhat>(props: {
  what: W;
  entry?: InspectEntry;
  sendError: string | null;
  idle: ReactNode;
  onRetry: () => void;
  render: (data: NonNullable<ReturnType<typeof asInspectData<W>>>) => ReactNode;
}) {
  const { entry, sendError } = props;
  if (sendError) return <Unavailable message={sendError} onRetry={props.onRetry} />;
  if (!entry) return <Empty>{props.idle}</Empty>;
  if (entry.phase === 'pending')
    return (
      <div className="empty" data-testid="inspect-pending">
        <span className="spinner" /> asking rank 0…
      </div>
    );
  if (entry.phase === 'unavailable')
    return <Unavailable message={entry.message ?? 'Not available.'} onRetry={props.onRetry} />;
  const data = asInspectData(props.what, entry.data);
  if (!data)
    return (
      <Unavailable
        message={`The trainer answered, but not with ${props.what} data this dashboard can draw.`}
        onRetry={props.onRetry}
      />
    );
  return <>{props.render(data)}</>;
}

function Unavailable({ message, onRetry }: { message: string; onRetry: () => void }) {
  return (
    <div className="unavailable" data-testid="inspect-unavailable">
      <div className="unavailable-icon">◌</div>
      <div>
        <div className="unavailable-title">Not available</div>
        <div className="muted">{message}</div>
      </div>
      <button type="button" className="btn small" onClick={onRetry}>
        Retry
      </button>
    </div>
  );
}

/** The request form of a view: its fields and the button that asks. */
function InspectForm(props: {
  onAsk: () => void;
  button: string;
  testId: string;
  children: ReactNode;
}) {
  return (
    <form
      className="inspect-form"
      onSubmit={(e) => {
        e.preventDefault();
        props.onAsk();
      }}
    >
      {props.children}
      <button type="submit" className="btn primary" data-testid={props.testId}>
        {props.button}
      </button>
    </form>
  );
}

function PromptField(props: { value: string; onChange: (v: string) => void; testId?: string }) {
  return (
    <label className="field grow">
      <span className="field-label">prompt</span>
      <input
        value={props.value}
        onChange={(e) => props.onChange(e.target.value)}
        data-testid={props.testId}
      />
    </label>
  );
}

// ---- attention ----------------------------------------------------------------------------

function AttentionView() {
  const { state } = useRun();
  const layers = state.runInfo?.model?.n_layer;
  const [prompt, setPrompt] = useState('Once upon a time there was a little model');
  const [layer, setLayer] = useState<number | ''>('');
  const args = () => ({ prompt, ...(layer === '' ? {} : { layer }) });
  const [entry, request, sendError] = useInspect('attention', args);
  const ask = () => request(args());
  return (
    <Card
      title="Attention"
      subtitle="weights of each head for a prompt: rows attend to columns"
      testId="card-attention"
    >
      <InspectForm onAsk={ask} button="Show attention" testId="attention-go">
        <PromptField value={prompt} onChange={setPrompt} testId="attention-prompt" />
        <label className="field">
          <span className="field-label">layer</span>
          <select
            value={layer}
            onChange={(e) => setLayer(e.target.value === '' ? '' : Number(e.target.value))}
          >
            <option value="">last</option>
            {Array.from({ length: layers ?? 0 }, (_, i) => (
              <option key={i} value={i}>
                {i}
              </option>
            ))}
          </select>
        </label>
      </InspectForm>
      <InspectBody
        what="attention"
        entry={entry}
        sendError={sendError}
        onRetry={ask}
        idle="Enter a prompt and press Show attention."
        render={(d) => <AttentionResult data={d} />}
      />
    </Card>
  );
}

function AttentionResult({ data }: { data: AttentionData }) {
  const [head, setHead] = useState<number | 'mean'>('mean');
  const matrix = useMemo(() => {
    if (head !== 'mean') return data.weights[head] ?? [];
    const t = data.tokens.length;
    const out = Array.from({ length: t }, () => new Array<number>(t).fill(0));
    for (const h of data.weights)
      for (let i = 0; i < t; i++)
        for (let j = 0; j < t; j++) out[i][j] += h[i][j] / data.weights.length;
    return out;
  }, [data, head]);
  return (
    <div className="attention" data-testid="attention-result">
      <div className="attention-heads">
        <span className="muted small">layer {data.layer} · head</span>
        <Segmented
          value={head}
          onChange={setHead}
          options={[
            { value: 'mean' as const, label: 'mean' },
            ...data.weights.map((_, i) => ({ value: i, label: String(i) })),
          ]}
        />
      </div>
      <div className="attention-main">
        <Heatmap tokens={data.tokens} matrix={matrix} size={420} />
        <div className="attention-side">
          <div className="attention-thumbs">
            {data.weights.map((w, i) => (
              <button
                key={i}
                type="button"
                className={`thumb ${head === i ? 'active' : ''}`}
                onClick={() => setHead(i)}
                title={`head ${i}`}
              >
                <Heatmap tokens={data.tokens} matrix={w} size={84} labels={false} />
                <span>head {i}</span>
              </button>
            ))}
          </div>
          <ColorScale max={matrixMax(matrix)} />
        </div>
      </div>
    </div>
  );
}

const matrixMax = (m: number[][]) =>
  m.reduce((a, row) => row.reduce((b, v) => Math.max(b, v), a), 0);

function ColorScale({ max }: { max: number }) {
  const stops = Array.from({ length: 11 }, (_, i) => heatColor(i / 10)).join(', ');
  return (
    <div className="color-scale">
      <span className="mono small">0</span>
      <span
        className="color-scale-bar"
        style={{ background: `linear-gradient(90deg, ${stops})` }}
      />
      <span className="mono small">{fmtNum(max, 2)}</span>
      <span className="muted small">attention weight (colours scaled to the largest cell)</span>
    </div>
  );
}

/** A (T, T) matrix as a canvas heatmap, token labels on both axes. */
export function Heatmap({
  tokens,
  matrix,
  size = 460,
  labels = true,
}: {
  tokens: string[];
  matrix: number[][];
  size?: number;
  labels?: boolean;
}) {
  const ref = useRef<HTMLCanvasElement>(null);
  const [hover, setHover] = useState<[number, number] | null>(null);
  const t = tokens.length;
  const pad = labels ? 86 : 0;
  const cell = t > 0 ? Math.max(2, Math.floor((size - pad) / t)) : 1;
  const w = pad + cell * t;
  useEffect(() => {
    const c = ref.current;
    const ctx = c?.getContext('2d');
    if (!c || !ctx) return;
    const dpr = window.devicePixelRatio || 1;
    c.width = w * dpr;
    c.height = w * dpr;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, w);
    let max = 1e-9;
    for (const row of matrix) for (const v of row) max = Math.max(max, v);
    for (let i = 0; i < t; i++) {
      for (let j = 0; j < t; j++) {
        ctx.fillStyle = heatColor((matrix[i]?.[j] ?? 0) / max);
        ctx.fillRect(
          pad + j * cell,
          pad + i * cell,
          cell - (cell > 6 ? 1 : 0),
          cell - (cell > 6 ? 1 : 0),
        );
      }
    }
    if (labels) {
      ctx.fillStyle = '#9aa4b8';
      ctx.font = `${Math.min(12, Math.max(8, cell - 3))}px "JetBrains Mono", ui-monospace, monospace`;
      ctx.textAlign = 'right';
      ctx.textBaseline = 'middle';
      for (let i = 0; i < t; i++) ctx.fillText(clip(tokens[i]), pad - 6, pad + i * cell + cell / 2);
      ctx.save();
      ctx.textAlign = 'left';
      for (let j = 0; j < t; j++) {
        ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
        ctx.translate(pad + j * cell + cell / 2, pad - 6);
        ctx.rotate(-Math.PI / 2);
        ctx.fillText(clip(tokens[j]), 0, 0);
      }
      ctx.restore();
    }
  }, [matrix, tokens, t, cell, pad, w, labels]);
  return (
    <div className="heatmap">
      <canvas
        ref={ref}
        style={{ width: w, height: w }}
        onMouseMove={(e) => {
          if (!labels) return;
          const r = e.currentTarget.getBoundingClientRect();
          const j = Math.floor((e.clientX - r.left - pad) / cell);
          const i = Math.floor((e.clientY - r.top - pad) / cell);
          setHover(i >= 0 && j >= 0 && i < t && j < t ? [i, j] : null);
        }}
        onMouseLeave={() => setHover(null)}
      />
      {labels && (
        <div className="heatmap-info mono small">
          {hover ? (
            <>
              “{tokens[hover[0]]}” → “{tokens[hover[1]]}”: {fmtNum(matrix[hover[0]]?.[hover[1]], 3)}
            </>
          ) : (
            <span className="muted">hover a cell</span>
          )}
        </div>
      )}
    </div>
  );
}

const clip = (s: string) => {
  const v = s.replace(/\n/g, '⏎').replace(/ /g, '·');
  return v.length > 10 ? `${v.slice(0, 9)}…` : v;
};

/** 0..1 -> a dark-to-bright ramp (close to "magma"). */
export function heatColor(v: number): string {
  const x = Math.max(0, Math.min(1, Number.isFinite(v) ? v : 0));
  const stops = [
    [14, 17, 28],
    [59, 15, 112],
    [140, 41, 129],
    [222, 73, 104],
    [254, 159, 109],
    [252, 253, 191],
  ];
  const f = x * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(f));
  const u = f - i;
  const c = stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * u));
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

// ---- embeddings ----------------------------------------------------------------------------

function EmbeddingsView() {
  const [limit, setLimit] = useState(2000);
  const [entry, request, sendError] = useInspect('embeddings', () => ({ limit }));
  const ask = () => request({ limit });
  return (
    <Card
      title="Token embeddings"
      subtitle="the first two principal components of the embedding table"
      testId="card-embeddings"
    >
      <InspectForm onAsk={ask} button="Project embeddings" testId="embeddings-go">
        <label className="field">
          <span className="field-label">tokens</span>
          <select value={limit} onChange={(e) => setLimit(Number(e.target.value))}>
            {[500, 2000, 5000, 20000].map((n) => (
              <option key={n} value={n}>
                {n.toLocaleString('en-US')}
              </option>
            ))}
          </select>
        </label>
      </InspectForm>
      <InspectBody
        what="embeddings"
        entry={entry}
        sendError={sendError}
        onRetry={ask}
        idle="Press Project embeddings to fetch the map."
        render={(d) => <EmbeddingsResult data={d} />}
      />
    </Card>
  );
}

/** Matches drawn with their text; the others are dots only. */
const LABELLED = 12;

const labelPlugin: Plugin<'scatter'> = {
  id: 'pointLabels',
  afterDatasetsDraw(chart) {
    const ds = chart.data.datasets[1];
    const meta = chart.getDatasetMeta(1);
    if (!ds || !meta || meta.hidden) return;
    const ctx = chart.ctx;
    ctx.save();
    ctx.font = '12px "JetBrains Mono", ui-monospace, monospace';
    ctx.fillStyle = '#f5a524';
    ctx.textBaseline = 'bottom';
    (ds.data as { label?: string }[]).slice(0, LABELLED).forEach((p, i) => {
      const el = meta.data[i];
      if (el && p.label) ctx.fillText(p.label, el.x + 5, el.y - 3);
    });
    ctx.restore();
  },
};

function EmbeddingsResult({ data }: { data: EmbeddingsData }) {
  const [search, setSearch] = useState('');
  const q = search.trim().toLowerCase();
  const matches = useMemo(() => {
    if (!q) return [] as number[];
    // Exact matches first, then prefixes, then the rest (leading spaces ignored).
    const rank = (t: string) => {
      const v = t.trim().toLowerCase();
      return v === q ? 0 : v.startsWith(q) ? 1 : 2;
    };
    const out: number[] = [];
    data.tokens.forEach((t, i) => {
      if (t.toLowerCase().includes(q) || String(data.ids[i]) === q) out.push(i);
    });
    return out.sort((a, b) => rank(data.tokens[a]) - rank(data.tokens[b]) || a - b);
  }, [data, q]);
  const neighbours = useMemo(() => {
    if (matches.length === 0) return [];
    const [x0, y0] = data.points[matches[0]];
    return data.points
      .map((p, i) => ({ i, d: Math.hypot(p[0] - x0, p[1] - y0) }))
      .filter((e) => e.i !== matches[0])
      .sort((a, b) => a.d - b.d)
      .slice(0, 8);
  }, [data, matches]);
  const chartData = useMemo<ChartData<'scatter'>>(
    () => ({
      datasets: [
        {
          label: 'tokens',
          data: data.points.map((p) => ({ x: p[0], y: p[1] })),
          pointRadius: 1.6,
          backgroundColor: q ? 'rgba(79, 140, 255, 0.25)' : 'rgba(79, 140, 255, 0.6)',
        },
        {
          label: 'matches',
          data: matches.map((i) => ({
            x: data.points[i][0],
            y: data.points[i][1],
            label: data.tokens[i],
          })),
          pointRadius: 4,
          backgroundColor: '#f5a524',
        },
      ],
    }),
    [data, matches, q],
  );
  const options = useMemo<ChartOptions<'scatter'>>(
    () => ({
      animation: false,
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            label: (item) => {
              const i = item.datasetIndex === 0 ? item.dataIndex : matches[item.dataIndex];
              return `${JSON.stringify(data.tokens[i])} (id ${data.ids[i]})`;
            },
          },
        },
      },
      scales: {
        x: {
          title: {
            display: true,
            text: `PC1${data.explained_variance ? ` (${(data.explained_variance[0] * 100).toFixed(1)}%)` : ''}`,
          },
        },
        y: {
          title: {
            display: true,
            text: `PC2${data.explained_variance ? ` (${(data.explained_variance[1] * 100).toFixed(1)}%)` : ''}`,
          },
        },
      },
    }),
    [data, matches],
  );
  return (
    <div className="embeddings" data-testid="embeddings-result">
      <div className="chart-box tall">
        <Scatter data={chartData} options={options} plugins={[labelPlugin]} />
      </div>
      <div className="embeddings-side">
        <label className="field">
          <span className="field-label">search tokens</span>
          <input
            value={search}
            onChange={(e) => setSearch(e.target.value)}
            placeholder="e.g. the"
            data-testid="embeddings-search"
          />
        </label>
        <div className="muted small">
          {data.tokens.length.toLocaleString('en-US')} tokens ·{' '}
          {q
            ? `${matches.length} match${matches.length === 1 ? '' : 'es'}${matches.length > LABELLED ? ` (the first ${LABELLED} labelled)` : ''}`
            : 'type to highlight'}
        </div>
        {matches.length > 0 && (
          <>
            <h3>Matches</h3>
            <ul className="token-list" data-testid="embeddings-matches">
              {matches.slice(0, 12).map((i) => (
                <li key={i}>
                  <span className="tok">{JSON.stringify(data.tokens[i])}</span>
                  <span className="muted mono">#{data.ids[i]}</span>
                </li>
              ))}
            </ul>
            <h3>Nearest to {JSON.stringify(data.tokens[matches[0]])} on the map</h3>
            <ul className="token-list">
              {neighbours.map((n) => (
                <li key={n.i}>
                  <span className="tok">{JSON.stringify(data.tokens[n.i])}</span>
                  <span className="muted mono">{fmtNum(n.d, 2)}</span>
                </li>
              ))}
            </ul>
          </>
        )}
      </div>
    </div>
  );
}

// ---- activations ---------------------------------------------------------------------------

function ActivationsView() {
  const [prompt, setPrompt] = useState('The quick brown fox jumps over the lazy dog');
  const [layer, setLayer] = useState<number | ''>(0);
  const [neuron, setNeuron] = useState<number | ''>(0);
  const args = () => ({
    prompt,
    ...(layer === '' ? {} : { layer }),
    ...(neuron === '' ? {} : { neuron }),
  });
  const [entry, request, sendError] = useInspect('activations', args);
  const ask = () => request(args());
  return (
    <Card
      title="Activations"
      subtitle="statistics of each layer's output for a prompt; top tokens of one neuron"
      testId="card-activations"
    >
      <InspectForm onAsk={ask} button="Measure" testId="activations-go">
        <PromptField value={prompt} onChange={setPrompt} />
        <label className="field">
          <span className="field-label">neuron layer</span>
          <input
            style={{ width: 70 }}
            value={layer}
            onChange={(e) =>
              setLayer(
                e.target.value === '' || !Number.isInteger(Number(e.target.value))
                  ? ''
                  : Number(e.target.value),
              )
            }
          />
        </label>
        <label className="field">
          <span className="field-label">neuron index</span>
          <input
            style={{ width: 80 }}
            value={neuron}
            onChange={(e) =>
              setNeuron(
                e.target.value === '' || !Number.isInteger(Number(e.target.value))
                  ? ''
                  : Number(e.target.value),
              )
            }
          />
        </label>
      </InspectForm>
      <InspectBody
        what="activations"
        entry={entry}
        sendError={sendError}
        onRetry={ask}
        idle="Enter a prompt and press Measure."
        render={(d) => <ActivationsResult data={d} />}
      />
    </Card>
  );
}

function ActivationsResult({ data }: { data: ActivationsData }) {
  const [sel, setSel] = useState(0);
  const l = data.layers[Math.min(sel, data.layers.length - 1)];
  const hist = useMemo<ChartData<'bar'>>(
    () => ({
      labels: l
        ? l.histogram.counts.map((_, i) =>
            fmtNum((l.histogram.edges[i] + l.histogram.edges[i + 1]) / 2, 2),
          )
        : [],
      datasets: [
        {
          label: 'count',
          data: l ? l.histogram.counts : [],
          backgroundColor: '#4f8cff',
          barPercentage: 1,
          categoryPercentage: 1,
        },
      ],
    }),
    [l],
  );
  const histOptions = useMemo<ChartOptions<'bar'>>(
    () => ({
      animation: false,
      plugins: { legend: { display: false } },
      scales: {
        x: { ticks: { maxTicksLimit: 9 } },
        y: { ticks: { callback: (v) => fmtSi(Number(v)) } },
      },
    }),
    [],
  );
  return (
    <div className="activations" data-testid="activations-result">
      <div className="scroll-y">
        <table className="table compact clickable">
          <thead>
            <tr>
              <th>layer</th>
              <th>mean</th>
              <th>std</th>
              <th>min</th>
              <th>max</th>
              <th>zeros</th>
            </tr>
          </thead>
          <tbody>
            {data.layers.map((x, i) => (
              <tr key={x.name} className={i === sel ? 'selected' : ''} onClick={() => setSel(i)}>
                <td className="mono">{x.name}</td>
                <td className="mono">{fmtNum(x.mean)}</td>
                <td className="mono">{fmtNum(x.std)}</td>
                <td className="mono">{fmtNum(x.min)}</td>
                <td className="mono">{fmtNum(x.max)}</td>
                <td className="mono">
                  {x.zero_frac !== undefined ? `${(x.zero_frac * 100).toFixed(1)}%` : '—'}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div>
        <h3>{l?.name} histogram</h3>
        <div className="chart-box" style={{ height: 200 }}>
          <Bar data={hist} options={histOptions} />
        </div>
        {data.neuron && (
          <>
            <h3>
              Top tokens of neuron {data.neuron.index} in layer {data.neuron.layer}
            </h3>
            <ul className="token-list">
              {data.neuron.top.map((t, i) => (
                <li key={i}>
                  <span className="tok">{JSON.stringify(t.token)}</span>
                  <span className="muted small">{t.context}</span>
                  <span className="mono">{fmtNum(t.value)}</span>
                </li>
              ))}
            </ul>
          </>
        )}
      </div>
    </div>
  );
}

// ---- architecture --------------------------------------------------------------------------

function ArchitectureView() {
  const [entry, request, sendError] = useInspect('architecture', () => undefined);
  return (
    <Card
      title="Architecture"
      subtitle="modules with their parameter counts and shapes"
      testId="card-architecture"
      actions={
        <button type="button" className="btn ghost small" onClick={() => request()}>
          ↻ Reload
        </button>
      }
    >
      <InspectBody
        what="architecture"
        entry={entry}
        sendError={sendError}
        onRetry={() => request()}
        idle="Loading…"
        render={(d) => <ArchTree data={d} />}
      />
    </Card>
  );
}

function ArchTree({ data }: { data: ArchitectureData }) {
  return (
    <div className="arch" data-testid="architecture-result">
      <div className="arch-head">
        <span>module</span>
        <span>type</span>
        <span>shape</span>
        <span className="right">parameters</span>
      </div>
      <ArchRow node={data.root} depth={0} total={data.root.params || 1} />
    </div>
  );
}

function ArchRow({ node, depth, total }: { node: ArchNode; depth: number; total: number }) {
  const [open, setOpen] = useState(depth < 2);
  const kids = node.children ?? [];
  return (
    <>
      <div className="arch-row" onClick={() => kids.length && setOpen(!open)}>
        <span className="arch-name" style={{ paddingLeft: depth * 18 }}>
          <span className="arch-caret">{kids.length ? (open ? '▾' : '▸') : '·'}</span>
          {node.name}
        </span>
        <span className="muted">{node.type}</span>
        <span className="mono small">{node.shape ? `(${node.shape.join(', ')})` : ''}</span>
        <span className="right mono">
          <span
            className="arch-bar"
            style={{ width: `${Math.max(1, (node.params / total) * 60)}px` }}
          />
          {fmtSi(node.params)}
        </span>
      </div>
      {open &&
        kids.map((c, i) => (
          <ArchRow key={`${c.name}-${i}`} node={c} depth={depth + 1} total={total} />
        ))}
    </>
  );
}
