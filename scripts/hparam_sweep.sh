#!/usr/bin/env bash
# The runs behind docs/hyperparameters.md: short trainings of a small GPT
# (2 layers, width 128, 0.6M parameters) on the first 4 MB of the English
# corpus (bench/tokenizer/make_corpus.sh), one knob changed at a time from a
# common base; then scripts/hparam_plot.py draws the curves into
# docs/hyperparameters/ and prints the tables the page shows.
#
#   scripts/hparam_sweep.sh [OUT]        OUT defaults to .cache/hparam
#   STEPS=200 THREADS=1 SHARDLM=build/launcher/shardlm scripts/hparam_sweep.sh
#   ONLY='^(lr|zero)-' scripts/hparam_sweep.sh     # only the runs whose name matches
#
# A run whose validation_report.json exists is not run again, so an
# interrupted sweep continues where it stopped (delete OUT/runs/NAME to redo
# one). On a shared, loaded 2-core machine one 100-step run of the base took
# 5 to 15 minutes; use ONLY= to run the groups you need.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mkdir -p "${1:-$ROOT/.cache/hparam}" && cd "${1:-$ROOT/.cache/hparam}" && pwd)"
SHARDLM="${SHARDLM:-$ROOT/build/launcher/shardlm}"
STEPS="${STEPS:-200}"
T="${THREADS:-1}"  # CPU threads of a one-rank run (the two-rank runs use 1 each)
export OMP_WAIT_POLICY=PASSIVE OMPI_MCA_rmaps_base_oversubscribe=1
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
[ -x "$SHARDLM" ] || { echo "hparam_sweep: $SHARDLM is not built (./shardlm.sh build)" >&2; exit 1; }
log() { printf '[hparam] %s\n' "$*"; }

# ---- data: 4 MB of English, a 2048-token tokenizer, one verse per document ----------
"$ROOT/bench/tokenizer/make_corpus.sh" >/dev/null
if [ ! -s "$OUT/data/manifest.json" ]; then
  head -c 4M "$ROOT/.cache/corpus/english.txt" | sed '$d' > "$OUT/corpus.txt"
  "$SHARDLM" tokenizer train -i "$OUT/corpus.txt" -v 2048 -o "$OUT/tokenizer.json" --no-progress
  "$SHARDLM" prepare -i "$OUT/corpus.txt" -o "$OUT/data" -t "$OUT/tokenizer.json" --no-progress \
    'prepare.txt_documents="line"' prepare.val_fraction=0.02
fi

# ---- the base run: every other run changes one or two keys of it --------------------
cat > "$OUT/base.toml" <<EOF
[train]
steps = $STEPS
seed = 1234
grad_clip = 1.0
precision = "fp32"
[train.schedule]
kind = "cosine"
warmup_steps = 20
min_lr_ratio = 0.1
[optimizer]
name = "adamw"
lr = 1e-3
weight_decay = 0.1
beta2 = 0.95
[model]
vocab_size = 2048
context_length = 128
n_layer = 2
n_head = 4
d_model = 128
[data]
path = "$OUT/data"
batch_size = 16
seq_len = 128
[validation]
every = 50
batches = 16
[ckpt]
save_final = false
[monitor]
embedded = false
EOF

# run NAME RANKS THREADS [--key=value ...]
run() {
  local name=$1 ranks=$2 threads=$3
  shift 3
  local dir="$OUT/runs/$name"
  if [ -n "${ONLY:-}" ] && ! [[ $name =~ $ONLY ]]; then return; fi
  if [ -s "$dir/validation_report.json" ] || [ -e "$dir/FAILED" ]; then
    log "$name: done before"
    return
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  log "$name: $ranks rank(s) x $threads thread(s) $*"
  local t0=$SECONDS
  OMP_NUM_THREADS=$threads mpirun -n "$ranks" --bind-to none "$SHARDLM" train \
    --config "$OUT/base.toml" --train.run_dir="$dir" "$@" > "$dir/train.log" 2>&1 || {
    # A run that diverges is a result too (its curve ends there); any other
    # failure stops the sweep.
    if grep -q "lower optimizer.lr" "$dir/train.log"; then
      grep -m1 -o "the loss is [^:]*" "$dir/train.log" > "$dir/FAILED"
      log "$name: diverged: $(cat "$dir/FAILED")"
      return
    fi
    tail -n 20 "$dir/train.log"
    exit 1
  }
  log "$name: $((SECONDS - t0)) s, $(grep -o 'validation at step [0-9]*: loss [0-9.]*' "$dir/train.log" | tail -n 1)"
}

# The learning rate (warmup 20 steps, cosine to a tenth).
for lr in 1e-4 3e-4 1e-3 3e-3 1e-2; do run "lr-$lr" 1 "$T" --optimizer.lr=$lr; done
# Warmup at a learning rate that is too high to start with.
for w in 0 100; do run "warmup-$w-lr-1e-2" 1 "$T" --optimizer.lr=1e-2 --train.schedule.warmup_steps=$w; done
# Gradient clipping at that learning rate (lr-1e-2 is the clip 1.0 run).
for c in 0 0.25; do run "clip-$c-lr-1e-2" 1 "$T" --optimizer.lr=1e-2 --train.grad_clip=$c; done
# Batch size (rows of 128 tokens per step) and accumulation (16 rows as 4 x 4).
for b in 4 64; do run "batch-$b" 1 "$T" --data.batch_size=$b; done
run "batch-4x4" 1 "$T" --data.batch_size=4 --train.accumulation=4
# Weight decay.
for wd in 0 1.0; do run "wd-$wd" 1 "$T" --optimizer.weight_decay=$wd; done
# Precision: bf16 autocast on the CPU.
run "bf16" 1 "$T" --train.precision=bf16
# Activation checkpointing, on a larger micro-batch so that activations weigh.
run "act-off-b64" 1 "$T" --data.batch_size=64 --train.steps=20 --validation.every=0
run "act-on-b64" 1 "$T" --data.batch_size=64 --train.steps=20 --validation.every=0 \
  --train.activation_checkpointing=true
# Memory and communication per rank: ZeRO stages and offload on 2 ranks.
for z in 0 1 2 3; do run "zero-$z" 2 1 --parallel.zero_stage=$z --train.steps=10 --validation.every=0; done
run "zero-3-offload" 2 1 --parallel.zero_stage=3 --parallel.cpu_offload=true --optimizer.name=cpu_adam \
  --train.steps=10 --validation.every=0
run "zero-3-stream" 2 1 --parallel.zero_stage=3 --parallel.cpu_offload=true --parallel.offload_params=true \
  --optimizer.name=cpu_adam --train.steps=10 --validation.every=0

log "runs in $OUT/runs; plotting"
/usr/bin/python3 "$ROOT/scripts/hparam_plot.py" "$OUT" "$ROOT/docs/hyperparameters"
