// The Evaluate tab's data: the JSON reports of `shardlm eval run --out` and
// `shardlm eval compare` (eval/result.h: results_json, compare_json) that the
// aggregator lists at /api/evals, flattened into one list of evaluated models,
// and the per-item comparisons the disagreement table shows.

export interface MetricValue {
  value: number | null;
  ci95: [number | null, number | null] | null;
  higher_is_better: boolean;
}

export interface TaskDetail {
  by_position: { tokens: number[]; top1: (number | null)[]; top5: (number | null)[] };
  calibration: {
    bins: {
      lo: number;
      hi: number;
      count: number;
      confidence: number | null;
      accuracy: number | null;
    }[];
    ece: number | null;
  };
}

export interface TaskResult {
  name: string;
  kind: string;
  items: number;
  tokens?: number;
  seconds?: number;
  metrics: Record<string, MetricValue>;
  samples: Record<string, unknown>[];
  detail?: TaskDetail;
}

export interface ModelResult {
  model: string;
  label: string;
  suite: string;
  tasks: TaskResult[];
}

export interface CompareReport {
  suite: string;
  models: ModelResult[];
  comparisons: { task: string; metric: string; winner: string | null }[];
}

export interface ReportItem {
  name: string;
  kind: 'run' | 'compare' | 'other' | 'unreadable';
  suite?: string | null;
  mtime?: number;
  bytes?: number;
}

/** One evaluated model of a loaded report, with a name unique across reports. */
export interface EvaluatedModel extends ModelResult {
  key: string;
  report: string;
}

const isObj = (o: unknown): o is Record<string, unknown> =>
  typeof o === 'object' && o !== null && !Array.isArray(o);

function asModel(o: unknown): ModelResult | null {
  if (!isObj(o) || !Array.isArray(o.tasks)) return null;
  const tasks = (o.tasks as unknown[]).filter(
    (t): t is TaskResult => isObj(t) && typeof t.name === 'string' && isObj(t.metrics),
  );
  for (const t of tasks) if (!Array.isArray(t.samples)) t.samples = [];
  return {
    model: String(o.model ?? ''),
    label: String(o.label ?? o.model ?? ''),
    suite: String(o.suite ?? ''),
    tasks,
  };
}

/** The models in a report file (one for `eval run`, several for `eval compare`). */
export function modelsOf(reportName: string, json: unknown): EvaluatedModel[] {
  const base = reportName.replace(/\.json$/, '');
  if (isObj(json) && Array.isArray(json.models)) {
    return (json.models as unknown[])
      .map(asModel)
      .filter((m): m is ModelResult => m !== null)
      .map((m) => ({ ...m, key: `${base}:${m.label}`, report: reportName }));
  }
  const m = asModel(json);
  return m
    ? [
        {
          ...m,
          key: m.label && m.label !== m.model ? `${base}:${m.label}` : base,
          report: reportName,
        },
      ]
    : [];
}

/** Task names over all models, in first-seen order. */
export function taskNames(models: EvaluatedModel[]): string[] {
  const out: string[] = [];
  for (const m of models) for (const t of m.tasks) if (!out.includes(t.name)) out.push(t.name);
  return out;
}

/** Metric names of a task over all models, in first-seen order. */
export function metricNames(models: EvaluatedModel[], task: string): string[] {
  const out: string[] = [];
  for (const m of models)
    for (const t of m.tasks)
      if (t.name === task)
        for (const k of Object.keys(t.metrics)) if (!out.includes(k)) out.push(k);
  return out;
}

export function metricOf(m: EvaluatedModel, task: string, metric: string): MetricValue | undefined {
  return m.tasks.find((t) => t.name === task)?.metrics[metric];
}

/** How an item of a task scored, for the disagreement table: a score in [0, 1] (or null) and the text shown. */
export interface ItemView {
  input: string;
  output: string;
  score: number | null;
}

export function itemView(kind: string, s: Record<string, unknown>): ItemView {
  const str = (v: unknown) =>
    typeof v === 'string' ? v : v === undefined ? '' : JSON.stringify(v);
  if (kind === 'choice') {
    const choices = Array.isArray(s.choices) ? (s.choices as unknown[]).map(str) : [];
    const pred = typeof s.pred === 'number' ? s.pred : -1;
    return { input: str(s.context), output: choices[pred] ?? '', score: pred === s.answer ? 1 : 0 };
  }
  if (kind === 'factual')
    return {
      input: str(s.prompt),
      output: str(s.output),
      score: typeof s.contains === 'number' ? s.contains : null,
    };
  if (kind === 'generation')
    return {
      input: str(s.prompt),
      output: str(s.output),
      score: typeof s.sentence_bleu === 'number' ? s.sentence_bleu / 100 : null,
    };
  return { input: str(s.prompt ?? s.context), output: str(s.output), score: null };
}

export interface DisagreementRow {
  index: number;
  input: string;
  a: ItemView;
  b: ItemView;
  /** Different scores, or (without scores) different outputs. */
  disagree: boolean;
}

/** Items of `task` side by side for two models (same items, same order). */
export function disagreements(
  a: EvaluatedModel,
  b: EvaluatedModel,
  task: string,
): DisagreementRow[] {
  const ta = a.tasks.find((t) => t.name === task);
  const tb = b.tasks.find((t) => t.name === task);
  if (!ta || !tb) return [];
  const n = Math.min(ta.samples.length, tb.samples.length);
  const rows: DisagreementRow[] = [];
  for (let i = 0; i < n; i++) {
    const va = itemView(ta.kind, ta.samples[i]);
    const vb = itemView(tb.kind, tb.samples[i]);
    const disagree =
      va.score !== null && vb.score !== null ? va.score !== vb.score : va.output !== vb.output;
    rows.push({ index: i, input: va.input, a: va, b: vb, disagree });
  }
  return rows;
}
