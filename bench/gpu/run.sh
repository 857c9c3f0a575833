#!/usr/bin/env bash
# GPU benchmarks for scripts/gpu_check.sh: GPT-2 124M at T=1024 in bf16, one
# training step (forward, backward, AdamW) in shardlm vs the same model and
# optimizer in PyTorch (eager, and torch.compile), in the same run on the same
# card. Appends rows to the results table. Usage: run.sh <build dir> <out dir> <results.md>
set -uo pipefail
B=$1; OUT=$2; RESULTS=$3
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ARGS=(--device cuda --dtype bf16 --layers 12 --heads 12 --width 768 --seq 1024 --vocab 50304
      --batch 16 --steps 10 --warmup 3)
row() { echo "| $1 | $2 |" >>"$RESULTS"; }
ours=$("$B/bench/runtime/bench_train_step" "${ARGS[@]}" 2>"$OUT/bench_ours.err" | tail -1)
echo "shardlm: $ours" | tee -a "$OUT/bench.log"
ours_ckpt=$("$B/bench/runtime/bench_train_step" "${ARGS[@]}" --checkpointing 2>>"$OUT/bench_ours.err" | tail -1)
echo "shardlm+checkpointing: $ours_ckpt" | tee -a "$OUT/bench.log"
eager=$(python3 "$HERE/../runtime/pytorch_train_step.py" "${ARGS[@]}" 2>"$OUT/bench_py.err" | tail -1)
echo "pytorch eager: $eager" | tee -a "$OUT/bench.log"
compiled=$(timeout 150 python3 "$HERE/../runtime/pytorch_train_step.py" "${ARGS[@]}" --compile 2>>"$OUT/bench_py.err" | tail -1)
echo "pytorch compile: $compiled" | tee -a "$OUT/bench.log"
tps() { python3 -c 'import json,sys; print("%.0f" % json.loads(sys.argv[1])["tokens_per_s"])' "$1" 2>/dev/null || echo "?"; }
row "GPT-2 124M bf16 T=1024 B=16 train step, shardlm tokens/s" "$(tps "$ours")"
row "same, shardlm with activation checkpointing" "$(tps "$ours_ckpt")"
row "same, PyTorch eager (fused AdamW) tokens/s" "$(tps "$eager")"
row "same, PyTorch torch.compile tokens/s" "$(tps "$compiled")"
