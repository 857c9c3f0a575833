// GENERATED from monitor/protocol.schema.json by scripts/schema-types.mjs: do not edit.
// `npm run gen:types` rewrites it; test/schema-types.test.ts fails when it is stale.
/* eslint-disable */

export type V = 1;

/** seconds since the Unix epoch (sender's clock) */
export type Ts = number;

/** set by the aggregator: position in the run's history */
export type Seq = number;

export type Rank = number;

export type StepNumber = number;

export type Id = string;

/** a float; null stands for NaN or infinity */
export type Real = number | null;

export type Seconds = number;

export type Bytes = number;

export type NumberMap = Record<string, Real>;

export interface Stat {
  mean: Real;
  min: Real;
  max: Real;
  median?: Real;
  sum?: Real;
}

export type CommandName = "pause" | "resume" | "stop" | "save_checkpoint" | "set_lr" | "set_weight_decay" | "set_clip" | "set_batch" | "set_early_stopping" | "start_run" | "resume_from";

export const COMMAND_NAME_VALUES = ["pause","resume","stop","save_checkpoint","set_lr","set_weight_decay","set_clip","set_batch","set_early_stopping","start_run","resume_from"] as const;

export type InspectWhat = "attention" | "embeddings" | "activations" | "architecture" | "generate";

export const INSPECT_WHAT_VALUES = ["attention","embeddings","activations","architecture","generate"] as const;

/** a rater's name, as typed in the Rate tab */
export type Rater = string;

export type SampleId = number;

export type RateChoice = "A" | "B" | "tie" | "both_bad" | "skip";

export const RATE_CHOICE_VALUES = ["A","B","tie","both_bad","skip"] as const;

/** who wrote a sample, revealed after the vote */
export interface RatedSample {
  sample: SampleId;
  /** a checkpoint name (step-N), a model label or a server URL */
  source: string;
  /** the training step, for checkpoints of this run */
  step: number | null;
}

/** the model's architecture as ModelConfig::to_json writes it (model/config.h); the keys the dashboard reads are required, others are allowed */
export interface ModelConfig {
  vocab_size: number;
  context_length: number;
  n_layer: number;
  n_head: number;
  d_model: number;
  d_ff?: number;
  positional?: string;
  activation?: string;
  [key: string]: unknown;
}

export interface Hello {
  v: V;
  type: "hello";
  ts?: Ts;
  role: "producer" | "viewer";
  rank?: Rank;
  world_size?: number;
  run_id?: string;
  token?: string;
  client?: string;
}

export interface Welcome {
  v: V;
  type: "welcome";
  ts: Ts;
  role: "producer" | "viewer";
  /** the hello carried the right token */
  control: boolean;
  /** the hello carried the control or the rating token: may vote */
  rate?: boolean;
  protocol: number;
  server: string;
  /** messages replayed before history_end */
  history: number;
  session: number;
  run_dir?: string;
  can_launch?: boolean;
}

export interface HistoryEnd {
  v: V;
  type: "history_end";
  ts: Ts;
  count: number;
  last_seq?: Seq;
}

export interface RunInfo {
  v: V;
  type: "run_info";
  ts: Ts;
  seq?: Seq;
  rank: Rank;
  run_id: string;
  world_size: number;
  /** what the trainer reports about the run (runtime/trainer.cpp); other keys are allowed */
  info: {
    /** the effective run configuration (RunConfig::to_json): one object per TOML section */
    config?: {
      train?: {
        /** optimizer steps the run is configured for */
        steps?: number;
        run_dir?: string;
        [key: string]: unknown;
      };
      [key: string]: unknown;
    };
    model?: ModelConfig;
    /** model parameters (ModelConfig::num_parameters) */
    parameters?: number;
    device?: string;
    /** fp32, bf16 or fp16 (train.precision) */
    precision?: string;
    host?: string;
    zero_stage?: number;
    cpu_offload?: boolean;
    offload_params?: boolean;
    micro_batch?: number;
    accumulation?: number;
    [key: string]: unknown;
  };
}

export interface Step {
  v: V;
  type: "step";
  ts: Ts;
  seq?: Seq;
  rank: Rank;
  step: StepNumber;
  epoch?: number;
  loss: Real;
  lr: Real;
  grad_norm?: Real;
  loss_scale?: Real;
  /** tokens seen by this rank so far */
  tokens?: number;
  tokens_per_s?: Real;
  /** seconds spent in this step, total and by phase */
  time: {
    total: Seconds;
    data?: Seconds;
    forward?: Seconds;
    backward?: Seconds;
    reduce?: Seconds;
    optimizer?: Seconds;
    other?: Seconds;
  };
  /** bytes; device_* only on a GPU */
  mem?: {
    host_rss?: Bytes;
    host_available?: Bytes;
    host_total?: Bytes;
    device_allocated?: Bytes;
    device_reserved?: Bytes;
    device_peak?: Bytes;
  };
  /** from NVML, when libnvidia-ml.so.1 is present */
  gpu?: {
    index?: number;
    util?: number;
    mem_util?: number;
    temp_c?: number;
    power_w?: number;
    mem_used?: Bytes;
    mem_total?: Bytes;
  };
  /** live hyperparameters in force at this step */
  hparams?: {
    lr?: Real;
    weight_decay?: number;
    clip?: number;
    micro_batch?: number;
    accumulation?: number;
    paused?: boolean;
  };
  extra?: NumberMap;
}

export interface Validation {
  v: V;
  type: "validation";
  ts: Ts;
  seq?: Seq;
  rank: Rank;
  step: StepNumber;
  loss: Real;
  perplexity?: Real;
  tokens?: number;
  metrics?: NumberMap;
}

export interface Event {
  v: V;
  type: "event";
  ts: Ts;
  seq?: Seq;
  /** absent when the aggregator itself reports */
  rank?: Rank;
  step?: StepNumber;
  kind: "run_started" | "run_finished" | "checkpoint_saved" | "early_stop" | "paused" | "resumed" | "stopped" | "error" | "warning" | "info" | "rank_joined" | "rank_lost" | "straggler" | "run_spawned" | "run_exited";
  message: string;
  data?: Record<string, unknown>;
}

export interface Heartbeat {
  v: V;
  type: "heartbeat";
  ts: Ts;
  rank: Rank;
  step?: StepNumber;
  /** seconds since the trainer last published */
  idle_s?: Seconds;
  /** messages this rank's sink dropped so far */
  dropped?: number;
}

export interface Bye {
  v: V;
  type: "bye";
  ts: Ts;
  rank: Rank;
  reason?: string;
}

/** viewer to aggregator (token required), aggregator to rank 0 (token removed) */
export interface Control {
  v: V;
  type: "control";
  ts?: Ts;
  id: Id;
  command: CommandName;
  token?: string;
  args?: Record<string, unknown>;
}

/** the aggregator's answer to the viewer that sent a control message */
export interface CommandStatus {
  v: V;
  type: "command_status";
  ts: Ts;
  id: Id;
  command?: CommandName;
  status: "forwarded" | "done" | "refused" | "failed";
  message?: string;
  data?: Record<string, unknown>;
}

/** rank 0: the command took effect at this step on every rank (or failed) */
export interface Ack {
  v: V;
  type: "ack";
  ts: Ts;
  seq?: Seq;
  rank: Rank;
  id: Id;
  command: CommandName;
  step: StepNumber;
  ok: boolean;
  message?: string;
}

/** the aggregator's cross-rank view of one step */
export interface Aggregate {
  v: V;
  type: "aggregate";
  ts: Ts;
  seq?: Seq;
  step: StepNumber;
  /** ranks that reported this step */
  ranks: number;
  world_size: number;
  /** every live rank reported */
  complete: boolean;
  loss: Stat;
  step_time: Stat;
  tokens_per_s?: Stat;
  grad_norm?: Stat;
  lr?: Real;
  stragglers: Rank[];
}

/** liveness of every rank the aggregator has heard from */
export interface Ranks {
  v: V;
  type: "ranks";
  ts: Ts;
  seq?: Seq;
  world_size: number;
  ranks: ({
    rank: Rank;
    state: "alive" | "dead" | "finished";
    step?: StepNumber;
    last_seen_s: Seconds;
    idle_s?: Seconds;
    step_time?: Seconds;
    straggler: boolean;
    dropped?: number;
  })[];
}

export interface Error {
  v: V;
  type: "error";
  ts: Ts;
  code: "bad_json" | "bad_message" | "unknown_type" | "binary_frame" | "too_large" | "hello_required" | "unauthorized" | "not_allowed" | "no_producer" | "busy" | "not_found" | "internal" | "rate_limited";
  message: string;
  /** the id of the request it answers, when it had one */
  ref?: string;
}

export interface ListCheckpoints {
  v: V;
  type: "list_checkpoints";
  ts?: Ts;
  id?: Id;
}

export interface Checkpoints {
  v: V;
  type: "checkpoints";
  ts: Ts;
  id?: Id;
  run_dir: string;
  items: ({
    name: string;
    path: string;
    step: number | null;
    mtime: number;
    manifest: Record<string, unknown> | null;
  })[];
}

/** viewer to aggregator to rank 0: a model-inspection request (read-only, no token) */
export interface Inspect {
  v: V;
  type: "inspect";
  ts?: Ts;
  id: Id;
  what: InspectWhat;
  args?: Record<string, unknown>;
}

/** the answer to inspect: rank 0's, broadcast to viewers, or (generation from a checkpoint or a server) the aggregator's, to the viewer that asked; not kept in history */
export interface InspectResult {
  v: V;
  type: "inspect_result";
  ts: Ts;
  /** absent when the aggregator answered */
  rank?: Rank;
  id: Id;
  what: InspectWhat;
  ok: boolean;
  /** more answers to this request follow (a streamed generation: one per token) */
  partial?: boolean;
  message?: string;
  data?: Record<string, unknown>;
}

/** viewer to aggregator: the next pair this rater has not voted on (fewest votes first) */
export interface RateNext {
  v: V;
  type: "rate_next";
  ts?: Ts;
  id: Id;
  rater: Rater;
  /** only pairs of this comparison; absent or empty: any */
  batch?: string;
}

/** the answer to rate_next: a prompt and two anonymous continuations in the order this rater sees them, or null when they have rated every pair */
export interface RatePair {
  v: V;
  type: "rate_pair";
  ts: Ts;
  id: Id;
  pair: null | {
    id: number;
    batch: string;
    prompt: string;
    a: ShownSample;
    b: ShownSample;
  };
  progress: {
    /** pairs this rater has answered (skips too) */
    done: number;
    total: number;
  };
}

export interface ShownSample {
  sample: SampleId;
  text: string;
}

/** viewer to aggregator (the rating or the control token): one vote, stored and fsync'ed before rate_ack */
export interface RateVote {
  v: V;
  type: "rate_vote";
  ts?: Ts;
  id: Id;
  rater: Rater;
  pair: number;
  /** the sample ids in the order shown: A, B */
  shown: SampleId[];
  choice: RateChoice;
}

/** the answer to rate_vote: ok once the vote is on disk, with who wrote A and B */
export interface RateAck {
  v: V;
  type: "rate_ack";
  ts: Ts;
  id: Id;
  ok: boolean;
  pair: number;
  /** the vote's row in the database */
  vote?: number;
  /** this rater had voted on this pair: the earlier vote stands */
  duplicate?: boolean;
  choice?: RateChoice;
  message?: string;
  reveal?: {
    a: RatedSample;
    b: RatedSample;
  };
}

/** viewer to aggregator: every vote so far (answered with rate_votes) */
export interface RateList {
  v: V;
  type: "rate_list";
  ts?: Ts;
  id?: Id;
}

/** votes for the leaderboard: all of them (append false, the answer to rate_list) or new ones (append true, to every viewer after each vote) */
export interface RateVotes {
  v: V;
  type: "rate_votes";
  ts: Ts;
  id?: Id;
  append: boolean;
  votes: ({
    vote: number;
    rater: Rater;
    pair: number;
    batch: string;
    /** who wrote the pair's first and second sample */
    sources: string[];
    steps: (number | null)[];
    /** a: the pair's first sample was better, b: its second */
    outcome: "a" | "b" | "tie" | "both_bad" | "skip";
    time: number;
  })[];
  /** pairs in the database */
  pairs: number;
  batches: string[];
}

/** viewer to aggregator (control token): generate a continuation of every prompt from both sources and add one pair per prompt */
export interface RateCreate {
  v: V;
  type: "rate_create";
  ts?: Ts;
  id: Id;
  token?: string;
  /** the comparison's name; default 'A vs B' */
  batch?: string;
  /** checkpoint names (step-N) or shardlm serve URLs */
  sources: string[];
  prompts: string[];
  /** decoding options (docs/generation.md), as for inspect generate */
  options?: Record<string, unknown>;
}

/** the answer to rate_create once both sources have generated */
export interface RateCreated {
  v: V;
  type: "rate_created";
  ts: Ts;
  id: Id;
  ok: boolean;
  batch: string;
  pairs?: number;
  message?: string;
}

/** Every message of the protocol (the schema's top-level oneOf). */
export type Message =
  | Hello
  | Welcome
  | HistoryEnd
  | RunInfo
  | Step
  | Validation
  | Event
  | Heartbeat
  | Bye
  | Control
  | CommandStatus
  | Ack
  | Aggregate
  | Ranks
  | Error
  | ListCheckpoints
  | Checkpoints
  | Inspect
  | InspectResult
  | RateNext
  | RatePair
  | RateVote
  | RateAck
  | RateList
  | RateVotes
  | RateCreate
  | RateCreated;

/** The `type` of every message. */
export const MESSAGE_TYPES = ["hello","welcome","history_end","run_info","step","validation","event","heartbeat","bye","control","command_status","ack","aggregate","ranks","error","list_checkpoints","checkpoints","inspect","inspect_result","rate_next","rate_pair","rate_vote","rate_ack","rate_list","rate_votes","rate_create","rate_created"] as const;
