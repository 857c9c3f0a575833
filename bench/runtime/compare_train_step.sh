#!/usr/bin/env bash
# Side by side, same machine, same run: tokens/s of one training step of the
# same model and optimizer in shardlm (bench_train_step) and in PyTorch Python
# (pytorch_train_step.py). Extra arguments go to both (e.g. --threads 2).
# Usage: bench/runtime/compare_train_step.sh <build dir> [python] [args...]
set -euo pipefail
BUILD=${1:-build}; shift || true
PY=${1:-/usr/bin/python3}; shift || true
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ours=$("$BUILD/bench/runtime/bench_train_step" "$@" | tail -1)
base=$("$PY" "$HERE/pytorch_train_step.py" "$@" | tail -1)
echo "shardlm: $ours"
echo "pytorch: $base"
"$PY" - "$ours" "$base" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"tokens/s shardlm {a['tokens_per_s']:.0f}  pytorch {b['tokens_per_s']:.0f}  ratio {a['tokens_per_s']/b['tokens_per_s']:.2f}x")
PY
