#!/usr/bin/env bash
# Test fixture for the trainer: ~3 MB of real English (the start of the corpus
# that bench/tokenizer/make_corpus.sh builds from Debian's bible-kjv), a
# 4096-token BPE tokenizer trained on it by `shardlm tokenizer train`, and the
# dataset prepared by `shardlm prepare`. Idempotent (prepare's cache does the rest).
# Usage: make_fixture.sh <shardlm binary> <output dir>
set -euo pipefail
BIN=$1
OUT=$2
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CORPUS="$ROOT/.cache/corpus/english.txt"
[ -s "$CORPUS" ] || "$ROOT/bench/tokenizer/make_corpus.sh" >/dev/null
mkdir -p "$OUT"
if [ ! -s "$OUT/corpus.txt" ]; then
  head -c 3000000 "$CORPUS" > "$OUT/corpus.tmp" && mv "$OUT/corpus.tmp" "$OUT/corpus.txt"
fi
if [ ! -s "$OUT/tokenizer.json" ]; then
  "$BIN" tokenizer train --input "$OUT/corpus.txt" --vocab-size 4096 --eos-token '<|endoftext|>' \
    --out "$OUT/tokenizer.json" --no-progress
fi
"$BIN" prepare --input "$OUT/corpus.txt" --output "$OUT/data" --tokenizer "$OUT/tokenizer.json" \
  --no-progress prepare.val_fraction=0.05 prepare.shard_mb=1
test -s "$OUT/data/manifest.json"
