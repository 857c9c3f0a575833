// The Rate tab: blind pairwise human evaluation. A rater sees a prompt and two
// anonymous continuations (A and B, in an order fixed per rater and pair),
// answers A / B / tie / both bad / skip (keys 1-4 or a, b, t, x; s to skip),
// and only then learns who wrote which. Votes go to the aggregator's SQLite
// database and are acknowledged once on disk. Beside it: the live leaderboard
// (Bradley-Terry strengths with bootstrap intervals, agreement where pairs were
// rated twice), the rated checkpoints marked on the loss curve, and (with the
// control token) a form that generates new pairs from two checkpoints.

import { useEffect, useMemo, useState } from 'react';
import { Card, Empty, NumberField } from '../components/ui';
import { TimeChart } from '../charts/TimeChart';
import type { Marker } from '../charts/setup';
import { useRun } from '../context';
import { fmtNum } from '../lib/format';
import { leaderboard } from '../lib/ratings';
import { rateCreate, rateList, rateNext, rateVote, type RateChoice } from '../protocol';

export const RATER_KEY = 'shardlm.rater';

const CHOICES: { choice: RateChoice; label: string; keys: string[]; hint: string }[] = [
  { choice: 'A', label: 'A is better', keys: ['1', 'a'], hint: '1 / A' },
  { choice: 'B', label: 'B is better', keys: ['2', 'b'], hint: '2 / B' },
  { choice: 'tie', label: 'Tie', keys: ['3', 't'], hint: '3 / T' },
  { choice: 'both_bad', label: 'Both bad', keys: ['4', 'x'], hint: '4 / X' },
  { choice: 'skip', label: 'Skip', keys: ['s', '0'], hint: 'S' },
];

function storedRater(): string {
  try {
    return window.localStorage.getItem(RATER_KEY) ?? '';
  } catch {
    return '';
  }
}

export function RateView() {
  const { state, socket, rateRequest } = useRun();
  const [rater, setRater] = useState(storedRater);
  const [nameInput, setNameInput] = useState(rater);
  const [batch, setBatch] = useState('');
  const [voteId, setVoteId] = useState<string | null>(null);
  const open = socket.status === 'open';
  const canRate = socket.welcome?.rate ?? false;
  const r = state.rate;
  const pair = r.pair?.pair ?? null;
  const ack = voteId && r.ack?.id === voteId ? r.ack : undefined;
  // A vote the aggregator refused with an error (no token, an unknown pair): say so, allow another try.
  const refused = voteId && r.error?.ref === voteId ? r.error : undefined;
  const voting = voteId !== null && !ack && !refused;

  const next = () => {
    setVoteId(null);
    if (rater) rateRequest('next', (id) => rateNext(id, rater, batch));
  };
  useEffect(() => {
    if (!open) return;
    rateRequest('list', (id) => rateList(id));
    if (rater) rateRequest('next', (id) => rateNext(id, rater, batch));
    setVoteId(null);
  }, [open, rater, batch, rateRequest]);

  const vote = (choice: RateChoice) => {
    if (!pair || (voteId !== null && !refused) || !canRate) return;
    const id = rateRequest('vote', (i) =>
      rateVote(i, rater, pair.id, [pair.a.sample, pair.b.sample], choice),
    );
    setVoteId(id);
  };

  // Keyboard: the choices, and Enter / n for the next pair after the reveal.
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (refused) setVoteId(null);
      const t = e.target as HTMLElement | null;
      if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT'))
        return;
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      const k = e.key.toLowerCase();
      if (ack?.ok && (k === 'enter' || k === 'n')) {
        e.preventDefault();
        next();
        return;
      }
      const c = CHOICES.find((x) => x.keys.includes(k));
      if (c && pair && (voteId === null || refused)) {
        e.preventDefault();
        vote(c.choice);
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  });

  const progress = r.pair?.progress;
  return (
    <div className="view rate-view">
      <div className="toolbar rate-toolbar">
        <form
          className="rater-form"
          onSubmit={(e) => {
            e.preventDefault();
            const name = nameInput.trim().slice(0, 64);
            try {
              window.localStorage.setItem(RATER_KEY, name);
            } catch {
              /* storage disabled: the name lives in this page */
            }
            setRater(name);
          }}
        >
          <label className="field">
            <span className="field-label">your name (stored with each vote)</span>
            <input
              data-testid="rate-rater"
              value={nameInput}
              onChange={(e) => setNameInput(e.target.value)}
              placeholder="e.g. ada"
            />
          </label>
          <button
            type="submit"
            className="btn"
            data-testid="rate-start"
            disabled={!nameInput.trim()}
          >
            {rater ? 'Change' : 'Start rating'}
          </button>
        </form>
        <label className="field">
          <span className="field-label">comparison</span>
          <select value={batch} onChange={(e) => setBatch(e.target.value)} data-testid="rate-batch">
            <option value="">all</option>
            {r.batches.map((b) => (
              <option key={b} value={b}>
                {b}
              </option>
            ))}
          </select>
        </label>
        {progress && (
          <div
            className="rate-progress"
            data-testid="rate-progress"
            data-done={progress.done}
            data-total={progress.total}
          >
            <span>
              <b>{progress.done}</b> of {progress.total} rated{rater ? ` by ${rater}` : ''}
            </span>
            <div className="progress">
              <div
                className="progress-fill"
                style={{ width: `${progress.total ? (100 * progress.done) / progress.total : 0}%` }}
              />
            </div>
          </div>
        )}
        {!canRate && (
          <span className="tone-warn small">
            Read-only: open the rater link (it carries the rating token) to vote.
          </span>
        )}
      </div>

      <div className="rate-grid">
        <Card
          title="Which continuation is better?"
          subtitle="blind: who wrote A and B is shown after your vote"
          testId="card-rate"
          className="rate-card"
        >
          {!rater ? (
            <Empty>Type your name above to start.</Empty>
          ) : r.error && !pair ? (
            <Empty testId="rate-error">{r.error.message}</Empty>
          ) : !r.pair ? (
            <Empty>Loading…</Empty>
          ) : !pair ? (
            <Empty testId="rate-done">
              {progress && progress.total > 0
                ? 'You have rated every pair. Thank you!'
                : 'No pairs to rate yet: create a comparison below (needs the control token).'}
            </Empty>
          ) : (
            <div className="rate-body" data-testid="rate-pair" data-pair={pair.id}>
              <div className="rate-prompt" data-testid="rate-prompt">
                <span className="muted small">prompt</span>
                <div>{pair.prompt}</div>
              </div>
              <div className="rate-sides">
                {(['a', 'b'] as const).map((k) => (
                  <div
                    key={k}
                    className={`rate-side ${ack?.ok && ack.choice === k.toUpperCase() ? 'chosen' : ''}`}
                    data-testid={`rate-${k}`}
                  >
                    <div className="rate-side-head">
                      <b>{k.toUpperCase()}</b>
                      {ack?.reveal && (
                        <span className="reveal" data-testid={`rate-reveal-${k}`}>
                          {ack.reveal[k].source}
                          {ack.reveal[k].step !== null ? ` (step ${ack.reveal[k].step})` : ''}
                        </span>
                      )}
                    </div>
                    <div className="rate-text">
                      <span className="prompt-echo">{pair.prompt}</span>
                      {pair[k].text}
                    </div>
                  </div>
                ))}
              </div>
              <div className="rate-buttons">
                {CHOICES.map((c) => (
                  <button
                    key={c.choice}
                    type="button"
                    className={`btn ${c.choice === 'skip' ? 'ghost' : ''} ${ack?.choice === c.choice ? 'primary' : ''}`}
                    disabled={!canRate || (voteId !== null && !refused)}
                    data-testid={`rate-choice-${c.choice}`}
                    onClick={() => vote(c.choice)}
                  >
                    {c.label} <span className="kbd">{c.hint}</span>
                  </button>
                ))}
              </div>
              {voting && <div className="muted small">saving your vote…</div>}
              {((ack && !ack.ok) || refused) && (
                <div className="tone-bad small" data-testid="rate-refused">
                  Not stored: {refused?.message ?? ack?.message}
                </div>
              )}
              {ack?.ok && (
                <div className="rate-after" data-testid="rate-saved" data-vote={ack.vote}>
                  <span className="tone-ok">
                    {ack.duplicate
                      ? 'You had voted on this pair already; that vote stands.'
                      : 'Saved.'}
                  </span>
                  <button
                    type="button"
                    className="btn primary"
                    data-testid="rate-next"
                    onClick={next}
                  >
                    Next pair <span className="kbd">Enter</span>
                  </button>
                </div>
              )}
            </div>
          )}
        </Card>
        <div className="stack">
          <Leaderboard />
          <RatedOnLossCurve />
        </div>
        <CreateComparison />
      </div>
    </div>
  );
}

function Leaderboard() {
  const { state } = useRun();
  const votes = state.rate.votes;
  const lb = useMemo(() => leaderboard(votes), [votes]);
  return (
    <Card
      title="Leaderboard"
      subtitle="Bradley-Terry strength (geometric mean 1) with 95% bootstrap intervals; ties and 'both bad' count half"
      testId="card-leaderboard"
    >
      {lb.rows.length === 0 ? (
        <Empty>No votes yet.</Empty>
      ) : (
        <>
          <table className="table" data-testid="rate-leaderboard">
            <thead>
              <tr>
                <th>#</th>
                <th>source</th>
                <th className="num">strength</th>
                <th className="num">95% interval</th>
                <th className="num">won</th>
                <th className="num">lost</th>
                <th className="num">tied</th>
              </tr>
            </thead>
            <tbody>
              {lb.rows.map((row, i) => (
                <tr
                  key={row.source}
                  data-testid="rate-leader-row"
                  data-source={row.source}
                  data-strength={row.strength}
                >
                  <td>{i + 1}</td>
                  <td className="mono">{row.source}</td>
                  <td className="num mono">{fmtNum(row.strength, 3)}</td>
                  <td className="num mono">
                    {row.ci ? `${fmtNum(row.ci[0], 3)} – ${fmtNum(row.ci[1], 3)}` : '—'}
                  </td>
                  <td className="num">{row.wins}</td>
                  <td className="num">{row.losses}</td>
                  <td className="num">{row.ties}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <div className="stats compact">
            <div className="stat" data-testid="rate-votes" data-value={lb.votes}>
              <div className="stat-label">votes</div>
              <div className="stat-value">{lb.votes}</div>
              <div className="stat-hint">
                {lb.skipped} skipped · {lb.raters.length} raters
              </div>
            </div>
            <div
              className="stat"
              data-testid="rate-alpha"
              data-value={Number.isFinite(lb.alpha) ? lb.alpha : ''}
              data-items={lb.agreementItems}
            >
              <div className="stat-label">Krippendorff's α</div>
              <div className="stat-value">
                {Number.isFinite(lb.alpha) ? fmtNum(lb.alpha, 3) : '—'}
              </div>
              <div className="stat-hint">
                {lb.agreementItems} pairs rated twice or more
                {Number.isFinite(lb.percent) ? ` · ${(lb.percent * 100).toFixed(0)}% agree` : ''}
              </div>
            </div>
          </div>
        </>
      )}
    </Card>
  );
}

function RatedOnLossCurve() {
  const { state } = useRun();
  const lb = useMemo(() => leaderboard(state.rate.votes, 0), [state.rate.votes]);
  const markers: Marker[] = lb.rows
    .filter((r) => r.step !== null)
    .map((r) => ({
      x: r.step as number,
      label: `${r.source} · ${fmtNum(r.strength, 3)}`,
      color: '#a970ff',
    }));
  const lines = useMemo(
    () => [
      {
        label: 'train loss',
        data: state.trainLoss.pts.slice(0, state.trainLoss.n),
        color: '#4f8cff',
      },
    ],
    // The series grows in place: version says when.
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [state.trainLoss, state.version],
  );
  return (
    <Card
      title="Rated checkpoints on the loss curve"
      subtitle="each mark: a checkpoint raters compared, with its strength"
      testId="card-rate-loss"
    >
      {state.trainLoss.n === 0 ? (
        <Empty>No loss yet: the curve appears with the run.</Empty>
      ) : (
        <div
          data-testid="rate-marks"
          data-marks={JSON.stringify(markers.map((m) => m.x))}
          className="chart-wrap"
        >
          <TimeChart
            lines={lines}
            version={state.version}
            markers={markers}
            height={200}
            legend={false}
            testId="rate-loss-chart"
          />
        </div>
      )}
    </Card>
  );
}

function CreateComparison() {
  const { state, socket, rateRequest, refreshCheckpoints } = useRun();
  const checkpoints = state.checkpoints?.items ?? [];
  const [a, setA] = useState('');
  const [b, setB] = useState('');
  const [prompts, setPrompts] = useState('Once upon a time\nThe old man said');
  const [maxTokens, setMaxTokens] = useState<number | null>(24);
  const [reqId, setReqId] = useState<string | null>(null);
  const open = socket.status === 'open';
  useEffect(() => {
    if (open) refreshCheckpoints();
  }, [open, refreshCheckpoints]);
  const control = socket.welcome?.control ?? false;
  const created = reqId ? state.rate.created[reqId] : undefined;
  const refused = reqId && state.rate.error?.ref === reqId ? state.rate.error : undefined;
  const list = prompts
    .split('\n')
    .map((p) => p.trim())
    .filter(Boolean);
  const submit = () => {
    const options = { strategy: 'greedy', max_new_tokens: maxTokens ?? 24 };
    setReqId(rateRequest('create', (id) => rateCreate(id, [a, b], list, options)));
  };
  const sourceSelect = (value: string, set: (v: string) => void, testId: string) => (
    <select value={value} onChange={(e) => set(e.target.value)} data-testid={testId}>
      <option value="">choose…</option>
      {checkpoints.map((c) => (
        <option key={c.name} value={c.name}>
          {c.name}
        </option>
      ))}
    </select>
  );
  return (
    <Card
      title="New comparison"
      subtitle="generates a greedy continuation of each prompt from both checkpoints; one pair per prompt"
      testId="card-rate-create"
      className="rate-create"
    >
      {!control ? (
        <Empty>Creating pairs runs generation: it needs the control token.</Empty>
      ) : (
        <form
          className="create-form"
          onSubmit={(e) => {
            e.preventDefault();
            submit();
          }}
        >
          <div className="target-row">
            <label className="field grow">
              <span className="field-label">source 1</span>
              {sourceSelect(a, setA, 'rate-source-a')}
            </label>
            <label className="field grow">
              <span className="field-label">source 2</span>
              {sourceSelect(b, setB, 'rate-source-b')}
            </label>
            <NumberField
              label="max new tokens"
              value={maxTokens}
              onChange={setMaxTokens}
              width={80}
              testId="rate-max-tokens"
            />
          </div>
          <label className="field grow">
            <span className="field-label">prompts, one per line</span>
            <textarea
              className="prompt-box"
              rows={4}
              value={prompts}
              onChange={(e) => setPrompts(e.target.value)}
              data-testid="rate-prompts"
            />
          </label>
          <div className="button-row">
            <button
              type="submit"
              className="btn primary"
              disabled={
                !a || !b || a === b || list.length === 0 || (reqId !== null && !created && !refused)
              }
              data-testid="rate-create"
            >
              Generate {list.length} pair{list.length === 1 ? '' : 's'}
            </button>
            {reqId && !created && !refused && <span className="muted small">generating…</span>}
            {created && (
              <span
                className={created.ok ? 'tone-ok small' : 'tone-bad small'}
                data-testid="rate-created"
                data-ok={created.ok ? 'yes' : 'no'}
              >
                {created.ok
                  ? `${created.pairs} pairs added to "${created.batch}"`
                  : created.message}
              </span>
            )}
            {refused && <span className="tone-bad small">{refused.message}</span>}
          </div>
        </form>
      )}
    </Card>
  );
}
