// Loads monitor/protocol.schema.json (and monitor/inspect.schema.json) into ajv
// for the tests and the end-to-end check. One place, so every test validates
// against the very file the C++ side uses.

import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv2020 from 'ajv/dist/2020.js';
import type { ErrorObject, ValidateFunction } from 'ajv';

const here = dirname(fileURLToPath(import.meta.url));
export const MONITOR_DIR = resolve(here, '../..');

export type JsonSchema = Record<string, unknown>;

export function loadSchema(name: 'protocol' | 'inspect'): JsonSchema {
  return JSON.parse(
    readFileSync(resolve(MONITOR_DIR, `${name}.schema.json`), 'utf8'),
  ) as JsonSchema;
}

export interface Validator {
  schema: JsonSchema;
  /** The whole protocol (oneOf every message). */
  any: ValidateFunction;
  /** One message type's definition, e.g. `def('step')`. */
  def: (name: string) => ValidateFunction;
}

export function makeValidator(name: 'protocol' | 'inspect'): Validator {
  const schema = loadSchema(name);
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  const any = ajv.compile(schema);
  const cache = new Map<string, ValidateFunction>();
  const id = schema.$id as string;
  return {
    schema,
    any,
    def: (d: string) => {
      let f = cache.get(d);
      if (!f) {
        f = ajv.getSchema(`${id}#/$defs/${d}`);
        if (!f) throw new Error(`${name}.schema.json has no $defs/${d}`);
        cache.set(d, f);
      }
      return f;
    },
  };
}

export function explain(errors: ErrorObject[] | null | undefined): string {
  return (errors ?? [])
    .map((e) => `${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`)
    .join('; ');
}

/** Resolves a local `$ref` ("#/$defs/x") against the root schema. */
export function deref(root: JsonSchema, s: JsonSchema): JsonSchema {
  let cur = s;
  for (let i = 0; i < 16 && typeof cur.$ref === 'string'; i++) {
    const parts = (cur.$ref as string).replace(/^#\//, '').split('/');
    let next: unknown = root;
    for (const p of parts) next = (next as Record<string, unknown>)[p];
    cur = next as JsonSchema;
  }
  return cur;
}

/**
 * Paths of properties that the schema defines but `value` lacks, walking nested
 * objects and the first element of arrays. Free-form objects (no `properties`)
 * are not walked.
 */
export function missingProperties(
  root: JsonSchema,
  schema: JsonSchema,
  value: unknown,
  path = '',
): string[] {
  const s = deref(root, schema);
  const out: string[] = [];
  if (s.properties && typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const v = value as Record<string, unknown>;
    for (const [k, sub] of Object.entries(s.properties as Record<string, JsonSchema>)) {
      if (!(k in v)) out.push(`${path}/${k}`);
      else out.push(...missingProperties(root, sub, v[k], `${path}/${k}`));
    }
  } else if (s.items && Array.isArray(value) && value.length > 0) {
    out.push(...missingProperties(root, s.items as JsonSchema, value[0], `${path}/0`));
  }
  return out;
}
