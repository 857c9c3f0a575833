#!/usr/bin/env bash
# The monitor's cost on a real training step (issue 9: goal < 1%): the CPU
# benchmark model (4 layers, 4 heads, width 256, T=128, batch 8, vocabulary
# 4096) trained by `shardlm train` on 1 rank, 2 threads, with the monitor off
# (no JSONL, no stdout lines, no WebSocket) and on (JSONL + stdout lines + the
# embedded aggregator with rank 0's WebSocket sink connected to it), ROUNDS
# rounds alternating; tokens/s of the training loop from each run's
# validation_report.json, medians compared.
#   bench/monitor/step_overhead.sh [--build build] [--steps 40] [--rounds 3] [--fixture DIR]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/bench/lib.sh"
BUILD=$ROOT/build STEPS=40 ROUNDS=3 FIXTURE=
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$(realpath "$2"); shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --fixture) FIXTURE=$(realpath "$2"); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
FIXTURE=${FIXTURE:-$BUILD/fixtures/runtime}
SHARDLM=$BUILD/launcher/shardlm
[ -f "$FIXTURE/data/manifest.json" ] || { echo "no fixture at $FIXTURE (ctest -R runtime.fixture makes it)" >&2; exit 1; }
DIR=$(mktemp -d /tmp/shardlm-monbench.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
run() {  # name monitor-section
  cat > "$DIR/$1.toml" <<TOML
[train]
run_dir = "$DIR/$1"
steps = $STEPS
$(bench_model_toml "$FIXTURE/data")
[validation]
every = 0
batches = 1
[ckpt]
save_final = false
[monitor]
$2
[log]
level = "warn"
TOML
  OMP_NUM_THREADS=2 "$SHARDLM" train --config "$DIR/$1.toml" > "$DIR/$1.log" 2>&1
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['tokens_per_s'])" "$DIR/$1/validation_report.json"
}
off=() on=()
port=$((20000 + $$ % 20000))
for r in $(seq 1 "$ROUNDS"); do
  off+=("$(run off-$r $'jsonl = false\nstdout = false')")
  on+=("$(run on-$r $'jsonl = true\nstdout = true\nembedded = true\nport = '"$((port + r))")")
done
python3 - "${off[*]}" "${on[*]}" <<'PY'
import statistics, sys
off = [float(x) for x in sys.argv[1].split()]
on = [float(x) for x in sys.argv[2].split()]
a, b = statistics.median(off), statistics.median(on)
print(f"tokens/s, monitor off: {' '.join(f'{x:.0f}' for x in off)} (median {a:.0f}); "
      f"on: {' '.join(f'{x:.0f}' for x in on)} (median {b:.0f}); on/off = {b/a:.4f} ({(1-b/a)*100:+.2f}% slower)")
PY
