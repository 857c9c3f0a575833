// The reducer: series from steps and aggregates, dedup by seq after a
// reconnect, rewinds, run phase from acks and events, command lifecycle,
// inspection outcomes, rank warnings, and the point buffers' behaviour.

import { describe, expect, it } from 'vitest';
import type { Aggregate, ServerMessage, StepMsg } from '../src/protocol';
import {
  initialState,
  latestCommand,
  rankWarnings,
  reduce,
  type TrainState,
} from '../src/state/reducer';
import { append, Decimator, emptySeries, smooth, Smoother, type Point } from '../src/state/series';

let seq = 0;
const step = (rank: number, s: number, extra: Partial<StepMsg> = {}): StepMsg => ({
  v: 1,
  type: 'step',
  ts: 1000 + s,
  seq: seq++,
  rank,
  step: s,
  loss: 5 - s * 0.01 + rank * 0.01,
  lr: 3e-4,
  grad_norm: 1,
  tokens_per_s: 1000 + rank,
  time: { total: 0.3, forward: 0.1, backward: 0.15, reduce: 0.05 },
  mem: { host_rss: 1e9 },
  hparams: { lr: 3e-4, clip: 1, paused: false },
  ...extra,
});
const agg = (s: number, loss = 5 - s * 0.01): Aggregate => ({
  v: 1,
  type: 'aggregate',
  ts: 1000 + s,
  seq: seq++,
  step: s,
  ranks: 2,
  world_size: 2,
  complete: true,
  loss: { mean: loss, min: loss - 0.01, max: loss + 0.01 },
  step_time: { mean: 0.3, min: 0.29, max: 0.31, median: 0.3 },
  tokens_per_s: { mean: 1000, min: 999, max: 1001, sum: 2000 },
  lr: 3e-4,
  stragglers: [],
});
const feed = (s: TrainState, ...messages: ServerMessage[]) =>
  reduce(s, { type: 'messages', messages });

describe('reduce: training series', () => {
  it('builds loss, lr, grad norm, throughput and per-rank series', () => {
    let s = initialState();
    for (let i = 1; i <= 5; i++) s = feed(s, step(0, i), step(1, i), agg(i));
    expect(s.trainLoss.n).toBe(5);
    expect(s.trainLoss.pts.map((p) => p.x)).toEqual([1, 2, 3, 4, 5]);
    expect(s.trainLoss.pts[4].y).toBeCloseTo(4.95);
    expect(s.lr.n).toBe(5);
    expect(s.gradNorm.n).toBe(5);
    expect(s.tokensPerSTotal.pts[0].y).toBe(2000);
    expect(Object.keys(s.ranks)).toEqual(['0', '1']);
    expect(s.ranks[1].tokensPerS.pts[0].y).toBe(1001);
    expect(s.ranks[0].hostRss.n).toBe(5);
    expect(s.step).toBe(5);
    expect(s.phase).toBe('running');
    expect(s.ranks[0].phases.forward).toBeCloseTo(0.1);
  });

  it('takes lr and grad norm from the lowest rank only', () => {
    let s = initialState();
    s = feed(s, step(0, 1, { lr: 1e-3 }), step(1, 1, { lr: 5 }));
    expect(s.lr.pts).toEqual([{ x: 1, y: 1e-3 }]);
  });

  it('stores null (NaN on the wire) as a gap', () => {
    let s = initialState();
    s = feed(s, step(0, 1, { lr: null }), {
      ...agg(1),
      loss: { mean: null, min: null, max: null },
    });
    expect(Number.isNaN(s.lr.pts[0].y)).toBe(true);
    expect(Number.isNaN(s.trainLoss.pts[0].y)).toBe(true);
  });

  it('adds validation points and keeps one per step', () => {
    let s = initialState();
    s = feed(s, { v: 1, type: 'validation', ts: 1, seq: seq++, rank: 0, step: 100, loss: 3 });
    s = feed(s, { v: 1, type: 'validation', ts: 2, seq: seq++, rank: 0, step: 200, loss: 2.5 });
    expect(s.valLoss.pts).toEqual([
      { x: 100, y: 3 },
      { x: 200, y: 2.5 },
    ]);
    expect(s.validations.map((v) => v.step)).toEqual([100, 200]);
  });

  it('drops messages already seen (history replayed after a reconnect)', () => {
    let s = initialState();
    const history = [step(0, 1), agg(1), step(0, 2), agg(2)];
    s = feed(s, ...history);
    const before = s;
    s = feed(s, ...history); // the same seqs again
    expect(s).toBe(before); // nothing changed at all
    expect(s.trainLoss.n).toBe(2);
    s = feed(s, ...history, agg(3));
    expect(s.trainLoss.n).toBe(3);
  });

  it('applies messages without seq every time (not in history)', () => {
    let s = initialState();
    s = feed(s, { v: 1, type: 'heartbeat', ts: 5, rank: 1, step: 7, idle_s: 0.5 });
    s = feed(s, { v: 1, type: 'heartbeat', ts: 6, rank: 1, step: 8, idle_s: 0.1 });
    expect(s.ranks[1].heartbeat).toEqual({ ts: 6, step: 8, idle_s: 0.1, dropped: undefined });
  });

  it('rewinds the step axis when a run resumes from an earlier checkpoint', () => {
    let s = initialState();
    for (let i = 1; i <= 10; i++) s = feed(s, agg(i));
    s = feed(s, agg(6, 1.0));
    expect(s.trainLoss.n).toBe(6);
    expect(s.trainLoss.pts.map((p) => p.x)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(s.trainLoss.pts[5].y).toBe(1.0);
    expect(s.trainLoss.gen).toBe(1);
  });

  it('cuts the run-wide series when rank 0 goes back in steps (a resume)', () => {
    let s = initialState();
    for (let i = 1; i <= 10; i++) s = feed(s, step(0, i), agg(i));
    s = feed(s, { v: 1, type: 'validation', ts: 1, seq: seq++, rank: 0, step: 8, loss: 3 });
    s = feed(s, {
      v: 1,
      type: 'ack',
      ts: 1,
      seq: seq++,
      rank: 0,
      id: 'a',
      command: 'set_lr',
      step: 7,
      ok: true,
    });
    s = feed(s, {
      v: 1,
      type: 'ack',
      ts: 1,
      seq: seq++,
      rank: 0,
      id: 'b',
      command: 'set_lr',
      step: 3,
      ok: true,
    });
    s = feed(s, step(0, 5)); // resumed from the checkpoint of step 4
    expect(s.commands.a.stale).toBe(true);
    expect(s.commands.b.stale).toBeUndefined();
    expect(s.trainLoss.pts.map((p) => p.x)).toEqual([1, 2, 3, 4]);
    expect(s.valLoss.n).toBe(0);
    expect(s.validations).toEqual([]);
    expect(s.lr.pts.map((p) => p.x)).toEqual([1, 2, 3, 4, 5]);
    expect(s.step).toBe(5);
    s = feed(s, agg(5, 1));
    expect(s.trainLoss.pts.map((p) => p.x)).toEqual([1, 2, 3, 4, 5]);
  });

  it('starts over when the aggregator serves another run directory', () => {
    let s = initialState();
    s = feed(s, welcomeMsg('runs/a'), agg(1));
    expect(s.trainLoss.n).toBe(1);
    s = feed(s, welcomeMsg('runs/b'));
    expect(s.trainLoss.n).toBe(0);
    expect(s.lastSeq).toBe(-1);
    expect(s.runDir).toBe('runs/b');
  });
});

function welcomeMsg(runDir: string): ServerMessage {
  return {
    v: 1,
    type: 'welcome',
    ts: 1,
    role: 'viewer',
    control: true,
    protocol: 1,
    server: 's',
    history: 3,
    session: 1,
    run_dir: runDir,
  };
}

describe('reduce: control and run phase', () => {
  it('follows a command from sent to forwarded to acknowledged at a step', () => {
    let s = initialState();
    s = reduce(s, {
      type: 'command_sent',
      id: 'c-1',
      command: 'set_lr',
      args: { lr: 1e-4 },
      at: 10,
    });
    expect(s.commands['c-1'].phase).toBe('sent');
    s = feed(s, {
      v: 1,
      type: 'command_status',
      ts: 11,
      id: 'c-1',
      command: 'set_lr',
      status: 'forwarded',
    });
    expect(s.commands['c-1'].phase).toBe('forwarded');
    s = feed(s, {
      v: 1,
      type: 'ack',
      ts: 12,
      seq: seq++,
      rank: 0,
      id: 'c-1',
      command: 'set_lr',
      step: 301,
      ok: true,
    });
    expect(s.commands['c-1']).toMatchObject({
      phase: 'acked',
      step: 301,
      mine: true,
      args: { lr: 1e-4 },
    });
    // A late status never undoes the ack.
    s = feed(s, { v: 1, type: 'command_status', ts: 13, id: 'c-1', status: 'forwarded' });
    expect(s.commands['c-1'].phase).toBe('acked');
    expect(latestCommand(s, 'set_lr')?.step).toBe(301);
  });

  it('records refusals and trainer rejections with their reason', () => {
    let s = initialState();
    s = reduce(s, { type: 'command_sent', id: 'c-2', command: 'pause', at: 1 });
    s = feed(s, {
      v: 1,
      type: 'command_status',
      ts: 2,
      id: 'c-2',
      command: 'pause',
      status: 'refused',
      message: 'wrong token',
    });
    s = feed(s, {
      v: 1,
      type: 'error',
      ts: 2,
      code: 'unauthorized',
      message: 'control needs the token',
      ref: 'c-2',
    });
    expect(s.commands['c-2'].phase).toBe('refused');
    expect(s.commands['c-2'].message).toMatch(/unauthorized/);
    s = reduce(s, {
      type: 'command_sent',
      id: 'c-3',
      command: 'set_batch',
      args: { micro_batch: 7, accumulation: 1 },
      at: 3,
    });
    s = feed(s, {
      v: 1,
      type: 'ack',
      ts: 4,
      seq: seq++,
      rank: 0,
      id: 'c-3',
      command: 'set_batch',
      step: 50,
      ok: false,
      message: '7 does not divide 32',
    });
    expect(s.commands['c-3']).toMatchObject({
      phase: 'rejected',
      step: 50,
      message: '7 does not divide 32',
    });
  });

  it('lists acks of other viewers', () => {
    let s = initialState();
    s = feed(s, {
      v: 1,
      type: 'ack',
      ts: 4,
      seq: seq++,
      rank: 0,
      id: 'other-1',
      command: 'save_checkpoint',
      step: 9,
      ok: true,
    });
    expect(s.commands['other-1'].mine).toBe(false);
    expect(latestCommand(s, 'save_checkpoint', true)).toBeUndefined();
    expect(latestCommand(s, 'save_checkpoint')?.step).toBe(9);
  });

  it('a pause acknowledged after a step that was not reported moves the counter there', () => {
    // [monitor] every = 5: steps 5 and 10 reported, the pause took effect after 13.
    let s = feed(initialState(), step(0, 5), step(0, 10));
    const ack = (id: string, command: 'pause' | 'set_lr', at: number) => ({
      v: 1 as const,
      type: 'ack' as const,
      ts: 4,
      seq: seq++,
      rank: 0,
      id,
      command,
      step: at,
      ok: true,
    });
    s = feed(s, ack('lr', 'set_lr', 12));
    expect(s.step).toBe(10); // only a pause says where the run stands
    s = feed(s, ack('p', 'pause', 13));
    expect([s.phase, s.step]).toEqual(['paused', 13]);
    s = feed(s, ack('p-old', 'pause', 9));
    expect(s.step).toBe(13); // never backwards
  });

  it('derives paused/running/stopped/finished', () => {
    let s = feed(initialState(), step(0, 1));
    expect(s.phase).toBe('running');
    s = feed(s, {
      v: 1,
      type: 'ack',
      ts: 4,
      seq: seq++,
      rank: 0,
      id: 'p',
      command: 'pause',
      step: 1,
      ok: true,
    });
    expect(s.phase).toBe('paused');
    s = feed(s, { v: 1, type: 'event', ts: 5, seq: seq++, rank: 0, kind: 'resumed', message: '' });
    expect(s.phase).toBe('running');
    s = feed(s, step(0, 2, { hparams: { paused: true } }));
    expect(s.phase).toBe('paused');
    s = feed(s, { v: 1, type: 'event', ts: 6, seq: seq++, rank: 0, kind: 'stopped', message: '' });
    expect(s.phase).toBe('stopped');
    s = feed(s, { v: 1, type: 'event', ts: 7, seq: seq++, kind: 'run_spawned', message: '' });
    expect(s.phase).toBe('running');
    s = feed(s, {
      v: 1,
      type: 'event',
      ts: 8,
      seq: seq++,
      rank: 0,
      kind: 'run_finished',
      message: '',
    });
    expect(s.phase).toBe('finished');
  });

  it('keeps the checkpoint list and run info', () => {
    let s = initialState();
    s = feed(s, {
      v: 1,
      type: 'checkpoints',
      ts: 1,
      run_dir: 'runs/a',
      items: [
        { name: 'step-10', path: 'runs/a/checkpoints/step-10', step: 10, mtime: 1, manifest: null },
      ],
    });
    expect(s.checkpoints?.items[0].name).toBe('step-10');
    s = feed(s, {
      v: 1,
      type: 'run_info',
      ts: 1,
      seq: seq++,
      rank: 1,
      run_id: 'r',
      world_size: 2,
      info: { zero_stage: 2, host: 'b' },
    });
    s = feed(s, {
      v: 1,
      type: 'run_info',
      ts: 1,
      seq: seq++,
      rank: 0,
      run_id: 'r',
      world_size: 2,
      info: { zero_stage: 1, host: 'a' },
    });
    expect(s.runInfo?.zero_stage).toBe(1); // rank 0 speaks for the run
    expect(s.worldSize).toBe(2);
    expect(Object.keys(s.runInfoByRank)).toEqual(['0', '1']);
  });
});

describe('reduce: inspection', () => {
  it('marks a request answered, unavailable, or timed out', () => {
    let s = initialState();
    s = reduce(s, { type: 'inspect_sent', id: 'i-1', what: 'architecture', at: 1 });
    s = reduce(s, { type: 'inspect_sent', id: 'i-2', what: 'attention', at: 1 });
    s = reduce(s, { type: 'inspect_sent', id: 'i-3', what: 'embeddings', at: 1 });
    s = reduce(s, { type: 'inspect_sent', id: 'i-4', what: 'activations', at: 1 });
    expect(s.inspects['i-1'].phase).toBe('pending');
    s = feed(
      s,
      {
        v: 1,
        type: 'inspect_result',
        ts: 2,
        rank: 0,
        id: 'i-1',
        what: 'architecture',
        ok: true,
        data: { root: { name: 'gpt', type: 'GPT', params: 1 } },
      },
      {
        v: 1,
        type: 'inspect_result',
        ts: 2,
        rank: 0,
        id: 'i-2',
        what: 'attention',
        ok: false,
        message: 'not wired',
      },
      { v: 1, type: 'error', ts: 2, code: 'no_producer', message: 'no rank 0', ref: 'i-3' },
      {
        v: 1,
        type: 'inspect_result',
        ts: 2,
        rank: 0,
        id: 'someone-else',
        what: 'attention',
        ok: true,
      },
    );
    expect(s.inspects['i-1'].phase).toBe('ok');
    expect(s.inspects['i-2']).toMatchObject({ phase: 'unavailable', message: 'not wired' });
    expect(s.inspects['i-3'].phase).toBe('unavailable');
    expect(s.inspects['i-3'].message).toMatch(/No training rank/);
    expect(s.inspects['someone-else']).toBeUndefined();
    s = reduce(s, { type: 'inspect_timeout', id: 'i-4', message: 'no answer' });
    expect(s.inspects['i-4']).toMatchObject({ phase: 'unavailable', message: 'no answer' });
    // A timeout after the answer changes nothing.
    const done = s;
    expect(reduce(s, { type: 'inspect_timeout', id: 'i-1', message: 'late' })).toBe(done);
  });
});

describe('rankWarnings', () => {
  it('reports dead ranks and stragglers with numbers', () => {
    let s = initialState();
    s = feed(s, {
      v: 1,
      type: 'ranks',
      ts: 1,
      seq: seq++,
      world_size: 3,
      ranks: [
        { rank: 0, state: 'alive', last_seen_s: 0.1, step_time: 0.3, straggler: false },
        { rank: 1, state: 'alive', last_seen_s: 0.1, step_time: 0.5, straggler: true },
        { rank: 2, state: 'dead', last_seen_s: 12.5, step: 101, straggler: false },
      ],
    });
    const w = rankWarnings(s);
    expect(w.map((x) => [x.rank, x.kind])).toEqual([
      [1, 'straggler'],
      [2, 'dead'],
    ]);
    expect(w[0].text).toMatch(/500 ms.*median of 400 ms/);
    expect(w[1].text).toMatch(/12\.5 s.*step 101/);
  });

  it('adds stragglers flagged only by the latest aggregate', () => {
    const s = feed(initialState(), { ...agg(1), stragglers: [3] });
    expect(rankWarnings(s)).toEqual([
      { rank: 3, kind: 'straggler', text: expect.stringMatching(/Rank 3/) },
    ]);
  });
});

describe('series', () => {
  it('is idempotent when the same append is applied twice to the same handle', () => {
    const a = append(append(emptySeries(), 1, 1), 2, 2);
    const b1 = append(a, 3, 3);
    const b2 = append(a, 3, 3); // React StrictMode replays reducers like this
    expect(b2.pts.slice(0, b2.n)).toEqual([
      { x: 1, y: 1 },
      { x: 2, y: 2 },
      { x: 3, y: 3 },
    ]);
    expect(b1.n).toBe(b2.n);
  });

  it('smooths with debiasing and restarts after a rewind', () => {
    let s = emptySeries();
    for (let i = 0; i < 5; i++) s = append(s, i, 10);
    expect(smooth(s, 0.9).map((p) => p.y)).toEqual(
      [10, 10, 10, 10, 10].map(() => expect.closeTo(10, 9)),
    );
    const sm = new Smoother();
    sm.update(s, 0.5);
    s = append(s, 5, 0);
    const out = sm.update(s, 0.5);
    expect(out).toHaveLength(6);
    expect(out[5].y).toBeLessThan(10);
    s = append(s, 2, 100); // rewind
    const again = sm.update(s, 0.5);
    expect(again.map((p) => p.x)).toEqual([0, 1, 2]);
    expect(again[2].y).toBeGreaterThan(10);
  });

  it('ingests 100k points in one batch', () => {
    let st = initialState();
    const batch: ServerMessage[] = [];
    for (let i = 1; i <= 100_000; i++) batch.push(agg(i));
    st = feed(st, ...batch);
    const sm = new Smoother();
    sm.update(st.trainLoss, 0.6);
    expect(st.trainLoss.n).toBe(100_000);
    expect(sm.out).toHaveLength(100_000);
    expect(st.trainLoss.pts[99_999]).toEqual({ x: 100_000, y: expect.closeTo(5 - 1000, 6) });
  });
});

describe('Decimator', () => {
  const wave = (n: number, from = 0): Point[] =>
    Array.from({ length: n }, (_, i) => ({
      x: from + i,
      y: Math.sin((from + i) / 50) + ((from + i) % 997 === 0 ? 5 : 0),
    }));
  const check = (view: Point[], src: Point[], limit: number) => {
    const set = new Set(src);
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of src) {
      lo = Math.min(lo, p.y);
      hi = Math.max(hi, p.y);
    }
    expect(
      view.every((p) => set.has(p)),
      'only real points',
    ).toBe(true);
    expect(
      view.every((p, i) => i === 0 || p.x > view[i - 1].x),
      'sorted by x',
    ).toBe(true);
    expect(view.some((p) => p.y === hi) && view.some((p) => p.y === lo), 'spikes survive').toBe(
      true,
    );
    expect(view.length).toBeLessThanOrEqual(limit + 64);
  };

  it('passes small buffers through untouched', () => {
    const pts = wave(100);
    expect(new Decimator(4000).view(pts)).toBe(pts);
  });

  it('keeps 100k points to a bounded envelope, from scratch and while growing', () => {
    const big = wave(100_000);
    check(new Decimator(4000).view(big), big, 4000);
    const grow: Point[] = [];
    const d = new Decimator(1000);
    for (let i = 0; i < 50; i++) {
      for (const p of wave(2000, i * 2000)) grow.push(p);
      check(d.view(grow), grow, 1000);
    }
  });

  it('starts over when the buffer was rewound', () => {
    let s = emptySeries();
    for (let i = 0; i < 5000; i++) s = append(s, i, i);
    const d = new Decimator(1000);
    d.view(s.pts);
    s = append(s, 100, -7); // resumed from step 100
    const v = d.view(s.pts);
    expect(v[v.length - 1]).toEqual({ x: 100, y: -7 });
    expect(v.every((p) => p.x <= 100)).toBe(true);
  });

  it('leaves a gap for all-NaN stretches', () => {
    const pts = Array.from({ length: 5000 }, (_, i) => ({
      x: i,
      y: i >= 1000 && i < 3000 ? NaN : 1,
    }));
    const v = new Decimator(500).view(pts);
    expect(v.some((p) => Number.isNaN(p.y))).toBe(true);
  });
});
