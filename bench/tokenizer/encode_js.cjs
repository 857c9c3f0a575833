// Encode throughput of the JavaScript reference tokenizers on one text file,
// one thread (Node runs JS on one): gpt-tokenizer (pure JS) and tiktoken (Rust
// compiled to wasm), from .cache/reference (scripts/fetch_reference.sh).
// Usage: node encode_js.cjs FILE ENCODING REPEATS   (ENCODING: r50k_base | cl100k_base)
// Prints one line per tokenizer: "<name> <tokens> <best seconds> <MB/s>".
const fs = require('fs');
const path = require('path');
const [file, encoding = 'r50k_base', repeats = '3'] = process.argv.slice(2);
const ref = process.env.SHARDLM_REFERENCE_DIR ||
    path.join(__dirname, '..', '..', '.cache', 'reference', 'node_modules');
const text = fs.readFileSync(file, 'utf8');
const bytes = Buffer.byteLength(text, 'utf8');

function time(name, encode) {
  let best = Infinity, n = 0;
  for (let r = 0; r < Number(repeats); r++) {
    const t0 = process.hrtime.bigint();
    n = encode(text).length;
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    best = Math.min(best, s);
  }
  console.log(`${name} ${n} ${best.toFixed(3)} ${(bytes / best / 1e6).toFixed(2)}`);
}

const gptTok = require(path.join(ref, 'gpt-tokenizer', 'cjs', 'encoding', encoding + '.js'));
time('gpt-tokenizer', (t) => gptTok.encode(t));
const { get_encoding } = require(path.join(ref, 'tiktoken'));
const enc = get_encoding(encoding);
time('tiktoken-wasm', (t) => enc.encode_ordinary(t));
enc.free();
