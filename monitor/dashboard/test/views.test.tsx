// The page against a scripted aggregator (a mock WebSocket): connection
// status, controls with their acknowledgements, the token, and the Model tab
// with answers, refusals, malformed answers and silence.

import { act, cleanup, fireEvent, render, screen, within } from '@testing-library/react';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { App } from '../src/App';
import { setupCharts } from '../src/charts/setup';
import { INSPECT_TIMEOUT_MS } from '../src/context';
import { asInspectData } from '../src/inspect';
import { TOKEN_KEY } from '../src/lib/token';
import type { InspectWhat } from '../src/protocol';
import { DATA, ARGS } from './fixtures/inspect';
import { FULL } from './fixtures/messages';
import { mockFactory, welcome, type MockSocket } from './mockSocket';
import { explain, makeValidator } from './schema';

// jsdom has no canvas: the charts are stand-ins here (the browser test draws the real ones).
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
  window.location.hash = '';
});
afterEach(() => {
  cleanup();
  vi.useRealTimers();
});

async function flush(ms = 150) {
  await act(async () => {
    await vi.advanceTimersByTimeAsync(ms);
  });
}

async function startApp(opts: { token?: string; control?: boolean; hash?: string } = {}) {
  vi.useFakeTimers();
  if (opts.token) sessionStorage.setItem(TOKEN_KEY, opts.token);
  if (opts.hash) window.location.hash = opts.hash;
  const mock = mockFactory();
  render(<App url="ws://test/ws" createSocket={mock.factory} />);
  const ws = mock.latest();
  act(() => ws.open());
  act(() => ws.receive(welcome(opts.control ?? true, { history: 0 })));
  await flush();
  return { mock, ws };
}

const sentOfType = (ws: MockSocket, type: string) =>
  (ws.sent as { type: string }[]).filter((m) => m.type === type) as Record<string, unknown>[];

const step = (rank: number, s: number, seq: number, lr = 3e-4) => ({
  v: 1,
  type: 'step',
  ts: 1000 + s,
  seq,
  rank,
  step: s,
  loss: 3,
  lr,
  time: { total: 0.1 },
  hparams: { lr, paused: false, micro_batch: 8, accumulation: 4 },
});

describe('connection and token', () => {
  it('shows the connection status and the hello carries the stored token', async () => {
    const { ws } = await startApp({ token: 'tok-1' });
    expect(ws.sent[0]).toMatchObject({ type: 'hello', role: 'viewer', token: 'tok-1' });
    expect(screen.getByTestId('connection-status').dataset.status).toBe('open');
    expect(screen.getByTestId('token-status').dataset.control).toBe('yes');
    act(() => ws.drop(1006));
    expect(screen.getByTestId('connection-status').dataset.status).toBe('reconnecting');
    expect(screen.getByTestId('connection-status').textContent).toMatch(/retry in/);
  });

  it('keeps a typed token for the session and reconnects with it', async () => {
    const { mock } = await startApp({ control: false });
    expect(screen.getByTestId('token-status').textContent).toMatch(/read-only/);
    fireEvent.click(screen.getByTestId('token-status'));
    fireEvent.change(screen.getByTestId('token-input'), { target: { value: ' s3cret ' } });
    fireEvent.submit(screen.getByTestId('token-input').closest('form') as HTMLFormElement);
    expect(sessionStorage.getItem(TOKEN_KEY)).toBe('s3cret');
    expect(mock.sockets).toHaveLength(2);
    act(() => mock.latest().open());
    expect(mock.latest().sent[0]).toMatchObject({ type: 'hello', token: 's3cret' });
  });

  it('disables controls for a read-only viewer', async () => {
    const { ws } = await startApp({ control: false, hash: 'control' });
    act(() => ws.receive(step(0, 1, 0)));
    await flush();
    expect(screen.getByTestId('control-locked').textContent).toMatch(/token/);
    expect((screen.getByTestId('ctl-pause') as HTMLButtonElement).disabled).toBe(true);
    expect((screen.getByTestId('btn-pause') as HTMLButtonElement).disabled).toBe(true);
  });
});

describe('controls show their acknowledgement', () => {
  it('pause: sent, forwarded, then the step it took effect at', async () => {
    const { ws } = await startApp({ token: 't' });
    act(() => ws.receive(step(0, 41, 0)));
    await flush();
    fireEvent.click(screen.getByTestId('btn-pause'));
    const [ctl] = sentOfType(ws, 'control');
    expect(ctl).toMatchObject({ v: 1, type: 'control', command: 'pause' });
    act(() =>
      ws.receive({
        v: 1,
        type: 'command_status',
        ts: 2,
        id: ctl.id,
        command: 'pause',
        status: 'forwarded',
      }),
    );
    act(() =>
      ws.receive({
        v: 1,
        type: 'ack',
        ts: 3,
        seq: 1,
        rank: 0,
        id: ctl.id,
        command: 'pause',
        step: 41,
        ok: true,
      }),
    );
    await flush();
    expect(screen.getByTestId('run-phase').textContent).toBe('paused');
    const ack = screen.getByTestId('ack-pause');
    expect(ack.dataset.phase).toBe('acked');
    expect(ack.dataset.step).toBe('41');
    expect(screen.getByTestId('btn-resume')).toBeTruthy();
  });

  it('set_lr from the Control tab, with a refusal shown as such', async () => {
    const { ws } = await startApp({ token: 't', hash: 'control' });
    act(() => ws.receive(step(0, 10, 0)));
    await flush();
    fireEvent.change(screen.getByTestId('input-lr'), { target: { value: '1e-4' } });
    fireEvent.click(screen.getByTestId('apply-lr'));
    const [ctl] = sentOfType(ws, 'control');
    expect(ctl).toMatchObject({ command: 'set_lr', args: { lr: 1e-4 } });
    act(() =>
      ws.receive({
        v: 1,
        type: 'ack',
        ts: 3,
        seq: 1,
        rank: 0,
        id: ctl.id,
        command: 'set_lr',
        step: 11,
        ok: true,
      }),
    );
    await flush();
    const card = screen.getByTestId('card-hparams');
    expect(within(card).getByTestId('ack-set_lr').textContent).toMatch(/took effect at step 11/);

    fireEvent.change(screen.getByTestId('input-micro'), { target: { value: '7' } });
    fireEvent.change(screen.getByTestId('input-accum'), { target: { value: '1' } });
    fireEvent.click(screen.getByTestId('apply-batch'));
    const batch = sentOfType(ws, 'control')[1];
    expect(batch).toMatchObject({
      command: 'set_batch',
      args: { micro_batch: 7, accumulation: 1 },
    });
    act(() =>
      ws.receive({
        v: 1,
        type: 'ack',
        ts: 4,
        seq: 2,
        rank: 0,
        id: batch.id,
        command: 'set_batch',
        step: 12,
        ok: false,
        message: '7 does not divide 32',
      }),
    );
    await flush();
    expect(screen.getByTestId('ack-set_batch').textContent).toMatch(
      /rejected at step 12: 7 does not divide 32/,
    );
  });

  it('an invalid number cannot be applied', async () => {
    const { ws } = await startApp({ token: 't', hash: 'control' });
    act(() => ws.receive(step(0, 10, 0)));
    await flush();
    fireEvent.change(screen.getByTestId('input-lr'), { target: { value: '1e-' } });
    expect((screen.getByTestId('apply-lr') as HTMLButtonElement).disabled).toBe(true);
    fireEvent.change(screen.getByTestId('input-lr'), { target: { value: '-1' } });
    expect((screen.getByTestId('apply-lr') as HTMLButtonElement).disabled).toBe(true);
  });

  it('lists checkpoints and resumes from one with the config', async () => {
    const { ws } = await startApp({ token: 't', hash: 'control' });
    expect(sentOfType(ws, 'list_checkpoints').length).toBeGreaterThan(0);
    act(() =>
      ws.receive({
        v: 1,
        type: 'checkpoints',
        ts: 1,
        run_dir: 'runs/a',
        items: [
          {
            name: 'step-250',
            path: 'runs/a/checkpoints/step-250',
            step: 250,
            mtime: 1,
            manifest: null,
          },
        ],
      }),
    );
    await flush();
    fireEvent.change(screen.getByTestId('input-config'), {
      target: { value: 'configs/tiny.toml' },
    });
    fireEvent.click(within(screen.getByTestId('checkpoint-table')).getByText('Resume from'));
    expect(sentOfType(ws, 'control')[0]).toMatchObject({
      command: 'resume_from',
      args: { checkpoint: 'step-250', config: 'configs/tiny.toml' },
    });
  });
});

describe('the Run tab', () => {
  it("shows the values of the trainer's run_info (not dashes)", async () => {
    const { ws } = await startApp({ hash: '#run' });
    act(() => ws.receive(FULL.run_info));
    await flush();
    const value = (id: string) =>
      within(screen.getByTestId(id)).getByText(
        (_, el) => el?.classList.contains('stat-value') ?? false,
      ).textContent;
    const info = FULL.run_info.info;
    expect(value('info-layers')).toBe(String(info.model?.n_layer));
    expect(value('info-heads')).toBe(String(info.model?.n_head));
    expect(value('info-width')).toBe(String(info.model?.d_model));
    expect(value('info-vocab')).toBe('4,096');
    expect(value('info-context')).toBe(String(info.model?.context_length));
    expect(value('info-max-steps')).toBe('5,000');
    expect(value('info-params')).toBe('10.5M');
    expect(value('info-device')).toBe('cpu');
    expect(value('info-batch')).toBe('8 × 4');
    // The header's progress reads the configured steps too.
    expect(screen.getByTestId('step-counter').parentElement?.textContent).toContain('/ 5,000');
  });
});

describe('ranks and devices', () => {
  it('shows dead-rank and straggler warnings above every tab', async () => {
    const { ws } = await startApp({ hash: 'training' });
    act(() =>
      ws.receive({
        v: 1,
        type: 'ranks',
        ts: 5,
        seq: 0,
        world_size: 3,
        ranks: [
          { rank: 0, state: 'alive', last_seen_s: 0.1, step_time: 0.3, straggler: false },
          { rank: 1, state: 'alive', last_seen_s: 0.1, step_time: 0.6, straggler: true },
          { rank: 2, state: 'dead', last_seen_s: 14, step: 90, straggler: false },
        ],
      }),
    );
    await flush();
    expect(screen.getByTestId('warning-dead').textContent).toMatch(
      /Rank 2 is not responding.*14\.0 s.*step 90/,
    );
    expect(screen.getByTestId('warning-straggler').textContent).toMatch(/Rank 1 is a straggler/);
    fireEvent.click(screen.getByTestId('tab-control'));
    expect(screen.getByTestId('warning-dead')).toBeTruthy();
  });

  it('shows GPU utilisation and device memory when ranks report NVML, host memory otherwise', async () => {
    const { ws } = await startApp({ hash: 'system' });
    act(() => ws.receive({ ...step(0, 1, 0), mem: { host_rss: 1e9, host_total: 8e9 } }));
    await flush();
    expect(screen.getByTestId('card-util').textContent).toMatch(/Host memory/);
    act(() =>
      ws.receive({
        ...step(0, 2, 1),
        mem: { host_rss: 1e9, device_allocated: 2e10 },
        gpu: { index: 0, util: 97, temp_c: 66, power_w: 300, mem_used: 3e10, mem_total: 8e10 },
      }),
    );
    await flush();
    expect(screen.getByTestId('card-util').textContent).toMatch(/GPU utilisation/);
    const row = within(screen.getByTestId('ranks-table')).getAllByRole('row')[1];
    expect(row.textContent).toMatch(/97% · 66°C · 300 W/);
    expect(row.textContent).toMatch(/27\.9 GiB \/ 74\.5 GiB/);
  });

  it('shows the model states on the device, their peak and what offload keeps on the host', async () => {
    const { ws } = await startApp({ hash: 'system' });
    act(() => ws.receive({ ...step(0, 1, 0) }));
    await flush();
    expect(screen.getByTestId('model-states-0').textContent).toBe('—');
    act(() =>
      ws.receive({
        ...step(0, 2, 1),
        extra: {
          model_state_bytes: 0,
          model_state_peak_bytes: 21 * 1048576,
          offloaded_bytes: 64 * 1048576,
        },
      }),
    );
    await flush();
    expect(screen.getByTestId('model-states-0').textContent).toMatch(
      /^0 B device \(peak 21(\.0)? MiB\) · 64(\.0)? MiB host$/,
    );
  });
});

describe('model inspection', () => {
  const cases: [InspectWhat, string][] = [
    ['attention', 'attention-result'],
    ['embeddings', 'embeddings-result'],
    ['activations', 'activations-result'],
    ['architecture', 'architecture-result'],
  ];

  async function openInspect(what: InspectWhat) {
    const started = await startApp({ hash: 'model' });
    fireEvent.click(screen.getByTestId(`inspect-tabs-${what}`));
    await flush(0);
    const req = sentOfType(started.ws, 'inspect')
      .filter((m) => m.what === what)
      .pop();
    expect(req, `the ${what} view asks on its first visit`).toBeDefined();
    return { ...started, req: req as { id: string } };
  }

  it.each(cases)('%s: draws a valid answer', async (what, testId) => {
    const { ws, req } = await openInspect(what);
    act(() =>
      ws.receive({
        v: 1,
        type: 'inspect_result',
        ts: 1,
        rank: 0,
        id: req.id,
        what,
        ok: true,
        data: DATA[what],
      }),
    );
    await flush();
    expect(screen.getByTestId(testId)).toBeTruthy();
    expect(screen.queryByTestId('inspect-unavailable')).toBeNull();
  });

  it.each(cases)('%s: "not available" when the trainer says so', async (what) => {
    const { ws, req } = await openInspect(what);
    act(() =>
      ws.receive({
        v: 1,
        type: 'inspect_result',
        ts: 1,
        rank: 0,
        id: req.id,
        what,
        ok: false,
        message: 'inspection is not wired up',
      }),
    );
    await flush();
    expect(screen.getByTestId('inspect-unavailable').textContent).toMatch(
      /Not available.*inspection is not wired up/,
    );
  });

  it.each(cases)('%s: "not available" when no rank is connected', async (what) => {
    const { ws, req } = await openInspect(what);
    act(() =>
      ws.receive({
        v: 1,
        type: 'error',
        ts: 1,
        code: 'no_producer',
        message: 'no rank 0',
        ref: req.id,
      }),
    );
    await flush();
    expect(screen.getByTestId('inspect-unavailable').textContent).toMatch(
      /No training rank is connected/,
    );
  });

  it.each(cases)('%s: a malformed answer does not break the page', async (what) => {
    const { ws, req } = await openInspect(what);
    act(() =>
      ws.receive({
        v: 1,
        type: 'inspect_result',
        ts: 1,
        rank: 0,
        id: req.id,
        what,
        ok: true,
        data: { weights: 'nope', root: 5, layers: 3, points: {} },
      }),
    );
    await flush();
    expect(screen.getByTestId('inspect-unavailable').textContent).toMatch(/can draw/);
  });

  it('says "not available" after silence, and Retry asks again', async () => {
    const { ws } = await openInspect('architecture');
    await flush(INSPECT_TIMEOUT_MS + 10);
    expect(screen.getByTestId('inspect-unavailable').textContent).toMatch(/No answer within/);
    const before = sentOfType(ws, 'inspect').length;
    fireEvent.click(within(screen.getByTestId('inspect-unavailable')).getByText('Retry'));
    expect(sentOfType(ws, 'inspect').length).toBe(before + 1);
    expect(screen.getByTestId('inspect-pending')).toBeTruthy();
  });

  it('embeddings: search highlights tokens', async () => {
    const { ws, req } = await openInspect('embeddings');
    act(() =>
      ws.receive({
        v: 1,
        type: 'inspect_result',
        ts: 1,
        rank: 0,
        id: req.id,
        what: 'embeddings',
        ok: true,
        data: DATA.embeddings,
      }),
    );
    await flush();
    fireEvent.change(screen.getByTestId('embeddings-search'), { target: { value: 'the' } });
    const list = screen.getByTestId('embeddings-matches');
    expect(within(list).getAllByRole('listitem')).toHaveLength(2);
  });
});

describe('inspection payloads against monitor/inspect.schema.json', () => {
  const V = makeValidator('inspect');
  it.each(Object.keys(DATA) as InspectWhat[])('%s fixture and its args are valid', (what) => {
    expect(V.def(what)(DATA[what]), explain(V.def(what).errors)).toBe(true);
    expect(V.def(`${what}_args`)(ARGS[what]), explain(V.def(`${what}_args`).errors)).toBe(true);
    expect(asInspectData(what, DATA[what])).not.toBeNull();
  });
  it('rejects wrong shapes (schema and run-time check agree)', () => {
    const bad = { ...DATA.attention, weights: [[[1, 0]]] };
    expect(V.def('attention')({ ...DATA.attention, extra: 1 })).toBe(false);
    expect(asInspectData('attention', bad)).toBeNull();
    expect(asInspectData('embeddings', { ...DATA.embeddings, points: [[0, 0]] })).toBeNull();
    expect(
      asInspectData('activations', {
        layers: [{ name: 'x', mean: 0, histogram: { edges: [0, 1], counts: [1, 2] } }],
      }),
    ).toBeNull();
    expect(
      asInspectData('architecture', {
        root: { name: 'x', type: 'y', params: 1, children: [{ name: 'z' }] },
      }),
    ).toBeNull();
  });
});
