#!/usr/bin/env bash
# 8-bit Adam against fp32 AdamW on the real corpus (issue 7): the benchmark
# model (4 layers, 4 heads, width 256, T=128, batch 8, vocabulary 4096) trained
# by `shardlm train` for STEPS steps with each optimizer, same seed and data;
# the final validation loss (20 batches of the val split) of both, their ratio,
# and the optimizer-state bytes per parameter. The two runs go side by side,
# one thread each.
#   bench/runtime/adam8bit_vs_adamw.sh [--steps 300] [--build build] [--fixture DIR]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/bench/lib.sh"
STEPS=300 BUILD=$ROOT/build FIXTURE=
while [ $# -gt 0 ]; do
  case $1 in
    --steps) STEPS=$2; shift 2 ;;
    --build) BUILD=$(realpath "$2"); shift 2 ;;
    --fixture) FIXTURE=$(realpath "$2"); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
FIXTURE=${FIXTURE:-$BUILD/fixtures/runtime}
SHARDLM=$BUILD/launcher/shardlm
[ -f "$FIXTURE/data/manifest.json" ] || { echo "no fixture at $FIXTURE (ctest -R runtime.fixture makes it)" >&2; exit 1; }
DIR=$(mktemp -d /tmp/shardlm-adam8.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
for opt in adamw adam8bit; do
  cat > "$DIR/$opt.toml" <<TOML
[train]
run_dir = "$DIR/$opt"
seed = 1234
steps = $STEPS
[train.schedule]
warmup_steps = 30
[optimizer]
name = "$opt"
lr = 1e-3
weight_decay = 0.1
$(bench_model_toml "$FIXTURE/data")
[validation]
every = 0
batches = 20
[ckpt]
save_final = false
[log]
level = "warn"
TOML
  OMP_NUM_THREADS=1 "$SHARDLM" train --config "$DIR/$opt.toml" > "$DIR/$opt.log" 2>&1 &
done
wait
python3 - "$DIR" "$STEPS" <<'PY'
import json, sys
d, steps = sys.argv[1], sys.argv[2]
r = {o: json.load(open(f"{d}/{o}/validation_report.json")) for o in ("adamw", "adam8bit")}
def state(o):
    rows = [json.loads(l) for l in open(f"{d}/{o}/metrics/rank-0.jsonl") if '"type":"step"' in l]
    return rows[-1]["extra"]["model_state_bytes"]
a, b = r["adamw"]["final_val_loss"], r["adam8bit"]["final_val_loss"]
print(f"{steps} steps: final validation loss AdamW {a:.4f}, 8-bit Adam {b:.4f}: "
      f"8-bit/fp32 = {b/a:.4f} ({(b/a-1)*100:+.2f}%, goal within 1%); "
      f"model state bytes (params+grads+optimizer): AdamW {state('adamw'):.0f}, 8-bit {state('adam8bit'):.0f}")
PY
