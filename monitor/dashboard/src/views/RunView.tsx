// What is running: the run's identity and parallel layout, the model's size,
// the effective configuration, and the aggregator this page talks to.

import { useState } from 'react';
import { Card, Empty, Stat } from '../components/ui';
import { useRun } from '../context';
import { fmtClock, fmtSi } from '../lib/format';

export function RunView() {
  const { state, socket } = useRun();
  const info = state.runInfo;
  const model = info?.model;
  const maxSteps = info?.config?.train?.steps;
  const hosts = [
    ...new Set(
      Object.values(state.runInfoByRank)
        .map((r) => r.info.host)
        .filter(Boolean),
    ),
  ];
  const started = state.runInfoByRank[0]?.ts;
  const num = (v: number | undefined) => (v === undefined ? '—' : v.toLocaleString('en-US'));
  return (
    <div className="view run-view">
      <div className="grid grid-run">
        <Card title="Run" testId="card-run-info">
          {!info ? (
            <Empty>No rank has sent its run information yet.</Empty>
          ) : (
            <div className="stats">
              <Stat label="run id" value={<span className="mono run-id">{state.runId}</span>} />
              <Stat
                label="world size"
                value={state.worldSize}
                hint={
                  hosts.length
                    ? `${hosts.length} host${hosts.length > 1 ? 's' : ''}: ${hosts.join(', ')}`
                    : undefined
                }
                testId="info-world"
              />
              <Stat
                label="ZeRO stage"
                value={info.zero_stage ?? '—'}
                hint={
                  info.cpu_offload
                    ? info.offload_params
                      ? 'offload: optimizer + parameters'
                      : 'offload: optimizer'
                    : undefined
                }
                testId="info-zero"
              />
              <Stat
                label="device"
                value={info.device ?? '—'}
                hint={info.precision}
                testId="info-device"
              />
              <Stat label="max steps" value={num(maxSteps)} testId="info-max-steps" />
              <Stat
                label="batch"
                value={
                  info.micro_batch !== undefined
                    ? `${info.micro_batch} × ${info.accumulation ?? 1}`
                    : '—'
                }
                hint="micro-batch × accumulation"
                testId="info-batch"
              />
              <Stat label="started" value={started ? fmtClock(started) : '—'} />
            </div>
          )}
        </Card>
        <Card title="Model" testId="card-model">
          {!model ? (
            <Empty>No model information yet.</Empty>
          ) : (
            <div className="stats">
              <Stat
                label="parameters"
                value={info?.parameters !== undefined ? fmtSi(info.parameters) : '—'}
                hint={info?.parameters?.toLocaleString('en-US')}
                testId="info-params"
              />
              <Stat label="layers" value={num(model.n_layer)} testId="info-layers" />
              <Stat label="heads" value={num(model.n_head)} testId="info-heads" />
              <Stat
                label="width"
                value={num(model.d_model)}
                hint={model.d_ff ? `feed-forward ${model.d_ff.toLocaleString('en-US')}` : undefined}
                testId="info-width"
              />
              <Stat label="vocabulary" value={num(model.vocab_size)} testId="info-vocab" />
              <Stat
                label="context"
                value={num(model.context_length)}
                hint={model.positional ? `${model.positional} positions` : undefined}
                testId="info-context"
              />
            </div>
          )}
        </Card>
        <Card title="Aggregator" testId="card-aggregator">
          <div className="stats">
            <Stat
              label="server"
              value={<span className="mono small-value">{socket.welcome?.server ?? '—'}</span>}
            />
            <Stat
              label="run directory"
              value={<span className="mono small-value">{socket.welcome?.run_dir ?? '—'}</span>}
            />
            <Stat
              label="protocol"
              value={socket.welcome?.protocol ?? '—'}
              hint={`session ${socket.welcome?.session ?? '—'}`}
            />
            <Stat
              label="history"
              value={socket.welcome?.history.toLocaleString('en-US') ?? '—'}
              hint="messages replayed on connect"
            />
            <Stat
              label="can start runs"
              value={socket.welcome ? (socket.welcome.can_launch ? 'yes' : 'no') : '—'}
            />
            <Stat label="controls" value={socket.welcome?.control ? 'unlocked' : 'read-only'} />
          </div>
        </Card>
        <Card
          title="Configuration"
          subtitle="the effective run configuration (rank 0)"
          testId="card-config"
          className="span-3 scroll"
        >
          {info?.config ? (
            <ConfigSections config={info.config} />
          ) : (
            <Empty>No configuration reported.</Empty>
          )}
        </Card>
      </div>
    </div>
  );
}

/** Top-level sections side by side (TOML tables), scalars first in a "general" box. */
function ConfigSections({ config }: { config: Record<string, unknown> }) {
  const entries = Object.entries(config);
  const scalars = entries.filter(([, v]) => typeof v !== 'object' || v === null);
  const tables = entries.filter(([, v]) => typeof v === 'object' && v !== null);
  return (
    <div className="config-grid">
      {scalars.length > 0 && (
        <div className="config-section">
          <div className="config-title">general</div>
          <JsonTree value={Object.fromEntries(scalars)} />
        </div>
      )}
      {tables.map(([k, v]) => (
        <div className="config-section" key={k}>
          <div className="config-title">[{k}]</div>
          <JsonTree value={v} />
        </div>
      ))}
    </div>
  );
}

function JsonTree({ value, name, depth = 0 }: { value: unknown; name?: string; depth?: number }) {
  const [open, setOpen] = useState(depth < 2);
  const isObj = typeof value === 'object' && value !== null;
  if (!isObj) {
    return (
      <div className="json-row" style={{ paddingLeft: depth * 16 }}>
        {name !== undefined && <span className="json-key">{name}</span>}
        <span className={`json-val json-${value === null ? 'null' : typeof value}`}>
          {JSON.stringify(value)}
        </span>
      </div>
    );
  }
  const entries = Array.isArray(value)
    ? value.map((v, i) => [String(i), v] as const)
    : Object.entries(value as Record<string, unknown>);
  return (
    <div>
      {name !== undefined && (
        <div
          className="json-row json-branch"
          style={{ paddingLeft: depth * 16 }}
          onClick={() => setOpen(!open)}
        >
          <span className="arch-caret">{open ? '▾' : '▸'}</span>
          <span className="json-key">{name}</span>
          {!open && <span className="muted small">{entries.length} keys</span>}
        </div>
      )}
      {(open || name === undefined) &&
        entries.map(([k, v]) => (
          <JsonTree key={k} name={k} value={v} depth={name === undefined ? depth : depth + 1} />
        ))}
    </div>
  );
}
