#!/usr/bin/env node
// A stand-in for `mpirun -n N shardlm train`: N producer connections that
// speak the monitor protocol (docs/monitor-protocol.md) to a real aggregator.
//
// It exists so the dashboard's browser test and `npm run dev` have a live run
// before the trainer lands; it is NOT a model. What it does is what the
// protocol asks of ranks: hello + run_info per rank, one `step` per rank per
// step (lockstep, as after an all-reduce), `validation` from rank 0, heartbeats,
// and rank 0 obeys `control` at the next step boundary and acknowledges each
// command with the step at which it took effect on every rank. It answers
// `inspect` with synthetic data in the shapes of monitor/inspect.schema.json
// (or, with --no-inspect, with ok:false). `save_checkpoint` writes
// RUN_DIR/checkpoints/step-N/manifest.json so the checkpoint list has entries.
//
//   node e2e/fake_ranks.mjs --url ws://127.0.0.1:8765/ws --run-dir runs/demo [--ranks 2]
//        [--config run.toml] [--resume runs/demo/checkpoints/step-300]
//        [--interval-ms 100] [--max-steps 100000] [--val-every 50] [--ckpt-every 0]
//        [--gpu] [--straggler 1] [--no-inspect] [--seed 1] [--orphan-s 60]
//
// --config reads `url` and `max_steps` from a TOML file (the way the real
// trainer finds the aggregator: [monitor] url = "ws://…"), so the aggregator's
// launch template `… --config {config} {resume_args}` works for both.
// --resume continues from a checkpoint's manifest.json (step, tokens, run id).

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';

// ---- options ------------------------------------------------------------------------

const args = process.argv.slice(2);
function opt(name, def) {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = args[i + 1];
  return v === undefined || v.startsWith('--') ? true : v;
}
// The few keys this stand-in takes from a run config (`key = value` lines).
const tomlText = opt('config', null) && existsSync(opt('config')) ? readFileSync(opt('config'), 'utf8') : '';
function tomlValue(key) {
  const m = new RegExp(`^\\s*${key}\\s*=\\s*"?([^"\\n#]+)"?`, 'm').exec(tomlText);
  return m ? m[1].trim() : undefined;
}
const URL_ = opt('url', tomlValue('url') ?? 'ws://127.0.0.1:8765/ws');
const RUN_DIR = opt('run-dir', tomlValue('run_dir') ?? null);
const WORLD = Number(opt('ranks', tomlValue('ranks') ?? 2));
const INTERVAL = Number(opt('interval-ms', tomlValue('interval_ms') ?? 100));
const MAX_STEPS = Number(opt('max-steps', tomlValue('max_steps') ?? 100000));
const RESUME = opt('resume', null);
// The aggregator refuses producers without its token: --token, else what an
// aggregator that spawned us put in SHARDLM_MONITOR_TOKEN, else RUN_DIR/monitor.token.
const TOKEN_FILE = RUN_DIR ? join(RUN_DIR, 'monitor.token') : null;
const TOKEN = opt('token', null) ?? process.env.SHARDLM_MONITOR_TOKEN ?? (TOKEN_FILE && existsSync(TOKEN_FILE) ? readFileSync(TOKEN_FILE, 'utf8').trim() : undefined);
const resumed = RESUME ? JSON.parse(readFileSync(join(RESUME, 'manifest.json'), 'utf8')) : null;
const VAL_EVERY = Number(opt('val-every', 50));
const CKPT_EVERY = Number(opt('ckpt-every', 0));
const GPU = opt('gpu', false) === true;
const STRAGGLER = opt('straggler', null);
const INSPECT = opt('no-inspect', false) !== true;
let seed = Number(opt('seed', 1));
// Every launch is a new run id, a resumed one too (the aggregator starts its
// cross-rank view afresh when rank 0's run id changes; steps then go back).
const stamp = new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14);
const RUN_ID = opt('run-id', resumed ? `${resumed.run_id.replace(/\+r\d+$/, '')}+r${resumed.step}` : `fake-${stamp}`);

const now = () => Date.now() / 1000;
function rand() {
  // mulberry32: reproducible noise
  seed |= 0;
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const gauss = () => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
const log = (...a) => console.error('[fake_ranks]', ...a);

// ---- the trainer's state --------------------------------------------------------------

// run_info.info in the shape the real trainer sends (runtime/trainer.cpp; the schema's run_info).
const MODEL = { vocab_size: 4096, context_length: 128, n_layer: 4, n_head: 4, d_model: 256, d_ff: 1024, positional: 'learned', activation: 'gelu_tanh' };
const CONFIG = {
  model: MODEL,
  train: { steps: MAX_STEPS, seed: 1, accumulation: 4 },
  optimizer: { lr: 6e-4, weight_decay: 0.1 },
  parallel: { zero_stage: 1, offload: false },
  data: { dataset: 'data/tinystories', tokenizer: 'bpe-4096' },
  monitor: { url: URL_, every: 1, heartbeat_s: 2 },
};
const hp = { lr: null, weight_decay: 0.1, clip: 1.0, micro_batch: 8, accumulation: 4, paused: false };
let step = resumed?.step ?? 0; // last completed step
let tokens = resumed?.tokens ?? 0;
let lastPublish = now();
const pending = []; // control commands received by rank 0, applied at the next step boundary
let stopping = false;
let early = { enabled: false, patience: 5, min_delta: 0.001, best: Infinity, bad: 0 };

function scheduledLr(s) {
  const { lr } = CONFIG.optimizer;
  const min_lr = lr / 10, warmup_steps = 100;
  if (s < warmup_steps) return (lr * (s + 1)) / warmup_steps;
  const p = Math.min(1, (s - warmup_steps) / Math.max(1, MAX_STEPS - warmup_steps));
  return min_lr + 0.5 * (lr - min_lr) * (1 + Math.cos(Math.PI * p));
}
const currentLr = () => (hp.lr !== null ? hp.lr : scheduledLr(step + 1));
const idealLoss = (s) => 1.9 + 6.4 * Math.exp(-s / 260) + 0.55 * Math.exp(-s / 2600);

// ---- connections ------------------------------------------------------------------------

class Rank {
  constructor(rank) {
    this.rank = rank;
    this.ws = null;
    this.ready = false;
    this.backoff = 250;
    this.connect();
  }
  connect() {
    const ws = new WebSocket(URL_);
    this.ws = ws;
    ws.on('open', () => {
      this.send({ v: 1, type: 'hello', ts: now(), role: 'producer', rank: this.rank, world_size: WORLD, run_id: RUN_ID, ...(TOKEN ? { token: TOKEN } : {}) });
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      let m;
      try {
        m = JSON.parse(String(data));
      } catch {
        return;
      }
      if (m.type === 'welcome') {
        this.ready = true;
        this.backoff = 250;
        this.send({
          v: 1,
          type: 'run_info',
          ts: now(),
          rank: this.rank,
          run_id: RUN_ID,
          world_size: WORLD,
          info: {
            config: CONFIG,
            model: MODEL,
            parameters: ARCH_PARAMS,
            zero_stage: 1,
            device: GPU ? 'cuda' : 'cpu',
            precision: GPU ? 'bf16' : 'fp32',
            host: `node${Math.floor(this.rank / 8) + 1}`,
            micro_batch: 8,
            accumulation: 4,
          },
        });
      } else if (m.type === 'control' && this.rank === 0) {
        pending.push(m);
      } else if (m.type === 'inspect' && this.rank === 0) {
        answerInspect(m);
      } else if (m.type === 'error') {
        log(`rank ${this.rank}: error from aggregator: ${m.code} ${m.message}`);
      }
    });
    ws.on('close', () => {
      this.ready = false;
      if (stopping) return;
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(5000, this.backoff * 2);
    });
    ws.on('error', () => {});
  }
  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }
}

const ranks = Array.from({ length: WORLD }, (_, r) => new Rank(r));
const rank0 = ranks[0];

// ---- control ------------------------------------------------------------------------------

function ack(m, ok, message) {
  // `step` is the first step that runs with the change; for pause, the step
  // at which every rank stopped (the last one completed).
  const at = m.command === 'pause' || m.command === 'stop' ? step : step + 1;
  const msg = { v: 1, type: 'ack', ts: now(), rank: 0, id: m.id, command: m.command, step: at, ok };
  if (message) msg.message = message;
  rank0.send(msg);
  return at;
}
const event = (kind, message, data) => {
  const e = { v: 1, type: 'event', ts: now(), rank: 0, step, kind, message };
  if (data) e.data = data;
  rank0.send(e);
};

function saveCheckpoint() {
  const name = `step-${step}`;
  const path = RUN_DIR ? join(RUN_DIR, 'checkpoints', name) : name;
  if (RUN_DIR) {
    mkdirSync(path, { recursive: true });
    writeFileSync(join(path, 'manifest.json'), JSON.stringify({ format: 'fake', step, world_size: WORLD, run_id: RUN_ID, tokens }, null, 2));
  }
  event('checkpoint_saved', `saved ${name}`, { path, seconds: 0.05 });
}

function applyControl() {
  while (pending.length) {
    const m = pending.shift();
    const a = m.args ?? {};
    switch (m.command) {
      case 'pause':
        hp.paused = true;
        ack(m, true);
        event('paused', `paused at step ${step}`);
        break;
      case 'resume':
        hp.paused = false;
        ack(m, true);
        event('resumed', `resumed after step ${step}`);
        break;
      case 'stop':
        ack(m, true);
        event('stopped', `stopped at step ${step}`);
        finish('stopped');
        return;
      case 'save_checkpoint':
        ack(m, true);
        saveCheckpoint();
        break;
      case 'set_lr':
        hp.lr = a.lr;
        ack(m, true, `lr ${a.lr}`);
        break;
      case 'set_weight_decay':
        hp.weight_decay = a.weight_decay;
        ack(m, true);
        break;
      case 'set_clip':
        hp.clip = a.clip;
        ack(m, true);
        break;
      case 'set_batch': {
        const global = 8 * CONFIG.train.accumulation;
        if ((a.micro_batch * a.accumulation) % 1 !== 0 || a.micro_batch > 64) {
          ack(m, false, `micro batch ${a.micro_batch} does not fit`);
        } else {
          hp.micro_batch = a.micro_batch;
          hp.accumulation = a.accumulation;
          ack(m, true, `global batch ${a.micro_batch * a.accumulation * WORLD} (was ${global * WORLD})`);
        }
        break;
      }
      case 'set_early_stopping':
        early = { ...early, enabled: !!a.enabled, patience: a.patience ?? early.patience, min_delta: a.min_delta ?? early.min_delta };
        ack(m, true);
        break;
      default:
        ack(m, false, `${m.command} is handled by the aggregator, not by ranks`);
    }
  }
}

// ---- inspection (synthetic data in the documented shapes) -----------------------------------

const WORDS = ['the', 'a', 'and', 'of', 'to', 'was', 'he', 'she', 'it', 'in', 'little', 'big', 'day', 'cat', 'dog', 'tree', 'happy', 'sad', 'said', 'went', 'saw', 'ran', 'Tim', 'Lily', 'Sam', 'Mom', 'ball', 'park', 'sun', 'red', 'blue', 'green', 'one', 'two', 'three', 'four', '.', ',', '!', '?', '"', 'upon', 'time', 'once', 'there', 'bird', 'fish', 'toy', 'car', 'house'];

function tokenize(prompt) {
  return prompt
    .split(/(\s+|[.,!?])/)
    .filter((t) => t && t.trim())
    .slice(0, 48)
    .map((t, i) => (i === 0 ? t : ` ${t}`));
}

function attention(args) {
  const toks = tokenize(String(args.prompt ?? 'Once upon a time'));
  const T = toks.length;
  const layer = Number.isInteger(args.layer) ? Math.max(0, Math.min(MODEL.n_layer - 1, args.layer)) : MODEL.n_layer - 1;
  const weights = [];
  for (let h = 0; h < MODEL.n_head; h++) {
    const head = [];
    for (let i = 0; i < T; i++) {
      const row = new Array(T).fill(0);
      let sum = 0;
      for (let j = 0; j <= i; j++) {
        // head 0 looks back one token, head 1 at the first token, the others spread
        let s = 0.3 * gauss();
        if (h === 0) s += j === i - 1 ? 3 : 0;
        else if (h === 1) s += j === 0 ? 2.5 : 0;
        else if (h === 2) s += j === i ? 2 : -0.1 * (i - j);
        else s += toks[j].trim().length > 3 ? 1.2 : 0;
        row[j] = Math.exp(s + 0.2 * layer * (j === i ? 1 : 0));
        sum += row[j];
      }
      head.push(row.map((v) => +(v / sum).toFixed(5)));
    }
    weights.push(head);
  }
  return { tokens: toks, layers: MODEL.n_layer, heads: MODEL.n_head, layer, weights };
}

function embeddings(args) {
  const n = Math.min(Number(args.limit) || 2000, 5000);
  const tokens = [];
  const ids = [];
  const points = [];
  const centers = [
    [-3, 1],
    [2, 2.5],
    [1, -2.5],
    [-1.5, -1.8],
    [3.5, -0.5],
  ];
  for (let i = 0; i < n; i++) {
    const w = i < WORDS.length ? WORDS[i] : `${WORDS[i % WORDS.length]}${i % 7 === 0 ? 's' : i % 5 === 0 ? 'ed' : i % 3 === 0 ? 'ing' : String.fromCharCode(97 + (i % 26))}`;
    const c = centers[i % centers.length];
    tokens.push(i % 2 ? ` ${w}` : w);
    ids.push(i);
    points.push([+(c[0] + 0.9 * gauss()).toFixed(4), +(c[1] + 0.9 * gauss()).toFixed(4)]);
  }
  return { method: 'pca', tokens, ids, points, explained_variance: [0.112, 0.071] };
}

function activations(args) {
  const layers = [];
  const names = ['embed'];
  for (let l = 0; l < MODEL.n_layer; l++) names.push(`blocks.${l}.attn`, `blocks.${l}.mlp`);
  names.push('ln_f');
  names.forEach((name, li) => {
    const std = 0.4 + 0.25 * li;
    const B = 40;
    const lo = -4 * std;
    const hi = 4 * std;
    const edges = Array.from({ length: B + 1 }, (_, i) => +(lo + ((hi - lo) * i) / B).toFixed(4));
    const counts = edges.slice(0, B).map((e) => {
      const x = e + (hi - lo) / B / 2;
      return Math.round(4000 * Math.exp(-(x * x) / (2 * std * std)) * (name.endsWith('mlp') && x < 0 ? 0.35 : 1));
    });
    layers.push({ name, layer: li, mean: +(0.02 * li).toFixed(4), std: +std.toFixed(4), min: lo, max: hi, zero_frac: name.endsWith('mlp') ? 0.12 : 0, histogram: { edges, counts } });
  });
  const out = { layers };
  if (Number.isInteger(args.neuron)) {
    out.neuron = {
      layer: Number.isInteger(args.layer) ? args.layer : 0,
      index: args.neuron,
      top: WORDS.slice(0, 8).map((t, i) => ({ token: t, value: +(3.2 - 0.3 * i).toFixed(3), context: `… ${WORDS[(i + 7) % WORDS.length]} ${t} ${WORDS[(i + 3) % WORDS.length]} …` })),
    };
  }
  return out;
}

function architecture() {
  const C = MODEL.d_model;
  const lin = (name, i, o, bias = true) => ({
    name,
    type: 'Linear',
    params: i * o + (bias ? o : 0),
    children: [{ name: 'weight', type: 'Parameter', params: i * o, shape: [o, i] }, ...(bias ? [{ name: 'bias', type: 'Parameter', params: o, shape: [o] }] : [])],
  });
  const ln = (name) => ({ name, type: 'LayerNorm', params: 2 * C, children: [{ name: 'weight', type: 'Parameter', params: C, shape: [C] }, { name: 'bias', type: 'Parameter', params: C, shape: [C] }] });
  const sum = (n) => n.children.reduce((a, c) => a + c.params, 0);
  const blocks = [];
  for (let l = 0; l < MODEL.n_layer; l++) {
    const attn = { name: 'attn', type: 'CausalSelfAttention', params: 0, children: [lin('qkv', C, 3 * C), lin('proj', C, C)] };
    attn.params = sum(attn);
    const mlp = { name: 'mlp', type: 'MLP', params: 0, children: [lin('fc', C, 4 * C), lin('proj', 4 * C, C)] };
    mlp.params = sum(mlp);
    const b = { name: `${l}`, type: 'Block', params: 0, children: [ln('ln_1'), attn, ln('ln_2'), mlp] };
    b.params = sum(b);
    blocks.push(b);
  }
  const h = { name: 'blocks', type: 'ModuleList', params: 0, children: blocks };
  h.params = sum(h);
  const root = {
    name: 'gpt',
    type: 'GPT',
    params: 0,
    children: [
      { name: 'wte', type: 'Embedding', params: MODEL.vocab_size * C, shape: [MODEL.vocab_size, C] },
      { name: 'wpe', type: 'Embedding', params: MODEL.context_length * C, shape: [MODEL.context_length, C] },
      h,
      ln('ln_f'),
      { name: 'lm_head', type: 'Linear (tied to wte)', params: 0, shape: [MODEL.vocab_size, C] },
    ],
  };
  root.params = sum(root);
  return { root };
}

const ARCH_PARAMS = architecture().root.params;

function answerInspect(m) {
  const base = { v: 1, type: 'inspect_result', ts: now(), rank: 0, id: m.id, what: m.what };
  if (!INSPECT) {
    rank0.send({ ...base, ok: false, message: 'model inspection is not available in this trainer' });
    return;
  }
  const args = m.args ?? {};
  const make = { attention, embeddings, activations, architecture }[m.what];
  if (!make) {
    rank0.send({ ...base, ok: false, message: `unknown inspection ${m.what}` });
    return;
  }
  rank0.send({ ...base, ok: true, data: make(args) });
}

// ---- the loop -------------------------------------------------------------------------------

function publishStep() {
  step += 1;
  const lr = currentLr();
  const lrFactor = Math.min(4, Math.max(0.2, lr / 3e-4));
  const batch = hp.micro_batch * hp.accumulation;
  const base = idealLoss(step * Math.sqrt(lrFactor)) + 0.06 * Math.max(0, Math.log(lrFactor));
  const grad = Math.max(0.05, 0.35 + 2.5 * Math.exp(-step / 150) + 0.08 * gauss());
  const tokensStep = batch * MODEL.context_length;
  tokens += tokensStep;
  for (const r of ranks) {
    const slow = STRAGGLER !== null && Number(STRAGGLER) === r.rank && step > 50 ? 1.6 : 1;
    const total = ((INTERVAL / 1000) * (0.92 + 0.08 * rand()) * slow * batch) / 32;
    const t = { data: 0.02 * total, forward: 0.3 * total, backward: 0.45 * total, reduce: 0.12 * total, optimizer: 0.08 * total };
    t.other = Math.max(0, total - t.data - t.forward - t.backward - t.reduce - t.optimizer);
    const msg = {
      v: 1,
      type: 'step',
      ts: now(),
      rank: r.rank,
      step,
      epoch: Math.floor((step * batch * WORLD) / 20000),
      loss: +(base + 0.09 * gauss()).toFixed(5),
      lr,
      grad_norm: +grad.toFixed(5),
      tokens,
      tokens_per_s: +(tokensStep / total).toFixed(1),
      time: { total: +total.toFixed(5), ...Object.fromEntries(Object.entries(t).map(([k, v]) => [k, +v.toFixed(5)])) },
      mem: { host_rss: Math.round(812e6 + 40e6 * r.rank + 1e4 * step), host_available: 15e9, host_total: 24e9 },
      hparams: { ...hp, lr },
    };
    if (GPU) {
      msg.mem.device_allocated = Math.round(21e9 + 1e8 * r.rank);
      msg.mem.device_reserved = 24e9;
      msg.mem.device_peak = 26e9;
      msg.gpu = { index: r.rank % 8, util: Math.round(Math.min(100, 88 + 10 * rand()) / slow), mem_util: 40, temp_c: 62 + r.rank, power_w: 300 + 20 * rand(), mem_used: 30e9, mem_total: 80e9 };
    }
    r.send(msg);
  }
  if (VAL_EVERY > 0 && step % VAL_EVERY === 0) {
    const vl = idealLoss(step * Math.sqrt(lrFactor)) + 0.08 + 0.00004 * step + 0.02 * gauss();
    rank0.send({ v: 1, type: 'validation', ts: now(), rank: 0, step, loss: +vl.toFixed(5), perplexity: +Math.exp(vl).toFixed(3), tokens: 65536, metrics: { accuracy: +(0.2 + 0.3 * (1 - Math.exp(-step / 400))).toFixed(4) } });
    if (early.enabled) {
      if (vl < early.best - early.min_delta) {
        early.best = vl;
        early.bad = 0;
      } else if (++early.bad > early.patience) {
        event('early_stop', `no improvement for ${early.patience} validations`);
        finish('early stop');
      }
    }
  }
  if (CKPT_EVERY > 0 && step % CKPT_EVERY === 0) saveCheckpoint();
  lastPublish = now();
  if (step >= MAX_STEPS) {
    event('run_finished', `finished after ${step} steps`);
    finish('finished');
  }
}

let started = false;
function tick() {
  if (stopping) return;
  if (!ranks.every((r) => r.ready)) return; // wait for every rank (as a barrier would)
  if (!started) {
    started = true;
    event('run_started', resumed ? `run ${RUN_ID} resumed from step ${step} on ${WORLD} ranks` : `run ${RUN_ID} on ${WORLD} ranks`);
  }
  applyControl();
  if (stopping || hp.paused) return;
  publishStep();
}

const loop = setInterval(tick, INTERVAL);
const beats = setInterval(() => {
  for (const r of ranks) r.send({ v: 1, type: 'heartbeat', ts: now(), rank: r.rank, step, idle_s: +Math.max(0, now() - lastPublish).toFixed(3), dropped: 0 });
}, 2000);

function finish(reason) {
  if (stopping) return;
  stopping = true;
  clearInterval(loop);
  clearInterval(beats);
  for (const r of ranks) r.send({ v: 1, type: 'bye', ts: now(), rank: r.rank, reason });
  setTimeout(() => {
    for (const r of ranks) r.ws?.close(1000, reason);
    setTimeout(() => process.exit(0), 200);
  }, 300);
}
// Nobody to talk to for a while (the aggregator is gone for good, or whoever
// started us was killed): exit rather than linger.
const ORPHAN_S = Number(opt('orphan-s', 60));
let lastConnected = Date.now();
const orphan = setInterval(() => {
  if (ranks.some((r) => r.ready)) lastConnected = Date.now();
  else if (Date.now() - lastConnected > ORPHAN_S * 1000) {
    log(`no aggregator for ${ORPHAN_S} s, exiting`);
    clearInterval(orphan);
    process.exit(1);
  }
}, 1000);
process.on('SIGTERM', () => finish('terminated'));
process.on('SIGINT', () => finish('interrupted'));
log(`${WORLD} ranks -> ${URL_} (run ${RUN_ID}, every ${INTERVAL} ms)`);
