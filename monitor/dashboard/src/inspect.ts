// Payloads of model inspection: the `args` of an `inspect` request and the
// `data` of its `inspect_result`, one shape per `what`.
//
// The monitor protocol leaves these free-form (they belong to the model
// inspection code); monitor/inspect.schema.json is their machine-readable form
// and docs/monitor-inspect.md explains them. test/inspect.test.tsx validates the
// fixtures against that schema, so whoever writes the trainer side has one file
// to satisfy. The views check shapes at run time too (`as*` below) and show
// "not available" instead of crashing on anything else.

import type { InspectWhat } from './protocol';

// ---- requests ----------------------------------------------------------------------

export interface AttentionArgs {
  prompt: string;
  /** Omitted: the rank picks the last layer. */
  layer?: number;
}
export interface EmbeddingsArgs {
  /** The most frequent `limit` tokens (by id order when frequencies are unknown). */
  limit?: number;
}
export interface ActivationsArgs {
  prompt?: string;
  layer?: number;
  neuron?: number;
}
export type ArchitectureArgs = Record<string, never>;

/** The decoding options of docs/generation.md (model::GenerationConfig's keys). */
export interface GenerationOptions {
  strategy?: 'greedy' | 'sample' | 'beam';
  max_new_tokens?: number;
  temperature?: number;
  top_k?: number;
  top_p?: number;
  min_p?: number;
  repetition_penalty?: number;
  frequency_penalty?: number;
  presence_penalty?: number;
  num_beams?: number;
  length_penalty?: number;
  early_stopping?: boolean;
  /** Stop strings. */
  stop?: string[];
  seed?: number;
  ignore_eos?: boolean;
}
export interface GenerateArgs {
  /** "live" (the default), a checkpoint "step-N", or a `shardlm serve` URL. */
  target?: string;
  prompt: string;
  options?: GenerationOptions;
  /** Alternatives per token (default 5). */
  top?: number;
}

// ---- results -----------------------------------------------------------------------

export interface AttentionData {
  /** The prompt's tokens as text, length T. */
  tokens: string[];
  layers: number;
  heads: number;
  layer: number;
  /** (heads, T, T): weights[h][query][key], rows sum to 1, causal (key <= query). */
  weights: number[][][];
}

export interface EmbeddingsData {
  method: string;
  /** N tokens as text, their ids and their 2-D projections (N, 2). */
  tokens: string[];
  ids: number[];
  points: number[][];
  /** Fraction of variance that each of the two components explains. */
  explained_variance?: number[];
}

export interface Histogram {
  /** B + 1 bin edges, increasing. */
  edges: number[];
  /** B counts. */
  counts: number[];
}
export interface LayerActivations {
  name: string;
  layer: number;
  mean: number;
  std: number;
  min: number;
  max: number;
  /** Fraction of exact zeros (dead units after ReLU/GELU, saturation). */
  zero_frac?: number;
  histogram: Histogram;
}
export interface TopToken {
  token: string;
  value: number;
  /** A few tokens around it, for reading. */
  context?: string;
}
export interface ActivationsData {
  layers: LayerActivations[];
  neuron?: { layer: number; index: number; top: TopToken[] };
}

export interface ArchNode {
  name: string;
  type: string;
  /** Parameters in this module and its children. */
  params: number;
  shape?: number[];
  trainable?: boolean;
  children?: ArchNode[];
}
export interface ArchitectureData {
  root: ArchNode;
}

export interface Alternative {
  id: number;
  text: string;
  logprob: number;
}
/** One streamed token (an inspect_result with partial: true). */
export interface GenerateToken {
  event: 'token';
  prompt: number;
  index: number;
  /** Absent from a server, which streams text. */
  id?: number;
  text: string;
  /** Text that became final with this token; the deltas add up to the generation's text. */
  delta: string;
  /** null when the target does not report it (a server). */
  logprob: number | null;
  top: Alternative[];
  target?: string;
  step?: number;
}
/** The end of a generation (the last inspect_result for the request). */
export interface GenerateDone {
  event: 'done';
  prompt: number;
  text: string;
  tokens: number[];
  finish_reason: string;
  seed?: number;
  prompt_tokens?: number;
  seconds: number;
  score?: number | null;
  config?: Record<string, unknown>;
  target?: string;
  step?: number;
}
export type GenerateData = GenerateToken | GenerateDone;

export interface InspectDataByWhat {
  attention: AttentionData;
  embeddings: EmbeddingsData;
  activations: ActivationsData;
  architecture: ArchitectureData;
  generate: GenerateData;
}

// ---- run-time shape checks ------------------------------------------------------------

const isNumArray = (a: unknown): a is number[] =>
  Array.isArray(a) && a.every((v) => typeof v === 'number');
const isStrArray = (a: unknown): a is string[] =>
  Array.isArray(a) && a.every((v) => typeof v === 'string');
const isObj = (o: unknown): o is Record<string, unknown> =>
  typeof o === 'object' && o !== null && !Array.isArray(o);

function isArchNode(o: unknown, depth = 0): o is ArchNode {
  if (!isObj(o) || depth > 64) return false;
  if (typeof o.name !== 'string' || typeof o.type !== 'string' || typeof o.params !== 'number')
    return false;
  if (o.shape !== undefined && !isNumArray(o.shape)) return false;
  if (o.children !== undefined) {
    if (!Array.isArray(o.children)) return false;
    return o.children.every((c) => isArchNode(c, depth + 1));
  }
  return true;
}

/** Returns the payload typed for `what`, or null when it does not have that shape. */
export function asInspectData<W extends InspectWhat>(
  what: W,
  data: unknown,
): InspectDataByWhat[W] | null {
  if (!isObj(data)) return null;
  switch (what) {
    case 'attention': {
      const d = data;
      if (!isStrArray(d.tokens) || typeof d.layer !== 'number' || !Array.isArray(d.weights))
        return null;
      const t = d.tokens.length;
      const ok = d.weights.every(
        (h) =>
          Array.isArray(h) &&
          h.length === t &&
          h.every((row: unknown) => isNumArray(row) && row.length === t),
      );
      return ok ? (d as unknown as InspectDataByWhat[W]) : null;
    }
    case 'embeddings': {
      const d = data;
      if (!isStrArray(d.tokens) || !Array.isArray(d.points) || d.points.length !== d.tokens.length)
        return null;
      const ok = d.points.every((p) => isNumArray(p) && p.length >= 2);
      return ok ? (d as unknown as InspectDataByWhat[W]) : null;
    }
    case 'activations': {
      const d = data;
      if (!Array.isArray(d.layers)) return null;
      const ok = d.layers.every(
        (l) =>
          isObj(l) &&
          typeof l.name === 'string' &&
          typeof l.mean === 'number' &&
          isObj(l.histogram) &&
          isNumArray(l.histogram.edges) &&
          isNumArray(l.histogram.counts) &&
          l.histogram.edges.length === l.histogram.counts.length + 1,
      );
      return ok ? (d as unknown as InspectDataByWhat[W]) : null;
    }
    case 'architecture':
      return isArchNode(data.root) ? (data as unknown as InspectDataByWhat[W]) : null;
    case 'generate': {
      const d = data;
      if (d.event === 'token') {
        const ok =
          typeof d.index === 'number' &&
          typeof d.text === 'string' &&
          typeof d.delta === 'string' &&
          (typeof d.logprob === 'number' || d.logprob === null) &&
          Array.isArray(d.top) &&
          d.top.every(
            (a) => isObj(a) && typeof a.text === 'string' && typeof a.logprob === 'number',
          );
        return ok ? (d as unknown as InspectDataByWhat[W]) : null;
      }
      if (d.event === 'done')
        return typeof d.text === 'string' ? (d as unknown as InspectDataByWhat[W]) : null;
      return null;
    }
  }
  return null;
}
