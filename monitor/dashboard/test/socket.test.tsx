// The WebSocket hook and the connection under it: hello with the token,
// batching, reconnection with growing backoff that resets after a welcome,
// token changes, and a clean stop on unmount.

import { act, renderHook } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ServerMessage } from '../src/protocol';
import { backoffDelay, DEFAULT_BACKOFF } from '../src/ws/connection';
import { useMonitorSocket } from '../src/ws/useMonitorSocket';
import { mockFactory, welcome } from './mockSocket';

const backoff = { initialMs: 100, maxMs: 1000, factor: 2, jitter: 0 };

describe('backoffDelay', () => {
  it('doubles up to the cap and adds bounded jitter', () => {
    const b = { initialMs: 500, maxMs: 15000, factor: 2, jitter: 0 };
    expect([1, 2, 3, 4, 5, 6, 7].map((a) => backoffDelay(a, b, () => 0))).toEqual([
      500, 1000, 2000, 4000, 8000, 15000, 15000,
    ]);
    const withJitter = backoffDelay(3, DEFAULT_BACKOFF, () => 1);
    expect(withJitter).toBeGreaterThan(2000);
    expect(withJitter).toBeLessThanOrEqual(2000 * (1 + DEFAULT_BACKOFF.jitter));
  });
});

describe('useMonitorSocket', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  function setup(token: string | null = 'tok') {
    const mock = mockFactory();
    const received: ServerMessage[][] = [];
    const hook = renderHook(
      (p: { token: string | null }) =>
        useMonitorSocket({
          url: 'ws://x/ws',
          token: p.token,
          onMessages: (m) => received.push(m),
          backoff,
          batchMs: 50,
          createSocket: mock.factory,
        }),
      { initialProps: { token } },
    );
    return { mock, received, hook };
  }

  it('says hello with the token and becomes open on welcome', () => {
    const { mock, hook } = setup('secret');
    expect(hook.result.current.status).toBe('connecting');
    expect(mock.sockets).toHaveLength(1);
    expect(mock.latest().url).toBe('ws://x/ws');
    act(() => mock.latest().open());
    expect(mock.latest().sent).toEqual([
      { v: 1, type: 'hello', role: 'viewer', client: 'shardlm-dashboard', token: 'secret' },
    ]);
    expect(hook.result.current.status).toBe('connecting'); // open socket, no welcome yet
    act(() => mock.latest().receive(welcome(true)));
    expect(hook.result.current.status).toBe('open');
    expect(hook.result.current.welcome?.control).toBe(true);
  });

  it('delivers frames in batches and ignores what it cannot parse', () => {
    const { mock, received } = setup();
    act(() => {
      mock.latest().open();
      mock.latest().receive(welcome());
      mock.latest().receive('not json');
      mock.latest().receive({ v: 1, type: 'heartbeat', ts: 2, rank: 0 });
      mock.latest().receive({ v: 1, type: 'from_the_future', ts: 2 });
      mock.latest().receive({ v: 1, type: 'heartbeat', ts: 3, rank: 1 });
    });
    expect(received).toHaveLength(0); // not yet: batched
    act(() => vi.advanceTimersByTime(60));
    expect(received).toHaveLength(1);
    expect(received[0].map((m) => m.type)).toEqual(['welcome', 'heartbeat', 'heartbeat']);
  });

  it('send works only once welcomed', () => {
    const { mock, hook } = setup();
    const msg = { v: 1 as const, type: 'list_checkpoints' as const, id: 'q' };
    expect(hook.result.current.send(msg)).toBe(false);
    act(() => mock.latest().open());
    expect(hook.result.current.send(msg)).toBe(false);
    act(() => mock.latest().receive(welcome()));
    expect(hook.result.current.send(msg)).toBe(true);
    expect(mock.latest().sent).toContainEqual(msg);
  });

  it('reconnects with growing backoff, shows it, and resets after a welcome', () => {
    const { mock, hook } = setup();
    act(() => mock.latest().drop(1006));
    expect(hook.result.current.status).toBe('reconnecting');
    expect(hook.result.current.attempt).toBe(1);
    expect(hook.result.current.lastError).toMatch(/1006/);
    expect(hook.result.current.retryAt).not.toBeNull();

    act(() => vi.advanceTimersByTime(99));
    expect(mock.sockets).toHaveLength(1);
    act(() => vi.advanceTimersByTime(1));
    expect(mock.sockets).toHaveLength(2); // after 100 ms
    expect(hook.result.current.status).toBe('connecting');

    act(() => mock.latest().drop());
    expect(hook.result.current.attempt).toBe(2);
    act(() => vi.advanceTimersByTime(199));
    expect(mock.sockets).toHaveLength(2);
    act(() => vi.advanceTimersByTime(1));
    expect(mock.sockets).toHaveLength(3); // after 200 ms

    // A server that accepts and drops at once keeps the backoff growing...
    act(() => {
      mock.latest().open();
      mock.latest().drop();
    });
    expect(hook.result.current.attempt).toBe(3);
    act(() => vi.advanceTimersByTime(400));
    expect(mock.sockets).toHaveLength(4);
    // ...a welcome resets it.
    act(() => {
      mock.latest().open();
      mock.latest().receive(welcome());
    });
    expect(hook.result.current.attempt).toBe(0);
    act(() => mock.latest().drop());
    act(() => vi.advanceTimersByTime(100));
    expect(mock.sockets).toHaveLength(5);
  });

  it('caps the delay', () => {
    const { mock } = setup();
    for (let i = 0; i < 8; i++) {
      act(() => mock.latest().drop());
      act(() => vi.advanceTimersByTime(1000));
    }
    expect(mock.sockets).toHaveLength(9);
  });

  it('reconnects at once with a new token', () => {
    const { mock, hook } = setup(null);
    act(() => {
      mock.latest().open();
      mock.latest().receive(welcome(false));
    });
    expect(mock.latest().sent[0]).not.toHaveProperty('token');
    hook.rerender({ token: 'new' });
    expect(mock.sockets).toHaveLength(2);
    expect(mock.sockets[0].closedByClient).toBe(true);
    act(() => mock.latest().open());
    expect(mock.latest().sent[0]).toMatchObject({ type: 'hello', token: 'new' });
  });

  it('closes on unmount and does not reconnect', () => {
    const { mock, hook } = setup();
    act(() => {
      mock.latest().open();
      mock.latest().receive(welcome());
    });
    hook.unmount();
    expect(mock.latest().closedByClient).toBe(true);
    act(() => vi.advanceTimersByTime(10000));
    expect(mock.sockets).toHaveLength(1);
  });

  it('flushes what arrived before a drop', () => {
    const { mock, received } = setup();
    act(() => {
      mock.latest().open();
      mock.latest().receive(welcome());
      mock.latest().drop();
    });
    expect(received.flat().map((m) => m.type)).toEqual(['welcome']);
  });
});
