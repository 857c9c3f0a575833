#!/usr/bin/env node
// The dashboard as a workbench, in Debian's chromium (playwright-core),
// against the real aggregator (`shardlm monitor`) and a real 2-rank trainer
// (`mpiexec -n 2 shardlm train`). Through the page it checks:
//   - Run: every value the tab shows is the one in rank 0's run_info;
//   - Generate: a greedy generation streamed from the live run (paused at step
//     S, checkpoint step-S saved) has exactly the text `shardlm generate` prints
//     for step-S; two checkpoints answer side by side, and step-S's equals the
//     live text; a token opens with its alternatives;
//   - Rate: a comparison generated from the two checkpoints; two raters in two
//     browser contexts (the rating token, no control) cast 10 votes with the
//     keyboard and buttons; the votes read back from SQLite (sqlite3) and from
//     `shardlm eval ratings --db` are those cast, and the page's leaderboard
//     (Bradley-Terry, Krippendorff's alpha) equals the CLI's;
//   - Evaluate: `shardlm eval compare` of the two checkpoints into RUN_DIR/eval,
//     and a chart's values equal the report's JSON;
// and saves screenshots of the Generate, Evaluate and Rate tabs at 1280x800 and
// 1920x1080 under OUT/screens.
//
//   node e2e/workbench.mjs --shardlm build/launcher/shardlm --out DIR --fixture FIXTURE_DIR \
//        --mpiexec mpiexec [--np-flag -n]
// Exit code 77 (ctest: skipped) when chromium or the npm packages are missing.

import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  DASH,
  anyFailed,
  assert,
  browserModules,
  builtDashboard,
  checks,
  freePort,
  launchBrowser,
  log,
  opt,
  requireTools,
  skip,
  sleep,
  start,
  stopProcess,
  until,
  waitHealthy,
} from './harness.mjs';

const SHARDLM = resolve(opt('shardlm', resolve(DASH, '../../build/launcher/shardlm')));
const OUT = resolve(opt('out', resolve(DASH, 'test-results/workbench')));
const FIXTURE = opt('fixture', '');
const MPIEXEC = opt('mpiexec', 'mpiexec');
const NP_FLAG = opt('np-flag', '-n');
requireTools(SHARDLM);
if (!FIXTURE) skip('--fixture (the trainer fixture: tokenizer.json and data/) is needed');
if (spawnSync('sqlite3', ['-version']).status !== 0) skip('sqlite3 not found (apt-get install sqlite3)');
const { chromium } = await browserModules();

const dist = builtDashboard();
rmSync(OUT, { recursive: true, force: true });
const SCREENS = join(OUT, 'screens');
const RUN_DIR = join(OUT, 'run');
mkdirSync(SCREENS, { recursive: true });
mkdirSync(join(RUN_DIR, 'eval'), { recursive: true });
const PORT = await freePort();
const BASE = `http://127.0.0.1:${PORT}`;
const TOKENIZER = join(FIXTURE, 'tokenizer.json');

// A small model that trains fast on 2 cores; checkpoints only on request. Steps
// are reported every 5th (about 15 steps/s here): a browser on a loaded machine
// then still answers clicks in time.
const CONFIG = join(OUT, 'run.toml');
writeFileSync(
  CONFIG,
  `[train]
steps = 100000
seed = 1
run_dir = "${RUN_DIR}"
[train.schedule]
kind = "constant"
warmup_steps = 0
[optimizer]
lr = 3e-3
[model]
vocab_size = 4096
context_length = 64
n_layer = 2
n_head = 2
d_model = 64
[data]
path = "${FIXTURE}/data"
batch_size = 8
seq_len = 64
[validation]
every = 20
batches = 1
[ckpt]
every = 0
save_final = false
async = false
[monitor]
url = "ws://127.0.0.1:${PORT}/ws"
jsonl = false
every = 5
[log]
level = "warn"
`,
);

const procs = [];
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
  return r.stdout;
};

const aggregator = start(SHARDLM, ['monitor', '--port', String(PORT), '--run-dir', RUN_DIR, '--static', dist], join(OUT, 'aggregator.log'), { name: 'aggregator' });
procs.push(aggregator);
await waitHealthy(BASE);
const TOKEN = readFileSync(join(RUN_DIR, 'monitor.token'), 'utf8').trim();
const RATING = readFileSync(join(RUN_DIR, 'monitor.rating-token'), 'utf8').trim();
assert(TOKEN !== RATING, 'a rating token of its own');
const trainer = start(MPIEXEC, [NP_FLAG, '2', SHARDLM, 'train', '--config', CONFIG], join(OUT, 'train.log'), {
  name: 'trainer',
  group: true,
  env: { ...process.env, OMP_NUM_THREADS: '1' },
});
procs.push(trainer);

// One browser; the page with the control token, and later two raters in
// contexts of their own (separate storage, like two people's browsers).
const browser = await launchBrowser(chromium);
const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(String(e)));
let viewport = '1280x800';
const shots = [];
async function shot(name, p = page) {
  const file = join(SCREENS, `${name}-${viewport}.png`);
  await p.screenshot({ path: file, timeout: 30000 });
  shots.push(file);
}
const { results, check } = checks(async (name) => shot(`FAILED-${name.replace(/\W+/g, '-')}`));
const tab = async (id, p = page) => {
  await p.click(`[data-testid=tab-${id}]`);
  await p.waitForSelector(`[data-testid=tab-${id}][aria-selected=true]`);
};
const attr = (sel, name, p = page) => p.getAttribute(sel, name, { timeout: 10000 });
const stepCounter = async () => Number((await page.textContent('[data-testid=step-counter]')).replace(/,/g, ''));

/** Pauses the run and saves a checkpoint at the paused step; returns its step and name. */
async function pauseAndSave() {
  await tab('control');
  await page.click('[data-testid=btn-pause]');
  await page.waitForSelector('[data-testid=ack-pause][data-phase=acked]', { timeout: 30000 });
  const before = new Set((await page.$$eval('[data-testid=checkpoint-table] tbody tr td:first-child', (t) => t.map((x) => x.textContent))) ?? []);
  await page.click('[data-testid=ctl-save]');
  await page.waitForSelector('[data-testid=ack-save_checkpoint][data-phase=acked]', { timeout: 30000 });
  const name = await until(
    'the new checkpoint to be listed',
    async () => {
      await page.click('[data-testid=ckpt-refresh]').catch(() => {});
      const names = await page.$$eval('[data-testid=checkpoint-table] tbody tr td:first-child', (t) => t.map((x) => x.textContent.trim()));
      return names.find((n) => !before.has(n) && /^step-\d+$/.test(n));
    },
    30000,
    500,
  );
  return { name, step: Number(/step-(\d+)/.exec(name)[1]) };
}

async function resumeUntil(steps) {
  await tab('control');
  const c0 = await stepCounter();
  await page.click('[data-testid=btn-resume]');
  await until(`${steps} more steps`, async () => (await stepCounter()) >= c0 + steps, 60000);
}

/** Generates on side 0 (and 1) and waits for both to finish; returns their status attributes. */
async function generate(targets) {
  await tab('generate');
  await page.fill('[data-testid=gen-prompt]', PROMPT);
  await page.click('[data-testid=gen-strategy-greedy]');
  await page.fill('[data-testid=gen-max-tokens]', String(MAX_NEW));
  await page.selectOption('[data-testid=gen-target-0]', targets[0]);
  await page.selectOption('[data-testid=gen-target-1]', targets[1] ?? '');
  await page.click('[data-testid=gen-go]');
  const out = [];
  for (let side = 0; side < targets.length; side++) {
    const sel = `[data-testid=gen-status-${side}]`;
    await page.waitForSelector(`${sel}[data-status=done], ${sel}[data-status=error]`, { state: 'attached', timeout: 90000 });
    const st = await attr(sel, 'data-status');
    if (st === 'error') throw new Error(`side ${side}: ${await page.textContent(`[data-testid=gen-error-${side}]`)}`);
    out.push({ text: await attr(sel, 'data-text'), tokens: Number(await attr(sel, 'data-tokens')), step: await attr(sel, 'data-step') });
  }
  return out;
}

/** `shardlm generate --json` on a checkpoint: the text of the (single) sequence. */
function cliText(checkpoint) {
  const j = JSON.parse(
    run(SHARDLM, ['generate', '--model', join(RUN_DIR, 'checkpoints', checkpoint), '--tokenizer', TOKENIZER, '--prompt', PROMPT, '--max-new-tokens', String(MAX_NEW), '--json', '--threads', '1']),
  );
  return j.results[0].sequences[0].text;
}

const PROMPT = 'And God said';
const MAX_NEW = 16;
let first = null; // { name, step } of the first checkpoint
let second = null;
let liveText = null;
const cast = []; // { rater, pair, shown: [a, b], choice }

try {
  await check("Run tab: the values of the trainer's run_info", async () => {
    await page.goto(`${BASE}/?token=${TOKEN}#run`);
    await page.waitForSelector('[data-testid=connection-status][data-status=open]', { timeout: 20000 });
    const ri = await until(
      'rank 0 run_info',
      async () => {
        const r = await fetch(`${BASE}/api/health`);
        return r.ok && (await page.$('[data-testid=info-layers]')) ? true : null;
      },
      60000,
      500,
    );
    assert(ri, 'run info shown');
    // rank 0's run_info as the aggregator kept it (metrics.jsonl: the trainer's own message)
    const lines = readFileSync(join(RUN_DIR, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const info = lines.find((m) => m.type === 'run_info' && m.rank === 0).info;
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
      const shown = (await page.textContent(`[data-testid=${id}] .stat-value`)).trim();
      assert(shown === value, `${id}: the page shows "${shown}", run_info says "${value}"`);
    }
    const params = (await page.textContent('[data-testid=info-params] .stat-hint')).trim();
    assert(params === n(info.parameters), `parameters: the page shows "${params}", run_info says ${info.parameters}`);
    assert(info.model.n_layer === 2 && info.config.train.steps === 100000, 'the configured model and steps');
  });

  await check('Generate: greedy from the live run equals `shardlm generate` on the checkpoint of that step', async () => {
    await until('a few steps', async () => (await stepCounter()) >= 8, 90000, 500);
    first = await pauseAndSave();
    const [live] = await generate(['live']);
    liveText = live.text;
    assert(Number(live.step) === first.step, `generated at the paused step (${live.step} vs checkpoint ${first.step})`);
    assert(live.tokens > 0 && live.tokens <= MAX_NEW, `tokens streamed (${live.tokens})`);
    const chips = await page.$$('[data-testid=gen-output-0] [data-testid=gen-token]');
    assert(chips.length === live.tokens, `one chip per streamed token (${chips.length})`);
    await chips[Math.min(2, chips.length - 1)].click();
    const alts = await page.$$('[data-testid=gen-token-detail] [data-testid=gen-alternative]');
    assert(alts.length === 5, `the top-5 alternatives of a token (${alts.length})`);
    const cli = cliText(first.name);
    assert(cli === liveText, `live text ${JSON.stringify(liveText)} equals shardlm generate's ${JSON.stringify(cli)}`);
    await shot('generate-live');
  });

  await check('Generate: two checkpoints side by side', async () => {
    await resumeUntil(12);
    second = await pauseAndSave();
    const [a, b] = await generate([first.name, second.name]);
    assert(a.text === liveText, `step-${first.step} from its checkpoint (${JSON.stringify(a.text)}) equals the live text at that step`);
    assert(b.tokens > 0, 'the second checkpoint answered');
    const chips = await page.$$('[data-testid=gen-output-1] [data-testid=gen-token]');
    await chips[0].click();
    await sleep(300);
    await shot('generate');
  });

  await check('Rate: a comparison of the two checkpoints, 10 votes from two raters in two contexts', async () => {
    await tab('rate');
    await page.selectOption('[data-testid=rate-source-a]', first.name);
    await page.selectOption('[data-testid=rate-source-b]', second.name);
    await page.fill('[data-testid=rate-prompts]', ['In the beginning', 'And the LORD spake', 'Blessed are', 'The king of Israel', 'And it came to pass'].join('\n'));
    await page.fill('[data-testid=rate-max-tokens]', '12');
    await page.click('[data-testid=rate-create]');
    await page.waitForSelector('[data-testid=rate-created][data-ok=yes]', { timeout: 120000 });
    const raters = [];
    for (const name of ['ann', 'bob']) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      const p = await context.newPage();
      p.on('pageerror', (e) => pageErrors.push(`${name}: ${e}`));
      await p.goto(`${BASE}/?token=${RATING}#rate`);
      await p.waitForSelector('[data-testid=token-status][data-control=no]', { timeout: 20000 });
      await p.fill('[data-testid=rate-rater]', name);
      await p.click('[data-testid=rate-start]');
      raters.push({ name, context, p });
    }
    // Each rater answers the 5 pairs: ann with keys, bob with buttons.
    const plans = { ann: ['1', '2', '1', '3', '1'], bob: ['A', 'B', 'A', 'both_bad', 'tie'] };
    const keyChoice = { 1: 'A', 2: 'B', 3: 'tie', 4: 'both_bad' };
    for (let i = 0; i < 5; i++) {
      for (const r of raters) {
        // A pair this rater has not seen yet (the previous one stays until the next arrives).
        const fresh = r.last ? `[data-testid=rate-pair]:not([data-pair="${r.last}"])` : '[data-testid=rate-pair]';
        await r.p.waitForSelector(fresh, { timeout: 20000 });
        const pair = Number(await r.p.getAttribute('[data-testid=rate-pair]', 'data-pair'));
        r.last = pair;
        assert((await r.p.$('[data-testid=rate-reveal-a]')) === null, 'nothing revealed before the vote');
        const step = plans[r.name][i];
        let choice;
        if (r.name === 'ann') {
          await r.p.keyboard.press(step);
          choice = keyChoice[step];
        } else {
          await r.p.click(`[data-testid=rate-choice-${step}]`);
          choice = step;
        }
        await r.p.waitForSelector('[data-testid=rate-saved]', { timeout: 20000 });
        const revealA = await r.p.textContent('[data-testid=rate-reveal-a]');
        assert(/step-\d+/.test(revealA), `revealed after the vote (${revealA})`);
        const a = revealA.includes(first.name) ? first.name : second.name;
        cast.push({ rater: r.name, pair, choice, shownA: a });
        if (i === 2 && r.name === 'ann') await shot('rate-reveal', r.p);
        if (r.name === 'ann') await r.p.keyboard.press('Enter');
        else await r.p.click('[data-testid=rate-next]');
      }
    }
    for (const r of raters) {
      await r.p.waitForSelector('[data-testid=rate-done]', { timeout: 20000 });
      const done = await r.p.getAttribute('[data-testid=rate-progress]', 'data-done');
      assert(done === '5', `${r.name}: 5 of 5 rated (${done})`);
      await r.context.close();
    }
    assert(cast.length === 10, `10 votes cast (${cast.length})`);
  });

  await check('Rate: the votes read back from SQLite and from `shardlm eval ratings`, and the leaderboard matches', async () => {
    const rows = run('sqlite3', ['-json', join(RUN_DIR, 'ratings.db'), 'SELECT v.rater, v.pair, v.choice, s.source AS shown_a FROM votes v JOIN samples s ON s.id = v.shown_a ORDER BY v.id'])
      .trim();
    const db = JSON.parse(rows || '[]');
    assert(db.length === 10, `10 rows in ratings.db (${db.length})`);
    for (const c of cast) {
      const r = db.find((x) => x.rater === c.rater && x.pair === c.pair);
      assert(r && r.choice === c.choice && r.shown_a === c.shownA, `vote of ${c.rater} on pair ${c.pair}: ${JSON.stringify(r)} vs ${JSON.stringify(c)}`);
    }
    const summary = JSON.parse(run(SHARDLM, ['eval', 'ratings', '--db', join(RUN_DIR, 'ratings.db'), '--json', '--export', join(OUT, 'votes.jsonl')]));
    assert(summary.answers === 10 && summary.raters.ann === 5 && summary.raters.bob === 5, `eval ratings counts (${JSON.stringify(summary.raters)})`);
    assert(summary.agreement.items === 5, `5 pairs rated twice (${summary.agreement.items})`);
    const exported = readFileSync(join(OUT, 'votes.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert(exported.length === 10 && exported.every((e) => cast.some((c) => c.rater === e.rater && c.pair === e.pair && c.choice === e.choice)), 'the JSONL export holds the votes cast');
    await tab('rate');
    await page.waitForSelector('[data-testid=rate-leaderboard]', { timeout: 10000 });
    await until('the leaderboard to count 10 votes', async () => (await attr('[data-testid=rate-votes]', 'data-value')) === '10', 10000);
    for (const row of await page.$$('[data-testid=rate-leader-row]')) {
      const src = await row.getAttribute('data-source');
      const strength = Number(await row.getAttribute('data-strength'));
      assert(Math.abs(strength - summary.bradley_terry[src]) < 1e-6, `${src}: page ${strength} vs eval ratings ${summary.bradley_terry[src]}`);
    }
    const alpha = await attr('[data-testid=rate-alpha]', 'data-value');
    const want = summary.agreement.krippendorff_alpha;
    assert(want === null ? alpha === '' : Math.abs(Number(alpha) - want) < 1e-9, `alpha: page ${alpha} vs eval ratings ${want}`);
    const marks = JSON.parse(await attr('[data-testid=rate-marks]', 'data-marks'));
    assert(marks.includes(first.step) && marks.includes(second.step), `rated checkpoints marked on the loss curve (${marks})`);
    await sleep(500);
    await shot('rate');
  });

  await check('Evaluate: the report of `shardlm eval compare` as charts whose values are the JSON', async () => {
    const suite = join(OUT, 'suite.toml');
    const cfg = resolve(DASH, '../../configs/eval');
    writeFileSync(
      suite,
      `[suite]
name = "workbench"
tasks = ["text_ppl", "choice", "facts"]
bootstrap = 200
seed = 1
[task.text_ppl]
kind = "perplexity"
files = ["${cfg}/text.txt"]
[task.choice]
kind = "choice"
file = "${cfg}/choice.jsonl"
limit = 12
[task.facts]
kind = "factual"
file = "${cfg}/facts.jsonl"
limit = 8
[task.facts.generate]
max_new_tokens = 6
`,
    );
    const ckpt = (c) => join(RUN_DIR, 'checkpoints', c.name);
    run(SHARDLM, ['eval', 'compare', '--models', `${ckpt(first)},${ckpt(second)}`, '--labels', `${first.name},${second.name}`, '--tokenizer', TOKENIZER, '--suite', suite, '--out', join(RUN_DIR, 'eval', 'early-vs-late.md'), '--threads', '1']);
    const report = JSON.parse(readFileSync(join(RUN_DIR, 'eval', 'early-vs-late.json'), 'utf8'));
    await tab('evaluate');
    await page.click('[data-testid=eval-refresh]');
    await page.waitForSelector('[data-testid=eval-report-early-vs-late\\.json]', { timeout: 10000 });
    const box = page.locator('[data-testid=eval-report-early-vs-late\\.json] input');
    if (!(await box.isChecked())) await box.check();
    for (const task of ['choice', 'text_ppl']) {
      const sel = `[data-testid=eval-chart-${task}]`;
      await page.waitForSelector(sel, { timeout: 10000 });
      const metric = await attr(sel, 'data-metric');
      const values = JSON.parse(await attr(sel, 'data-values'));
      const ci = JSON.parse(await attr(sel, 'data-ci'));
      const want = report.models.map((m) => m.tasks.find((t) => t.name === task).metrics[metric]);
      assert(values.length === 2, `${task}: one bar per model (${values.length})`);
      for (let i = 0; i < 2; i++) {
        assert(values[i] === want[i].value, `${task}/${metric} model ${i}: chart ${values[i]} vs JSON ${want[i].value}`);
        assert(JSON.stringify(ci[i]) === JSON.stringify(want[i].ci95), `${task}/${metric} interval ${i}: ${JSON.stringify(ci[i])} vs ${JSON.stringify(want[i].ci95)}`);
      }
    }
    await page.waitForSelector('[data-testid=eval-position-chart]', { timeout: 10000 });
    await page.waitForSelector('[data-testid=eval-calibration-chart]', { timeout: 10000 });
    await page.waitForSelector('[data-testid=eval-disagreements]', { timeout: 10000 });
    await sleep(800);
    await shot('evaluate');
  });

  await check('the three tabs at 1920x1080', async () => {
    viewport = '1920x1080';
    await page.setViewportSize({ width: 1920, height: 1080 });
    for (const id of ['generate', 'evaluate', 'rate']) {
      await tab(id);
      await sleep(900);
      await shot(id);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert(overflow <= 0, `${id}: no horizontal scrolling at 1920 (${overflow}px)`);
    }
    viewport = '1280x800';
    await page.setViewportSize({ width: 1280, height: 800 });
    for (const id of ['generate', 'evaluate', 'rate']) {
      await tab(id);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert(overflow <= 0, `${id}: no horizontal scrolling at 1280 (${overflow}px)`);
    }
  });

  await check('no errors in the pages', async () => {
    assert(pageErrors.length === 0, `page errors:\n${pageErrors.join('\n')}`);
  });
} finally {
  await browser.close().catch(() => {});
  for (const p of procs.reverse()) await stopProcess(p, 'SIGTERM', p === trainer);
}

writeFileSync(join(OUT, 'summary.json'), JSON.stringify({ ok: !anyFailed(results), port: PORT, results, screenshots: shots }, null, 2));
log(`${results.filter((r) => r.ok).length}/${results.length} checks passed; ${shots.length} screenshots in ${SCREENS}`);
process.exit(anyFailed(results) ? 1 : 0);
