#!/usr/bin/env bash
# Checkpoint benchmarks, side by side in one run (bench/RESULTS.md rows):
#  1. save and load GB/s of a GB-sized checkpoint (bench_ckpt_io: HDF5 rank
#     files + fsync + xxh3 checksums + manifest + atomic rename; read back
#     through CheckpointReader) against `dd` writing (conv=fsync) and reading
#     the same number of bytes in the same folder. Reads are from the page
#     cache on both sides unless /proc/sys/vm/drop_caches is writable.
#  2. the training stall of an async save: the benchmark model (4 layers,
#     width 256, T=128, batch 8) trained by `shardlm train` on 1 rank with a
#     save every 5 steps; the stall the loop sees per save (snapshot + wait),
#     and the wall-clock cost per save against the same run without saves,
#     both as a fraction of the median step.
#   bench/ckpt/run.sh [--gb 1] [--build build] [--dir /tmp/shardlm-ckpt-bench] [--fixture DIR]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
GB=1 BUILD=$ROOT/build DIR=/tmp/shardlm-ckpt-bench FIXTURE=
while [ $# -gt 0 ]; do
  case $1 in
    --gb) GB=$2; shift 2 ;;
    --build) BUILD=$(realpath "$2"); shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --fixture) FIXTURE=$(realpath "$2"); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
FIXTURE=${FIXTURE:-$BUILD/fixtures/runtime}
SHARDLM=$BUILD/launcher/shardlm
IO=$BUILD/bench/ckpt/bench_ckpt_io
[ -x "$IO" ] && [ -x "$SHARDLM" ] || { echo "build first: ./shardlm.sh build" >&2; exit 1; }
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mkdir -p "$DIR"
trap 'rm -rf "$DIR"' EXIT
drop() { sync; { echo 1 > /proc/sys/vm/drop_caches; } 2>/dev/null && echo dropped || echo cached; }
now() { date +%s.%N; }

echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg); disk of $DIR: $(df -h "$DIR" | awk 'NR==2{print $1" "$2}')"

# ---- 1. I/O --------------------------------------------------------------------
res=$(OMP_NUM_THREADS=1 mpiexec -n 1 "$IO" --dir "$DIR/ckpt" --gb "$GB")
bytes=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['bytes'])" "$res")
bs=$((16 << 20)) count=$(((bytes + (16 << 20) - 1) / (16 << 20)))
cache_state=$(drop)
t0=$(now); dd if=/dev/zero of="$DIR/dd.bin" bs=$bs count=$count conv=fsync status=none; t1=$(now)
read_cache=$(drop)
t2=$(now); dd if="$DIR/dd.bin" of=/dev/null bs=$bs status=none; t3=$(now)
rm -f "$DIR/dd.bin"
python3 - "$res" "$t0" "$t1" "$t2" "$t3" "$((bs * count))" "$read_cache" <<'EOF'
import json, sys
r = json.loads(sys.argv[1]); t0, t1, t2, t3 = map(float, sys.argv[2:6]); n = int(sys.argv[6])
dd_w, dd_r = n / (t1 - t0) / 1e9, n / (t3 - t2) / 1e9
print(f"checkpoint of {r['bytes']/1e9:.2f} GB, {r['ranks']} rank: save {r['save_gb_s']:.3f} GB/s ({r['save_s']:.2f} s), "
      f"load {r['load_gb_s']:.3f} GB/s ({r['load_s']:.2f} s), read back equal: {r['read_back_equal']}")
print(f"dd same bytes: write+fsync {dd_w:.3f} GB/s, read {dd_r:.3f} GB/s (page cache: {sys.argv[7]})")
print(f"ratio save/dd write = {r['save_gb_s']/dd_w:.2f}, load/dd read = {r['load_gb_s']/dd_r:.2f}")
EOF

# ---- 2. async stall ------------------------------------------------------------
[ -f "$FIXTURE/data/manifest.json" ] || { echo "no fixture at $FIXTURE (ctest -R runtime.fixture makes it)"; exit 0; }
run() {  # name every
  cat > "$DIR/$1.toml" <<EOF
[train]
run_dir = "$DIR/$1"
steps = 40
[model]
vocab_size = 4096
context_length = 128
n_layer = 4
n_head = 4
d_model = 256
[data]
path = "$FIXTURE/data"
batch_size = 8
seq_len = 128
[validation]
every = 0
batches = 1
[ckpt]
every = $2
async = true
save_final = false
keep_last = 2
keep_best = 0
[log]
level = "info"
EOF
  OMP_NUM_THREADS=$(nproc) "$SHARDLM" train --config "$DIR/$1.toml" > "$DIR/$1.log" 2>&1
}
run nosave 0
run save 5
python3 - "$DIR" <<'EOF'
import json, re, statistics, sys
d = sys.argv[1]
def steps(name):
    rows = [json.loads(l) for l in open(f"{d}/{name}/metrics/rank-0.jsonl") if '"type":"step"' in l]
    return rows
def wall(rows):  # steps 10..39: after warm-up, 5 saves inside (10, 15, ..., 35)
    r = {x["step"]: x for x in rows}
    return r[39]["ts"] - r[10]["ts"]
a, b = steps("nosave"), steps("save")
med = statistics.median(x["time"]["total"] for x in a[10:])
stalls = [float(m.group(1)) for m in re.finditer(r"training waited ([0-9.]+) s", open(f"{d}/save.log").read())]
inside = [s for s in stalls][1:6] if len(stalls) > 5 else stalls
saves = sum(1 for s in range(11, 40) if s % 5 == 0)
extra = (wall(b) - wall(a)) / saves
print(f"median step {med*1000:.1f} ms (no saves); {len(stalls)} async saves, loop stall per save "
      f"{statistics.mean(stalls)*1000:.1f} ms = {statistics.mean(stalls)/med*100:.1f}% of a step; "
      f"wall-clock cost per save vs no saves {extra*1000:.1f} ms = {extra/med*100:.1f}% of a step")
EOF
