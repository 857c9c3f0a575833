#!/usr/bin/env bash
# `shardlm serve` under Poisson arrivals: static batching (baseline) vs continuous
# batching, same requests, same process, same run; then the shared-prefix
# scenario (prefill tokens computed with and without prefix caching).
# Usage: bench/serve/run.sh [build dir] [extra bench_serve options]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD=${1:-$ROOT/build}; shift || true
"$ROOT/bench/tokenizer/make_corpus.sh" >/dev/null
cmake --build "$BUILD" --target bench_serve >/dev/null
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BUILD/bench/serve/bench_serve" --corpus "$ROOT/.cache/corpus/english.txt" "$@"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
