// The Rate tab's leaderboard (src/lib/ratings.ts) against the numbers of
// eval/stats.cpp and eval/ratings.cpp: the published Krippendorff example, the
// same Rate-tab votes as tests/eval's RateTabChoicesAndAgreement, and
// Bradley-Terry properties.

import { describe, expect, it } from 'vitest';
import {
  bradleyTerry,
  bradleyTerryIntervals,
  krippendorffAlpha,
  leaderboard,
  type Outcome,
} from '../src/lib/ratings';
import type { VoteRow } from '../src/protocol';

describe('Krippendorff alpha', () => {
  it('reproduces the nominal example of Krippendorff (2011): 0.743', () => {
    const units = [
      ['1', '1', '1'],
      ['2', '2', '3', '2'],
      ['3', '3', '3', '3'],
      ['3', '3', '3', '3'],
      ['2', '2', '2', '2'],
      ['1', '2', '3', '4'],
      ['4', '4', '4', '4'],
      ['1', '1', '2', '1'],
      ['2', '2', '2', '2'],
      ['5', '5', '5'],
      ['1', '1'],
      ['3'],
    ];
    expect(krippendorffAlpha(units)).toBeCloseTo(0.7434210526, 9);
    expect(
      krippendorffAlpha([
        ['a', 'a'],
        ['b', 'b'],
        ['a', 'b'],
        ['b', 'b'],
      ]),
    ).toBeCloseTo(8 / 15, 12);
    expect(
      krippendorffAlpha([
        ['a', 'a'],
        ['a', 'a'],
      ]),
    ).toBeNaN();
    expect(krippendorffAlpha([['a'], ['b']])).toBeNaN();
  });
});

describe('Bradley-Terry', () => {
  it('ranks the winner first, normalises to a geometric mean of 1, and is symmetric', () => {
    const o: Outcome[] = [
      { a: 'a', b: 'b', scoreA: 1 },
      { a: 'a', b: 'b', scoreA: 1 },
      { a: 'b', b: 'a', scoreA: 1 },
      { a: 'a', b: 'b', scoreA: 1 },
      { a: 'b', b: 'c', scoreA: 0.5 },
    ];
    const bt = bradleyTerry(o);
    expect(bt.get('a')!).toBeGreaterThan(bt.get('b')!);
    expect(Math.log(bt.get('a')!) + Math.log(bt.get('b')!) + Math.log(bt.get('c')!)).toBeCloseTo(
      0,
      9,
    );
    const eq = bradleyTerry([
      { a: 'x', b: 'y', scoreA: 1 },
      { a: 'x', b: 'y', scoreA: 0 },
    ]);
    expect(eq.get('x')!).toBeCloseTo(eq.get('y')!, 9);
  });
  it('gives intervals around the estimate that exclude 1 for a clear winner', () => {
    const o: Outcome[] = Array.from({ length: 30 }, (_, i) => ({
      a: 'a',
      b: 'b',
      scoreA: i < 22 ? 1 : 0,
    }));
    const ci = bradleyTerryIntervals(o, 300);
    const bt = bradleyTerry(o);
    const [lo, hi] = ci.get('a')!;
    expect(lo).toBeLessThan(bt.get('a')!);
    expect(hi).toBeGreaterThan(bt.get('a')!);
    expect(lo).toBeGreaterThan(1);
    expect(ci.get('b')![1]).toBeLessThan(1);
  });
});

describe('leaderboard of Rate-tab votes', () => {
  // The votes of tests/eval RateTabChoicesAndAgreement, as the aggregator sends them
  // (outcome relative to the pair's first sample: step-200 here).
  const row = (
    vote: number,
    pair: number,
    rater: string,
    outcome: VoteRow['outcome'],
  ): VoteRow => ({
    vote,
    rater,
    pair,
    batch: '200 vs 400',
    sources: ['step-200', 'step-400'],
    steps: [200, 400],
    outcome,
    time: 1e9 + vote,
  });
  const votes = [
    row(1, 1, 'ann', 'b'),
    row(2, 1, 'bob', 'b'),
    row(3, 2, 'ann', 'tie'),
    row(4, 2, 'bob', 'tie'),
    row(5, 3, 'ann', 'a'),
    row(6, 3, 'bob', 'b'),
    row(7, 4, 'ann', 'both_bad'),
    row(8, 5, 'bob', 'skip'),
  ];
  it('counts, ranks and measures agreement as `shardlm eval ratings` does', () => {
    const lb = leaderboard(votes, 100);
    expect(lb.votes).toBe(7);
    expect(lb.skipped).toBe(1);
    expect(lb.raters).toEqual(['ann', 'bob']);
    expect(lb.rows.map((r) => r.source)).toEqual(['step-400', 'step-200']);
    expect(lb.rows[0]).toMatchObject({ step: 400, wins: 3, losses: 1, ties: 3 });
    expect(lb.agreementItems).toBe(3);
    expect(lb.percent).toBeCloseTo(2 / 3, 12);
    expect(lb.alpha).toBeCloseTo(1 - 10 / 22, 12);
    expect(lb.rows[0].ci).toBeDefined();
  });
});
