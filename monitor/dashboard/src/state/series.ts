// Append-only point series for the charts, cheap enough for 100k+ points.
//
// A run reports one point per step for hours, so copying arrays on every
// message (the usual immutable-reducer habit) would be O(n^2). A Series is a
// small immutable handle {pts, n} over a point buffer that successive states
// share: appending pushes onto the buffer and returns a new handle. Before
// pushing, the buffer is cut back to the handle's n, so applying the same
// action twice to the same state (React's StrictMode does that) gives the same
// result. Consumers read `pts` (its length is the newest handle's n) and must not
// modify it. Points are {x, y} objects because Chart.js's decimation plugin
// needs `parsing: false` data in that form, sorted by x.

export interface Point {
  x: number;
  y: number;
}

export interface Series {
  readonly pts: Point[];
  readonly n: number;
  /** Bumped whenever points were dropped (a rewind), so caches know to restart. */
  readonly gen: number;
}

export function emptySeries(): Series {
  return { pts: [], n: 0, gen: 0 };
}

/** Index of the first point with x >= value (points are sorted by x). */
export function lowerBound(pts: readonly Point[], n: number, value: number): number {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (pts[mid].x < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Adds (x, y). An x at or before the last point (a run resumed from an earlier
 * checkpoint, or a repeated step) drops the points from x on first, so the
 * series stays sorted and shows the timeline the run actually took.
 * A null y (NaN or infinity on the wire) is stored as NaN: Chart.js leaves a gap.
 */
export function append(s: Series, x: number, y: number | null): Series {
  const pts = s.pts;
  let n = s.n;
  let gen = s.gen;
  if (n > 0 && pts[n - 1].x >= x) {
    n = lowerBound(pts, n, x);
    gen += 1;
  }
  if (pts.length !== n) pts.length = n;
  pts.push({ x, y: y === null ? NaN : y });
  return { pts, n: n + 1, gen };
}

export function last(s: Series): Point | undefined {
  return s.n > 0 ? s.pts[s.n - 1] : undefined;
}

// ---- smoothing -------------------------------------------------------------------

/**
 * Exponential moving average with TensorBoard's debiasing (the first points
 * are not pulled towards zero), computed incrementally: `update` only walks the
 * points added since the last call, unless the weight changed or the series
 * was rewound. NaN points stay NaN and do not disturb the average.
 */
export class Smoother {
  private weight = -1;
  private src: Point[] | null = null;
  private gen = -1;
  private done = 0;
  private acc = 0;
  private count = 0;
  readonly out: Point[] = [];

  update(s: Series, weight: number): Point[] {
    const pts = s.pts;
    const rewound =
      this.src !== pts || weight !== this.weight || s.gen !== this.gen || this.done > s.n;
    if (rewound) {
      this.weight = weight;
      this.src = pts;
      this.gen = s.gen;
      this.done = 0;
      this.acc = 0;
      this.count = 0;
      this.out.length = 0;
    }
    for (let i = this.done; i < s.n; i++) {
      const p = pts[i];
      if (!Number.isFinite(p.y) || weight <= 0) {
        this.out.push({ x: p.x, y: p.y });
        continue;
      }
      this.acc = this.acc * weight + (1 - weight) * p.y;
      this.count += 1;
      this.out.push({ x: p.x, y: this.acc / (1 - Math.pow(weight, this.count)) });
    }
    this.done = s.n;
    return this.out;
  }
}

/** One-shot EMA over the first n points (tests and small series). */
export function smooth(s: Series, weight: number): Point[] {
  return new Smoother().update(s, weight).slice();
}

// ---- decimation ------------------------------------------------------------------

/**
 * A min/max envelope of a growing point buffer, kept incrementally, so a chart
 * of a long run draws a few thousand points instead of every step. Up to
 * `limit` points the view is the buffer itself. Beyond, points fall into
 * buckets of k consecutive steps, each drawn as its lowest and highest point
 * (spikes survive), and k doubles, merging neighbours, whenever there would be
 * more than limit / 2 buckets: O(1) amortised per point. The newest, partial
 * bucket is drawn point by point. A rewound or replaced buffer (the object at
 * the last seen position changed) starts over.
 */
export class Decimator {
  private src: Point[] | null = null;
  private done = 0;
  private lastSeen: Point | null = null;
  private k = 1;
  private buckets: { lo: Point; hi: Point }[] = [];
  private partial: Point[] = [];

  constructor(private readonly limit = 4000) {}

  /** The points to draw for `pts` (sorted by x, as Series buffers are). */
  view(pts: Point[]): Point[] {
    if (
      pts !== this.src ||
      this.done > pts.length ||
      (this.done > 0 && pts[this.done - 1] !== this.lastSeen)
    ) {
      this.src = pts;
      this.reset(pts.length);
    }
    if (this.k === 1) {
      if (pts.length <= this.limit) {
        this.done = pts.length;
        this.lastSeen = pts[pts.length - 1] ?? null;
        return pts;
      }
      this.reset(pts.length); // the buffer outgrew the limit: bucket it from the start
    }
    for (let i = this.done; i < pts.length; i++) {
      this.partial.push(pts[i]);
      if (this.partial.length === this.k) {
        this.buckets.push(envelope(this.partial));
        this.partial = [];
        if (this.buckets.length > this.limit / 2) this.merge();
      }
    }
    this.done = pts.length;
    this.lastSeen = pts[pts.length - 1] ?? null;
    const out: Point[] = [];
    for (const b of this.buckets) {
      out.push(b.lo);
      if (b.hi !== b.lo) out.push(b.hi);
    }
    for (const p of this.partial) out.push(p);
    return out;
  }

  /** k = 1 draws the buffer as it is; above the limit, k is chosen for about limit / 4 buckets. */
  private reset(n: number): void {
    this.done = 0;
    this.k = n <= this.limit ? 1 : Math.max(2, 2 ** Math.ceil(Math.log2((4 * n) / this.limit)));
    this.buckets = [];
    this.partial = [];
  }

  /** Pairs of buckets become one, k doubles; the partial bucket stays raw. */
  private merge(): void {
    const next: { lo: Point; hi: Point }[] = [];
    for (let i = 0; i + 1 < this.buckets.length; i += 2)
      next.push(envelope([...pair(this.buckets[i]), ...pair(this.buckets[i + 1])]));
    if (this.buckets.length % 2 === 1) {
      // An odd bucket out joins the raw points of the next, larger bucket.
      this.partial = [...pair(this.buckets[this.buckets.length - 1]), ...this.partial];
    }
    this.buckets = next;
    this.k *= 2;
  }
}

const pair = (b: { lo: Point; hi: Point }): Point[] => (b.lo === b.hi ? [b.lo] : [b.lo, b.hi]);

/** The lowest and highest finite points of a run of points, in x order. */
function envelope(run: Point[]): { lo: Point; hi: Point } {
  let min: Point | null = null;
  let max: Point | null = null;
  for (const p of run) {
    if (!Number.isFinite(p.y)) continue;
    if (!min || p.y < min.y) min = p;
    if (!max || p.y > max.y) max = p;
  }
  if (!min || !max) return { lo: run[0], hi: run[0] }; // all NaN: one gap point
  return min.x <= max.x ? { lo: min, hi: max } : { lo: max, hi: min };
}
