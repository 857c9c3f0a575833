// The workbench tabs (Generate, Rate, Evaluate) against a scripted aggregator:
// what each sends, how streamed tokens, votes and reports are drawn, and the
// refusals each shows. The browser test (e2e/workbench.mjs) does the same
// against the real aggregator and trainer.

import { act, cleanup, fireEvent, render, screen, within } from '@testing-library/react';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { App } from '../src/App';
import { setupCharts } from '../src/charts/setup';
import { TOKEN_KEY } from '../src/lib/token';
import { optionsOf, initialGenerateSession, confidenceColor } from '../src/views/GenerateView';
import { axisRangeWithIntervals } from '../src/views/EvaluateView';
import { RATER_KEY } from '../src/views/RateView';
import { GENERATE_DONE, GENERATE_TOKEN } from './fixtures/inspect';
import { mockFactory, welcome, type MockSocket } from './mockSocket';
import { explain, makeValidator } from './schema';

vi.mock('react-chartjs-2', () => {
  const stub = (kind: string) => (props: { data: { datasets: { data: unknown[] }[] } }) => (
    <canvas data-chart={kind} data-datasets={props.data.datasets.length} />
  );
  return { Line: stub('line'), Bar: stub('bar'), Scatter: stub('scatter') };
});

beforeAll(() => {
  setupCharts();
  HTMLCanvasElement.prototype.getContext = (() =>
    null) as unknown as HTMLCanvasElement['getContext'];
});
beforeEach(() => {
  sessionStorage.clear();
  localStorage.clear();
  window.location.hash = '';
});
afterEach(() => {
  cleanup();
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

async function flush(ms = 150) {
  await act(async () => {
    await vi.advanceTimersByTimeAsync(ms);
  });
}

async function startApp(opts: { hash: string; control?: boolean; rate?: boolean; token?: string }) {
  vi.useFakeTimers();
  if (opts.token) sessionStorage.setItem(TOKEN_KEY, opts.token);
  window.location.hash = opts.hash;
  const mock = mockFactory();
  render(<App url="ws://test/ws" createSocket={mock.factory} />);
  const ws = mock.latest();
  act(() => ws.open());
  act(() =>
    ws.receive(
      welcome(opts.control ?? true, { history: 0, rate: opts.rate ?? opts.control ?? true }),
    ),
  );
  await flush();
  return ws;
}

const sent = (ws: MockSocket, type: string) =>
  (ws.sent as Record<string, unknown>[]).filter((m) => m.type === type);
const I = makeValidator('inspect');
const P = makeValidator('protocol');

describe('Generate', () => {
  it('sends every decoding option the strategy reads, and valid requests', () => {
    const s = {
      ...initialGenerateSession(),
      strategy: 'sample' as const,
      seed: 7,
      stop: '\\n\\n|The end',
      ignoreEos: true,
    };
    const o = optionsOf(s);
    expect(o).toMatchObject({
      strategy: 'sample',
      max_new_tokens: 32,
      temperature: 0.8,
      top_k: 0,
      top_p: 0.95,
      min_p: 0,
      seed: 7,
      stop: ['\n\n', 'The end'],
      ignore_eos: true,
    });
    expect(I.def('generation_options')(o), explain(I.def('generation_options').errors)).toBe(true);
    const beam = optionsOf({ ...s, strategy: 'beam' });
    expect(beam).toMatchObject({
      strategy: 'beam',
      num_beams: 4,
      length_penalty: 1,
      early_stopping: true,
    });
    expect(beam.temperature).toBeUndefined();
    expect(I.def('generate_token')(GENERATE_TOKEN), explain(I.def('generate_token').errors)).toBe(
      true,
    );
    expect(I.def('generate_done')(GENERATE_DONE), explain(I.def('generate_done').errors)).toBe(
      true,
    );
  });

  it('streams tokens into coloured chips, opens a token, and shows two targets side by side', async () => {
    const ws = await startApp({ hash: '#generate' });
    act(() =>
      ws.receive({
        v: 1,
        type: 'checkpoints',
        ts: 1,
        run_dir: 'runs/mock',
        items: [
          {
            name: 'step-000010',
            path: 'runs/mock/checkpoints/step-000010',
            step: 10,
            mtime: 1,
            manifest: null,
          },
        ],
      }),
    );
    await flush();
    fireEvent.change(screen.getByTestId('gen-target-1'), { target: { value: 'step-000010' } });
    fireEvent.click(screen.getByTestId('gen-go'));
    const reqs = sent(ws, 'inspect');
    expect(reqs).toHaveLength(2);
    expect(reqs.map((r) => (r.args as { target: string }).target)).toEqual(['live', 'step-000010']);
    for (const r of reqs) expect(P.any(r), explain(P.any.errors)).toBe(true);
    for (const r of reqs)
      expect(I.def('generate_args')(r.args), explain(I.def('generate_args').errors)).toBe(true);
    const [live, ckpt] = reqs.map((r) => r.id as string);
    const tok = (id: string, index: number, text: string, lp: number) => ({
      v: 1,
      type: 'inspect_result',
      ts: 1,
      rank: 0,
      id,
      what: 'generate',
      ok: true,
      partial: true,
      data: {
        event: 'token',
        prompt: 0,
        index,
        id: 10 + index,
        text,
        delta: text,
        logprob: lp,
        top: [
          { id: 10 + index, text, logprob: lp },
          { id: 99, text: ' x', logprob: -3 },
        ],
        target: 'live',
        step: 42,
      },
    });
    act(() => ws.receive(tok(live, 0, ' there', -0.1)));
    act(() => ws.receive(tok(live, 1, ' was', -2.3)));
    await flush();
    const out0 = screen.getByTestId('gen-output-0');
    expect(screen.getByTestId('gen-status-0').dataset.status).toBe('streaming');
    const chips = within(out0).getAllByTestId('gen-token');
    expect(chips.map((c) => c.textContent)).toEqual([' there', ' was']);
    expect(Number(chips[0].dataset.p)).toBeCloseTo(Math.exp(-0.1), 9);
    expect(chips[0].style.background).not.toBe(chips[1].style.background);
    act(() =>
      ws.receive({
        v: 1,
        type: 'inspect_result',
        ts: 1,
        rank: 0,
        id: live,
        what: 'generate',
        ok: true,
        data: {
          event: 'done',
          prompt: 0,
          text: ' there was',
          tokens: [10, 11],
          finish_reason: 'length',
          seconds: 0.2,
          target: 'live',
          step: 42,
        },
      }),
    );
    act(() =>
      ws.receive({
        v: 1,
        type: 'inspect_result',
        ts: 1,
        id: ckpt,
        what: 'generate',
        ok: false,
        message: 'no tokenizer for step-000010',
      }),
    );
    await flush();
    expect(screen.getByTestId('gen-status-0').dataset.status).toBe('done');
    expect(screen.getByTestId('gen-status-0').dataset.text).toBe(' there was');
    expect(screen.getByTestId('gen-status-0').dataset.step).toBe('42');
    expect(screen.getByTestId('gen-status-1').dataset.status).toBe('error');
    expect(screen.getByTestId('gen-error-1').textContent).toMatch(/no tokenizer/);
    fireEvent.click(within(out0).getAllByTestId('gen-token')[1]);
    const detail = screen.getByTestId('gen-token-detail');
    expect(within(detail).getByTestId('gen-token-p').textContent).toBe('10.0%');
    expect(within(detail).getAllByTestId('gen-alternative')).toHaveLength(2);
  });

  it('a generation that streams is not cut off by the timeout', async () => {
    const ws = await startApp({ hash: '#generate' });
    fireEvent.click(screen.getByTestId('gen-go'));
    const id = sent(ws, 'inspect')[0].id as string;
    act(() =>
      ws.receive({
        v: 1,
        type: 'inspect_result',
        ts: 1,
        rank: 0,
        id,
        what: 'generate',
        ok: true,
        partial: true,
        data: GENERATE_TOKEN,
      }),
    );
    await flush(130000);
    expect(screen.getByTestId('gen-status-0').dataset.status).toBe('streaming');
  });

  it('colours from red (unsure) to green (sure), grey without a probability', () => {
    expect(confidenceColor(0)).toBe('hsl(0, 62%, 30%)');
    expect(confidenceColor(1)).toBe('hsl(130, 62%, 30%)');
    expect(confidenceColor(null)).toMatch(/^hsl\(220/);
  });
});

describe('Rate', () => {
  const pairMsg = (id: string, pair: number | null, done = 0) => ({
    v: 1,
    type: 'rate_pair',
    ts: 1,
    id,
    pair:
      pair === null
        ? null
        : {
            id: pair,
            batch: 'b',
            prompt: 'Once upon',
            a: { sample: 2 * pair, text: ' a time' },
            b: { sample: 2 * pair - 1, text: ' a hill' },
          },
    progress: { done, total: 2 },
  });

  it('asks for a pair with the rater name, votes by keyboard, reveals after the vote, then moves on', async () => {
    localStorage.setItem(RATER_KEY, 'ann');
    const ws = await startApp({ hash: '#rate', control: false, rate: true });
    expect(sent(ws, 'rate_list')).toHaveLength(1);
    const next1 = sent(ws, 'rate_next');
    expect(next1).toHaveLength(1);
    expect(next1[0]).toMatchObject({ rater: 'ann' });
    act(() => ws.receive(pairMsg(next1[0].id as string, 1)));
    await flush();
    expect(screen.getByTestId('rate-prompt').textContent).toContain('Once upon');
    expect(screen.getByTestId('rate-a').textContent).toContain(' a time');
    expect(screen.queryByTestId('rate-reveal-a')).toBeNull(); // blind
    expect(screen.getByTestId('rate-progress').dataset.done).toBe('0');
    fireEvent.keyDown(window, { key: '2' });
    const votes = sent(ws, 'rate_vote');
    expect(votes).toHaveLength(1);
    expect(votes[0]).toMatchObject({ rater: 'ann', pair: 1, shown: [2, 1], choice: 'B' });
    expect(P.any(votes[0]), explain(P.any.errors)).toBe(true);
    fireEvent.keyDown(window, { key: '1' }); // a second key press does not vote twice
    expect(sent(ws, 'rate_vote')).toHaveLength(1);
    act(() =>
      ws.receive({
        v: 1,
        type: 'rate_ack',
        ts: 1,
        id: votes[0].id,
        ok: true,
        pair: 1,
        vote: 5,
        duplicate: false,
        choice: 'B',
        reveal: {
          a: { sample: 2, source: 'step-400', step: 400 },
          b: { sample: 1, source: 'step-200', step: 200 },
        },
      }),
    );
    await flush();
    expect(screen.getByTestId('rate-reveal-a').textContent).toBe('step-400 (step 400)');
    expect(screen.getByTestId('rate-saved').dataset.vote).toBe('5');
    fireEvent.keyDown(window, { key: 'Enter' });
    expect(sent(ws, 'rate_next')).toHaveLength(2);
    act(() => ws.receive(pairMsg(sent(ws, 'rate_next')[1].id as string, null, 2)));
    await flush();
    expect(screen.getByTestId('rate-done').textContent).toMatch(/rated every pair/);
  });

  it('a viewer without a token cannot vote, and a refused vote says so', async () => {
    localStorage.setItem(RATER_KEY, 'eve');
    const ws = await startApp({ hash: '#rate', control: false, rate: false });
    act(() => ws.receive(pairMsg(sent(ws, 'rate_next')[0].id as string, 1)));
    await flush();
    expect((screen.getByTestId('rate-choice-A') as HTMLButtonElement).disabled).toBe(true);
    fireEvent.keyDown(window, { key: '1' });
    expect(sent(ws, 'rate_vote')).toHaveLength(0);
  });

  it('draws the leaderboard and the agreement from rate_votes, and marks rated checkpoints', async () => {
    localStorage.setItem(RATER_KEY, 'ann');
    const ws = await startApp({ hash: '#rate' });
    const row = (vote: number, pair: number, rater: string, outcome: string) => ({
      vote,
      rater,
      pair,
      batch: 'b',
      sources: ['step-200', 'step-400'],
      steps: [200, 400],
      outcome,
      time: 1,
    });
    act(() =>
      ws.receive({
        v: 1,
        type: 'rate_votes',
        ts: 1,
        append: false,
        votes: [row(1, 1, 'ann', 'b'), row(2, 1, 'bob', 'b'), row(3, 2, 'ann', 'a')],
        pairs: 2,
        batches: ['b'],
      }),
    );
    // A vote broadcast twice (another viewer's) counts once.
    act(() =>
      ws.receive({
        v: 1,
        type: 'rate_votes',
        ts: 1,
        append: true,
        votes: [row(4, 2, 'bob', 'tie'), row(4, 2, 'bob', 'tie')],
        pairs: 2,
        batches: ['b'],
      }),
    );
    act(() =>
      ws.receive({
        v: 1,
        type: 'rate_votes',
        ts: 1,
        append: true,
        votes: [row(4, 2, 'bob', 'tie')],
        pairs: 2,
        batches: ['b'],
      }),
    );
    act(() =>
      ws.receive({
        v: 1,
        type: 'aggregate',
        ts: 1,
        seq: 1,
        step: 100,
        ranks: 1,
        world_size: 1,
        complete: true,
        loss: { mean: 3, min: 3, max: 3 },
        step_time: { mean: 0.1, min: 0.1, max: 0.1 },
        stragglers: [],
      }),
    );
    await flush();
    const rows = screen.getAllByTestId('rate-leader-row');
    expect(rows.map((r) => r.dataset.source)).toEqual(['step-400', 'step-200']);
    expect(screen.getByTestId('rate-votes').dataset.value).toBe('4');
    expect(screen.getByTestId('rate-alpha').dataset.items).toBe('2');
    expect(JSON.parse(screen.getByTestId('rate-marks').dataset.marks as string)).toEqual([
      400, 200,
    ]);
  });

  it('creates a comparison from two checkpoints with the control token', async () => {
    const ws = await startApp({ hash: '#rate', control: true });
    act(() =>
      ws.receive({
        v: 1,
        type: 'checkpoints',
        ts: 1,
        run_dir: 'r',
        items: ['step-10', 'step-20'].map((n, i) => ({
          name: n,
          path: n,
          step: 10 * (i + 1),
          mtime: 1,
          manifest: null,
        })),
      }),
    );
    await flush();
    fireEvent.change(screen.getByTestId('rate-source-a'), { target: { value: 'step-10' } });
    fireEvent.change(screen.getByTestId('rate-source-b'), { target: { value: 'step-20' } });
    fireEvent.change(screen.getByTestId('rate-prompts'), { target: { value: 'one\n\ntwo\n' } });
    fireEvent.click(screen.getByTestId('rate-create'));
    const c = sent(ws, 'rate_create');
    expect(c).toHaveLength(1);
    expect(c[0]).toMatchObject({ sources: ['step-10', 'step-20'], prompts: ['one', 'two'] });
    expect(P.any(c[0]), explain(P.any.errors)).toBe(true);
    act(() =>
      ws.receive({
        v: 1,
        type: 'rate_created',
        ts: 1,
        id: c[0].id,
        ok: true,
        batch: 'step-10 vs step-20',
        pairs: 2,
      }),
    );
    await flush();
    expect(screen.getByTestId('rate-created').dataset.ok).toBe('yes');
  });
});

describe('Evaluate', () => {
  const report = {
    suite: 'example',
    models: [
      {
        model: 'runs/a/checkpoints/step-10',
        label: 'early',
        suite: 'example',
        tasks: [
          {
            name: 'qa',
            kind: 'choice',
            items: 2,
            metrics: { acc: { value: 0.5, ci95: [0, 1], higher_is_better: true } },
            samples: [
              { context: 'c1', choices: ['x', 'y'], answer: 0, pred: 0 },
              { context: 'c2', choices: ['x', 'y'], answer: 1, pred: 0 },
            ],
          },
          {
            name: 'ppl',
            kind: 'perplexity',
            items: 1,
            metrics: { perplexity: { value: 30, ci95: null, higher_is_better: false } },
            samples: [],
            detail: {
              by_position: { tokens: [4, 4], top1: [0.25, 0.5], top5: [0.5, 0.75] },
              calibration: {
                bins: [{ lo: 0, hi: 0.1, count: 8, confidence: 0.05, accuracy: 0.2 }],
                ece: 0.15,
              },
            },
          },
        ],
      },
      {
        model: 'runs/a/checkpoints/step-20',
        label: 'late',
        suite: 'example',
        tasks: [
          {
            name: 'qa',
            kind: 'choice',
            items: 2,
            metrics: { acc: { value: 1, ci95: [1, 1], higher_is_better: true } },
            samples: [
              { context: 'c1', choices: ['x', 'y'], answer: 0, pred: 0 },
              { context: 'c2', choices: ['x', 'y'], answer: 1, pred: 1 },
            ],
          },
          {
            name: 'ppl',
            kind: 'perplexity',
            items: 1,
            metrics: { perplexity: { value: 20, ci95: null, higher_is_better: false } },
            samples: [],
          },
        ],
      },
    ],
    comparisons: [],
  };

  it('loads the report list with the token, charts each task with its values, and lists disagreements', async () => {
    const calls: { url: string; auth?: string }[] = [];
    vi.stubGlobal(
      'fetch',
      vi.fn(async (url: string, init?: { headers?: Record<string, string> }) => {
        calls.push({ url, auth: init?.headers?.Authorization });
        const body = url.endsWith('/api/evals')
          ? {
              run_dir: 'r',
              dir: 'r/eval',
              items: [{ name: 'cmp.json', kind: 'compare', suite: 'example' }],
            }
          : report;
        return {
          ok: true,
          status: 200,
          json: async () => body,
          text: async () => JSON.stringify(body),
        };
      }),
    );
    await startApp({ hash: '#evaluate', token: 'tok-9' });
    await flush(50);
    await flush(50);
    expect(calls[0]).toEqual({ url: 'http://test/api/evals', auth: 'Bearer tok-9' });
    expect(calls.some((c) => c.url === 'http://test/api/evals/cmp.json')).toBe(true);
    const chart = screen.getByTestId('eval-chart-qa');
    expect(chart.dataset.metric).toBe('acc');
    expect(JSON.parse(chart.dataset.labels as string)).toEqual(['cmp:early', 'cmp:late']);
    expect(JSON.parse(chart.dataset.values as string)).toEqual([0.5, 1]);
    expect(JSON.parse(chart.dataset.ci as string)).toEqual([
      [0, 1],
      [1, 1],
    ]);
    expect(screen.getByTestId('eval-position-chart')).toBeTruthy();
    expect(screen.getByTestId('eval-calibration-chart')).toBeTruthy();
    const dis = screen.getByTestId('eval-disagreements');
    expect(dis.dataset.rows).toBe('1'); // item 2: early picked x (wrong), late picked y
    expect(dis.dataset.total).toBe('2');
    expect(within(screen.getByTestId('eval-ablation')).getByText('20')).toBeTruthy();
  });
});

describe('Evaluate task charts', () => {
  it('scale the value axis to the intervals, not only the bars', () => {
    // The screenshot's case: accuracy 0 and 0.125, the second with [0, 0.375].
    expect(
      axisRangeWithIntervals(
        [0, 0.125],
        [
          [0, 0],
          [0, 0.375],
        ],
      ),
    ).toEqual({ suggestedMin: 0, suggestedMax: 0.375 });
    expect(axisRangeWithIntervals([30, 20], [null, [null, 25]])).toEqual({
      suggestedMin: 20,
      suggestedMax: 30,
    });
    expect(axisRangeWithIntervals([null], [null])).toEqual({});
  });
});
