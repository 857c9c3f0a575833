// One viewer connection to the aggregator, with reconnection and backoff.
//
// Kept free of React so its timing can be tested with a mock WebSocket and fake
// timers; useMonitorSocket wraps it for components. Incoming frames are parsed
// and delivered in batches (one React update per `batchMs`, not one per frame:
// a late viewer receives the whole history at once). Backoff doubles from
// `initialMs` to `maxMs` with jitter and restarts only after a `welcome`, so a
// server that accepts and at once drops connections is not hammered.

import {
  hello,
  parseServerMessage,
  type ClientMessage,
  type ServerMessage,
  type Welcome,
} from '../protocol';

export type ConnStatus = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface ConnSnapshot {
  status: ConnStatus;
  /** Failed attempts since the last welcome. */
  attempt: number;
  /** When the next attempt starts (ms since the epoch), while reconnecting. */
  retryAt: number | null;
  welcome: Welcome | null;
  lastError: string | null;
  /** Frames received in this connection (diagnostics). */
  received: number;
}

export interface Backoff {
  initialMs: number;
  maxMs: number;
  factor: number;
  /** Fraction of random extra delay, 0..1. */
  jitter: number;
}

export const INITIAL_SNAPSHOT: ConnSnapshot = {
  status: 'connecting',
  attempt: 0,
  retryAt: null,
  welcome: null,
  lastError: null,
  received: 0,
};

export const DEFAULT_BACKOFF: Backoff = { initialMs: 500, maxMs: 15000, factor: 2, jitter: 0.2 };

/** The part of the browser's WebSocket this class uses (a mock implements it in tests). */
export interface WebSocketLike {
  readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketFactory = (url: string) => WebSocketLike;

export interface ConnectionOptions {
  url: string;
  token: string | null;
  onMessages: (msgs: ServerMessage[]) => void;
  onChange: (snap: ConnSnapshot) => void;
  backoff?: Partial<Backoff>;
  batchMs?: number;
  createSocket?: WebSocketFactory;
  random?: () => number;
}

const OPEN = 1;

export function backoffDelay(attempt: number, b: Backoff, random: () => number): number {
  const base = Math.min(b.maxMs, b.initialMs * Math.pow(b.factor, Math.max(0, attempt - 1)));
  return Math.round(base * (1 + b.jitter * random()));
}

export class MonitorConnection {
  private readonly opts: ConnectionOptions;
  private readonly backoff: Backoff;
  private ws: WebSocketLike | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private flushTimer: ReturnType<typeof setTimeout> | null = null;
  private queue: ServerMessage[] = [];
  private stopped = false;
  private token: string | null;
  private snap: ConnSnapshot = INITIAL_SNAPSHOT;

  constructor(opts: ConnectionOptions) {
    this.opts = opts;
    this.token = opts.token;
    this.backoff = { ...DEFAULT_BACKOFF, ...opts.backoff };
  }

  get snapshot(): ConnSnapshot {
    return this.snap;
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  /** Closes for good (component unmounted). */
  stop(): void {
    this.stopped = true;
    this.clearTimers();
    this.flush();
    this.detach('viewer closed');
    this.update({ status: 'closed', retryAt: null });
  }

  /** Reconnects at once with another token (the server decides control rights in hello). */
  setToken(token: string | null): void {
    if (token === this.token) return;
    this.token = token;
    this.reconnectNow();
  }

  reconnectNow(): void {
    if (this.stopped) return;
    this.clearTimers();
    this.detach('reconnect');
    this.connect();
  }

  /** Sends one message; false when not connected (the caller shows it). */
  send(msg: ClientMessage): boolean {
    if (!this.ws || this.ws.readyState !== OPEN || this.snap.welcome === null) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  // ---- internals ------------------------------------------------------------------

  private update(patch: Partial<ConnSnapshot>): void {
    this.snap = { ...this.snap, ...patch };
    this.opts.onChange(this.snap);
  }

  /** Closes the current socket without hearing from it again. */
  private detach(reason: string): void {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      ws.close(1000, reason);
    }
  }

  private clearTimers(): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  private connect(): void {
    this.update({ status: 'connecting', retryAt: null, welcome: null, received: 0 });
    let ws: WebSocketLike;
    try {
      ws = (
        this.opts.createSocket ?? ((u: string) => new WebSocket(u) as unknown as WebSocketLike)
      )(this.opts.url);
    } catch (e) {
      this.scheduleRetry(`cannot open ${this.opts.url}: ${String(e)}`);
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify(hello(this.token)));
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return;
      const msg = parseServerMessage(ev.data);
      this.snap.received += 1;
      if (!msg) return;
      if (msg.type === 'welcome') {
        this.update({ status: 'open', attempt: 0, welcome: msg, lastError: null });
      }
      this.queue.push(msg);
      if (this.flushTimer === null) {
        this.flushTimer = setTimeout(() => this.flush(), this.opts.batchMs ?? 100);
      }
    };
    ws.onerror = () => {
      // The close event follows and carries the details browsers expose.
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.flush();
      const why = ev.reason ? `${ev.code} ${ev.reason}` : `code ${ev.code}`;
      this.scheduleRetry(`connection closed (${why})`);
    };
  }

  private scheduleRetry(error: string): void {
    if (this.stopped) return;
    const attempt = this.snap.attempt + 1;
    const delay = backoffDelay(attempt, this.backoff, this.opts.random ?? Math.random);
    this.update({
      status: 'reconnecting',
      attempt,
      retryAt: Date.now() + delay,
      welcome: null,
      lastError: error,
    });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  private flush(): void {
    if (this.flushTimer !== null) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    this.opts.onMessages(batch);
  }
}
