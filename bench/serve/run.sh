#!/usr/bin/env bash
# Requests/s and tokens/s of `shardlm serve`'s server for 32 concurrent greedy
# completions (64 new tokens each) on the CPU benchmark model: --max-batch 1
# (baseline, every request alone) vs --max-batch 8, same process, same run.
# Usage: bench/serve/run.sh [build dir] [extra bench_serve options]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD=${1:-$ROOT/build}; shift || true
"$ROOT/bench/tokenizer/make_corpus.sh" >/dev/null
cmake --build "$BUILD" --target bench_serve >/dev/null
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BUILD/bench/serve/bench_serve" --corpus "$ROOT/.cache/corpus/english.txt" "$@"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
