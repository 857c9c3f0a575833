// The dashboard's view of a training run, built from protocol messages.
//
// `reduce(state, action)` is the only place that interprets messages: the
// WebSocket hook batches frames into one `messages` action per animation frame,
// the control and inspection panels record what they sent, and every panel reads
// the resulting TrainState. Messages that carry a `seq` are applied once: a
// reconnect replays the aggregator's history and the duplicates are dropped.
// Chart series are shared append-only buffers (see series.ts), everything else
// is replaced, never mutated.

import type {
  Ack,
  Aggregate,
  Checkpoints,
  CommandName,
  CommandStatus,
  ErrorMsg,
  EventMsg,
  HParams,
  InspectResult,
  InspectWhat,
  RankEntry,
  RateAck,
  RateCreated,
  RatePair,
  RateVotes,
  VoteRow,
  RunInfo,
  RunInfoBody,
  ServerMessage,
  StepMsg,
  StepPhase,
  Validation,
  Welcome,
} from '../protocol';
import { STEP_PHASES } from '../protocol';
import type { GenerateToken } from '../inspect';
import { append, emptySeries, lowerBound, type Series } from './series';

// ---- state types ---------------------------------------------------------------------

export type CommandPhase =
  'sent' | 'forwarded' | 'done' | 'acked' | 'rejected' | 'refused' | 'failed';

/** One control command: what was asked, and how far it got. */
export interface CommandEntry {
  id: string;
  command: CommandName;
  args?: Record<string, unknown>;
  /** Seconds since the epoch when it was sent (or, for another viewer's command, acknowledged). */
  at: number;
  phase: CommandPhase;
  /** The step at which it took effect (from the rank's ack). */
  step?: number;
  message?: string;
  /** False for acks of commands another viewer sent. */
  mine: boolean;
  /** It took effect on a timeline the run abandoned (resumed from an earlier checkpoint). */
  stale?: boolean;
}

export type InspectPhase = 'pending' | 'ok' | 'unavailable';
export interface InspectEntry {
  id: string;
  what: InspectWhat;
  args?: Record<string, unknown>;
  at: number;
  phase: InspectPhase;
  data?: Record<string, unknown>;
  message?: string;
  /** generate: the tokens streamed so far (inspect_result with partial: true). */
  stream?: GenerateToken[];
}

/** What this viewer sent in the Rate tab, and what came back. */
export type RateRequestKind = 'next' | 'vote' | 'list' | 'create';
export interface RateState {
  /** The latest pair to rate (null: this rater has rated every pair). */
  pair?: RatePair;
  /** The latest vote's acknowledgement (with the reveal). */
  ack?: RateAck;
  /** Every vote so far, in the order cast (rate_votes). */
  votes: VoteRow[];
  pairsTotal: number;
  batches: string[];
  /** Answers to rate_create, by request id. */
  created: Record<string, RateCreated>;
  requests: Record<string, RateRequestKind>;
  /** The last refusal of a rate request (an error that names it). */
  error?: ErrorMsg;
}

/** Per-rank series and the last values each rank reported. */
export interface RankData {
  rank: number;
  tokensPerS: Series;
  stepTime: Series;
  /** GPU utilisation (%) when NVML reports it, else host RSS in bytes. */
  gpuUtil: Series;
  hostRss: Series;
  last?: StepMsg;
  /** Exponential average of the phases of recent steps, seconds. */
  phases: Record<StepPhase | 'total', number>;
  heartbeat?: { ts: number; step?: number; idle_s?: number; dropped?: number };
  bye?: string;
}

export type RunPhase = 'waiting' | 'running' | 'paused' | 'finished' | 'stopped';

export interface TrainState {
  /** Bumped on every change that panels may draw. */
  version: number;
  lastSeq: number;
  historyDone: boolean;
  welcome?: Welcome;
  runDir?: string;
  runId?: string;
  worldSize: number;
  runInfo?: RunInfoBody;
  runInfoByRank: Record<number, RunInfo>;
  step: number;
  lastStepTs?: number;
  phase: RunPhase;
  hparams?: HParams;

  trainLoss: Series;
  trainLossMin: Series;
  trainLossMax: Series;
  valLoss: Series;
  validations: Validation[];
  lr: Series;
  gradNorm: Series;
  tokensPerSTotal: Series;
  stepTimeMedian: Series;
  stepTimeMax: Series;
  ranks: Record<number, RankData>;
  liveness?: { ts: number; ranks: RankEntry[] };
  stragglers: number[];

  events: EventMsg[];
  checkpoints?: Checkpoints;
  commands: Record<string, CommandEntry>;
  commandOrder: string[];
  inspects: Record<string, InspectEntry>;
  errors: ErrorMsg[];
  rate: RateState;
}

export type Action =
  | { type: 'messages'; messages: ServerMessage[] }
  | {
      type: 'command_sent';
      id: string;
      command: CommandName;
      args?: Record<string, unknown>;
      at: number;
    }
  | {
      type: 'inspect_sent';
      id: string;
      what: InspectWhat;
      args?: Record<string, unknown>;
      at: number;
    }
  | { type: 'inspect_timeout'; id: string; message: string }
  | { type: 'rate_sent'; id: string; kind: RateRequestKind }
  | { type: 'reset' };

const MAX_EVENTS = 500;
const MAX_ERRORS = 50;
const MAX_COMMANDS = 200;
/** Weight of the newest step in the per-rank phase averages. */
const PHASE_ALPHA = 0.2;

export function initialState(): TrainState {
  return {
    version: 0,
    lastSeq: -1,
    historyDone: false,
    worldSize: 0,
    runInfoByRank: {},
    step: 0,
    phase: 'waiting',
    trainLoss: emptySeries(),
    trainLossMin: emptySeries(),
    trainLossMax: emptySeries(),
    valLoss: emptySeries(),
    validations: [],
    lr: emptySeries(),
    gradNorm: emptySeries(),
    tokensPerSTotal: emptySeries(),
    stepTimeMedian: emptySeries(),
    stepTimeMax: emptySeries(),
    ranks: {},
    stragglers: [],
    events: [],
    commands: {},
    commandOrder: [],
    inspects: {},
    errors: [],
    rate: { votes: [], pairsTotal: 0, batches: [], created: {}, requests: {} },
  };
}

function newRank(rank: number): RankData {
  const phases = { total: 0 } as RankData['phases'];
  for (const p of STEP_PHASES) phases[p] = 0;
  return {
    rank,
    tokensPerS: emptySeries(),
    stepTime: emptySeries(),
    gpuUtil: emptySeries(),
    hostRss: emptySeries(),
    phases,
  };
}

const pushCapped = <T>(list: T[], item: T, cap: number): T[] => {
  const out = list.length >= cap ? list.slice(list.length - cap + 1) : list.slice();
  out.push(item);
  return out;
};

// ---- one message -----------------------------------------------------------------------

/** Applies one message to a draft (a shallow copy owned by this batch). */
function apply(s: TrainState, m: ServerMessage): void {
  switch (m.type) {
    case 'welcome':
      // Another run directory behind the same address: start from scratch.
      if (s.runDir !== undefined && m.run_dir !== undefined && m.run_dir !== s.runDir) {
        const fresh = initialState();
        Object.assign(s, fresh, {
          version: s.version,
          commands: s.commands,
          commandOrder: s.commandOrder,
        });
      }
      s.welcome = m;
      s.runDir = m.run_dir ?? s.runDir;
      s.historyDone = m.history === 0 ? s.historyDone : false;
      return;
    case 'history_end':
      s.historyDone = true;
      return;
    case 'run_info':
      return applyRunInfo(s, m);
    case 'step':
      return applyStep(s, m);
    case 'aggregate':
      return applyAggregate(s, m);
    case 'validation':
      s.valLoss = append(s.valLoss, m.step, m.loss);
      s.validations = [...s.validations.filter((v) => v.step < m.step), m];
      return;
    case 'event':
      return applyEvent(s, m);
    case 'heartbeat': {
      const r = rankData(s, m.rank);
      r.heartbeat = { ts: m.ts, step: m.step, idle_s: m.idle_s, dropped: m.dropped };
      return;
    }
    case 'bye': {
      const r = rankData(s, m.rank);
      r.bye = m.reason ?? 'closed';
      return;
    }
    case 'ranks':
      s.liveness = { ts: m.ts, ranks: m.ranks };
      if (m.world_size > 0) s.worldSize = m.world_size;
      return;
    case 'ack':
      return applyAck(s, m);
    case 'command_status':
      return applyCommandStatus(s, m);
    case 'error':
      return applyError(s, m);
    case 'checkpoints':
      s.checkpoints = m;
      return;
    case 'inspect_result':
      return applyInspectResult(s, m);
    case 'control':
      return; // only rank 0 acts on these
    case 'rate_pair':
      s.rate = { ...s.rate, pair: m, error: undefined };
      return;
    case 'rate_ack':
      s.rate = { ...s.rate, ack: m };
      return;
    case 'rate_votes':
      return applyRateVotes(s, m);
    case 'rate_created':
      s.rate = { ...s.rate, created: { ...s.rate.created, [m.id]: m } };
      return;
  }
}

function rankData(s: TrainState, rank: number): RankData {
  let r = s.ranks[rank];
  if (!r) {
    r = newRank(rank);
  } else {
    r = { ...r };
  }
  s.ranks = { ...s.ranks, [rank]: r };
  return r;
}

function applyRunInfo(s: TrainState, m: RunInfo): void {
  s.runInfoByRank = { ...s.runInfoByRank, [m.rank]: m };
  if (m.rank === 0 || s.runInfo === undefined) {
    s.runInfo = m.info;
    s.runId = m.run_id;
  }
  s.worldSize = Math.max(s.worldSize, m.world_size);
  if (s.phase === 'waiting' || s.phase === 'finished' || s.phase === 'stopped') s.phase = 'running';
}

function applyStep(s: TrainState, m: StepMsg): void {
  const r = rankData(s, m.rank);
  // The lowest rank going back in steps: the run resumed from an earlier
  // checkpoint. What the run-wide series show after that step belonged to the
  // abandoned timeline.
  if (m.rank === lowestRank(s) && r.last !== undefined && m.step <= r.last.step) rewind(s, m.step);
  if (m.tokens_per_s !== undefined) r.tokensPerS = append(r.tokensPerS, m.step, m.tokens_per_s);
  r.stepTime = append(r.stepTime, m.step, m.time.total);
  if (m.gpu?.util !== undefined) r.gpuUtil = append(r.gpuUtil, m.step, m.gpu.util);
  if (m.mem?.host_rss !== undefined) r.hostRss = append(r.hostRss, m.step, m.mem.host_rss);
  const phases = { ...r.phases };
  const a = r.last === undefined ? 1 : PHASE_ALPHA;
  phases.total = phases.total * (1 - a) + a * m.time.total;
  for (const p of STEP_PHASES) phases[p] = phases[p] * (1 - a) + a * (m.time[p] ?? 0);
  r.phases = phases;
  r.last = m;
  r.bye = undefined;

  // The lowest rank speaks for the run-wide values (all ranks share LR and the
  // global grad norm).
  if (m.rank === lowestRank(s)) {
    s.lr = append(s.lr, m.step, m.lr);
    if (m.grad_norm !== undefined) s.gradNorm = append(s.gradNorm, m.step, m.grad_norm);
    if (m.hparams) {
      s.hparams = m.hparams;
      if (m.hparams.paused !== undefined) s.phase = m.hparams.paused ? 'paused' : 'running';
    } else if (s.phase === 'waiting') s.phase = 'running';
    s.step = m.step;
    s.lastStepTs = m.ts;
  } else if (m.step > s.step) {
    s.step = m.step;
    s.lastStepTs = m.ts;
  }
  if (s.phase === 'waiting' || s.phase === 'finished' || s.phase === 'stopped') {
    s.phase = m.hparams?.paused ? 'paused' : 'running';
  }
}

function rewind(s: TrainState, step: number): void {
  const cut = (x: Series): Series => {
    const i = lowerBound(x.pts, x.n, step);
    return i === x.n ? x : { pts: x.pts.slice(0, i), n: i, gen: x.gen + 1 };
  };
  s.trainLoss = cut(s.trainLoss);
  s.trainLossMin = cut(s.trainLossMin);
  s.trainLossMax = cut(s.trainLossMax);
  s.valLoss = cut(s.valLoss);
  s.tokensPerSTotal = cut(s.tokensPerSTotal);
  s.stepTimeMedian = cut(s.stepTimeMedian);
  s.stepTimeMax = cut(s.stepTimeMax);
  s.validations = s.validations.filter((v) => v.step < step);
  s.step = step;
  if (Object.values(s.commands).some((c) => c.step !== undefined && c.step >= step && !c.stale)) {
    s.commands = Object.fromEntries(
      Object.entries(s.commands).map(([k, c]) => [
        k,
        c.step !== undefined && c.step >= step ? { ...c, stale: true } : c,
      ]),
    );
  }
}

function lowestRank(s: TrainState): number {
  let low = Infinity;
  for (const k of Object.keys(s.ranks)) low = Math.min(low, Number(k));
  return low;
}

function applyAggregate(s: TrainState, m: Aggregate): void {
  s.trainLoss = append(s.trainLoss, m.step, m.loss.mean);
  s.trainLossMin = append(s.trainLossMin, m.step, m.loss.min);
  s.trainLossMax = append(s.trainLossMax, m.step, m.loss.max);
  if (m.tokens_per_s?.sum !== undefined)
    s.tokensPerSTotal = append(s.tokensPerSTotal, m.step, m.tokens_per_s.sum);
  s.stepTimeMedian = append(s.stepTimeMedian, m.step, m.step_time.median ?? m.step_time.mean);
  s.stepTimeMax = append(s.stepTimeMax, m.step, m.step_time.max);
  s.stragglers = m.stragglers;
  s.worldSize = Math.max(s.worldSize, m.world_size);
  if (m.step > s.step) s.step = m.step;
}

function applyEvent(s: TrainState, m: EventMsg): void {
  s.events = pushCapped(s.events, m, MAX_EVENTS);
  switch (m.kind) {
    case 'paused':
      s.phase = 'paused';
      break;
    case 'resumed':
    case 'run_started':
    case 'run_spawned':
      s.phase = 'running';
      break;
    case 'run_finished':
    case 'early_stop':
      s.phase = 'finished';
      break;
    case 'stopped':
      s.phase = 'stopped';
      break;
    case 'run_exited':
      if (s.phase === 'running' || s.phase === 'paused') s.phase = 'stopped';
      break;
    default:
      break;
  }
}

function upsertCommand(
  s: TrainState,
  id: string,
  make: () => CommandEntry,
  patch: Partial<CommandEntry>,
): void {
  const prev = s.commands[id];
  const next = { ...(prev ?? make()), ...patch };
  s.commands = { ...s.commands, [id]: next };
  if (!prev) {
    s.commandOrder = pushCapped(s.commandOrder, id, MAX_COMMANDS);
    if (s.commandOrder.length < Object.keys(s.commands).length) {
      const keep = new Set(s.commandOrder);
      s.commands = Object.fromEntries(Object.entries(s.commands).filter(([k]) => keep.has(k)));
    }
  }
}

function applyAck(s: TrainState, m: Ack): void {
  upsertCommand(
    s,
    m.id,
    () => ({ id: m.id, command: m.command, at: m.ts, phase: 'sent', mine: false }),
    { phase: m.ok ? 'acked' : 'rejected', step: m.step, message: m.message },
  );
  if (!m.ok) return;
  if (m.command === 'pause') {
    s.phase = 'paused';
    // Paused after that step: the counter shows it even when steps are reported
    // only every Nth ([monitor] every).
    if (m.step !== undefined && m.step > s.step) s.step = m.step;
  } else if (m.command === 'resume') s.phase = 'running';
  else if (m.command === 'stop') s.phase = 'stopped';
}

function applyCommandStatus(s: TrainState, m: CommandStatus): void {
  const prev = s.commands[m.id];
  // An ack can overtake the status on a busy socket: never step back from it.
  if (prev && (prev.phase === 'acked' || prev.phase === 'rejected')) return;
  upsertCommand(
    s,
    m.id,
    () => ({ id: m.id, command: m.command ?? 'pause', at: m.ts, phase: 'sent', mine: true }),
    { phase: m.status, message: m.message },
  );
}

function applyError(s: TrainState, m: ErrorMsg): void {
  s.errors = pushCapped(s.errors, m, MAX_ERRORS);
  if (m.ref === undefined) return;
  const cmd = s.commands[m.ref];
  if (cmd && cmd.phase !== 'acked') {
    s.commands = {
      ...s.commands,
      [m.ref]: { ...cmd, phase: 'refused', message: `${m.code}: ${m.message}` },
    };
  }
  if (s.rate.requests[m.ref]) s.rate = { ...s.rate, error: m };
  const ins = s.inspects[m.ref];
  if (ins && ins.phase === 'pending') {
    s.inspects = {
      ...s.inspects,
      [m.ref]: { ...ins, phase: 'unavailable', message: unavailableText(m) },
    };
  }
}

function applyRateVotes(s: TrainState, m: RateVotes): void {
  let votes: VoteRow[];
  if (m.append) {
    const seen = new Set(s.rate.votes.map((v) => v.vote));
    votes = [...s.rate.votes];
    for (const v of m.votes)
      if (!seen.has(v.vote)) {
        seen.add(v.vote);
        votes.push(v);
      }
  } else {
    votes = m.votes;
  }
  s.rate = { ...s.rate, votes, pairsTotal: m.pairs, batches: m.batches };
}

function unavailableText(m: ErrorMsg): string {
  if (m.code === 'no_producer') return 'No training rank is connected to the aggregator.';
  if (m.code === 'unknown_type' || m.code === 'bad_message')
    return `The aggregator does not support model inspection (${m.message}).`;
  return `${m.code}: ${m.message}`;
}

function applyInspectResult(s: TrainState, m: InspectResult): void {
  const prev = s.inspects[m.id];
  if (!prev) return; // another viewer's request
  if (m.partial) {
    // A streamed generation: one token (or an earlier prompt's end) per message.
    if (prev.phase !== 'pending' || m.data?.event !== 'token') return;
    s.inspects = {
      ...s.inspects,
      [m.id]: { ...prev, stream: [...(prev.stream ?? []), m.data as unknown as GenerateToken] },
    };
    return;
  }
  s.inspects = {
    ...s.inspects,
    [m.id]: {
      ...prev,
      phase: m.ok ? 'ok' : 'unavailable',
      data: m.data,
      message: m.ok ? undefined : (m.message ?? 'The trainer could not answer this request.'),
    },
  };
}

// ---- the reducer ------------------------------------------------------------------------

export function reduce(state: TrainState, action: Action): TrainState {
  switch (action.type) {
    case 'reset':
      return { ...initialState(), version: state.version + 1 };
    case 'command_sent': {
      const s = { ...state, version: state.version + 1 };
      upsertCommand(
        s,
        action.id,
        () => ({
          id: action.id,
          command: action.command,
          args: action.args,
          at: action.at,
          phase: 'sent',
          mine: true,
        }),
        {},
      );
      return s;
    }
    case 'inspect_sent':
      return {
        ...state,
        version: state.version + 1,
        inspects: {
          ...state.inspects,
          [action.id]: {
            id: action.id,
            what: action.what,
            args: action.args,
            at: action.at,
            phase: 'pending',
          },
        },
      };
    case 'rate_sent':
      return {
        ...state,
        version: state.version + 1,
        rate: { ...state.rate, requests: { ...state.rate.requests, [action.id]: action.kind } },
      };
    case 'inspect_timeout': {
      const prev = state.inspects[action.id];
      // A generation that is streaming tokens is alive, however long it takes.
      if (!prev || prev.phase !== 'pending' || (prev.stream?.length ?? 0) > 0) return state;
      return {
        ...state,
        version: state.version + 1,
        inspects: {
          ...state.inspects,
          [action.id]: { ...prev, phase: 'unavailable', message: action.message },
        },
      };
    }
    case 'messages': {
      const s = { ...state };
      let changed = false;
      for (const m of action.messages) {
        const seq = (m as { seq?: number }).seq;
        if (seq !== undefined) {
          if (seq <= s.lastSeq) continue; // replayed after a reconnect
          s.lastSeq = seq;
        }
        apply(s, m);
        changed = true;
      }
      if (!changed) return state;
      s.version = state.version + 1;
      return s;
    }
  }
}

// ---- derived values --------------------------------------------------------------------

/** The newest command of each kind, for the "took effect at step N" labels. */
export function latestCommand(
  s: TrainState,
  command: CommandName,
  mineOnly = false,
): CommandEntry | undefined {
  for (let i = s.commandOrder.length - 1; i >= 0; i--) {
    const c = s.commands[s.commandOrder[i]];
    if (c && c.command === command && (!mineOnly || c.mine)) return c;
  }
  return undefined;
}

export interface RankWarning {
  rank: number;
  kind: 'dead' | 'straggler' | 'finished';
  text: string;
}

/** Dead ranks and stragglers, from the aggregator's latest `ranks` and `aggregate`. */
export function rankWarnings(s: TrainState): RankWarning[] {
  const out: RankWarning[] = [];
  const entries = s.liveness?.ranks ?? [];
  const seen = new Set<number>();
  for (const r of entries) {
    if (r.state === 'dead') {
      out.push({
        rank: r.rank,
        kind: 'dead',
        text: `Rank ${r.rank} is not responding: no message for ${r.last_seen_s.toFixed(1)} s${r.step !== undefined ? ` (last step ${r.step})` : ''}.`,
      });
      seen.add(r.rank);
    } else if (r.straggler) {
      const median = medianStepTime(entries);
      out.push({
        rank: r.rank,
        kind: 'straggler',
        text:
          `Rank ${r.rank} is a straggler` +
          (r.step_time !== undefined && median !== undefined
            ? `: ${fmtMs(r.step_time)} per step against a median of ${fmtMs(median)}.`
            : '.'),
      });
      seen.add(r.rank);
    }
  }
  for (const rank of s.stragglers) {
    if (!seen.has(rank))
      out.push({
        rank,
        kind: 'straggler',
        text: `Rank ${rank} is a straggler on the latest step.`,
      });
  }
  return out;
}

function medianStepTime(entries: RankEntry[]): number | undefined {
  const t = entries
    .filter((r) => r.state === 'alive' && r.step_time !== undefined)
    .map((r) => r.step_time as number)
    .sort((a, b) => a - b);
  if (t.length === 0) return undefined;
  const mid = t.length >> 1;
  return t.length % 2 ? t[mid] : (t[mid - 1] + t[mid]) / 2;
}

const fmtMs = (s: number) => `${(s * 1000).toFixed(0)} ms`;
