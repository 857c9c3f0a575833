#!/usr/bin/env node
// How the Training tab copes with a long run: 100k steps from 2 ranks
// (300k messages) fed into the page, then live updates one step at a time.
// Compares the dashboard's chart path (incremental min/max envelope, parsing:
// false, LTTB decimation) with every point handed to Chart.js with its
// defaults (`?bench=naive`), in the same browser with the same data.
//
//   node e2e/bench_charts.mjs [--steps 100000] [--updates 40]
// Prints one JSON object; bench/RESULTS.md records the figures.

import { createServer } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const DASH = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const opt = (n, d) => (argv.includes(`--${n}`) ? Number(argv[argv.indexOf(`--${n}`) + 1]) : d);
const STEPS = opt('steps', 100000);
const UPDATES = opt('updates', 40);
const dist = join(DASH, 'dist');
if (!existsSync(join(dist, 'index.html'))) throw new Error('build the dashboard first (npm run build)');
const { chromium } = await import(join(DASH, 'node_modules/playwright-core/index.mjs'));

// The built files over plain HTTP (no aggregator: the page's socket just retries).
const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' };
const server = createServer((req, res) => {
  let p = new URL(req.url, 'http://x').pathname;
  if (p === '/' || !extname(p)) p = '/index.html';
  const f = join(dist, p);
  if (!f.startsWith(dist) || !existsSync(f)) return res.writeHead(404).end();
  res.writeHead(200, { 'content-type': types[extname(f)] ?? 'application/octet-stream' }).end(readFileSync(f));
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${server.address().port}`;

const profile = mkdtempSync(join(tmpdir(), 'shardlm-bench-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  viewport: { width: 1280, height: 800 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

async function measure(mode) {
  const page = await context.newPage();
  await page.goto(`${base}/?bench=${mode}#training`);
  await page.waitForFunction(() => window.__shardlm?.dispatch);
  return page.evaluate(
    async ({ steps, updates }) => {
      const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      const msgs = (from, to) => {
        const out = [];
        for (let s = from; s < to; s++) {
          const loss = 2 + 8 * Math.exp(-s / 5000) + 0.1 * Math.sin(s);
          for (let rank = 0; rank < 2; rank++)
            out.push({ v: 1, type: 'step', ts: 1e9 + s, seq: 3 * s + rank, rank, step: s, loss, lr: 3e-4, grad_norm: 1 + 0.1 * Math.cos(s), tokens_per_s: 1e4, time: { total: 0.1, forward: 0.04, backward: 0.05 }, mem: { host_rss: 1e9 } });
          out.push({ v: 1, type: 'aggregate', ts: 1e9 + s, seq: 3 * s + 2, step: s, ranks: 2, world_size: 2, complete: true, loss: { mean: loss, min: loss, max: loss }, step_time: { mean: 0.1, min: 0.1, max: 0.1, median: 0.1 }, tokens_per_s: { mean: 1e4, min: 1e4, max: 1e4, sum: 2e4 }, stragglers: [] });
        }
        return out;
      };
      const { dispatch } = window.__shardlm;
      await frame();
      const history = msgs(1, steps + 1);
      let t = performance.now();
      dispatch({ type: 'messages', messages: history });
      await frame();
      const firstDrawMs = performance.now() - t;
      const times = [];
      for (let i = 0; i < updates; i++) {
        const batch = msgs(steps + 1 + i, steps + 2 + i);
        t = performance.now();
        dispatch({ type: 'messages', messages: batch });
        await frame();
        times.push(performance.now() - t);
      }
      // Two animation frames with nothing to do: the floor of this measurement.
      const idle = [];
      for (let i = 0; i < 10; i++) {
        t = performance.now();
        await frame();
        idle.push(performance.now() - t);
      }
      idle.sort((a, b) => a - b);
      times.sort((a, b) => a - b);
      const points = Number(document.querySelector('[data-testid=loss-chart]')?.getAttribute('data-points'));
      return {
        points,
        firstDrawMs: Math.round(firstDrawMs),
        updateMeanMs: +(times.reduce((a, b) => a + b, 0) / times.length).toFixed(1),
        updateP95Ms: +times[Math.floor(0.95 * (times.length - 1))].toFixed(1),
        idleFrameMedianMs: +idle[5].toFixed(1),
      };
    },
    { steps: STEPS, updates: UPDATES },
  );
}

const fast = await measure('fast');
const naive = await measure('naive');
await context.close();
rmSync(profile, { recursive: true, force: true });
server.close();
console.log(JSON.stringify({ steps: STEPS, ranks: 2, updates: UPDATES, dashboard: fast, chartjs_defaults: naive, update_ratio: +(naive.updateMeanMs / fast.updateMeanMs).toFixed(1) }, null, 2));
