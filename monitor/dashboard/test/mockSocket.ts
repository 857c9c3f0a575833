// A scripted WebSocket for the hook and component tests: the test opens,
// feeds and closes it by hand and reads what the page sent.

import type { WebSocketFactory, WebSocketLike } from '../src/ws/connection';

export class MockSocket implements WebSocketLike {
  readyState = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  sent: unknown[] = [];
  closedByClient = false;
  constructor(public url: string) {}

  send(data: string): void {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    this.sent.push(JSON.parse(data));
  }
  close(): void {
    this.closedByClient = true;
    this.readyState = 3;
  }

  // ---- driven by the test ----
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  receive(msg: unknown): void {
    this.onmessage?.({ data: typeof msg === 'string' ? msg : JSON.stringify(msg) });
  }
  drop(code = 1006, reason = ''): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

/** A factory that records every socket it made. */
export function mockFactory(): {
  factory: WebSocketFactory;
  sockets: MockSocket[];
  latest: () => MockSocket;
} {
  const sockets: MockSocket[] = [];
  return {
    sockets,
    factory: (url: string) => {
      const s = new MockSocket(url);
      sockets.push(s);
      return s;
    },
    latest: () => sockets[sockets.length - 1],
  };
}

export const welcome = (control = true, extra: Record<string, unknown> = {}) => ({
  v: 1,
  type: 'welcome',
  ts: 1,
  role: 'viewer',
  control,
  protocol: 1,
  server: 'mock',
  history: 0,
  session: 1,
  run_dir: 'runs/mock',
  can_launch: true,
  ...extra,
});
