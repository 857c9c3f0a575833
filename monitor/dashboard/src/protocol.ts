// The monitor protocol, version 1, as TypeScript types.
//
// Mirrors monitor/protocol.schema.json (the schema wins when they disagree;
// docs/monitor-protocol.md explains each message). test/protocol.test.ts
// validates fixtures typed with these interfaces, and messages captured from
// the real C++ aggregator, against that schema, so a change on one side that
// the other does not follow fails a test.
//
// `Real` is a float that the sender writes as null for NaN or infinity.

export const PROTOCOL_VERSION = 1 as const;

export type Real = number | null;
export type Rank = number;

// ---- shared pieces ------------------------------------------------------------

export interface Stat {
  mean: Real;
  min: Real;
  max: Real;
  median?: Real;
  sum?: Real;
}

export const COMMAND_NAMES = [
  'pause',
  'resume',
  'stop',
  'save_checkpoint',
  'set_lr',
  'set_weight_decay',
  'set_clip',
  'set_batch',
  'set_early_stopping',
  'start_run',
  'resume_from',
] as const;
export type CommandName = (typeof COMMAND_NAMES)[number];

export const INSPECT_WHATS = ['attention', 'embeddings', 'activations', 'architecture'] as const;
export type InspectWhat = (typeof INSPECT_WHATS)[number];

export const EVENT_KINDS = [
  'run_started',
  'run_finished',
  'checkpoint_saved',
  'early_stop',
  'paused',
  'resumed',
  'stopped',
  'error',
  'warning',
  'info',
  'rank_joined',
  'rank_lost',
  'straggler',
  'run_spawned',
  'run_exited',
] as const;
export type EventKind = (typeof EVENT_KINDS)[number];

export const ERROR_CODES = [
  'bad_json',
  'bad_message',
  'unknown_type',
  'binary_frame',
  'too_large',
  'hello_required',
  'unauthorized',
  'not_allowed',
  'no_producer',
  'busy',
  'not_found',
  'internal',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

interface Base {
  v: 1;
  ts: number;
}
/** Messages the aggregator keeps in history carry their position in it. */
interface Kept {
  seq?: number;
}

// ---- session start --------------------------------------------------------------

export interface Hello {
  v: 1;
  type: 'hello';
  ts?: number;
  role: 'producer' | 'viewer';
  rank?: Rank;
  world_size?: number;
  run_id?: string;
  token?: string;
  client?: string;
}

export interface Welcome extends Base {
  type: 'welcome';
  role: 'producer' | 'viewer';
  control: boolean;
  protocol: number;
  server: string;
  history: number;
  session: number;
  run_dir?: string;
  can_launch?: boolean;
}

export interface HistoryEnd extends Base {
  type: 'history_end';
  count: number;
  last_seq?: number;
}

// ---- producer -> aggregator -------------------------------------------------------

export interface ModelInfo {
  params?: number;
  layers?: number;
  heads?: number;
  width?: number;
  vocab?: number;
  context?: number;
  [key: string]: unknown;
}

export interface RunInfoBody {
  config?: Record<string, unknown>;
  model?: ModelInfo;
  zero_stage?: number;
  device?: string;
  dtype?: string;
  host?: string;
  max_steps?: number;
  [key: string]: unknown;
}

export interface RunInfo extends Base, Kept {
  type: 'run_info';
  rank: Rank;
  run_id: string;
  world_size: number;
  info: RunInfoBody;
}

export interface StepTime {
  total: number;
  data?: number;
  forward?: number;
  backward?: number;
  reduce?: number;
  optimizer?: number;
  other?: number;
}
export const STEP_PHASES = ['data', 'forward', 'backward', 'reduce', 'optimizer', 'other'] as const;
export type StepPhase = (typeof STEP_PHASES)[number];

export interface HostDeviceMem {
  host_rss?: number;
  host_available?: number;
  host_total?: number;
  device_allocated?: number;
  device_reserved?: number;
  device_peak?: number;
}

export interface GpuStats {
  index?: number;
  util?: number;
  mem_util?: number;
  temp_c?: number;
  power_w?: number;
  mem_used?: number;
  mem_total?: number;
}

export interface HParams {
  lr?: Real;
  weight_decay?: number;
  clip?: number;
  micro_batch?: number;
  accumulation?: number;
  paused?: boolean;
}

export interface StepMsg extends Base, Kept {
  type: 'step';
  rank: Rank;
  step: number;
  epoch?: number;
  loss: Real;
  lr: Real;
  grad_norm?: Real;
  loss_scale?: Real;
  tokens?: number;
  tokens_per_s?: Real;
  time: StepTime;
  mem?: HostDeviceMem;
  gpu?: GpuStats;
  hparams?: HParams;
  extra?: Record<string, Real>;
}

export interface Validation extends Base, Kept {
  type: 'validation';
  rank: Rank;
  step: number;
  loss: Real;
  perplexity?: Real;
  tokens?: number;
  metrics?: Record<string, Real>;
}

export interface EventMsg extends Base, Kept {
  type: 'event';
  rank?: Rank;
  step?: number;
  kind: EventKind;
  message: string;
  data?: Record<string, unknown>;
}

export interface Heartbeat extends Base {
  type: 'heartbeat';
  rank: Rank;
  step?: number;
  idle_s?: number;
  dropped?: number;
}

export interface Bye extends Base {
  type: 'bye';
  rank: Rank;
  reason?: string;
}

export interface Ack extends Base, Kept {
  type: 'ack';
  rank: Rank;
  id: string;
  command: CommandName;
  step: number;
  ok: boolean;
  message?: string;
}

// ---- aggregator -> viewers --------------------------------------------------------

export interface Aggregate extends Base, Kept {
  type: 'aggregate';
  step: number;
  ranks: number;
  world_size: number;
  complete: boolean;
  loss: Stat;
  step_time: Stat;
  tokens_per_s?: Stat;
  grad_norm?: Stat;
  lr?: Real;
  stragglers: Rank[];
}

export type RankState = 'alive' | 'dead' | 'finished';
export interface RankEntry {
  rank: Rank;
  state: RankState;
  step?: number;
  last_seen_s: number;
  idle_s?: number;
  step_time?: number;
  straggler: boolean;
  dropped?: number;
}

export interface Ranks extends Base, Kept {
  type: 'ranks';
  world_size: number;
  ranks: RankEntry[];
}

export interface CommandStatus extends Base {
  type: 'command_status';
  id: string;
  command?: CommandName;
  status: 'forwarded' | 'done' | 'refused' | 'failed';
  message?: string;
  data?: Record<string, unknown>;
}

export interface ErrorMsg extends Base {
  type: 'error';
  code: ErrorCode;
  message: string;
  ref?: string;
}

export interface CheckpointItem {
  name: string;
  path: string;
  step: number | null;
  mtime: number;
  manifest: Record<string, unknown> | null;
}

export interface Checkpoints extends Base {
  type: 'checkpoints';
  id?: string;
  run_dir: string;
  items: CheckpointItem[];
}

export interface InspectResult extends Base {
  type: 'inspect_result';
  rank: Rank;
  id: string;
  what: InspectWhat;
  ok: boolean;
  message?: string;
  data?: Record<string, unknown>;
}

// ---- viewer -> aggregator ---------------------------------------------------------

/** Arguments per command, as the schema's if/then rules require them. */
export interface CommandArgs {
  pause: undefined;
  resume: undefined;
  stop: undefined;
  save_checkpoint: undefined;
  set_lr: { lr: number };
  set_weight_decay: { weight_decay: number };
  set_clip: { clip: number };
  set_batch: { micro_batch: number; accumulation: number };
  set_early_stopping: { enabled: boolean; patience?: number; min_delta?: number };
  start_run: { config: string };
  resume_from: { checkpoint: string; config?: string };
}

export interface Control {
  v: 1;
  type: 'control';
  ts?: number;
  id: string;
  command: CommandName;
  token?: string;
  args?: Record<string, unknown>;
}

export interface ListCheckpoints {
  v: 1;
  type: 'list_checkpoints';
  ts?: number;
  id?: string;
}

export interface Inspect {
  v: 1;
  type: 'inspect';
  ts?: number;
  id: string;
  what: InspectWhat;
  args?: Record<string, unknown>;
}

// ---- unions -------------------------------------------------------------------------

/** Everything a viewer can receive. */
export type ServerMessage =
  | Welcome
  | HistoryEnd
  | RunInfo
  | StepMsg
  | Validation
  | EventMsg
  | Heartbeat
  | Bye
  | Ack
  | Aggregate
  | Ranks
  | CommandStatus
  | ErrorMsg
  | Checkpoints
  | InspectResult
  | Control;

/** Everything a viewer sends. */
export type ClientMessage = Hello | Control | ListCheckpoints | Inspect;

export type AnyMessage = ServerMessage | ClientMessage;

// ---- builders ---------------------------------------------------------------------

export function hello(token: string | null): Hello {
  const msg: Hello = { v: 1, type: 'hello', role: 'viewer', client: 'shardlm-dashboard' };
  if (token) msg.token = token;
  return msg;
}

export function control<C extends CommandName>(id: string, command: C, args?: CommandArgs[C]): Control {
  const msg: Control = { v: 1, type: 'control', ts: Date.now() / 1000, id, command };
  if (args !== undefined) msg.args = args as Record<string, unknown>;
  return msg;
}

export function inspect(id: string, what: InspectWhat, args?: Record<string, unknown>): Inspect {
  const msg: Inspect = { v: 1, type: 'inspect', ts: Date.now() / 1000, id, what };
  if (args !== undefined) msg.args = args;
  return msg;
}

export function listCheckpoints(id: string): ListCheckpoints {
  return { v: 1, type: 'list_checkpoints', ts: Date.now() / 1000, id };
}

// ---- parsing ----------------------------------------------------------------------

const KNOWN_TYPES = new Set<string>([
  'welcome',
  'history_end',
  'run_info',
  'step',
  'validation',
  'event',
  'heartbeat',
  'bye',
  'ack',
  'aggregate',
  'ranks',
  'command_status',
  'error',
  'checkpoints',
  'inspect_result',
  'control',
]);

/**
 * Parses one text frame. Returns null for what a viewer should ignore: not
 * JSON, not an object, another protocol version, or a type this dashboard does
 * not know (a compatible addition by a newer aggregator). Cheap checks only: the
 * aggregator validated the message against the schema already.
 */
export function parseServerMessage(text: string): ServerMessage | null {
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return null;
  const m = obj as { v?: unknown; type?: unknown };
  if (m.v !== PROTOCOL_VERSION || typeof m.type !== 'string' || !KNOWN_TYPES.has(m.type)) return null;
  return obj as ServerMessage;
}
