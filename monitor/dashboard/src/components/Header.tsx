// The bar at the top: run identity and progress, the connection status, the
// control token and the quick pause/resume button.

import { useState } from 'react';
import { useRun } from '../context';
import { fmtAgo, fmtNum, fmtSeconds, fmtSi } from '../lib/format';
import { latestCommand, rankWarnings } from '../state/reducer';
import { last } from '../state/series';
import { Badge, useNow, type Tone } from './ui';
import { CommandAck } from './CommandAck';

const PHASE_TONE: Record<string, Tone> = {
  waiting: 'muted',
  running: 'ok',
  paused: 'warn',
  finished: 'info',
  stopped: 'bad',
};

export function Header() {
  const { state, socket } = useRun();
  const maxSteps = state.runInfo?.config?.train?.steps;
  const progress = maxSteps ? Math.min(1, state.step / maxSteps) : null;
  const stepTime = last(state.stepTimeMedian)?.y;
  const eta =
    maxSteps && stepTime && state.phase === 'running' ? (maxSteps - state.step) * stepTime : null;
  const loss = last(state.trainLoss)?.y;
  const tps = last(state.tokensPerSTotal)?.y;
  return (
    <header className="topbar">
      <div className="brand">
        <svg viewBox="0 0 16 16" width="22" height="22" aria-hidden>
          <rect width="16" height="16" rx="3.5" fill="#4f8cff" />
          <path
            d="M3 12 L6 7 L9 9 L13 3"
            stroke="white"
            strokeWidth="1.8"
            fill="none"
            strokeLinecap="round"
          />
        </svg>
        <div>
          <div className="brand-name">shardlm monitor</div>
          <div className="brand-run" data-testid="run-id" title={state.runDir}>
            {state.runId ?? 'no run yet'}
          </div>
        </div>
      </div>

      <div className="topbar-run">
        <Badge tone={PHASE_TONE[state.phase]} testId="run-phase">
          {state.phase}
        </Badge>
        <div className="progress-block">
          <div className="progress-text">
            step <b data-testid="step-counter">{state.step.toLocaleString('en-US')}</b>
            {maxSteps ? <span className="muted"> / {maxSteps.toLocaleString('en-US')}</span> : null}
            {eta !== null && <span className="muted"> · ETA {fmtSeconds(eta)}</span>}
          </div>
          {progress !== null && (
            <div className="progress">
              <div className="progress-fill" style={{ width: `${(progress * 100).toFixed(2)}%` }} />
            </div>
          )}
        </div>
        <div className="topbar-kpi">
          <span className="muted">loss</span> <b data-testid="kpi-loss">{fmtNum(loss, 4)}</b>
        </div>
        <div className="topbar-kpi">
          <span className="muted">tok/s</span> <b>{fmtSi(tps)}</b>
        </div>
      </div>

      <div className="topbar-right">
        <QuickControls />
        <TokenControl />
        <ConnectionBadge
          status={socket.status}
          attempt={socket.attempt}
          retryAt={socket.retryAt}
          error={socket.lastError}
        />
      </div>
    </header>
  );
}

export function ConnectionBadge(props: {
  status: string;
  attempt: number;
  retryAt: number | null;
  error: string | null;
}) {
  const now = useNow(500);
  const { socket, state } = useRun();
  let tone: Tone = 'muted';
  let text = 'connecting…';
  if (props.status === 'open') {
    tone = 'ok';
    text = state.historyDone ? 'live' : 'loading history…';
  } else if (props.status === 'reconnecting') {
    tone = 'bad';
    const secs = props.retryAt ? Math.max(0, Math.ceil((props.retryAt - now) / 1000)) : 0;
    text = `offline · retry in ${secs}s`;
  } else if (props.status === 'closed') {
    tone = 'bad';
    text = 'closed';
  }
  const title = [
    props.error ?? '',
    props.attempt ? `attempt ${props.attempt}` : '',
    socket.welcome ? `${socket.welcome.server}, session ${socket.welcome.session}` : '',
    state.lastStepTs ? `last step ${fmtAgo(state.lastStepTs, now)}` : '',
  ]
    .filter(Boolean)
    .join(' · ');
  return (
    <button
      type="button"
      className={`conn tone-${tone}`}
      data-testid="connection-status"
      data-status={props.status}
      title={title || undefined}
      onClick={() => props.status !== 'open' && socket.reconnectNow()}
    >
      <span className={`dot ${props.status === 'open' ? 'pulse' : ''}`} />
      {text}
    </button>
  );
}

function TokenControl() {
  const { token, setToken, socket } = useRun();
  const [editing, setEditing] = useState(false);
  const [text, setText] = useState('');
  const canControl = socket.welcome?.control === true;
  if (editing) {
    return (
      <form
        className="token-form"
        onSubmit={(e) => {
          e.preventDefault();
          setToken(text);
          setEditing(false);
        }}
      >
        <input
          autoFocus
          type="password"
          data-testid="token-input"
          placeholder="control token (monitor.token)"
          value={text}
          onChange={(e) => setText(e.target.value)}
        />
        <button type="submit" className="btn primary small">
          Unlock
        </button>
        <button type="button" className="btn ghost small" onClick={() => setEditing(false)}>
          Cancel
        </button>
      </form>
    );
  }
  const tone: Tone = canControl ? 'ok' : token ? 'bad' : 'muted';
  const label = canControl ? 'control' : token ? 'token refused' : 'read-only';
  return (
    <button
      type="button"
      className={`token-btn tone-${tone}`}
      data-testid="token-status"
      data-control={canControl ? 'yes' : 'no'}
      title={
        canControl
          ? 'Controls unlocked for this browser session. Click to change the token.'
          : 'Enter the token printed by shardlm monitor (also in RUN_DIR/monitor.token)'
      }
      onClick={() => {
        setText(token ?? '');
        setEditing(true);
      }}
    >
      <svg viewBox="0 0 16 16" width="13" height="13" aria-hidden>
        <path
          d={canControl ? 'M5 7V5a3 3 0 0 1 6 0' : 'M5 7V5a3 3 0 0 1 6 0v2'}
          stroke="currentColor"
          strokeWidth="1.6"
          fill="none"
        />
        <rect x="3" y="7" width="10" height="7" rx="1.5" fill="currentColor" />
      </svg>
      {label}
    </button>
  );
}

function QuickControls() {
  const { state, command, socket } = useRun();
  const canControl = socket.welcome?.control === true;
  const paused = state.phase === 'paused';
  const live = state.phase === 'running' || state.phase === 'paused';
  const lastToggle = latestCommand(state, paused ? 'pause' : 'resume', true);
  return (
    <div className="quick">
      <button
        type="button"
        className={`btn ${paused ? 'primary' : 'warn'}`}
        data-testid={paused ? 'btn-resume' : 'btn-pause'}
        disabled={!canControl || !live}
        title={!canControl ? 'Enter the control token first' : undefined}
        onClick={() => command(paused ? 'resume' : 'pause')}
      >
        {paused ? '▶ Resume' : '❚❚ Pause'}
      </button>
      {lastToggle && <CommandAck entry={lastToggle} compact />}
    </div>
  );
}

export function Warnings() {
  const { state } = useRun();
  const now = useNow(2000);
  const warnings = rankWarnings(state);
  // Errors answer a request; the request's own panel shows them too, so the
  // banner only keeps the newest one for a short while.
  const errors = state.errors
    .filter((e) => e.code !== 'no_producer' && e.ts > now / 1000 - 15)
    .slice(-1);
  if (warnings.length === 0 && errors.length === 0) return null;
  return (
    <div className="warnings" data-testid="warnings">
      {warnings.map((w) => (
        <div
          key={`${w.kind}-${w.rank}`}
          className={`warning ${w.kind === 'dead' ? 'bad' : 'warn'}`}
          data-testid={`warning-${w.kind}`}
        >
          <b>{w.kind === 'dead' ? 'Dead rank' : 'Straggler'}</b> {w.text}
        </div>
      ))}
      {errors.map((e, i) => (
        <div key={i} className="warning bad">
          <b>Aggregator: {e.code}</b> {e.message}
        </div>
      ))}
    </div>
  );
}
