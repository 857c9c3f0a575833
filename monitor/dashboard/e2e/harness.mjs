// What the dashboard's browser tests share (e2e/e2e.mjs, e2e/workbench.mjs):
// options, skipping (exit 77) without chromium or the npm packages, named
// checks with a summary, waiting, free ports, the built page, processes, and
// Debian's chromium through playwright-core.

import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = dirname(fileURLToPath(import.meta.url));
export const DASH = resolve(HERE, '..');
export const SKIP = 77;
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

const argv = process.argv.slice(2);
export const opt = (name, def) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : def;
};
export const flag = (name) => argv.includes(`--${name}`);

export function skip(why) {
  console.log(`SKIPPED: ${why}`);
  process.exit(SKIP);
}

/** Exits 77 unless chromium, the npm packages and a `shardlm` with `monitor` are there. */
export function requireTools(shardlm) {
  if (!existsSync(CHROMIUM)) skip(`${CHROMIUM} not found (apt-get install chromium)`);
  for (const m of ['playwright-core', 'ws', 'vite']) {
    if (!existsSync(join(DASH, 'node_modules', m))) skip(`monitor/dashboard/node_modules/${m} missing (./shardlm.sh setup)`);
  }
  if (!existsSync(shardlm)) skip(`${shardlm} not built`);
  if (!/^\s+monitor\s/m.test(spawnSync(shardlm, ['--help'], { encoding: 'utf8' }).stdout ?? '')) skip(`${shardlm} has no monitor subcommand`);
}

export const T0 = Date.now();
export const log = (...a) => console.log(`[e2e ${((Date.now() - T0) / 1000).toFixed(1).padStart(5)}s]`, ...a);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

/** Named checks: each runs, is timed and logged; a failure is recorded and `onFail` runs (a screenshot).
 * Whether any failed: `anyFailed(results)` (read at the end, not copied out of this object early). */
export function checks(onFail = async () => {}) {
  const results = [];
  return {
    results,
    async check(name, fn) {
      const t = Date.now();
      try {
        await fn();
        results.push({ name, ok: true, ms: Date.now() - t });
        log(`ok   ${name}`);
      } catch (e) {
        results.push({ name, ok: false, ms: Date.now() - t, error: String(e?.stack ?? e) });
        log(`FAIL ${name}\n${e?.stack ?? e}`);
        await onFail(name).catch(() => {});
      }
    },
  };
}

export const anyFailed = (results) => results.some((r) => !r.ok);

export async function until(what, fn, timeoutMs = 20000, everyMs = 200) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}

export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

function newestMtime(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** monitor/dashboard/dist, rebuilt when a source is newer (or it is missing). */
export function builtDashboard() {
  const dist = join(DASH, 'dist');
  const srcTime = Math.max(newestMtime(join(DASH, 'src')), statSync(join(DASH, 'index.html')).mtimeMs);
  if (!existsSync(join(dist, 'index.html')) || statSync(join(dist, 'index.html')).mtimeMs < srcTime) {
    log('building the dashboard (vite build)');
    const b = spawnSync('npx', ['vite', 'build', '--logLevel', 'warn'], { cwd: DASH, stdio: 'inherit' });
    if (b.status !== 0) throw new Error('vite build failed');
  }
  return dist;
}

/** Starts `cmd args`, its output appended to `logFile`; `opts.group`: its own process group. */
export function start(cmd, args, logFile, opts = {}) {
  const out = createWriteStream(logFile, { flags: 'a' });
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: !!opts.group, env: opts.env ?? process.env });
  p.stdout.pipe(out);
  p.stderr.pipe(out);
  p.once('exit', (code, sig) => log(`${opts.name ?? cmd} exited: ${code ?? sig}`));
  return p;
}

/** Ends a process (its group with `group`): `signal`, then SIGKILL after 5 s. */
export function stopProcess(p, signal = 'SIGTERM', group = false) {
  if (!p || p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  const send = (sig) => {
    try {
      if (group) process.kill(-p.pid, sig);
      else p.kill(sig);
    } catch {}
  };
  return new Promise((res) => {
    const t = setTimeout(() => {
      send('SIGKILL');
      res();
    }, 5000);
    p.once('exit', () => {
      clearTimeout(t);
      res();
    });
    send(signal);
  });
}

export async function waitHealthy(base, token = null) {
  return until(
    'the aggregator to answer /api/health',
    async () => {
      try {
        const r = await fetch(`${base}/api/health`, token ? { headers: { Authorization: `Bearer ${token}` } } : {});
        return r.ok ? await r.json() : null;
      } catch {
        return null;
      }
    },
    20000,
  );
}

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** playwright-core and the ws package of monitor/dashboard/node_modules. */
export async function browserModules() {
  const { chromium } = await import(join(DASH, 'node_modules/playwright-core/index.mjs'));
  const { default: WebSocket } = await import(join(DASH, 'node_modules/ws/wrapper.mjs'));
  return { chromium, WebSocket };
}

/** A browser whose contexts are independent (each with its own storage), like separate people. */
export async function launchBrowser(chromium) {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

/** A persistent chromium profile in a temporary directory (removed by the returned cleanup). */
export async function launchChromium(chromium, viewport = { width: 1280, height: 800 }) {
  const profile = mkdtempSync(join(tmpdir(), 'shardlm-chromium-'));
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, viewport, args: CHROMIUM_ARGS });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
