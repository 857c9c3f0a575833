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
source "$ROOT/bench/lib.sh"
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

CORES=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc alone follows OMP_NUM_THREADS
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $CORES cores, load $(cut -d' ' -f1 /proc/loadavg); disk of $DIR: $(df -h "$DIR" | awk 'NR==2{print $1" "$2}')"

# ---- 1. I/O --------------------------------------------------------------------
# Three rounds, dd and shardlm alternating, medians reported. In a sandboxed
# kernel (gVisor) a GB written into page cache that was freed a while ago
# costs several times one written right after another (dd alone: 2.5 s, then
# 0.64 s), so before each measured write, of either side, an unmeasured dd
# writes and deletes the same amount (warm()).
warm() { dd if=/dev/zero of="$DIR/warm.bin" bs=16M count="$1" conv=fsync status=none; rm -f "$DIR/warm.bin"; }
warm_count=$(( (${GB%.*} + 1) * 60 ))
: > "$DIR/io.jsonl"
for round in 1 2 3; do
  warm "$warm_count"
  res=$(OMP_NUM_THREADS=1 mpiexec -n 1 "$IO" --dir "$DIR/ckpt" --gb "$GB")
  bytes=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['bytes'])" "$res")
  bs=$((16 << 20)) count=$(((bytes + (16 << 20) - 1) / (16 << 20)))
  rm -rf "$DIR/ckpt"
  sync
  warm "$warm_count"
  t0=$(now); dd if=/dev/zero of="$DIR/dd.bin" bs=$bs count=$count conv=fsync status=none; t1=$(now)
  read_cache=$(drop)
  t2=$(now); dd if="$DIR/dd.bin" of=/dev/null bs=$bs status=none; t3=$(now)
  rm -f "$DIR/dd.bin"
  python3 -c "import json,sys; r=json.loads(sys.argv[1]); n=int(sys.argv[2]); t=list(map(float,sys.argv[3:7])); r['dd_write_gb_s']=n/(t[1]-t[0])/1e9; r['dd_read_gb_s']=n/(t[3]-t[2])/1e9; r['read_cache']=sys.argv[7]; print(json.dumps(r))" \
    "$res" "$((bs * count))" "$t0" "$t1" "$t2" "$t3" "$read_cache" >> "$DIR/io.jsonl"
done
python3 - "$DIR/io.jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
m = lambda k: statistics.median(r[k] for r in rows)
r = rows[0]
print(f"checkpoint of {r['bytes']/1e9:.2f} GB, {r['ranks']} rank, median of {len(rows)} rounds: "
      f"save {m('save_gb_s'):.3f} GB/s, load {m('load_gb_s'):.3f} GB/s; read back equal: {all(x['read_back_equal'] for x in rows)}")
print(f"dd same bytes: write+fsync {m('dd_write_gb_s'):.3f} GB/s, read {m('dd_read_gb_s'):.3f} GB/s (page cache before reads: {r['read_cache']})")
print(f"ratio save/dd write = {m('save_gb_s')/m('dd_write_gb_s'):.2f}, load/dd read = {m('load_gb_s')/m('dd_read_gb_s'):.2f}")
print("rounds (save, dd write, load, dd read GB/s): " + "; ".join(
    f"{x['save_gb_s']:.2f} {x['dd_write_gb_s']:.2f} {x['load_gb_s']:.2f} {x['dd_read_gb_s']:.2f}" for x in rows))
EOF

# ---- 2. async stall ------------------------------------------------------------
[ -f "$FIXTURE/data/manifest.json" ] || { echo "no fixture at $FIXTURE (ctest -R runtime.fixture makes it)"; exit 0; }
run() {  # name every
  cat > "$DIR/$1.toml" <<EOF
[train]
run_dir = "$DIR/$1"
steps = 40
$(bench_model_toml "$FIXTURE/data")
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
  OMP_NUM_THREADS=$CORES "$SHARDLM" train --config "$DIR/$1.toml" > "$DIR/$1.log" 2>&1
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
saves = sum(1 for s in range(11, 40) if s % 5 == 0)
extra = (wall(b) - wall(a)) / saves
print(f"median step {med*1000:.1f} ms (no saves); {len(stalls)} async saves, loop stall per save "
      f"mean {statistics.mean(stalls)*1000:.1f} ms = {statistics.mean(stalls)/med*100:.1f}% of a step, "
      f"median {statistics.median(stalls)*1000:.1f} ms = {statistics.median(stalls)/med*100:.1f}% "
      f"(each: {' '.join(f'{x*1000:.0f}' for x in stalls)} ms); "
      f"wall-clock cost per save vs no saves {extra*1000:.1f} ms = {extra/med*100:.1f}% of a step")
EOF
