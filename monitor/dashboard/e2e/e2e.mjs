#!/usr/bin/env node
// End-to-end test of the dashboard in Debian's chromium (playwright-core),
// against the real aggregator (`shardlm monitor`) and a 2-rank run that the
// aggregator starts from the dashboard's "Start a run" form.
//
//   node e2e/e2e.mjs --shardlm build/launcher/shardlm --out build/tests/dashboard/artifacts \
//        --producer "node e2e/fake_ranks.mjs --run-dir {run_dir} --config {config} {resume_args}"
//
// --producer is the aggregator's launch template ({config}, {run_dir},
// {shardlm}, {resume_args} are filled in by the aggregator). The test writes
// the run config (with [monitor] url) and asserts, through the page:
//   - controls unlock with the token from RUN_DIR/monitor.token, a run starts from a config;
//   - the loss chart gains points over time;
//   - Pause stops the step counter at the acknowledged step, and the aggregator
//     relays the rank's ack to every viewer; Resume continues;
//   - a new LR shows up in the LR chart from the acknowledged step;
//   - a saved checkpoint appears in the list; Stop ends the run; resuming from
//     the checkpoint continues at its step;
//   - the page reconnects by itself when the aggregator restarts, and gets the history again;
//   - a viewer without the token is read-only;
//   - inspection views show a result or "not available", never a broken page;
// and saves a screenshot of every main view at 1280x800 and 1920x1080 under
// OUT/screens. Every message the aggregator sent to a viewer is kept in
// OUT/captured.jsonl and checked against monitor/protocol.schema.json and the
// TypeScript types (test/protocol.test.ts with SHARDLM_CAPTURED).
// Exit code 77 (ctest: skipped) when chromium or the npm packages are missing.

import { spawnSync } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import {
  DASH,
  anyFailed,
  HERE,
  assert,
  browserModules,
  builtDashboard,
  checks,
  flag,
  freePort,
  launchChromium,
  log,
  opt,
  requireTools,
  sleep,
  start,
  stopProcess,
  until,
  waitHealthy,
} from './harness.mjs';

// ---- options -------------------------------------------------------------------------

const SHARDLM = opt('shardlm', resolve(DASH, '../../build/launcher/shardlm'));
const OUT = resolve(opt('out', resolve(DASH, 'test-results')));
const PRODUCER = opt('producer', `node ${join(HERE, 'fake_ranks.mjs')} --run-dir {run_dir} --config {config} {resume_args}`);
const UPDATE_FIXTURE = flag('update-fixture');

requireTools(SHARDLM);
const { chromium, WebSocket } = await browserModules();

// ---- small helpers ------------------------------------------------------------------

const { results, check } = checks(async (name) => shot(`FAILED-${name.replace(/\W+/g, '-')}`));

// ---- set-up ----------------------------------------------------------------------------

const dist = builtDashboard();

rmSync(OUT, { recursive: true, force: true });
const SCREENS = join(OUT, 'screens');
const RUN_DIR = join(OUT, 'run');
mkdirSync(SCREENS, { recursive: true });
mkdirSync(RUN_DIR, { recursive: true });
const PORT = await freePort();
const BASE = `http://127.0.0.1:${PORT}`;
const WS_URL = `ws://127.0.0.1:${PORT}/ws`;
const CONFIG = join(OUT, 'run.toml');
// --config-base: a real run configuration (the trainer's); the test adds the
// aggregator's address. Without it, a minimal one for the stand-in producer.
const CONFIG_BASE = opt('config-base', '');
writeFileSync(
  CONFIG,
  (CONFIG_BASE
    ? readFileSync(CONFIG_BASE, 'utf8')
    : `# A tiny run for the dashboard's browser test (tests/dashboard).
[run]
max_steps = 100000
`) +
    `
[monitor]
url = "${WS_URL}"
`,
);

const children = [];
let aggregator = null;
function startAggregator(tag) {
  const p = start(SHARDLM, ['monitor', '--port', String(PORT), '--run-dir', RUN_DIR, '--static', dist, '--launch', PRODUCER], join(OUT, `aggregator-${tag}.log`), {
    name: `aggregator (${tag})`,
  });
  children.push(p);
  aggregator = p;
  return p;
}

log(`aggregator on port ${PORT}, run dir ${RUN_DIR}`);
log(`producer template: ${PRODUCER}`);
startAggregator('1');
await waitHealthy(BASE);
const TOKEN = readFileSync(join(RUN_DIR, 'monitor.token'), 'utf8').trim();
assert(TOKEN.length >= 16, 'monitor.token holds a token');

// A plain WebSocket viewer records everything the aggregator sends viewers.
const captured = [];
const capture = createWriteStream(join(OUT, 'captured.jsonl'));
function startCapture() {
  const ws = new WebSocket(WS_URL);
  ws.on('open', () => {
    const token = readFileSync(join(RUN_DIR, 'monitor.token'), 'utf8').trim();
    ws.send(JSON.stringify({ v: 1, type: 'hello', role: 'viewer', token, client: 'e2e-capture' }));
    ws.send(JSON.stringify({ v: 1, type: 'list_checkpoints', id: 'e2e-list' }));
  });
  ws.on('message', (d, binary) => {
    if (binary) return;
    const text = String(d);
    capture.write(`${text}\n`);
    captured.push(JSON.parse(text));
  });
  ws.on('error', () => {});
  return ws;
}
let captureWs = startCapture();

// The Run tab against rank 0's run_info as the trainer sent it (the tab once read
// keys the trainer never sent and showed "—" everywhere).
async function assertRunTab(p, messages) {
  const ri = messages.find((m) => m.type === 'run_info' && m.rank === 0);
  assert(ri, 'a run_info from rank 0');
  const { info } = ri;
  const n = (v) => Number(v).toLocaleString('en-US');
  const want = {
    'info-layers': n(info.model.n_layer),
    'info-heads': n(info.model.n_head),
    'info-width': n(info.model.d_model),
    'info-vocab': n(info.model.vocab_size),
    'info-context': n(info.model.context_length),
    'info-max-steps': n(info.config.train.steps),
    'info-zero': String(info.zero_stage),
    'info-device': info.device,
  };
  for (const [id, value] of Object.entries(want)) {
    const shown = (await p.textContent(`[data-testid=${id}] .stat-value`, { timeout: 5000 })).trim();
    assert(shown === value, `${id}: the page shows "${shown}", run_info says "${value}"`);
  }
  const params = (await p.textContent('[data-testid=info-params] .stat-hint', { timeout: 5000 })).trim();
  assert(params === n(info.parameters), `parameters: the page shows "${params}", run_info says ${info.parameters}`);
}

// ---- the browser --------------------------------------------------------------------------

const browser = await launchChromium(chromium);
const { context } = browser;
const page = context.pages()[0] ?? (await context.newPage());
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(String(e)));
page.on('console', (m) => {
  // The browser itself logs refused WebSocket connections while the aggregator restarts.
  if (m.type() === 'error' && !/^WebSocket connection to .* failed/.test(m.text())) pageErrors.push(`console: ${m.text()}`);
});

let viewport = '1280x800';
const shots = [];
async function shot(name) {
  const file = join(SCREENS, `${name}-${viewport}.png`);
  // A loaded 2-core machine (two training ranks, other tests) can starve the
  // software renderer for a while: one retry with a longer wait.
  try {
    await page.screenshot({ path: file, timeout: 20000 });
  } catch (e) {
    log(`screenshot ${name}: ${String(e).split('\n')[0]}; retrying`);
    await page.screenshot({ path: file, timeout: 60000 });
  }
  shots.push(file);
}
async function tab(id) {
  await page.click(`[data-testid=tab-${id}]`);
  await page.waitForSelector(`[data-testid=tab-${id}][aria-selected=true]`);
}
const attr = (sel, name) => page.getAttribute(sel, name, { timeout: 5000 });
const text = (sel) => page.textContent(sel, { timeout: 5000 });
const stepCounter = async () => Number((await text('[data-testid=step-counter]')).replace(/,/g, ''));
const ackOf = (command) => captured.find((m) => m.type === 'ack' && m.command === command && m.ok);

let pid = null; // the run the aggregator spawned (its own process group)
let ckptStep = null;
let ckptName = null; // as listed: the trainer zero-pads (step-000650)

try {
  await check('page loads, connects and unlocks controls with the token', async () => {
    await page.goto(`${BASE}/?token=${TOKEN}#control`);
    await page.waitForSelector('[data-testid=connection-status][data-status=open]', { timeout: 15000 });
    await page.waitForSelector('[data-testid=token-status][data-control=yes]', { timeout: 5000 });
    assert(!page.url().includes('token='), 'the token is moved out of the address bar');
    const stored = await page.evaluate(() => sessionStorage.getItem('shardlm.monitor.token'));
    assert(stored === TOKEN, 'the token is kept in sessionStorage');
  });

  await check('starts a 2-rank run from a config', async () => {
    await page.fill('[data-testid=input-config]', CONFIG);
    await page.click('[data-testid=ctl-start]');
    await page.waitForSelector('[data-testid=ack-start_run][data-phase=done]', { timeout: 15000 });
    const spawned = await until('the run_spawned event', async () => captured.find((m) => m.type === 'event' && m.kind === 'run_spawned'), 10000);
    pid = spawned.data?.pid ?? null;
    await until('both ranks to report steps', async () => captured.some((m) => m.type === 'step' && m.rank === 0) && captured.some((m) => m.type === 'step' && m.rank === 1), 30000);
    await page.waitForSelector('[data-testid=run-phase]:has-text("running")', { timeout: 10000 });
  });

  await check('the loss chart gains points over time', async () => {
    await tab('training');
    await page.waitForSelector('[data-testid=loss-chart]', { timeout: 20000 });
    const n1 = Number(await attr('[data-testid=loss-chart]', 'data-points'));
    const n2 = await until('10 more loss points', async () => {
      const n = Number(await attr('[data-testid=loss-chart]', 'data-points'));
      return n >= n1 + 10 ? n : null;
    });
    const steps = await stepCounter();
    assert(steps >= n2 - 2, `the step counter (${steps}) follows the chart (${n2} points)`);
    await sleep(1500);
    await shot('training');
  });

  await check('Pause pauses the run: the step counter stops at the acknowledged step', async () => {
    await page.click('[data-testid=btn-pause]');
    await page.waitForSelector('[data-testid=ack-pause][data-phase=acked]', { timeout: 15000 });
    await page.waitForSelector('[data-testid=run-phase]:has-text("paused")', { timeout: 5000 });
    const ackStep = Number(await attr('[data-testid=ack-pause]', 'data-step'));
    const relayed = ackOf('pause');
    assert(relayed && relayed.step === ackStep, `the aggregator relayed rank 0's ack (step ${relayed?.step}) to other viewers`);
    await sleep(500);
    const c1 = await stepCounter();
    const p1 = Number(await attr('[data-testid=loss-chart]', 'data-points'));
    await sleep(2500);
    const c2 = await stepCounter();
    const p2 = Number(await attr('[data-testid=loss-chart]', 'data-points'));
    assert(c1 === c2, `the step counter stays (${c1} -> ${c2})`);
    assert(p1 === p2, `no new loss points while paused (${p1} -> ${p2})`);
    assert(Math.abs(c1 - ackStep) <= 1, `the counter (${c1}) stopped at the acknowledged step (${ackStep})`);
    await shot('training-paused');
  });

  await check('Resume continues the run', async () => {
    const c1 = await stepCounter();
    await page.click('[data-testid=btn-resume]');
    await page.waitForSelector('[data-testid=ack-resume][data-phase=acked]', { timeout: 15000 });
    await until('the step counter to move again', async () => (await stepCounter()) > c1 + 3);
  });

  await check('a new learning rate shows up in the LR chart from the acknowledged step', async () => {
    await tab('control');
    const lr = 0.000123;
    await page.fill('[data-testid=input-lr]', String(lr));
    await page.click('[data-testid=apply-lr]');
    await page.waitForSelector('[data-testid=ack-set_lr][data-phase=acked]', { timeout: 15000 });
    const ackStep = Number(await attr('[data-testid=ack-set_lr]', 'data-step'));
    assert(ackStep > 0, 'the ack names a step');
    await tab('training');
    await until('the LR chart to end at the new LR', async () => {
      const last = Number(await attr('[data-testid=lr-chart]', 'data-last'));
      return Math.abs(last - lr) < 1e-9 ? last : null;
    });
    assert((await text('[data-testid=lr-now]')).includes('1.23e-4'), 'the LR card shows the new value');
    // Every step message from the acknowledged step on carries the new LR, none before it.
    const steps = captured.filter((m) => m.type === 'step' && m.rank === 0);
    const after = steps.filter((m) => m.step >= ackStep);
    const before = steps.filter((m) => m.step < ackStep && m.step > ackStep - 5);
    assert(after.length > 0 && after.every((m) => Math.abs(m.lr - lr) < 1e-12), 'steps from the ack on use the new LR');
    assert(before.every((m) => Math.abs(m.lr - lr) > 1e-12), 'steps before the ack use the old LR');
    await sleep(1200);
    await shot('training-lr-changed');
  });

  await check('Save checkpoint: acknowledged and listed', async () => {
    await tab('control');
    await page.click('[data-testid=ctl-save]');
    await page.waitForSelector('[data-testid=ack-save_checkpoint][data-phase=acked]', { timeout: 15000 });
    ckptStep = Number(await attr('[data-testid=ack-save_checkpoint]', 'data-step'));
    await page.waitForSelector(`[data-testid=checkpoint-table] >> text=step-`, { timeout: 10000 });
    const names = await page.$$eval('[data-testid=checkpoint-table] tbody tr td:first-child', (tds) => tds.map((t) => t.textContent));
    assert(names.length >= 1, `a checkpoint is listed (${names.join(', ')})`);
    ckptName = names[0].trim();
    ckptStep = Number(/step-(\d+)/.exec(ckptName)[1]);
    await page.fill('[data-testid=input-wd]', '0.05');
    await page.click('[data-testid=apply-wd]');
    await page.waitForSelector('[data-testid=ack-set_weight_decay][data-phase=acked]', { timeout: 15000 });
    await page.fill('[data-testid=input-micro]', '4');
    await page.fill('[data-testid=input-accum]', '8');
    await page.click('[data-testid=apply-batch]');
    await page.waitForSelector('[data-testid=ack-set_batch][data-phase=acked]', { timeout: 15000 });
    await page.click('[data-testid=apply-early]');
    await page.waitForSelector('[data-testid=ack-set_early_stopping][data-phase=acked]', { timeout: 15000 });
    await shot('control');
  });

  await check('system view: both ranks with throughput, step-time split and memory', async () => {
    await tab('system');
    await page.waitForSelector('[data-testid=ranks-table]');
    const rows = await page.$$eval('[data-testid=ranks-table] tbody tr', (r) => r.length);
    assert(rows === 2, `two ranks listed (${rows})`);
    for (const r of [0, 1]) {
      const states = await page.$eval(`[data-testid=model-states-${r}]`, (e) => e.textContent);
      assert(/B device \(peak [0-9.]+ [KMG]?i?B\)/.test(states), `rank ${r}'s model states from the trainer (${states})`);
    }
    await page.waitForSelector('[data-testid=tps-chart]');
    await page.waitForSelector('[data-testid=steptime-chart]');
    await sleep(1200);
    await shot('system');
  });

  await check('model inspection views draw what the live run answers', async () => {
    await tab('model');
    for (const [what, result] of [
      ['attention', 'attention-result'],
      ['embeddings', 'embeddings-result'],
      ['activations', 'activations-result'],
      ['architecture', 'architecture-result'],
    ]) {
      await page.click(`[data-testid=inspect-tabs-${what}]`);
      // The real trainer answers every request (runtime/inspect.cpp): "not available" fails.
      await page.waitForSelector(`[data-testid=${result}], [data-testid=inspect-unavailable]`, { timeout: 30000 });
      const unavailable = await page.$('[data-testid=inspect-unavailable]');
      assert(!unavailable, `${what}: ${unavailable ? await unavailable.textContent() : ''}`);
      if (what === 'embeddings' && (await page.$('[data-testid=embeddings-search]'))) {
        await page.fill('[data-testid=embeddings-search]', 'the');
        await page.waitForSelector('[data-testid=embeddings-matches]', { timeout: 5000 });
      }
      await sleep(600);
      await shot(`model-${what}`);
    }
  });

  await check("run view: every value is the one in the trainer's run_info", async () => {
    await tab('run');
    const world = await text('[data-testid=info-world]');
    assert(world.includes('2'), `world size shown (${world})`);
    await assertRunTab(page, captured);
    await shot('run');
  });

  await check('every main view is readable at 1920x1080', async () => {
    viewport = '1920x1080';
    await page.setViewportSize({ width: 1920, height: 1080 });
    for (const id of ['training', 'system', 'control', 'model', 'run']) {
      await tab(id);
      await sleep(900);
      await shot(id);
    }
    // Nothing may overflow the window sideways.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert(overflow <= 0, `no horizontal scrolling at 1920 (${overflow}px)`);
    viewport = '1280x800';
    await page.setViewportSize({ width: 1280, height: 800 });
    await tab('training');
    const overflow2 = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert(overflow2 <= 0, `no horizontal scrolling at 1280 (${overflow2}px)`);
  });

  await check('a viewer without the token is read-only', async () => {
    const other = await context.newPage();
    if (process.env.E2E_DEBUG) {
      for (const ev of ['request', 'requestfinished', 'requestfailed', 'response']) other.on(ev, (r) => log('page2', ev, (r.url?.() ?? r.request?.().url()) ));
      other.on('websocket', (w) => log('page2 websocket', w.url()));
      fetch(`${BASE}/`).then((r) => log('node fetch / ->', r.status)).catch((e) => log('node fetch failed', e));
    }
    await other.goto(`${BASE}/#training`);
    await other.waitForSelector('[data-testid=connection-status][data-status=open]', { timeout: 15000 });
    await other.waitForSelector('[data-testid=token-status][data-control=no]');
    assert(await other.isDisabled('[data-testid=btn-pause]'), 'Pause is disabled without the token');
    const n = Number(await other.getAttribute('[data-testid=loss-chart]', 'data-points', { timeout: 15000 }));
    assert(n > 10, `a late viewer receives the history first (${n} points)`);
    await other.close();
  });

  await check('the page reconnects when the aggregator restarts, and reloads the history', async () => {
    const before = Number(await attr('[data-testid=loss-chart]', 'data-points'));
    captureWs.close();
    await stopProcess(aggregator);
    await page.waitForSelector('[data-testid=connection-status][data-status=reconnecting]', { timeout: 10000 });
    await shot('offline');
    startAggregator('2');
    await waitHealthy(BASE);
    captureWs = startCapture();
    await page.waitForSelector('[data-testid=connection-status][data-status=open]', { timeout: 30000 });
    // A restarted aggregator has a new token: the old one leaves the page read-only
    // until the user types the new one.
    const token2 = readFileSync(join(RUN_DIR, 'monitor.token'), 'utf8').trim();
    if (token2 !== TOKEN) {
      await page.waitForSelector('[data-testid=token-status][data-control=no]', { timeout: 5000 });
      await page.click('[data-testid=token-status]');
      await page.fill('[data-testid=token-input]', token2);
      await page.press('[data-testid=token-input]', 'Enter');
    }
    await page.waitForSelector('[data-testid=token-status][data-control=yes]', { timeout: 10000 });
    await until('new loss points after the restart', async () => Number(await attr('[data-testid=loss-chart]', 'data-points')) > before + 5, 30000);
  });

  await check('Stop ends the run; resuming from the checkpoint continues at its step', async () => {
    await tab('control');
    await page.click('[data-testid=ctl-stop]');
    await page.click('[data-testid=ctl-stop]'); // confirm
    await page.waitForSelector('[data-testid=ack-stop][data-phase=acked]', { timeout: 15000 });
    await page.waitForSelector('[data-testid=run-phase]:has-text("stopped")', { timeout: 10000 });
    const stoppedAt = await stepCounter();
    await sleep(1500);
    assert((await stepCounter()) === stoppedAt, 'no steps after stop');
    if (pid) await until('the stopped run to exit', async () => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    }, 15000);
    assert(ckptStep !== null && ckptStep < stoppedAt, `a checkpoint before the stop (${ckptStep} < ${stoppedAt})`);
    const resumeBtn = page.locator('[data-testid=checkpoint-table] tbody tr', { hasText: ckptName }).locator('button');
    await until('Resume from to be enabled', async () => await resumeBtn.isEnabled(), 15000);
    const mark = captured.length;
    await resumeBtn.click();
    await page.waitForSelector('[data-testid=ack-resume_from][data-phase=done]', { timeout: 15000 });
    const first = await until('the first step of the resumed run', async () => captured.slice(mark).find((m) => m.type === 'step' && m.rank === 0), 30000);
    // step-N holds N finished steps; a step message carries its 0-based index, so
    // the resumed run's first step is N.
    assert(first.step === ckptStep, `the resumed run starts at the checkpoint (step ${first.step}, checkpoint ${ckptStep})`);
    const spawned = captured.slice(mark).find((m) => m.type === 'event' && m.kind === 'run_spawned');
    pid = spawned?.data?.pid ?? pid;
    await page.waitForSelector('[data-testid=run-phase]:has-text("running")', { timeout: 10000 });
    await tab('training');
    await until('the step counter past the checkpoint', async () => (await stepCounter()) > ckptStep + 3, 20000);
    // The loss chart follows the resumed timeline: it ends near the step counter and grows again.
    await until('the loss chart to continue after the checkpoint', async () => {
      const n = Number(await attr('[data-testid=loss-chart]', 'data-points'));
      const c = await stepCounter();
      return n > ckptStep + 2 && n <= c + 1 ? n : null;
    }, 20000);
    await sleep(1000);
    await shot('training-resumed');
    await tab('control');
    await page.click('[data-testid=ctl-stop]');
    await page.click('[data-testid=ctl-stop]');
    await page.waitForSelector('[data-testid=ack-stop][data-phase=acked]', { timeout: 15000 });
  });

  await check('no errors in the page', async () => {
    assert(pageErrors.length === 0, `page errors:\n${pageErrors.join('\n')}`);
  });
} finally {
  await browser.close();
  captureWs.close();
  await stopProcess(aggregator);
  // The run the aggregator spawned has its own process group.
  if (pid) {
    try {
      process.kill(-pid, 'SIGTERM');
    } catch {}
  }
  // And whatever run is still training in this run directory (a check that
  // failed half-way may not know the newest run's pid): they all name RUN_DIR.
  spawnSync('pkill', ['-TERM', '-f', `--train.run_dir=${RUN_DIR}`]);
  await sleep(2000);
  spawnSync('pkill', ['-KILL', '-f', `--train.run_dir=${RUN_DIR}`]);
  capture.end();
}

// ---- the captured messages against the schema and the TypeScript types ------------------------

await check('messages from the C++ aggregator match the schema and the TypeScript types', async () => {
  const types = new Set(captured.map((m) => m.type));
  for (const t of ['welcome', 'history_end', 'run_info', 'step', 'aggregate', 'ranks', 'ack', 'event', 'validation', 'checkpoints', 'inspect_result'])
    assert(types.has(t), `a captured ${t} message`);
  const r = spawnSync('npx', ['vitest', 'run', 'test/protocol.test.ts', '-t', 'captured'], {
    cwd: DASH,
    env: { ...process.env, SHARDLM_CAPTURED: join(OUT, 'captured.jsonl') },
    encoding: 'utf8',
  });
  writeFileSync(join(OUT, 'vitest-captured.log'), `${r.stdout}\n${r.stderr}`);
  assert(r.status === 0, `vitest on the capture failed (see ${join(OUT, 'vitest-captured.log')}):\n${r.stdout.split('\n').slice(-40).join('\n')}`);
});

if (UPDATE_FIXTURE) {
  // A small sample of each type (the first few), kept in the repository.
  const per = new Map();
  const sample = captured.filter((m) => {
    if (JSON.stringify(m).length > 20000) return false; // large inspection answers
    const n = per.get(m.type) ?? 0;
    per.set(m.type, n + 1);
    return n < 4;
  });
  const file = join(DASH, 'test/fixtures/captured/aggregator.jsonl');
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, sample.map((m) => JSON.stringify(m)).join('\n') + '\n');
  log(`wrote ${sample.length} messages to ${file}`);
}

writeFileSync(join(OUT, 'summary.json'), JSON.stringify({ ok: !anyFailed(results), port: PORT, results, screenshots: shots, captured: captured.length }, null, 2));
log(`${results.filter((r) => r.ok).length}/${results.length} checks passed; ${shots.length} screenshots in ${SCREENS}`);
process.exit(anyFailed(results) ? 1 : 0);
