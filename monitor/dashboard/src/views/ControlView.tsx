// Steering the run: pause/resume/stop/save, live hyperparameters, batch size,
// early stopping, starting a run and resuming from a checkpoint. Every command
// shows its acknowledgement: the step at which it took effect on all ranks.

import { useEffect, useState, type ReactNode } from 'react';
import { CommandAck, ackText, ackTone } from '../components/CommandAck';
import { Badge, Card, Empty, NumberField, Toggle, useNow } from '../components/ui';
import { useRun } from '../context';
import { fmtAgo, fmtClock, fmtLr, fmtNum } from '../lib/format';
import { storage } from '../lib/token';
import type { CommandName, EventKind } from '../protocol';
import { latestCommand, type CommandEntry } from '../state/reducer';

function useAck(command: CommandName): CommandEntry | undefined {
  const { state } = useRun();
  return latestCommand(state, command);
}

function AckLine({ command }: { command: CommandName }) {
  const entry = useAck(command);
  return (
    <div className="ack-line">
      {entry ? <CommandAck entry={entry} /> : <span className="muted">not sent yet</span>}
    </div>
  );
}

function useCanControl(): { ok: boolean; why?: string } {
  const { socket } = useRun();
  if (socket.status !== 'open') return { ok: false, why: 'Not connected to the aggregator.' };
  if (!socket.welcome?.control)
    return { ok: false, why: 'Read-only: enter the control token (top right).' };
  return { ok: true };
}

const CONFIG_KEY = 'shardlm.monitor.config';

export function ControlView() {
  // The config of "Start a run" is also what "Resume from" passes on: an
  // aggregator restarted since the start does not remember it.
  const [config, setConfigState] = useState(() => storage()?.getItem(CONFIG_KEY) ?? '');
  const setConfig = (c: string) => {
    setConfigState(c);
    storage()?.setItem(CONFIG_KEY, c);
  };
  return (
    <div className="view control-view">
      <div className="grid grid-3">
        <div className="stack">
          <RunControls />
          <HyperParams />
          <BatchControls />
        </div>
        <div className="stack">
          <EarlyStopping />
          <StartRun config={config} setConfig={setConfig} />
          <CommandLog />
        </div>
        <div className="stack">
          <CheckpointList config={config} />
          <EventLog />
        </div>
      </div>
    </div>
  );
}

function RunControls() {
  const { state, command } = useRun();
  const can = useCanControl();
  const [confirmStop, setConfirmStop] = useState(false);
  useEffect(() => {
    if (!confirmStop) return;
    const t = setTimeout(() => setConfirmStop(false), 4000);
    return () => clearTimeout(t);
  }, [confirmStop]);
  const live = state.phase === 'running' || state.phase === 'paused';
  const dis = !can.ok || !live;
  return (
    <Card
      title="Run"
      subtitle={
        <>
          state <b>{state.phase}</b> at step {state.step.toLocaleString('en-US')}
        </>
      }
      testId="card-run-controls"
    >
      {!can.ok && (
        <div className="notice" data-testid="control-locked">
          {can.why}
        </div>
      )}
      <div className="button-grid">
        <button
          type="button"
          className="btn warn"
          disabled={dis || state.phase === 'paused'}
          data-testid="ctl-pause"
          onClick={() => command('pause')}
        >
          ❚❚ Pause
        </button>
        <button
          type="button"
          className="btn primary"
          disabled={dis || state.phase !== 'paused'}
          data-testid="ctl-resume"
          onClick={() => command('resume')}
        >
          ▶ Resume
        </button>
        <button
          type="button"
          className="btn"
          disabled={dis}
          data-testid="ctl-save"
          onClick={() => command('save_checkpoint')}
        >
          ⤓ Save checkpoint
        </button>
        <button
          type="button"
          className={`btn ${confirmStop ? 'danger' : 'danger-ghost'}`}
          disabled={dis}
          data-testid="ctl-stop"
          onClick={() => {
            if (confirmStop) {
              command('stop');
              setConfirmStop(false);
            } else setConfirmStop(true);
          }}
        >
          {confirmStop ? 'Click again to stop' : '■ Stop'}
        </button>
      </div>
      <dl className="acks">
        <dt>pause</dt>
        <dd>
          <AckLine command="pause" />
        </dd>
        <dt>resume</dt>
        <dd>
          <AckLine command="resume" />
        </dd>
        <dt>save</dt>
        <dd>
          <AckLine command="save_checkpoint" />
        </dd>
        <dt>stop</dt>
        <dd>
          <AckLine command="stop" />
        </dd>
      </dl>
    </Card>
  );
}

/** One setting: label and current value, input(s), Apply, and the last acknowledgement. */
function HpRow(props: {
  label: ReactNode;
  now: ReactNode;
  children: ReactNode;
  disabled: boolean;
  onApply: () => void;
  testId: string;
  command: CommandName;
}) {
  return (
    <form
      className="hp-row"
      onSubmit={(e) => {
        e.preventDefault();
        if (!props.disabled) props.onApply();
      }}
    >
      <span className="hp-label">{props.label}</span>
      <div className="hp-input">{props.children}</div>
      <button
        type="submit"
        className="btn primary"
        disabled={props.disabled}
        data-testid={props.testId}
      >
        Apply
      </button>
      <span className="hp-now">{props.now}</span>
      <span className="hp-ack">
        <AckLine command={props.command} />
      </span>
    </form>
  );
}

function HyperParams() {
  const { state, command } = useRun();
  const can = useCanControl();
  const hp = state.hparams;
  const [lr, setLr] = useState<number | null>(null);
  const [wd, setWd] = useState<number | null>(null);
  const [clip, setClip] = useState<number | null>(null);
  const live = state.phase === 'running' || state.phase === 'paused';
  return (
    <Card
      title="Live hyperparameters"
      subtitle="every rank applies a change at the same step boundary"
      testId="card-hparams"
    >
      <HpRow
        label="learning rate"
        now={<>now {fmtLr(hp?.lr ?? null)}</>}
        command="set_lr"
        testId="apply-lr"
        disabled={!can.ok || !live || lr === null || lr <= 0}
        onApply={() => lr !== null && command('set_lr', { lr })}
      >
        <NumberField
          bare
          label="learning rate"
          value={lr}
          onChange={setLr}
          placeholder={fmtLr(hp?.lr ?? null)}
          testId="input-lr"
        />
      </HpRow>
      <HpRow
        label="weight decay"
        now={<>now {fmtNum(hp?.weight_decay)}</>}
        command="set_weight_decay"
        testId="apply-wd"
        disabled={!can.ok || !live || wd === null || wd < 0}
        onApply={() => wd !== null && command('set_weight_decay', { weight_decay: wd })}
      >
        <NumberField
          bare
          label="weight decay"
          value={wd}
          onChange={setWd}
          placeholder={fmtNum(hp?.weight_decay)}
          testId="input-wd"
        />
      </HpRow>
      <HpRow
        label="gradient clip"
        now={<>now {hp?.clip === 0 ? 'off' : fmtNum(hp?.clip)}</>}
        command="set_clip"
        testId="apply-clip"
        disabled={!can.ok || !live || clip === null || clip < 0}
        onApply={() => clip !== null && command('set_clip', { clip })}
      >
        <NumberField
          bare
          label="gradient clip (0 = off)"
          value={clip}
          onChange={setClip}
          placeholder="0 = off"
          testId="input-clip"
        />
      </HpRow>
    </Card>
  );
}

function BatchControls() {
  const { state, command } = useRun();
  const can = useCanControl();
  const hp = state.hparams;
  const [micro, setMicro] = useState<number | null>(null);
  const [accum, setAccum] = useState<number | null>(null);
  const m = micro ?? hp?.micro_batch ?? null;
  const a = accum ?? hp?.accumulation ?? null;
  const valid =
    m !== null && a !== null && Number.isInteger(m) && Number.isInteger(a) && m >= 1 && a >= 1;
  const world = state.worldSize || 1;
  const live = state.phase === 'running' || state.phase === 'paused';
  return (
    <Card
      title="Batch size"
      subtitle="micro-batch per rank × gradient accumulation × ranks"
      testId="card-batch"
    >
      <HpRow
        label="micro × accum"
        now={
          hp?.micro_batch ? (
            <>
              now {hp.micro_batch} × {hp.accumulation ?? 1} × {world} ={' '}
              {hp.micro_batch * (hp.accumulation ?? 1) * world}
            </>
          ) : (
            'not reported'
          )
        }
        command="set_batch"
        testId="apply-batch"
        disabled={!can.ok || !live || !valid}
        onApply={() => valid && command('set_batch', { micro_batch: m, accumulation: a })}
      >
        <NumberField
          bare
          label="micro-batch"
          value={micro}
          onChange={setMicro}
          placeholder={String(hp?.micro_batch ?? 'micro')}
          testId="input-micro"
        />
        <span className="muted">×</span>
        <NumberField
          bare
          label="accumulation"
          value={accum}
          onChange={setAccum}
          placeholder={String(hp?.accumulation ?? 'accum')}
          testId="input-accum"
        />
      </HpRow>
    </Card>
  );
}

function EarlyStopping() {
  const { state, command } = useRun();
  const can = useCanControl();
  const [enabled, setEnabled] = useState(true);
  const [patience, setPatience] = useState<number | null>(5);
  const [minDelta, setMinDelta] = useState<number | null>(0.001);
  const valid =
    !enabled ||
    (patience !== null &&
      Number.isInteger(patience) &&
      patience >= 0 &&
      minDelta !== null &&
      minDelta >= 0);
  const live = state.phase === 'running' || state.phase === 'paused';
  const last = latestCommand(state, 'set_early_stopping');
  const inForce = last?.phase === 'acked' ? last.args : undefined;
  return (
    <Card
      title="Early stopping"
      subtitle="stop when validation loss has not improved by min Δ for `patience` validations"
      testId="card-early"
    >
      <HpRow
        label={<Toggle label="enabled" checked={enabled} onChange={setEnabled} />}
        now={
          inForce
            ? inForce.enabled
              ? `on (${inForce.patience}, Δ ${inForce.min_delta})`
              : 'off'
            : 'patience, min Δ'
        }
        command="set_early_stopping"
        testId="apply-early"
        disabled={!can.ok || !live || !valid}
        onApply={() =>
          command(
            'set_early_stopping',
            enabled ? { enabled, patience: patience ?? 0, min_delta: minDelta ?? 0 } : { enabled },
          )
        }
      >
        <NumberField
          bare
          label="patience"
          value={patience}
          onChange={setPatience}
          placeholder="patience"
          testId="input-patience"
        />
        <NumberField
          bare
          label="min delta"
          value={minDelta}
          onChange={setMinDelta}
          placeholder="min Δ"
          testId="input-min-delta"
        />
      </HpRow>
    </Card>
  );
}

function StartRun({ config, setConfig }: { config: string; setConfig: (c: string) => void }) {
  const { state, command, socket } = useRun();
  const can = useCanControl();
  const canLaunch = socket.welcome?.can_launch === true;
  const live = state.phase === 'running' || state.phase === 'paused';
  const entry = latestCommand(state, 'start_run');
  return (
    <Card
      title="Start a run"
      subtitle={
        canLaunch
          ? 'the aggregator spawns its configured launch command with this config'
          : 'this aggregator was started without a launch command'
      }
      testId="card-start"
    >
      <form
        className="apply-row"
        onSubmit={(e) => {
          e.preventDefault();
          if (config.trim()) command('start_run', { config: config.trim() });
        }}
      >
        <label className="field grow">
          <span className="field-label">config file</span>
          <input
            value={config}
            onChange={(e) => setConfig(e.target.value)}
            placeholder="configs/tiny.toml"
            data-testid="input-config"
          />
        </label>
        <button
          type="submit"
          className="btn primary"
          disabled={!can.ok || !canLaunch || live || !config.trim()}
          data-testid="ctl-start"
        >
          Start
        </button>
        <div className="apply-ack">
          {entry ? (
            <CommandAck entry={entry} />
          ) : live ? (
            <span className="muted">a run is active</span>
          ) : null}
        </div>
      </form>
    </Card>
  );
}

function CheckpointList({ config }: { config: string }) {
  const { state, command, refreshCheckpoints, socket } = useRun();
  const can = useCanControl();
  const canLaunch = socket.welcome?.can_launch === true;
  const live = state.phase === 'running' || state.phase === 'paused';
  const items = [...(state.checkpoints?.items ?? [])].reverse();
  const entry = latestCommand(state, 'resume_from');
  // A saved checkpoint shows up in the list without a click.
  const saved = state.events.filter((e) => e.kind === 'checkpoint_saved').length;
  useEffect(() => {
    if (socket.status === 'open') refreshCheckpoints();
  }, [saved, socket.status, socket.welcome?.session, refreshCheckpoints]);
  return (
    <Card
      title="Checkpoints"
      subtitle={
        state.checkpoints ? (
          <span className="mono">{state.checkpoints.run_dir}/checkpoints</span>
        ) : (
          'RUN_DIR/checkpoints'
        )
      }
      actions={
        <button
          type="button"
          className="btn ghost small"
          onClick={refreshCheckpoints}
          data-testid="ckpt-refresh"
        >
          ↻ Refresh
        </button>
      }
      testId="card-checkpoints"
      className="scroll grow"
    >
      {entry && (
        <div className="ack-line">
          resume from: <CommandAck entry={entry} />
        </div>
      )}
      {items.length === 0 ? (
        <Empty>No checkpoints saved yet.</Empty>
      ) : (
        <table className="table" data-testid="checkpoint-table">
          <thead>
            <tr>
              <th>name</th>
              <th>step</th>
              <th>saved</th>
              <th></th>
            </tr>
          </thead>
          <tbody>
            {items.map((c) => (
              <tr key={c.path}>
                <td className="mono" title={c.path}>
                  {c.name}
                  {c.manifest === null && <span className="muted small"> (no manifest)</span>}
                </td>
                <td className="mono">{c.step?.toLocaleString('en-US') ?? '—'}</td>
                <td className="muted" title={new Date(c.mtime * 1000).toLocaleString()}>
                  {fmtAgo(c.mtime)}
                </td>
                <td className="right">
                  <button
                    type="button"
                    className="btn small"
                    disabled={!can.ok || !canLaunch || live}
                    title={
                      live
                        ? 'Stop the active run first'
                        : !canLaunch
                          ? 'The aggregator has no launch command'
                          : `Resume from ${c.name}`
                    }
                    onClick={() =>
                      command(
                        'resume_from',
                        config.trim()
                          ? { checkpoint: c.name, config: config.trim() }
                          : { checkpoint: c.name },
                      )
                    }
                  >
                    Resume from
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Card>
  );
}

function CommandLog() {
  const { state } = useRun();
  useNow(5000);
  const entries = state.commandOrder
    .slice(-8)
    .reverse()
    .map((id) => state.commands[id])
    .filter(Boolean);
  return (
    <Card
      title="Commands"
      subtitle="this session's and other viewers' commands, newest first"
      testId="card-commands"
      className="scroll grow"
    >
      {entries.length === 0 ? (
        <Empty>No commands yet.</Empty>
      ) : (
        <ul className="log">
          {entries.map((c) => (
            <li key={c.id}>
              <span className="log-time">{fmtClock(c.at)}</span>
              <span className="mono">{c.command}</span>
              {c.args && Object.keys(c.args).length > 0 && (
                <span className="muted mono small">{JSON.stringify(c.args)}</span>
              )}
              {!c.mine && <Badge tone="muted">other viewer</Badge>}
              <span className={`ack tone-${ackTone(c)}`}>{ackText(c)}</span>
            </li>
          ))}
        </ul>
      )}
    </Card>
  );
}

const EVENT_TONE: Partial<Record<EventKind, 'ok' | 'warn' | 'bad' | 'info'>> = {
  run_started: 'ok',
  run_finished: 'info',
  checkpoint_saved: 'ok',
  early_stop: 'info',
  paused: 'warn',
  resumed: 'ok',
  stopped: 'bad',
  error: 'bad',
  warning: 'warn',
  rank_lost: 'bad',
  straggler: 'warn',
  rank_joined: 'info',
  run_spawned: 'info',
  run_exited: 'info',
};

function EventLog() {
  const { state } = useRun();
  const events = state.events.slice(-40).reverse();
  return (
    <Card
      title="Events"
      subtitle={`${state.events.length} so far`}
      testId="card-events"
      className="scroll grow"
    >
      {events.length === 0 ? (
        <Empty>No events yet.</Empty>
      ) : (
        <ul className="log" data-testid="event-log">
          {events.map((e, i) => (
            <li key={e.seq ?? `x${i}`}>
              <span className="log-time">{fmtClock(e.ts)}</span>
              <Badge tone={EVENT_TONE[e.kind] ?? 'muted'}>{e.kind.replaceAll('_', ' ')}</Badge>
              <span className="log-msg">
                {e.step !== undefined && <span className="muted mono">step {e.step} · </span>}
                {e.message}
                {e.rank !== undefined && <span className="muted small"> (rank {e.rank})</span>}
              </span>
            </li>
          ))}
        </ul>
      )}
    </Card>
  );
}
