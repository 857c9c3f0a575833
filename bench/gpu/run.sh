#!/usr/bin/env bash
# The GPU benchmark of scripts/gpu_check.sh, by hand, where shardlm is already
# built: GPT-2 124M at T=1024 in bf16, one training step (forward, backward,
# AdamW) in shardlm vs PyTorch eager (fused AdamW) vs torch.compile, and the
# card's bf16 matmul peak for MFU, all in this run on this card.
# Usage: bench/gpu/run.sh <build dir> [out dir]   (prints the rows; writes bench.json)
set -uo pipefail
B=$1; OUT=${2:-$(mktemp -d)}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$OUT"
ARGS=(--device cuda --dtype bf16 --layers 12 --heads 12 --width 768 --seq 1024 --vocab 50304
      --batch 16 --steps 10 --warmup 3)
python3 "$HERE/matmul_peak.py" --device cuda --size 8192 --dtype bf16 >"$OUT/matmul.json"
"$B/bench/runtime/bench_train_step" "${ARGS[@]}" >"$OUT/ours.json"
"$B/bench/runtime/bench_train_step" "${ARGS[@]}" --checkpointing >"$OUT/ours_ckpt.json"
python3 "$HERE/../runtime/pytorch_train_step.py" "${ARGS[@]}" >"$OUT/eager.json"
timeout 300 python3 "$HERE/../runtime/pytorch_train_step.py" "${ARGS[@]}" --compile >"$OUT/compile.json"
python3 "$HERE/report.py" bench --dir "$OUT" "${ARGS[@]}" --json "$OUT/bench.json" | tr '|' '\t'
