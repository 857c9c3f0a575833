// The Rate tab's live leaderboard from the votes (`rate_votes` rows):
// Bradley-Terry strengths with bootstrap intervals, and the agreement of raters
// on pairs that were rated twice or more (Krippendorff's alpha).
//
// The numbers are the ones `shardlm eval ratings --db` prints for the same
// database (eval/stats.cpp, eval/ratings.cpp): the same MM iteration (Hunter
// 2004) with half a pseudo-win against a virtual average player, the same
// geometric-mean normalisation, "both bad" counted as a tie and skips left out,
// and the same agreement categories (better / worse in the sources' name
// order, tie, both bad). The browser test compares the two. Intervals come from
// this page's own resampling (seeded), so they match the CLI's in width, not
// digit for digit.

import type { VoteRow } from '../protocol';

export interface Outcome {
  a: string;
  b: string;
  /** 1: a won, 0: b won, 0.5: tie. */
  scoreA: number;
}

/** Bradley-Terry strengths, geometric mean 1 (eval::bradley_terry). */
export function bradleyTerry(outcomes: Outcome[]): Map<string, number> {
  const names = [...new Set(outcomes.flatMap((o) => [o.a, o.b]))].sort();
  const n = names.length;
  const id = new Map(names.map((x, i) => [x, i]));
  const wins = new Array<number>(n).fill(0.5);
  const games: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(n + 1).fill(0));
  for (let i = 0; i < n; i++) games[i][n] = games[n][i] = 1;
  for (const o of outcomes) {
    const a = id.get(o.a) as number;
    const b = id.get(o.b) as number;
    if (a === b) continue;
    wins[a] += o.scoreA;
    wins[b] += 1 - o.scoreA;
    games[a][b] += 1;
    games[b][a] += 1;
  }
  let p = new Array<number>(n + 1).fill(1);
  for (let round = 0; round < 1000; round++) {
    const next = p.slice();
    for (let i = 0; i < n; i++) {
      let denom = 0;
      for (let j = 0; j <= n; j++)
        if (j !== i && games[i][j] > 0) denom += games[i][j] / (p[i] + p[j]);
      next[i] = denom > 0 ? wins[i] / denom : p[i];
    }
    let change = 0;
    for (let i = 0; i < n; i++) change = Math.max(change, Math.abs(next[i] - p[i]));
    p = next;
    if (change < 1e-10) break;
  }
  let logMean = 0;
  for (let i = 0; i < n; i++) logMean += Math.log(p[i]);
  logMean /= Math.max(n, 1);
  return new Map(names.map((x, i) => [x, p[i] / Math.exp(logMean)]));
}

/** A small seeded generator (mulberry32): reproducible intervals on every redraw. */
export function rng(seed: number): () => number {
  let t = seed >>> 0;
  return () => {
    t = (t + 0x6d2b79f5) >>> 0;
    let r = Math.imul(t ^ (t >>> 15), 1 | t);
    r ^= r + Math.imul(r ^ (r >>> 7), 61 | r);
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

function quantile(sorted: number[], q: number): number {
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
}

/** Percentile bootstrap 95% intervals of the strengths (votes resampled with replacement). */
export function bradleyTerryIntervals(
  outcomes: Outcome[],
  resamples = 300,
  seed = 1234,
): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  if (outcomes.length < 2) return out;
  const names = [...bradleyTerry(outcomes).keys()];
  const draws = new Map(names.map((x) => [x, [] as number[]]));
  const next = rng(seed);
  const sample: Outcome[] = new Array(outcomes.length);
  for (let r = 0; r < resamples; r++) {
    for (let i = 0; i < outcomes.length; i++)
      sample[i] = outcomes[Math.floor(next() * outcomes.length)];
    const bt = bradleyTerry(sample);
    for (const x of names) (draws.get(x) as number[]).push(bt.get(x) ?? 1);
  }
  for (const x of names) {
    const v = (draws.get(x) as number[]).sort((a, b) => a - b);
    out.set(x, [quantile(v, 0.025), quantile(v, 0.975)]);
  }
  return out;
}

/** Krippendorff's alpha for nominal values; NaN when undefined (eval::krippendorff_alpha). */
export function krippendorffAlpha(units: string[][]): number {
  const o = new Map<string, Map<string, number>>();
  for (const u of units) {
    const m = u.length;
    if (m < 2) continue;
    for (let i = 0; i < m; i++)
      for (let j = 0; j < m; j++) {
        if (i === j) continue;
        const row = o.get(u[i]) ?? new Map<string, number>();
        row.set(u[j], (row.get(u[j]) ?? 0) + 1 / (m - 1));
        o.set(u[i], row);
      }
  }
  const nc = new Map<string, number>();
  let n = 0;
  let disagree = 0;
  for (const [c, row] of o)
    for (const [k, v] of row) {
      nc.set(c, (nc.get(c) ?? 0) + v);
      n += v;
      if (c !== k) disagree += v;
    }
  if (n < 2) return NaN;
  let expected = 0;
  for (const [c, a] of nc) for (const [k, b] of nc) if (c !== k) expected += a * b;
  if (expected === 0) return NaN;
  return 1 - ((n - 1) * disagree) / expected;
}

export interface LeaderRow {
  source: string;
  /** The training step, for checkpoints of this run. */
  step: number | null;
  strength: number;
  ci?: [number, number];
  wins: number;
  losses: number;
  ties: number;
}

export interface Leaderboard {
  rows: LeaderRow[];
  /** Votes that count (skips left out). */
  votes: number;
  skipped: number;
  raters: string[];
  /** Pairs rated by two or more raters. */
  agreementItems: number;
  alpha: number;
  /** Share of rater pairs on those items that chose the same. */
  percent: number;
}

/** The leaderboard of `votes` (rows sorted by strength, strongest first). */
export function leaderboard(votes: VoteRow[], resamples = 300): Leaderboard {
  const outcomes: Outcome[] = [];
  const steps = new Map<string, number | null>();
  const record = new Map<string, { wins: number; losses: number; ties: number }>();
  const units = new Map<number, string[]>();
  const raters = new Set<string>();
  let skipped = 0;
  const rec = (s: string) => {
    let r = record.get(s);
    if (!r) record.set(s, (r = { wins: 0, losses: 0, ties: 0 }));
    return r;
  };
  for (const v of votes) {
    const [a, b] = v.sources;
    steps.set(a, v.steps[0]);
    steps.set(b, v.steps[1]);
    if (v.outcome === 'skip') {
      skipped++;
      continue;
    }
    raters.add(v.rater);
    const scoreA = v.outcome === 'a' ? 1 : v.outcome === 'b' ? 0 : 0.5;
    outcomes.push({ a, b, scoreA });
    if (scoreA === 0.5) {
      rec(a).ties++;
      rec(b).ties++;
    } else {
      rec(scoreA === 1 ? a : b).wins++;
      rec(scoreA === 1 ? b : a).losses++;
    }
    if (a !== b) {
      // eval/ratings.cpp's categories: better or worse in the sources' name order.
      const firstWon = a < b ? scoreA === 1 : scoreA === 0;
      const cat =
        v.outcome === 'tie' || v.outcome === 'both_bad' ? v.outcome : firstWon ? 'first' : 'second';
      const u = units.get(v.pair) ?? [];
      u.push(cat);
      units.set(v.pair, u);
    }
  }
  const bt = bradleyTerry(outcomes);
  const ci = bradleyTerryIntervals(outcomes, resamples);
  const rows: LeaderRow[] = [...bt.entries()]
    .map(([source, strength]) => ({
      source,
      step: steps.get(source) ?? null,
      strength,
      ci: ci.get(source),
      ...rec(source),
    }))
    .sort((x, y) => y.strength - x.strength);
  const twice = [...units.values()].filter((u) => u.length >= 2);
  let agree = 0;
  let pairs = 0;
  for (const u of twice)
    for (let i = 0; i < u.length; i++)
      for (let j = i + 1; j < u.length; j++) {
        agree += u[i] === u[j] ? 1 : 0;
        pairs++;
      }
  return {
    rows,
    votes: outcomes.length,
    skipped,
    raters: [...raters].sort(),
    agreementItems: twice.length,
    alpha: krippendorffAlpha(twice),
    percent: pairs > 0 ? agree / pairs : NaN,
  };
}
