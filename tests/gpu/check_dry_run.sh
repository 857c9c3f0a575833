#!/usr/bin/env bash
# ctest gpu.check_dry_run: scripts/gpu_check.sh refuses bad arguments, and its
# --dry-run passes every check it can make without a GPU (carried packages in
# a scratch root, their closure, the CUDA configure with the carried
# packages, the training checks and the benchmark plumbing on the CPU).
# Usage: check_dry_run.sh <source dir> <build dir> <shardlm> <fixture dir>
set -uo pipefail
SRC=$1 BIN=$2 SHARDLM=$3 FIXTURE=$4
CHECK=$SRC/scripts/gpu_check.sh
fail() { echo "FAIL: $*"; exit 1; }

out=$("$CHECK" --bogus 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "unknown argument '--bogus'" <<<"$out" || fail "--bogus: rc $rc: $out"
out=$("$CHECK" --budget soon 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "seconds" <<<"$out" || fail "--budget soon: rc $rc: $out"
"$CHECK" --help | grep -q -- '--dry-run' || fail "--help does not list --dry-run"

OUT=$BIN/gpu-dry-run
"$CHECK" --dry-run --budget 1500 --out "$OUT" --build-dir "$BIN" --shardlm "$SHARDLM" --fixture "$FIXTURE"
rc=$?
[ $rc -eq 0 ] || fail "dry run exited $rc"
R=$OUT/results.md
[ -s "$R" ] || fail "no results table"
[ -s "$OUT/logs.tar.gz" ] || fail "no logs.tar.gz"
# (The listing is read whole first: `tar | grep -q` under pipefail failed when
# grep's early exit sent tar SIGPIPE.)
listing=$(tar tzf "$OUT/logs.tar.gz") || fail "logs.tar.gz does not list"
grep -q 'logs/runs/cpu/metrics/rank-0.jsonl' <<<"$listing" || fail "run metrics not in logs.tar.gz"
for check in "carried packages" "build dependencies present" "carried libraries resolve" \
             "configure, CUDA options" "train demo on cpu, fp32, losses vs CPU" \
             "checkpoint at 2, resume on cpu: losses bitwise" "train demo on cpu, bf16: loss falls" \
             "ZeRO-3 + CPU offload, 2 ranks on cpu"; do
  line=$(grep -F "| $check" "$R") || fail "no row '$check'"
  grep -q '| PASS |' <<<"$line" || fail "row not PASS: $line"
done
grep -F "| train step" "$R" | grep -F "shardlm |" | grep -qE '[0-9] tokens/s' || fail "no shardlm tokens/s row"
grep -F "| train step" "$R" | grep -F "PyTorch eager" | grep -qE '[0-9] tokens/s' || fail "no PyTorch tokens/s row"
grep -qE "\| fp32 matmul peak \(cpu\) \| info \| [0-9.e+-]+ TFLOP/s" "$R" || fail "no matmul peak row"
grep -q '| total seconds |' "$R" || fail "no total row"
[ ! -e "$OUT/rootfs" ] || fail "the scratch root was left behind"
echo "gpu_check dry run: all checks PASS"
