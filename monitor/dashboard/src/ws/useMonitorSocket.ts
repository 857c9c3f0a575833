// React hook around MonitorConnection: the connection status as state, a
// stable `send`, and the token handed to the server on (re)connect.

import { useCallback, useEffect, useRef, useState } from 'react';
import type { ClientMessage, ServerMessage } from '../protocol';
import {
  INITIAL_SNAPSHOT,
  MonitorConnection,
  type Backoff,
  type ConnSnapshot,
  type WebSocketFactory,
} from './connection';

export interface UseMonitorSocketOptions {
  url: string;
  token: string | null;
  onMessages: (msgs: ServerMessage[]) => void;
  backoff?: Partial<Backoff>;
  batchMs?: number;
  createSocket?: WebSocketFactory;
}

export interface MonitorSocket extends ConnSnapshot {
  send: (msg: ClientMessage) => boolean;
  reconnectNow: () => void;
}

export function useMonitorSocket(opts: UseMonitorSocketOptions): MonitorSocket {
  const [snap, setSnap] = useState<ConnSnapshot>(INITIAL_SNAPSHOT);
  const conn = useRef<MonitorConnection | null>(null);
  const onMessages = useRef(opts.onMessages);
  onMessages.current = opts.onMessages;
  const token = useRef(opts.token);
  token.current = opts.token;

  // One connection per URL (and socket factory); a token change reconnects it.
  useEffect(() => {
    const c = new MonitorConnection({
      url: opts.url,
      token: token.current,
      onMessages: (m) => onMessages.current(m),
      onChange: setSnap,
      backoff: opts.backoff,
      batchMs: opts.batchMs,
      createSocket: opts.createSocket,
    });
    conn.current = c;
    c.start();
    return () => {
      c.stop();
      if (conn.current === c) conn.current = null;
    };
    // backoff and batchMs are read once per connection on purpose.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [opts.url, opts.createSocket]);

  useEffect(() => {
    conn.current?.setToken(opts.token);
  }, [opts.token]);

  const send = useCallback((msg: ClientMessage) => conn.current?.send(msg) ?? false, []);
  const reconnectNow = useCallback(() => conn.current?.reconnectNow(), []);
  return { ...snap, send, reconnectNow };
}
