// The control token: entered once, kept for the browser session.
//
// `shardlm monitor` prints a link with `?token=…`; the token is moved from the
// URL into sessionStorage at once (so it does not stay in the address bar or the
// history), and a token typed into the page goes there too. Closing the tab
// forgets it.

import { useCallback, useState } from 'react';

export const TOKEN_KEY = 'shardlm.monitor.token';

export function storage(): Storage | null {
  try {
    return window.sessionStorage;
  } catch {
    return null; // storage disabled: the token lives in memory only
  }
}

/** Reads the token once at start-up: `?token=` wins over sessionStorage. */
export function initialToken(): string | null {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get('token');
  if (fromUrl) {
    storage()?.setItem(TOKEN_KEY, fromUrl);
    url.searchParams.delete('token');
    window.history.replaceState(window.history.state, '', url.pathname + url.search + url.hash);
    return fromUrl;
  }
  return storage()?.getItem(TOKEN_KEY) ?? null;
}

export function useSessionToken(): [string | null, (t: string | null) => void] {
  const [token, setTokenState] = useState<string | null>(initialToken);
  const setToken = useCallback((t: string | null) => {
    const v = t && t.trim() ? t.trim() : null;
    if (v) storage()?.setItem(TOKEN_KEY, v);
    else storage()?.removeItem(TOKEN_KEY);
    setTokenState(v);
  }, []);
  return [token, setToken];
}

/** ws://host/ws of the page's own server, or `?ws=` for a dashboard served elsewhere. */
export function monitorUrl(): string {
  const url = new URL(window.location.href);
  const explicit = url.searchParams.get('ws');
  if (explicit) return explicit;
  const proto = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${url.host}/ws`;
}
