// The monitor protocol, version 1, as TypeScript types.
//
// The types are GENERATED from monitor/protocol.schema.json (src/protocol.gen.ts,
// by scripts/schema-types.mjs; test/schema-types.test.ts fails when that file is
// stale), so the schema is the single source: a field renamed there breaks the
// build of every panel that reads it. This file gives them the names the panels
// use, the enumerations as arrays, builders and a parser. docs/monitor-protocol.md
// explains each message.
//
// `Real` is a float that the sender writes as null for NaN or infinity.

import type * as G from './protocol.gen';
import {
  COMMAND_NAME_VALUES,
  INSPECT_WHAT_VALUES,
  RATE_CHOICE_VALUES as G_RATE_CHOICES,
} from './protocol.gen';

export const PROTOCOL_VERSION = 1 as const;

export type Real = G.Real;
export type Rank = G.Rank;
export type Stat = G.Stat;

export const COMMAND_NAMES = COMMAND_NAME_VALUES;
export type CommandName = G.CommandName;

export const INSPECT_WHATS = INSPECT_WHAT_VALUES;
export type InspectWhat = G.InspectWhat;

export type EventKind = G.Event['kind'];
export const EVENT_KINDS: readonly EventKind[] = [
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
];

export type ErrorCode = G.Error['code'];
export const ERROR_CODES: readonly ErrorCode[] = [
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
  'rate_limited',
];

// ---- messages ---------------------------------------------------------------------

export type Hello = G.Hello;
export type Welcome = G.Welcome;
export type HistoryEnd = G.HistoryEnd;
export type RunInfo = G.RunInfo;
export type RunInfoBody = G.RunInfo['info'];
export type ModelConfig = G.ModelConfig;
export type StepMsg = G.Step;
export type StepTime = G.Step['time'];
export const STEP_PHASES = ['data', 'forward', 'backward', 'reduce', 'optimizer', 'other'] as const;
export type StepPhase = (typeof STEP_PHASES)[number];
export type HostDeviceMem = NonNullable<G.Step['mem']>;
export type GpuStats = NonNullable<G.Step['gpu']>;
export type HParams = NonNullable<G.Step['hparams']>;
export type Validation = G.Validation;
export type EventMsg = G.Event;
export type Heartbeat = G.Heartbeat;
export type Bye = G.Bye;
export type Ack = G.Ack;
export type Aggregate = G.Aggregate;
export type Ranks = G.Ranks;
export type RankEntry = G.Ranks['ranks'][number];
export type RankState = RankEntry['state'];
export type CommandStatus = G.CommandStatus;
export type ErrorMsg = G.Error;
export type Checkpoints = G.Checkpoints;
export type CheckpointItem = G.Checkpoints['items'][number];
export type InspectResult = G.InspectResult;
export type Control = G.Control;
export type ListCheckpoints = G.ListCheckpoints;
export type Inspect = G.Inspect;
export type RateNext = G.RateNext;
export type RatePair = G.RatePair;
export type RatePairBody = NonNullable<G.RatePair['pair']>;
export type RateVote = G.RateVote;
export type RateAck = G.RateAck;
export type RateList = G.RateList;
export type RateVotes = G.RateVotes;
export type VoteRow = G.RateVotes['votes'][number];
export type RateCreate = G.RateCreate;
export type RateCreated = G.RateCreated;
export type RateChoice = G.RateChoice;
export const RATE_CHOICES = G_RATE_CHOICES;

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
  | Control
  | RatePair
  | RateAck
  | RateVotes
  | RateCreated;

/** Everything a viewer sends. */
export type ClientMessage =
  Hello | Control | ListCheckpoints | Inspect | RateNext | RateVote | RateList | RateCreate;

export type AnyMessage = ServerMessage | ClientMessage;

// ---- builders ---------------------------------------------------------------------

export function hello(token: string | null): Hello {
  const msg: Hello = { v: 1, type: 'hello', role: 'viewer', client: 'shardlm-dashboard' };
  if (token) msg.token = token;
  return msg;
}

export function control<C extends CommandName>(
  id: string,
  command: C,
  args?: CommandArgs[C],
): Control {
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

export function rateNext(id: string, rater: string, batch?: string): RateNext {
  const msg: RateNext = { v: 1, type: 'rate_next', ts: Date.now() / 1000, id, rater };
  if (batch) msg.batch = batch;
  return msg;
}

export function rateVote(
  id: string,
  rater: string,
  pair: number,
  shown: [number, number],
  choice: RateChoice,
): RateVote {
  return { v: 1, type: 'rate_vote', ts: Date.now() / 1000, id, rater, pair, shown, choice };
}

export function rateList(id: string): RateList {
  return { v: 1, type: 'rate_list', ts: Date.now() / 1000, id };
}

export function rateCreate(
  id: string,
  sources: [string, string],
  prompts: string[],
  options: Record<string, unknown>,
  batch?: string,
): RateCreate {
  const msg: RateCreate = {
    v: 1,
    type: 'rate_create',
    ts: Date.now() / 1000,
    id,
    sources,
    prompts,
    options,
  };
  if (batch) msg.batch = batch;
  return msg;
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
  'rate_pair',
  'rate_ack',
  'rate_votes',
  'rate_created',
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
  if (m.v !== PROTOCOL_VERSION || typeof m.type !== 'string' || !KNOWN_TYPES.has(m.type))
    return null;
  return obj as ServerMessage;
}
