// What every panel needs, passed down once: the training state, the socket and
// the two kinds of requests a viewer makes (control commands, inspections).

import {
  createContext,
  useCallback,
  useContext,
  useMemo,
  useReducer,
  useRef,
  type ReactNode,
} from 'react';
import {
  control,
  inspect,
  listCheckpoints,
  type ClientMessage,
  type CommandArgs,
  type CommandName,
  type InspectWhat,
  type ServerMessage,
} from './protocol';
import {
  initialState,
  reduce,
  type Action,
  type RateRequestKind,
  type TrainState,
} from './state/reducer';
import { useMonitorSocket, type MonitorSocket } from './ws/useMonitorSocket';
import type { WebSocketFactory } from './ws/connection';

export interface Run {
  /** The aggregator's WebSocket address (ws://HOST:PORT/ws). */
  url: string;
  state: TrainState;
  dispatch: (a: Action) => void;
  socket: MonitorSocket;
  token: string | null;
  setToken: (t: string | null) => void;
  /** Sends a control command; returns its id, or null when not connected. */
  command: <C extends CommandName>(command: C, args?: CommandArgs[C]) => string | null;
  /** Sends an inspection request; returns its id, or null when not connected. */
  requestInspect: (
    what: InspectWhat,
    args?: Record<string, unknown>,
    timeoutMs?: number,
  ) => string | null;
  refreshCheckpoints: () => void;
  /** Sends a Rate-tab request built with `id`; returns the id, or null when not connected. */
  rateRequest: (kind: RateRequestKind, build: (id: string) => ClientMessage) => string | null;
}

const RunContext = createContext<Run | null>(null);

export function useRun(): Run {
  const r = useContext(RunContext);
  if (!r) throw new Error('useRun outside <RunProvider>');
  return r;
}

/** How long an inspection may take before the view says it is not available. */
export const INSPECT_TIMEOUT_MS = 20000;

let counter = 0;
export function newId(prefix: string): string {
  counter += 1;
  return `${prefix}-${Date.now().toString(36)}-${counter}`;
}

export interface RunProviderProps {
  url: string;
  token: string | null;
  setToken: (t: string | null) => void;
  createSocket?: WebSocketFactory;
  children: ReactNode;
}

export function RunProvider({ url, token, setToken, createSocket, children }: RunProviderProps) {
  const [state, dispatch] = useReducer(reduce, undefined, initialState);
  const onMessages = useCallback(
    (messages: ServerMessage[]) => dispatch({ type: 'messages', messages }),
    [],
  );
  const socket = useMonitorSocket({ url, token, onMessages, createSocket });
  const sendRef = useRef(socket.send);
  sendRef.current = socket.send;

  const command = useCallback(<C extends CommandName>(name: C, args?: CommandArgs[C]) => {
    const id = newId('c');
    const msg = control(id, name, args);
    if (!sendRef.current(msg)) return null;
    dispatch({ type: 'command_sent', id, command: name, args: msg.args, at: Date.now() / 1000 });
    return id;
  }, []);

  const requestInspect = useCallback(
    (what: InspectWhat, args?: Record<string, unknown>, timeoutMs = INSPECT_TIMEOUT_MS) => {
      const id = newId('i');
      if (!sendRef.current(inspect(id, what, args))) return null;
      dispatch({ type: 'inspect_sent', id, what, args, at: Date.now() / 1000 });
      setTimeout(
        () =>
          dispatch({
            type: 'inspect_timeout',
            id,
            message: `No answer within ${timeoutMs / 1000} s: the training run does not serve model inspection (yet).`,
          }),
        timeoutMs,
      );
      return id;
    },
    [],
  );

  const rateRequest = useCallback((kind: RateRequestKind, build: (id: string) => ClientMessage) => {
    const id = newId('r');
    if (!sendRef.current(build(id))) return null;
    dispatch({ type: 'rate_sent', id, kind });
    return id;
  }, []);

  const refreshCheckpoints = useCallback(() => {
    sendRef.current(listCheckpoints(newId('q')));
  }, []);

  // `?bench`: e2e/bench_charts.mjs feeds synthetic messages and times the page.
  if (typeof window !== 'undefined' && new URLSearchParams(window.location.search).has('bench')) {
    (window as unknown as { __shardlm?: unknown }).__shardlm = { dispatch, version: state.version };
  }

  const value = useMemo<Run>(
    () => ({
      url,
      state,
      dispatch,
      socket,
      token,
      setToken,
      command,
      requestInspect,
      refreshCheckpoints,
      rateRequest,
    }),
    [url, state, socket, token, setToken, command, requestInspect, refreshCheckpoints, rateRequest],
  );
  return <RunContext.Provider value={value}>{children}</RunContext.Provider>;
}
