#!/usr/bin/env bash
# data/ benchmarks on the real ~10 MB English corpus (bench/tokenizer/make_corpus.sh),
# every figure and its baseline measured in this one run:
#   prepare   end-to-end MB/s of `shardlm prepare --force` (read, clean, dedup,
#             split, tokenise, write cache + shards + checksums) vs the tokenizer
#             alone on the same text and threads (`shardlm tokenizer encode --lines`)
#   cached    a second `shardlm prepare` (nothing to do) vs the first
#   loader    tokens/s of data::Loader batches (8 x 128, packed and documents) vs
#             the tokens/s one training step of the benchmark model consumes
#             (bench/data/train_step_rate.py, PyTorch, same machine, same run; the
#             faster of 1 thread and all threads)
# Usage: bench/data/run_bench.sh [build dir]   (prints the rows for bench/RESULTS.md)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${1:-$ROOT/build}"
SHARDLM="$BUILD/launcher/shardlm"
BENCH="$BUILD/bench/data/bench_data"
PY=/usr/bin/python3
W="$ROOT/.cache/bench_data"
THREADS=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc alone follows OMP_NUM_THREADS
cd "$ROOT"
bench/tokenizer/make_corpus.sh >/dev/null
CORPUS=.cache/corpus/english.txt
mkdir -p "$W"
[ -s "$W/tok4096.json" ] || "$SHARDLM" tokenizer train -i "$CORPUS" -v 4096 -o "$W/tok4096.json" --no-progress >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

now() { date +%s.%N; }
echo "machine: $(lscpu | sed -n 's/^Model name: *//p') ($THREADS cores), load: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- prepare vs the tokenizer alone ------------------------------------------------------------
enc=$("$SHARDLM" tokenizer encode -t "$W/tok4096.json" -i "$CORPUS" --lines --threads "$THREADS" --stats)
enc_mbs=$(sed -n 's/.*: \([0-9.]*\) MB\/s.*/\1/p' <<<"$enc")
t0=$(now)
prep=$("$SHARDLM" prepare -i "$CORPUS" -o "$W/prepared" -t "$W/tok4096.json" --threads "$THREADS" --force --no-progress 2>/dev/null)
t1=$(now)
again=$("$SHARDLM" prepare -i "$CORPUS" -o "$W/prepared" -t "$W/tok4096.json" --threads "$THREADS" --no-progress 2>/dev/null)
t2=$(now)
all_s=$(sed -n 's/.*; \([0-9.]*\) s in all.*/\1/p' <<<"$prep")
mb=$(sed -n 's/^tokenised 1 file(s), \([0-9.]*\) MB.*/\1/p' <<<"$prep")
prep_mbs=$($PY -c "print(f'{$mb / $all_s:.2f}')")
cold_s=$($PY -c "print(f'{$t1 - $t0:.2f}')")
warm_s=$($PY -c "print(f'{$t2 - $t1:.2f}')")
grep -q "up to date" <<<"$again" || { echo "second prepare was not up to date:"; echo "$again"; exit 1; }
echo "$prep"
echo "tokenizer alone: $enc"

# ---- loader vs a training step --------------------------------------------------------------------
SHARDLM_BENCH_DATA="$W/prepared" "$BENCH" --benchmark_filter='BM_Loader.*/128/' --benchmark_min_time=1 \
  --benchmark_format=json --benchmark_out="$W/loader.json" --benchmark_out_format=json >/dev/null
# The training step on 1 thread and on all: the faster one is what the loader must feed
# (on a busy machine more threads can be much slower).
step1=$($PY bench/data/train_step_rate.py --threads 1)
stepn=$($PY bench/data/train_step_rate.py --threads "$THREADS")
$PY - "$W/loader.json" "$step1" "$stepn" <<'PYEOF'
import json, sys
loader = {b["name"]: b for b in json.load(open(sys.argv[1]))["benchmarks"]}
steps = [json.loads(a) for a in sys.argv[2:]]
for s in steps:
    print(f"training step, {s['threads']} thread(s): {s['step_ms']:.1f} ms = {s['tokens_per_s']:,.0f} tokens/s")
step = max(steps, key=lambda s: s["tokens_per_s"])
need = step["tokens_per_s"]
print(f"training step: {step['step_ms']:.1f} ms for 8 x 128 tokens = {need:,.0f} tokens/s ({step['threads']} threads)")
for name, b in loader.items():
    tps = b["tokens/s"]
    print(f"{name:45s} {tps/1e6:8.2f} M tokens/s = {tps/need:10,.0f} x the training step "
          f"(wait {b['wait_ms']*1e3:.1f} us/batch, padding {b['padding']*100:.1f}%)")
PYEOF
echo "prepare: $mb MB in $all_s s = $prep_mbs MB/s end to end ($cold_s s with process start); tokenizer alone $enc_mbs MB/s; cached re-run $warm_s s"
