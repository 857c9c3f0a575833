// The TypeScript types are generated from monitor/protocol.schema.json
// (scripts/schema-types.mjs -> src/protocol.gen.ts): the committed file must be
// exactly what the generator writes for the schema of this commit, so a schema
// change that is not regenerated (and so not type-checked against the panels)
// fails here. `npm run gen:types` regenerates it.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain ES module without type declarations
import { generate, OUTPUT_PATH, pascal, SCHEMA_PATH } from '../scripts/schema-types.mjs';

describe('src/protocol.gen.ts', () => {
  it('is what scripts/schema-types.mjs writes for the current schema (run `npm run gen:types`)', () => {
    const schema = JSON.parse(readFileSync(SCHEMA_PATH, 'utf8'));
    expect(readFileSync(OUTPUT_PATH, 'utf8')).toBe(generate(schema));
  });

  it('maps the schema subset the protocol uses', () => {
    const out: string = generate({
      $defs: {
        real: { type: ['number', 'null'] },
        kind: { enum: ['a', 'b'] },
        msg: {
          type: 'object',
          description: 'one message',
          required: ['type', 'x'],
          properties: {
            type: { const: 'msg' },
            x: { $ref: '#/$defs/real' },
            tags: { type: 'array', items: { type: 'string' } },
            free: { type: 'object' },
            map: { type: 'object', additionalProperties: { $ref: '#/$defs/real' } },
            closed: {
              type: 'object',
              properties: { k: { $ref: '#/$defs/kind' } },
              additionalProperties: false,
            },
          },
          additionalProperties: false,
        },
      },
      oneOf: [{ $ref: '#/$defs/msg' }],
    });
    expect(out).toContain('export type Real = number | null;');
    expect(out).toContain('export type Kind = "a" | "b";');
    expect(out).toContain('export const KIND_VALUES = ["a","b"] as const;');
    expect(out).toContain('/** one message */\nexport interface Msg {');
    expect(out).toContain(
      '  type: "msg";\n  x: Real;\n  tags?: string[];\n  free?: Record<string, unknown>;\n  map?: Record<string, Real>;',
    );
    expect(out).toContain('  closed?: {\n    k?: Kind;\n  };\n}');
    expect(out).toContain('export type Message =\n  | Msg;');
    expect(pascal('history_end')).toBe('HistoryEnd');
  });
});
