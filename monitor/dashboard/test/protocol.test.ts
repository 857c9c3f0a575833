// The TypeScript message types against monitor/protocol.schema.json, the file
// the C++ aggregator is tested against too: a field, type or requirement that
// one side changes and the other does not fails here.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  COMMAND_NAMES,
  control,
  ERROR_CODES,
  EVENT_KINDS,
  hello,
  inspect,
  INSPECT_WHATS,
  listCheckpoints,
  RATE_CHOICES,
  rateCreate,
  rateList,
  rateNext,
  rateVote,
  parseServerMessage,
  STEP_PHASES,
} from '../src/protocol';
import { ALL, FULL, MINIMAL, REQUIRED, type MessageType } from './fixtures/messages';
import { explain, makeValidator, missingProperties, MONITOR_DIR, type JsonSchema } from './schema';

const V = makeValidator('protocol');
const I = makeValidator('inspect');
const defs = V.schema.$defs as Record<string, JsonSchema>;
const types = Object.keys(FULL) as MessageType[];

describe('TypeScript fixtures against the schema', () => {
  it('covers every message type of the schema, and no other', () => {
    const inSchema = (V.schema.oneOf as { $ref: string }[]).map((r) =>
      r.$ref.replace('#/$defs/', ''),
    );
    expect(new Set(types)).toEqual(new Set(inSchema));
  });

  it.each(types)('%s: the full fixture is valid', (t) => {
    const ok = V.def(t)(FULL[t]);
    expect(ok, explain(V.def(t).errors)).toBe(true);
    expect(V.any(FULL[t]), explain(V.any.errors)).toBe(true);
  });

  it.each(types)('%s: the minimal fixture is valid', (t) => {
    expect(V.def(t)(MINIMAL[t]), explain(V.def(t).errors)).toBe(true);
  });

  it.each(types)('%s: the full fixture fills every field the schema defines', (t) => {
    // A field in the schema that the interface lacks cannot be in the fixture
    // (tsc rejects it), so it shows up here.
    expect(missingProperties(V.schema, defs[t], FULL[t])).toEqual([]);
  });

  it.each(types)('%s: required keys agree', (t) => {
    expect([...(defs[t].required as string[])].sort()).toEqual([...REQUIRED[t]].sort());
  });

  it('enumerations agree', () => {
    expect([...COMMAND_NAMES].sort()).toEqual(
      [...((defs.command_name.enum as string[]) ?? [])].sort(),
    );
    expect([...INSPECT_WHATS].sort()).toEqual([...(defs.inspect_what.enum as string[])].sort());
    const eventKind = (defs.event.properties as Record<string, JsonSchema>).kind.enum as string[];
    expect([...EVENT_KINDS].sort()).toEqual([...eventKind].sort());
    const code = (defs.error.properties as Record<string, JsonSchema>).code.enum as string[];
    expect([...ERROR_CODES].sort()).toEqual([...code].sort());
    const time = (defs.step.properties as Record<string, JsonSchema>).time.properties as Record<
      string,
      unknown
    >;
    expect([...STEP_PHASES, 'total'].sort()).toEqual(Object.keys(time).sort());
  });

  it('rejects what the schema forbids (the validator is not vacuous)', () => {
    expect(V.def('step')({ ...FULL.step, unknown_field: 1 })).toBe(false);
    expect(V.def('step')({ ...FULL.step, loss: 'high' })).toBe(false);
    expect(V.any({ ...FULL.ack, v: 2 })).toBe(false);
    expect(
      V.def('control')({ v: 1, type: 'control', id: 'x', command: 'set_lr', args: { lr: 0 } }),
    ).toBe(false);
    expect(V.def('control')({ v: 1, type: 'control', id: 'x', command: 'set_lr' })).toBe(false);
    expect(V.def('hello')({ v: 1, type: 'hello', role: 'producer' })).toBe(false);
  });
});

describe('messages the dashboard sends', () => {
  const sent = [
    hello(null),
    hello('secret'),
    listCheckpoints('q-1'),
    control('c-1', 'pause'),
    control('c-2', 'resume'),
    control('c-3', 'stop'),
    control('c-4', 'save_checkpoint'),
    control('c-5', 'set_lr', { lr: 1e-4 }),
    control('c-6', 'set_weight_decay', { weight_decay: 0 }),
    control('c-7', 'set_clip', { clip: 1 }),
    control('c-8', 'set_batch', { micro_batch: 4, accumulation: 2 }),
    control('c-9', 'set_early_stopping', { enabled: true, patience: 3, min_delta: 0.001 }),
    control('c-10', 'start_run', { config: 'configs/tiny.toml' }),
    control('c-11', 'resume_from', { checkpoint: 'step-300' }),
    ...INSPECT_WHATS.map((w, i) => inspect(`i-${i}`, w, { prompt: 'Once upon a time' })),
    rateNext('r-1', 'ann'),
    rateNext('r-2', 'ann', 'step-200 vs step-400'),
    ...RATE_CHOICES.map((c, i) => rateVote(`r-v${i}`, 'ann', 3, [6, 5], c)),
    rateList('r-3'),
    rateCreate('r-4', ['step-200', 'step-400'], ['Once upon a time'], { strategy: 'greedy' }),
  ];
  it.each(
    sent.map(
      (m) =>
        [
          m.type +
            ('command' in m ? ` ${m.command}` : '') +
            ('what' in m ? ` ${m.what}` : '') +
            ('choice' in m ? ` ${m.choice}` : ''),
          m,
        ] as const,
    ),
  )('%s is valid', (_n, m) => {
    expect(V.any(m), explain(V.any.errors)).toBe(true);
  });
});

describe('parseServerMessage', () => {
  it('accepts every server-side fixture and keeps its fields', () => {
    for (const m of ALL) {
      if (
        [
          'hello',
          'list_checkpoints',
          'inspect',
          'rate_next',
          'rate_vote',
          'rate_list',
          'rate_create',
        ].includes(m.type)
      )
        continue;
      expect(parseServerMessage(JSON.stringify(m))).toEqual(m);
    }
  });
  it('ignores what a viewer cannot use', () => {
    expect(parseServerMessage('not json')).toBeNull();
    expect(parseServerMessage('[1,2]')).toBeNull();
    expect(parseServerMessage('{"v":2,"type":"step"}')).toBeNull();
    expect(parseServerMessage('{"v":1,"type":"from_the_future"}')).toBeNull();
    expect(parseServerMessage('{"v":1}')).toBeNull();
  });
});

// ---- messages captured from the real C++ aggregator ------------------------------------
//
// test/fixtures/captured/*.jsonl are frames a viewer received from
// `shardlm monitor` in the browser test (tests/dashboard), kept in the
// repository so this check runs without a build; SHARDLM_CAPTURED may name more
// files (colon-separated), for example the browser test's fresh capture.

function capturedFiles(): string[] {
  const dir = resolve(MONITOR_DIR, 'dashboard/test/fixtures/captured');
  const files = existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.endsWith('.jsonl'))
        .map((f) => resolve(dir, f))
    : [];
  for (const f of (process.env.SHARDLM_CAPTURED ?? '').split(':')) if (f) files.push(resolve(f));
  return files;
}

describe('messages captured from the C++ aggregator', () => {
  const files = capturedFiles();
  it('has at least one capture to check', () => {
    expect(files.length).toBeGreaterThan(0);
  });
  it.each(files)('%s: every line is valid and known to the TypeScript side', (file) => {
    const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean);
    expect(lines.length).toBeGreaterThan(0);
    const seenTypes = new Set<string>();
    for (const [i, line] of lines.entries()) {
      const msg = JSON.parse(line) as Record<string, unknown>;
      expect(V.any(msg), `${file}:${i + 1}: ${explain(V.any.errors)}`).toBe(true);
      const t = msg.type as MessageType;
      seenTypes.add(t);
      expect(parseServerMessage(line), `${file}:${i + 1}: ${t} not accepted`).not.toBeNull();
      // Every field the C++ side sent is one the full TypeScript fixture has.
      const known = FULL[t] as unknown as Record<string, unknown>;
      for (const k of Object.keys(msg))
        expect(known, `${file}:${i + 1}: ${t}.${k}`).toHaveProperty(k);
      // Inspection answers also match the payload schema the dashboard draws.
      if (t === 'inspect_result' && msg.ok === true) {
        const def = I.def(msg.what as string);
        expect(def(msg.data), `${file}:${i + 1}: ${msg.what} data: ${explain(def.errors)}`).toBe(
          true,
        );
      }
    }
    // A capture of a run has at least these.
    for (const t of ['welcome', 'history_end', 'run_info', 'step', 'aggregate'])
      expect(seenTypes).toContain(t);
  });
});
