// The Generate tab: a prompt, every decoding option of docs/generation.md, and
// one or two targets answering it side by side: the live run (rank 0 generates
// from its current weights between steps), a checkpoint of the run, or a
// `shardlm serve` URL. Tokens stream in as they are produced; each is coloured
// by the model's confidence and can be opened to see its probability and the
// most probable alternatives. Requests are `inspect` with what = "generate"
// (docs/monitor-inspect.md); the tokens arrive as partial inspect_results.

import { useEffect, useMemo, useState } from 'react';
import { Card, Empty, NumberField, Segmented, Toggle } from '../components/ui';
import { useRun } from '../context';
import { fmtNum, fmtSeconds } from '../lib/format';
import {
  asInspectData,
  type GenerateDone,
  type GenerateToken,
  type GenerationOptions,
} from '../inspect';
import type { InspectEntry } from '../state/reducer';

/** How long a generation may stay silent before it counts as lost (loading a checkpoint takes a while). */
export const GENERATE_TIMEOUT_MS = 120000;

export type Strategy = 'greedy' | 'sample' | 'beam';

/** What the form holds; kept by App so that switching tabs keeps it. */
export interface GenerateSession {
  prompt: string;
  strategy: Strategy;
  maxNewTokens: number | null;
  temperature: number | null;
  topK: number | null;
  topP: number | null;
  minP: number | null;
  repetitionPenalty: number | null;
  frequencyPenalty: number | null;
  presencePenalty: number | null;
  numBeams: number | null;
  lengthPenalty: number | null;
  earlyStopping: boolean;
  stop: string;
  seed: number | null;
  ignoreEos: boolean;
  alternatives: number | null;
  /** "live", a checkpoint name, "url", or "" (second side off). */
  targets: [string, string];
  urls: [string, string];
  /** The inspect request of each side. */
  ids: [string | null, string | null];
}

export const initialGenerateSession = (): GenerateSession => ({
  prompt: 'Once upon a time',
  strategy: 'greedy',
  maxNewTokens: 32,
  temperature: 0.8,
  topK: 0,
  topP: 0.95,
  minP: 0,
  repetitionPenalty: 1,
  frequencyPenalty: 0,
  presencePenalty: 0,
  numBeams: 4,
  lengthPenalty: 1,
  earlyStopping: true,
  stop: '',
  seed: null,
  ignoreEos: false,
  alternatives: 5,
  targets: ['live', ''],
  urls: ['http://127.0.0.1:8000', 'http://127.0.0.1:8000'],
  ids: [null, null],
});

/** The request's options: only what the strategy reads, so the request says what it means. */
export function optionsOf(s: GenerateSession): GenerationOptions {
  const o: GenerationOptions = { strategy: s.strategy };
  if (s.maxNewTokens !== null) o.max_new_tokens = s.maxNewTokens;
  if (s.strategy === 'sample') {
    if (s.temperature !== null) o.temperature = s.temperature;
    if (s.topK !== null) o.top_k = s.topK;
    if (s.topP !== null) o.top_p = s.topP;
    if (s.minP !== null) o.min_p = s.minP;
    if (s.seed !== null) o.seed = s.seed;
  }
  if (s.strategy === 'beam') {
    if (s.numBeams !== null) o.num_beams = s.numBeams;
    if (s.lengthPenalty !== null) o.length_penalty = s.lengthPenalty;
    o.early_stopping = s.earlyStopping;
  }
  if (s.repetitionPenalty !== null) o.repetition_penalty = s.repetitionPenalty;
  if (s.frequencyPenalty !== null) o.frequency_penalty = s.frequencyPenalty;
  if (s.presencePenalty !== null) o.presence_penalty = s.presencePenalty;
  const stops = s.stop
    .split('|')
    .map((x) => x.replace(/\\n/g, '\n'))
    .filter((x) => x.length > 0);
  if (stops.length) o.stop = stops;
  if (s.ignoreEos) o.ignore_eos = true;
  return o;
}

/** p = exp(logprob) as a colour from red (unsure) through amber to green (sure). */
export function confidenceColor(p: number | null): string {
  if (p === null || !Number.isFinite(p)) return 'hsl(220, 12%, 32%)';
  const hue = Math.round(Math.max(0, Math.min(1, p)) * 130);
  return `hsl(${hue}, 62%, 30%)`;
}

const pct = (lp: number | null) =>
  lp === null ? '—' : `${(Math.exp(lp) * 100).toFixed(lp > Math.log(0.995) ? 1 : 1)}%`;
/** Whitespace made visible in a token chip. */
const visible = (t: string) => t.replace(/\n/g, '⏎').replace(/\t/g, '⇥');

export function GenerateView(props: {
  session: GenerateSession;
  setSession: (s: GenerateSession) => void;
}) {
  const { session: s, setSession } = props;
  const { state, requestInspect, refreshCheckpoints, socket } = useRun();
  const set = (patch: Partial<GenerateSession>) => setSession({ ...s, ...patch });
  const [sendError, setSendError] = useState<string | null>(null);
  const open = socket.status === 'open';
  useEffect(() => {
    if (open) refreshCheckpoints();
  }, [open, refreshCheckpoints]);
  const checkpoints = state.checkpoints?.items ?? [];

  const targetOf = (side: 0 | 1) =>
    s.targets[side] === 'url' ? s.urls[side].trim() : s.targets[side];
  const go = () => {
    const options = optionsOf(s);
    const ids: [string | null, string | null] = [null, null];
    for (const side of [0, 1] as const) {
      const target = targetOf(side);
      if (!target) continue;
      ids[side] = requestInspect(
        'generate',
        { target, prompt: s.prompt, options, top: s.alternatives ?? 5 },
        GENERATE_TIMEOUT_MS,
      );
    }
    setSendError(ids[0] === null && targetOf(0) ? 'Not connected to the aggregator.' : null);
    set({ ids });
  };
  const canGo = open && s.prompt.length > 0 && (targetOf(0) !== '' || targetOf(1) !== '');

  return (
    <div className="view generate-view">
      <div className="generate-grid">
        <Card
          title="Prompt and decoding"
          subtitle="docs/generation.md explains every option"
          testId="card-generate-form"
          className="scroll"
        >
          <form
            className="generate-form"
            onSubmit={(e) => {
              e.preventDefault();
              if (canGo) go();
            }}
          >
            <label className="field grow">
              <span className="field-label">prompt</span>
              <textarea
                className="prompt-box"
                data-testid="gen-prompt"
                value={s.prompt}
                rows={4}
                onChange={(e) => set({ prompt: e.target.value })}
                onKeyDown={(e) => {
                  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && canGo) go();
                }}
              />
            </label>
            <div className="field">
              <span className="field-label">strategy</span>
              <Segmented<Strategy>
                testId="gen-strategy"
                value={s.strategy}
                onChange={(v) => set({ strategy: v })}
                options={[
                  { value: 'greedy', label: 'greedy' },
                  { value: 'sample', label: 'sample' },
                  { value: 'beam', label: 'beam' },
                ]}
              />
            </div>
            <div className="option-grid">
              <NumberField
                label="max new tokens"
                value={s.maxNewTokens}
                onChange={(v) => set({ maxNewTokens: v })}
                testId="gen-max-tokens"
                width={90}
              />
              <NumberField
                label="alternatives shown"
                value={s.alternatives}
                onChange={(v) => set({ alternatives: v })}
                testId="gen-top"
                width={90}
              />
              {s.strategy === 'sample' && (
                <>
                  <NumberField
                    label="temperature"
                    value={s.temperature}
                    onChange={(v) => set({ temperature: v })}
                    testId="gen-temperature"
                    width={90}
                  />
                  <NumberField
                    label="top-k (0 off)"
                    value={s.topK}
                    onChange={(v) => set({ topK: v })}
                    testId="gen-top-k"
                    width={90}
                  />
                  <NumberField
                    label="top-p (1 off)"
                    value={s.topP}
                    onChange={(v) => set({ topP: v })}
                    testId="gen-top-p"
                    width={90}
                  />
                  <NumberField
                    label="min-p (0 off)"
                    value={s.minP}
                    onChange={(v) => set({ minP: v })}
                    testId="gen-min-p"
                    width={90}
                  />
                  <NumberField
                    label="seed (empty: random)"
                    value={s.seed}
                    onChange={(v) => set({ seed: v })}
                    testId="gen-seed"
                    width={90}
                  />
                </>
              )}
              {s.strategy === 'beam' && (
                <>
                  <NumberField
                    label="beams"
                    value={s.numBeams}
                    onChange={(v) => set({ numBeams: v })}
                    testId="gen-beams"
                    width={90}
                  />
                  <NumberField
                    label="length penalty"
                    value={s.lengthPenalty}
                    onChange={(v) => set({ lengthPenalty: v })}
                    testId="gen-length-penalty"
                    width={90}
                  />
                </>
              )}
              <NumberField
                label="repetition penalty"
                value={s.repetitionPenalty}
                onChange={(v) => set({ repetitionPenalty: v })}
                testId="gen-rep"
                width={90}
              />
              <NumberField
                label="frequency penalty"
                value={s.frequencyPenalty}
                onChange={(v) => set({ frequencyPenalty: v })}
                testId="gen-freq"
                width={90}
              />
              <NumberField
                label="presence penalty"
                value={s.presencePenalty}
                onChange={(v) => set({ presencePenalty: v })}
                testId="gen-presence"
                width={90}
              />
            </div>
            <label className="field grow">
              <span className="field-label">stop strings (separate with |, \n for a newline)</span>
              <input
                value={s.stop}
                onChange={(e) => set({ stop: e.target.value })}
                data-testid="gen-stop"
                placeholder="e.g. \n\n|The end"
              />
            </label>
            <div className="toggle-row">
              {s.strategy === 'beam' && (
                <Toggle
                  label="early stopping"
                  checked={s.earlyStopping}
                  onChange={(v) => set({ earlyStopping: v })}
                  testId="gen-early"
                />
              )}
              <Toggle
                label="ignore EOS"
                checked={s.ignoreEos}
                onChange={(v) => set({ ignoreEos: v })}
                testId="gen-ignore-eos"
              />
            </div>
            <div className="target-row">
              {([0, 1] as const).map((side) => (
                <div className="field grow" key={side}>
                  <span className="field-label">
                    {side === 0 ? 'target A' : 'target B (side by side)'}
                  </span>
                  <select
                    data-testid={`gen-target-${side}`}
                    value={s.targets[side]}
                    onChange={(e) => {
                      const t: [string, string] = [...s.targets];
                      t[side] = e.target.value;
                      set({ targets: t });
                    }}
                  >
                    {side === 1 && <option value="">none</option>}
                    <option value="live">live run (current weights)</option>
                    {checkpoints.length > 0 && (
                      // The group names them, so that a half-width select shows the step.
                      <optgroup label="checkpoints">
                        {checkpoints.map((c) => (
                          <option key={c.name} value={c.name}>
                            {c.name}
                          </option>
                        ))}
                      </optgroup>
                    )}
                    <option value="url">shardlm serve URL…</option>
                  </select>
                  {s.targets[side] === 'url' && (
                    <input
                      data-testid={`gen-url-${side}`}
                      value={s.urls[side]}
                      onChange={(e) => {
                        const u: [string, string] = [...s.urls];
                        u[side] = e.target.value;
                        set({ urls: u });
                      }}
                    />
                  )}
                </div>
              ))}
            </div>
            <div className="button-row">
              <button type="submit" className="btn primary" disabled={!canGo} data-testid="gen-go">
                Generate
              </button>
              <span className="muted small">Ctrl+Enter in the prompt</span>
              {sendError && <span className="tone-bad small">{sendError}</span>}
            </div>
          </form>
        </Card>
        <div className="generate-outputs">
          {([0, 1] as const).map((side) =>
            s.ids[side] || side === 0 ? (
              <Output
                key={side}
                side={side}
                entry={s.ids[side] ? state.inspects[s.ids[side] as string] : undefined}
                prompt={s.prompt}
              />
            ) : null,
          )}
        </div>
      </div>
    </div>
  );
}

function Output({ side, entry, prompt }: { side: 0 | 1; entry?: InspectEntry; prompt: string }) {
  const [picked, setPicked] = useState<number | null>(null);
  const tokens: GenerateToken[] = useMemo(() => entry?.stream ?? [], [entry?.stream]);
  const done =
    entry?.phase === 'ok' ? (asInspectData('generate', entry.data) as GenerateDone | null) : null;
  const target = (entry?.args?.target as string | undefined) ?? '';
  const status = !entry
    ? 'idle'
    : entry.phase === 'unavailable'
      ? 'error'
      : done
        ? 'done'
        : 'streaming';
  const label = target === 'live' ? 'live run' : target;
  const tok = picked !== null ? tokens[picked] : undefined;
  const meanP = useMemo(() => {
    const lps = tokens.map((t) => t.logprob).filter((x): x is number => x !== null);
    return lps.length ? Math.exp(lps.reduce((a, b) => a + b, 0) / lps.length) : null;
  }, [tokens]);
  useEffect(() => setPicked(null), [entry?.id]);
  const step = done?.step ?? tokens[0]?.step;
  return (
    <Card
      title={
        <>
          {side === 0 ? 'A' : 'B'}
          {label ? <span className="muted"> · {label}</span> : null}
          {step !== undefined ? (
            <span className="muted"> at step {step.toLocaleString('en-US')}</span>
          ) : null}
        </>
      }
      subtitle={
        done
          ? `${done.tokens.length || tokens.length} tokens in ${fmtSeconds(done.seconds)} · ${done.finish_reason}${meanP !== null ? ` · geometric-mean probability ${(meanP * 100).toFixed(1)}%` : ''}`
          : status === 'streaming'
            ? `${tokens.length} tokens so far…`
            : undefined
      }
      testId={`gen-output-${side}`}
      className="generate-output"
    >
      <div
        data-testid={`gen-status-${side}`}
        data-status={status}
        data-text={done?.text ?? ''}
        data-tokens={tokens.length}
        data-step={step ?? ''}
        hidden
      />
      {!entry ? (
        <Empty>Pick a target and press Generate.</Empty>
      ) : entry.phase === 'unavailable' ? (
        <div className="unavailable" data-testid={`gen-error-${side}`}>
          <div className="unavailable-icon">◌</div>
          <div>
            <div className="unavailable-title">Not available</div>
            <div className="muted">{entry.message}</div>
          </div>
        </div>
      ) : (
        <>
          <div className="token-text" data-testid={`gen-tokens-${side}`}>
            <span className="prompt-echo">{prompt}</span>
            {tokens.map((t, i) => {
              const p = t.logprob === null ? null : Math.exp(t.logprob);
              return (
                <button
                  type="button"
                  key={i}
                  className={`tok ${picked === i ? 'picked' : ''}`}
                  style={{ background: confidenceColor(p) }}
                  data-testid="gen-token"
                  data-p={p ?? ''}
                  title={
                    p === null
                      ? 'the server reports no probabilities'
                      : `p = ${(p * 100).toFixed(1)}%`
                  }
                  onClick={() => setPicked(picked === i ? null : i)}
                >
                  {visible(t.text)}
                </button>
              );
            })}
            {status === 'streaming' && <span className="spinner inline" />}
          </div>
          <ConfidenceLegend />
          {tok && <TokenDetail token={tok} />}
        </>
      )}
    </Card>
  );
}

function ConfidenceLegend() {
  return (
    <div className="confidence-legend small muted">
      confidence
      {[0.05, 0.25, 0.5, 0.75, 0.95].map((p) => (
        <span key={p} className="legend-chip" style={{ background: confidenceColor(p) }}>
          {Math.round(p * 100)}%
        </span>
      ))}
      <span>click a token for its alternatives</span>
    </div>
  );
}

function TokenDetail({ token }: { token: GenerateToken }) {
  const best = token.top.length ? Math.exp(token.top[0].logprob) : 1;
  return (
    <div className="token-detail" data-testid="gen-token-detail">
      <div>
        token <span className="mono tok-inline">{JSON.stringify(token.text)}</span>
        {token.id !== undefined && <span className="muted"> id {token.id}</span>} · position{' '}
        {token.index + 1} · <b data-testid="gen-token-p">{pct(token.logprob)}</b>
        {token.logprob !== null && (
          <span className="muted"> (log p {fmtNum(token.logprob, 3)})</span>
        )}
      </div>
      {token.top.length > 0 ? (
        <table className="alt-table">
          <tbody>
            {token.top.map((a) => (
              <tr
                key={a.id}
                className={a.id === token.id ? 'chosen' : ''}
                data-testid="gen-alternative"
              >
                <td className="mono">{JSON.stringify(a.text)}</td>
                <td className="alt-bar-cell">
                  <span
                    className="alt-bar"
                    style={{
                      width: `${(Math.exp(a.logprob) / best) * 100}%`,
                      background: confidenceColor(Math.exp(a.logprob)),
                    }}
                  />
                </td>
                <td className="mono num">{pct(a.logprob)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <div className="muted small">
          No alternatives reported (a server target, or alternatives set to 0).
        </div>
      )}
    </div>
  );
}
