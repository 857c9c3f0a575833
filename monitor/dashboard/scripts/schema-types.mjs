#!/usr/bin/env node
// TypeScript types from monitor/protocol.schema.json: src/protocol.gen.ts.
//
// The schema is the single source of the protocol: the C++ aggregator checks
// every message against it, and the dashboard's types are generated from it, so
// a field renamed on one side cannot silently read as undefined on the other
// (the Run tab once read `info.max_steps` while the trainer sent
// `config.train.steps`). test/schema-types.test.ts fails when the committed file
// is not what this script writes; `npm run gen:types` rewrites it.
//
// It handles the subset of JSON Schema the protocol uses (monitor/schema.cpp
// refuses the rest): type (also lists), enum, const, properties, required,
// additionalProperties (false, or a schema), items, $ref to $defs, oneOf,
// anyOf. Refinements (if/then/allOf, minimum, maxLength...) are checked at run
// time by the validators and do not change a type. Every $defs entry becomes an
// exported type named in PascalCase (`step` -> `Step`); an enum also becomes a
// const array (`COMMAND_NAME_VALUES`).

import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const SCHEMA_PATH = resolve(here, '../../protocol.schema.json');
export const OUTPUT_PATH = resolve(here, '../src/protocol.gen.ts');

export const pascal = (name) =>
  name
    .split(/[_\-]/)
    .filter(Boolean)
    .map((w) => w[0].toUpperCase() + w.slice(1))
    .join('');

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const key = (k) => (IDENT.test(k) ? k : JSON.stringify(k));

function comment(text, indent) {
  if (!text) return '';
  const lines = String(text).replace(/\*\//g, '*\\/').split('\n');
  if (lines.length === 1) return `${indent}/** ${lines[0]} */\n`;
  return `${indent}/**\n${lines.map((l) => `${indent} * ${l}`).join('\n')}\n${indent} */\n`;
}

function typeOf(s, indent) {
  if (s === true || s === undefined) return 'unknown';
  if (s.$ref) {
    const m = /^#\/\$defs\/(.+)$/.exec(s.$ref);
    if (!m) throw new Error(`unsupported $ref ${s.$ref}`);
    return pascal(m[1]);
  }
  if ('const' in s) return JSON.stringify(s.const);
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' | ');
  if (s.oneOf || s.anyOf) return (s.oneOf ?? s.anyOf).map((x) => typeOf(x, indent)).join(' | ');
  const types = Array.isArray(s.type) ? s.type : s.type ? [s.type] : [];
  if (types.length === 0 && (s.properties || s.additionalProperties !== undefined)) types.push('object');
  if (types.length === 0) return 'unknown';
  const parts = types.map((t) => {
    switch (t) {
      case 'integer':
      case 'number':
        return 'number';
      case 'string':
        return 'string';
      case 'boolean':
        return 'boolean';
      case 'null':
        return 'null';
      case 'array': {
        const item = typeOf(s.items, indent);
        return /[|&]/.test(item) ? `(${item})[]` : `${item}[]`;
      }
      case 'object':
        return objectType(s, indent);
      default:
        throw new Error(`unsupported type ${t}`);
    }
  });
  return parts.join(' | ');
}

function objectType(s, indent) {
  const props = s.properties ?? {};
  const required = new Set(s.required ?? []);
  const extra = s.additionalProperties;
  if (Object.keys(props).length === 0) {
    if (extra === false) return 'Record<string, never>';
    if (extra && typeof extra === 'object') return `Record<string, ${typeOf(extra, indent)}>`;
    return 'Record<string, unknown>';
  }
  const inner = `${indent}  `;
  let out = '{\n';
  for (const [k, sub] of Object.entries(props)) {
    out += comment(sub.description, inner);
    out += `${inner}${key(k)}${required.has(k) ? '' : '?'}: ${typeOf(sub, inner)};\n`;
  }
  if (extra === undefined || extra === true) out += `${inner}[key: string]: unknown;\n`;
  else if (extra && typeof extra === 'object') out += `${inner}[key: string]: ${typeOf(extra, inner)} | undefined;\n`;
  return `${out}${indent}}`;
}

/** The text of src/protocol.gen.ts for `schema`. */
export function generate(schema) {
  let out =
    '// GENERATED from monitor/protocol.schema.json by scripts/schema-types.mjs: do not edit.\n' +
    '// `npm run gen:types` rewrites it; test/schema-types.test.ts fails when it is stale.\n' +
    '/* eslint-disable */\n\n';
  for (const [name, def] of Object.entries(schema.$defs ?? {})) {
    const T = pascal(name);
    out += comment(def.description, '');
    const body = typeOf(def, '');
    out += body.startsWith('{\n') ? `export interface ${T} ${body}\n\n` : `export type ${T} = ${body};\n\n`;
    if (def.enum) {
      const constName = `${name.toUpperCase()}_VALUES`;
      out += `export const ${constName} = ${JSON.stringify(def.enum)} as const;\n\n`;
    }
  }
  const messages = (schema.oneOf ?? []).map((r) => pascal(/#\/\$defs\/(.+)$/.exec(r.$ref)[1]));
  out += `/** Every message of the protocol (the schema's top-level oneOf). */\nexport type Message =\n${messages.map((m) => `  | ${m}`).join('\n')};\n\n`;
  const typesOf = (schema.oneOf ?? []).map((r) => /#\/\$defs\/(.+)$/.exec(r.$ref)[1]);
  out += `/** The \`type\` of every message. */\nexport const MESSAGE_TYPES = ${JSON.stringify(typesOf)} as const;\n`;
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const schema = JSON.parse(readFileSync(SCHEMA_PATH, 'utf8'));
  writeFileSync(OUTPUT_PATH, generate(schema));
  console.log(`wrote ${OUTPUT_PATH}`);
}
