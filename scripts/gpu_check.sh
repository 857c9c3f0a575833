#!/usr/bin/env bash
# The prepared check for a lent GPU machine (H100/H200, no internet, PyTorch
# 2.x for CUDA 13 at python3): in ONE call of at most ~8 minutes it
#   1. probes the machine (GPU, OS, glibc, torch, what is installed),
#   2. unpacks the Debian packages carried in .gpu/debs (scripts/gpu_carry.sh)
#      that the image lacks, never overwriting a file of the image,
#   3. configures and builds the needed targets for sm_90 against the
#      machine's CUDA LibTorch,
#   4. trains the CPU demo model (configs/demo.toml, 20 steps, the carried data
#      fixture) on cuda: losses against a CPU run (fp32, 1e-3 relative), a
#      checkpoint and a bitwise resume, bf16, and ZeRO-3 + CPU offload on 2
#      ranks sharing the GPU (parallel.backend = "mpi"),
#   5. runs every `gpu`-labelled test,
#   6. benchmarks one GPT-2 124M training step (T=1024, bf16, AdamW):
#      shardlm vs PyTorch eager (fused AdamW) vs torch.compile, MFU against the
#      card's measured bf16 matmul peak, peak allocated bytes,
# and prints a results table last. Every stage has its own timeout and the
# whole run a budget; a stage that no longer fits is reported as skipped.
# Logs and the table go to $OUT (results.md, bench.json, logs.tar.gz).
# Safe to rerun on the same machine (incremental build, fresh run dirs).
#
# --dry-run exercises every step that can run without a GPU, on this CPU
# machine: argument handling, the carried packages unpacked into a scratch
# root (completeness and library closure checked there), a CMake configure of
# the CUDA options against the CPU LibTorch (SHARDLM_WITH_CUDA forced on,
# nvcc 13, packages taken from the scratch root), the training checks on
# device=cpu (4 steps), the benchmark plumbing on a tiny model, and the table.
#
# Usage: scripts/gpu_check.sh [--dry-run] [--quick] [--budget S] [--out DIR]
#          [--carry DIR] [--build-dir DIR] [--shardlm BIN] [--fixture DIR]
#   --quick       skip torch.compile and the checkpointing benchmark
#   --budget S    seconds for the whole run (default 470; the device call's
#                 limit is 600 s, the start and the transfers are not counted)
#   --carry DIR   the carried folder (default .gpu)
#   --build-dir   build directory (default build-gpu; dry run: the build to use)
#   --shardlm, --fixture   dry run: the binary and data fixture to train with
set -uo pipefail
set -a  # stages run in child shells (under timeout): they see every variable
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
exec 3>&1  # the live progress lines, whatever a stage's output is redirected to

DRY=0; QUICK=0; BUDGET=470; CARRY=""; BUILD=""; SHARDLM=""; FIXTURE=""
OUTDIR=${OUT:-}
usage() { sed -n '29,36p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --quick) QUICK=1 ;;
    --budget) BUDGET=${2:?}; shift ;;
    --out) OUTDIR=${2:?}; shift ;;
    --carry) CARRY=${2:?}; shift ;;
    --build-dir) BUILD=${2:?}; shift ;;
    --shardlm) SHARDLM=${2:?}; shift ;;
    --fixture) FIXTURE=${2:?}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_check: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
case "$BUDGET" in ''|*[!0-9]*) echo "gpu_check: --budget takes seconds, got '$BUDGET'" >&2; exit 2 ;; esac
[ -n "$OUTDIR" ] || OUTDIR=$([ $DRY = 1 ] && echo "$ROOT/build/gpu-dry-run" || echo /tmp/out)
CARRY=${CARRY:-$ROOT/.gpu}
if [ $DRY = 1 ]; then
  BUILD=${BUILD:-$ROOT/build}
  SHARDLM=${SHARDLM:-$BUILD/launcher/shardlm}
  FIXTURE=${FIXTURE:-$BUILD/fixtures/runtime}
else
  BUILD=${BUILD:-$ROOT/build-gpu}
  SHARDLM=$BUILD/launcher/shardlm
  FIXTURE=${FIXTURE:-$CARRY/fixture}
fi
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
LOGS=$OUTDIR/logs
# Run directories hold checkpoints: outside $OUT on the device (only a few
# files come back from there); their metrics travel in logs.tar.gz.
RUNS=$([ $DRY = 1 ] && echo "$OUTDIR/runs" || echo /tmp/shardlm-gpu-check/runs)
rm -rf "$LOGS" "$RUNS"
mkdir -p "$LOGS" "$RUNS"
RESULTS=$OUTDIR/results.md
BENCH_JSON=$OUTDIR/bench.json
GO=$OUTDIR/go  # torch.compile's baseline times its steps once this exists
: >"$BENCH_JSON"
T0=$(date +%s)
DEADLINE=$((T0 + BUDGET))
# Stage timeouts are sized for the device's 16 cores; a dry run on a shared
# 2-core machine gets more time per stage (the budget still bounds the whole).
SLOW=$([ $DRY = 1 ] && echo 4 || echo 1)

# ---- the results table and stages --------------------------------------------------------
ROWS=()
row() { ROWS+=("| $1 | $2 | $3 |"); }  # check, PASS/FAIL/SKIP/info, detail
left() { echo $((DEADLINE - $(date +%s))); }
# stage NAME TIMEOUT MIN_NEEDED CMD...: runs CMD under a timeout no longer than
# what is left of the budget; prints and returns its status (124: timed out,
# 125: skipped because fewer than MIN_NEEDED seconds are left).
stage() {
  local name=$1 limit=$2 need=$3; shift 3
  local l; l=$(left)
  if [ "$l" -lt "$need" ]; then
    echo "[gpu_check] skip $name: ${l}s left, needs ${need}s" >&3
    return 125
  fi
  limit=$((limit * SLOW))
  [ "$limit" -le "$l" ] || limit=$l
  local t=$(date +%s)
  echo "[gpu_check] $name (timeout ${limit}s)" >&3
  timeout --kill-after=10 "$limit" bash -c '"$@"' stage "$@"
  local rc=$?
  echo "[gpu_check] $name: rc $rc in $(( $(date +%s) - t ))s" >&3
  return $rc
}
verdict() { case $1 in 0) echo PASS ;; 124|137) echo "FAIL (timeout)" ;; 125) echo SKIP ;; *) echo "FAIL (rc $1)" ;; esac; }
finish() {
  row "total seconds" info "$(( $(date +%s) - T0 )) of budget $BUDGET"
  {
    echo "| check | result | detail |"
    echo "|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
  } >"$RESULTS"
  rm -f "$GO"
  local d
  for d in "$RUNS"/*/; do  # each run's step messages and configuration
    [ -d "$d" ] || continue
    mkdir -p "$LOGS/runs/$(basename "$d")"
    cp -r "$d/metrics" "$d/config.toml" "$LOGS/runs/$(basename "$d")/" 2>/dev/null
  done
  tar czf "$OUTDIR/logs.tar.gz" -C "$OUTDIR" logs
  rm -rf "$LOGS"
  [ $DRY = 0 ] || rm -rf "$OUTDIR/rootfs" "$OUTDIR/configure-cuda"
  echo
  echo "== gpu_check $([ $DRY = 1 ] && echo '(dry run) ')results: $RESULTS"
  cat "$RESULTS"
}
trap finish EXIT

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_mca_base_component_show_load_errors=0 OMPI_MCA_hwloc_base_binding_policy=none
export CUBLAS_WORKSPACE_CONFIG=:4096:8 PYTHONUNBUFFERED=1

# ---- 1. probe ---------------------------------------------------------------------------------
probe() {
  echo "mode: $([ $DRY = 1 ] && echo dry-run || echo device)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || echo "no nvidia-smi"
  grep PRETTY_NAME /etc/os-release; ldd --version | head -1; echo "cores $(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
  for t in mpirun mpicc nvcc cmake ninja python3 g++ ccache; do echo "$t: $(command -v $t || echo -)"; done
  g++ --version | head -1
  python3 -c 'import torch; print("torch", torch.__version__, "cxx11abi", torch._C._GLIBCXX_USE_CXX11_ABI, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1
  echo "headers: $(ls /usr/include | grep -iE 'hdf5|boost|mpi|fmt|toml|CLI|nlohmann|gtest|benchmark|pcre2|utf8proc|xxhash' | tr '\n' ' ')"
}
probe >"$LOGS/probe.log" 2>&1
cat "$LOGS/probe.log"
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
row machine info "${GPU_NAME:-no GPU (dry run)}; $(grep PRETTY_NAME /etc/os-release | cut -d'"' -f2); $(python3 -c 'import torch;print("torch", torch.__version__)' 2>/dev/null || echo 'no torch')"

# ---- 2. carried packages ------------------------------------------------------------------------
# Into / on the device (ROOTFS), into a scratch root in a dry run. A package is
# skipped when the image has it (dpkg, also Ubuntu's t64 name) or any of its
# libraries/headers already exist; what is copied never overwrites a file.
if [ $DRY = 1 ]; then ROOTFS=$OUTDIR/rootfs; rm -rf "$ROOTFS"; mkdir -p "$ROOTFS"; else ROOTFS=/; fi
if [ ! -d "$CARRY/debs" ] && [ $DRY = 1 ]; then
  # CI and fresh checkouts: make the carry once (cached next to the build)
  CARRY=$BUILD/gpu-carry
  [ -d "$CARRY/debs" ] || "$ROOT/scripts/gpu_carry.sh" --out "$CARRY" >"$LOGS/carry.log" 2>&1 ||
    { row carry FAIL "scripts/gpu_carry.sh failed: $(tail -1 "$LOGS/carry.log")"; exit 1; }
fi
unpack() {
  local stagedir; stagedir=$(mktemp -d)
  local n_un=0 n_skip=0
  for f in "$CARRY"/debs/*.deb; do
    [ -e "$f" ] || { echo "no packages in $CARRY/debs (run scripts/gpu_carry.sh)"; return 1; }
    local pkg; pkg=$(dpkg-deb -f "$f" Package)
    if [ $DRY = 0 ] && dpkg-query -W -f='${Status}\n' "$pkg" "${pkg}t64" 2>/dev/null | grep -q "install ok installed"; then
      echo "skip $pkg (installed)"; n_skip=$((n_skip + 1)); continue
    fi
    local x=$stagedir/$pkg; mkdir -p "$x"; dpkg-deb -x "$f" "$x"
    # Debian 12 still ships some libraries under /lib: merged-/usr images have them in /usr/lib
    if [ -d "$x/lib" ] && [ ! -L "$x/lib" ]; then mkdir -p "$x/usr/lib"; cp -a "$x/lib/." "$x/usr/lib/"; rm -rf "$x/lib"; fi
    local clash
    clash=$(cd "$x" && find usr/lib usr/include usr/bin \( -type f -o -type l \) 2>/dev/null | grep -vE '^usr/share' |
            while read -r p; do [ -e "$ROOTFS/$p" ] || [ -L "$ROOTFS/$p" ] && { echo "$p"; break; }; done)
    if [ -n "$clash" ]; then echo "skip $pkg (the image has /$clash)"; n_skip=$((n_skip + 1)); continue; fi
    for top in usr etc; do [ -d "$x/$top" ] && cp -a --no-clobber "$x/$top" "$ROOTFS/"; done
    echo "unpacked $pkg"; n_un=$((n_un + 1))
  done
  rm -rf "$stagedir"
  # Debian's update-alternatives links (not made by dpkg-deb -x)
  for t in mpicc mpicxx mpic++ mpiexec mpirun; do
    [ -e "$ROOTFS/usr/bin/$t" ] || [ ! -e "$ROOTFS/usr/bin/$t.openmpi" ] || ln -s "$t.openmpi" "$ROOTFS/usr/bin/$t"
  done
  # A dev link to a version the image has under another minor number: point it at the soname.
  local lib=$ROOTFS/usr/lib/x86_64-linux-gnu
  find "$lib" -maxdepth 2 -xtype l -name '*.so' 2>/dev/null | while read -r l; do
    local so; so=$(ls "$l".[0-9]* 2>/dev/null | head -1)
    [ -n "$so" ] && ln -sf "$(basename "$so")" "$l" && echo "relinked $(basename "$l") -> $(basename "$so")"
  done
  echo "unpacked $n_un, skipped $n_skip"
  [ $DRY = 1 ] || ldconfig
}
export -f unpack
stage unpack 150 20 unpack >"$LOGS/unpack.log" 2>&1
rc=$?
row "carried packages" "$(verdict $rc)" "$(tail -1 "$LOGS/unpack.log") ($(ls "$CARRY"/debs 2>/dev/null | wc -l) carried)"

# What the build needs must now be there, and every carried library must find
# its own dependencies (in the scratch root: there, or glibc/libstdc++).
need_files() {
  local r=$ROOTFS miss=0
  for p in usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h usr/bin/mpirun usr/bin/mpicc \
           usr/include/hdf5/serial/hdf5.h usr/bin/h5cc usr/lib/x86_64-linux-gnu/hdf5/serial/libhdf5.so \
           usr/include/pcre2.h usr/lib/x86_64-linux-gnu/libpcre2-8.so usr/include/utf8proc.h usr/include/xxhash.h \
           usr/include/fmt/format.h usr/include/toml++/toml.h usr/include/CLI/CLI.hpp usr/include/nlohmann/json.hpp \
           usr/include/boost/beast.hpp usr/include/gtest/gtest.h usr/include/gmock/gmock.h \
           usr/include/benchmark/benchmark.h usr/include/zlib.h usr/lib/x86_64-linux-gnu/libcrypto.so \
           usr/lib/x86_64-linux-gnu/libcurl.so usr/lib/x86_64-linux-gnu/libsz.so; do
    if [ -e "$r/$p" ] || { [ $DRY = 0 ] && [ -e "/$p" ]; }; then :; else echo "missing /$p"; miss=1; fi
  done
  return $miss
}
closure() {  # dry run: NEEDED of carried libraries and programs, resolved in the scratch root
  # Optional parts whose libraries stay home (gpu_carry.sh's OPTIONAL_PKGS):
  # Fortran bindings and the helpers of Open MPI's InfiniBand/OFI/UCX transports.
  local optional='fortran|mpifh|usempi|libmca_common_(ucx|verbs|ofi|psm)|/openmpi/lib/openmpi3/|/pmix2/lib/pmix/'
  local base='^(libc|libm|libdl|libpthread|librt|libresolv|libutil|libstdc\+\+|libgcc_s|ld-linux-x86-64|libanl|libcrypt)\.so'
  local have; have=$(find "$ROOTFS/usr/lib" \( -type f -o -type l \) -name '*.so*' -printf '%f\n' | sort -u)
  local bad=0 f so
  while read -r f; do
    [[ $f =~ $optional ]] && continue
    for so in $(readelf -d "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
      [[ $so =~ $base ]] && continue
      grep -qxF "$so" <<<"$have" || { echo "unresolved $so (needed by ${f#"$ROOTFS"})"; bad=1; }
    done
  done < <(find "$ROOTFS/usr/lib" "$ROOTFS/usr/bin" -type f \( -name '*.so*' -o -perm -u+x \))
  return $bad
}
need_files >"$LOGS/need.log" 2>&1
rc=$?
row "build dependencies present" "$(verdict $rc)" "$(grep -c missing "$LOGS/need.log") missing$( [ $rc = 0 ] || echo ": $(head -3 "$LOGS/need.log" | tr '\n' ' ')")"
if [ $DRY = 1 ]; then
  closure >"$LOGS/closure.log" 2>&1
  rc=$?
  row "carried libraries resolve (scratch root)" "$(verdict $rc)" "$(grep -c unresolved "$LOGS/closure.log") unresolved$( [ $rc = 0 ] || echo ": $(head -3 "$LOGS/closure.log" | tr '\n' ' ')")"
fi
MPIRUN=$(command -v mpirun || echo /usr/bin/mpirun)
row mpirun info "$("$MPIRUN" --version 2>&1 | head -1)"

# ---- 3. configure and build ------------------------------------------------------------------
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
GEN=""; command -v ninja >/dev/null && GEN=Ninja
if [ $DRY = 1 ]; then
  # The CUDA options against the CPU LibTorch, packages from the scratch root
  # first (their CMake configs and pkg-config files), no build.
  CFG=$OUTDIR/configure-cuda
  rm -rf "$CFG"
  configure() {
    [ -x "$NVCC" ] || { echo "no nvcc: CUDA configure not checked"; return 0; }
    PKG_CONFIG_PATH="$ROOTFS/usr/lib/x86_64-linux-gnu/pkgconfig:$ROOTFS/usr/share/pkgconfig" \
    PKG_CONFIG_SYSROOT_DIR="$ROOTFS" \
      cmake -S "$ROOT" -B "$CFG" ${GEN:+-G "$GEN"} -DCMAKE_BUILD_TYPE=Release -DSHARDLM_WITH_CUDA=ON \
        -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_CUDA_ARCHITECTURES=90 -DNCCL_ROOT=/usr/local/cuda \
        -DCMAKE_PREFIX_PATH="$ROOTFS/usr;$ROOTFS/usr/lib/x86_64-linux-gnu/cmake;$ROOTFS/usr/share/cmake" \
        -DMPIEXEC_EXECUTABLE="$MPIRUN" || return 1
    grep -q 'SHARDLM_WITH_CUDA=ON' "$LOGS/configure.log" || return 1
    # the config-file packages came from the carried root
    local bad=0 k
    for k in fmt_DIR GTest_DIR benchmark_DIR nlohmann_json_DIR CLI11_DIR Boost_DIR; do
      local v; v=$(sed -n "s/^$k:PATH=//p" "$CFG/CMakeCache.txt")
      case "$v" in "$ROOTFS"*) echo "$k from the carried root" ;; *) echo "$k NOT from the carried root: $v"; bad=1 ;; esac
    done
    grep -E '^(SHARDLM_NCCL_LIBRARY|CMAKE_CUDA_COMPILER):' "$CFG/CMakeCache.txt"
    return $bad
  }
  export -f configure
  stage configure 240 30 configure >"$LOGS/configure.log" 2>&1
  rc=$?
  row "configure, CUDA options (CPU LibTorch, carried packages)" "$(verdict $rc)" "$(grep -c 'from the carried root' "$LOGS/configure.log") config packages from the scratch root; $(grep -o 'SHARDLM_WITH_CUDA=[A-Z]*' "$LOGS/configure.log" | head -1)"
  [ -x "$SHARDLM" ] || { row build FAIL "no $SHARDLM (dry run uses an existing build)"; exit 1; }
else
  TORCH_PREFIX=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
  NCCL_ROOT=$(python3 -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))' 2>/dev/null || echo /usr/local/cuda)
  export NCCL_ROOT
  # one file per translation unit: 16 cores keep more of them busy than unity
  # batches would, and code behind TORCH_VERSION_MAJOR >= 2 was never batched here
  configure() {
    cmake -S "$ROOT" -B "$BUILD" ${GEN:+-G "$GEN"} -DCMAKE_BUILD_TYPE=Release -DSHARDLM_UNITY=OFF -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
      -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_CUDA_ARCHITECTURES=90 -DNCCL_ROOT="$NCCL_ROOT" \
      -DSHARDLM_PYTHON="$(command -v python3)" -DMPIEXEC_EXECUTABLE="$MPIRUN"
  }
  export -f configure
  stage configure 120 30 configure >"$LOGS/configure.log" 2>&1
  rc=$?
  row configure "$(verdict $rc)" "$(grep -o 'shardlm: LibTorch.*' "$LOGS/configure.log" | head -1)"
  [ $rc = 0 ] || { tail -30 "$LOGS/configure.log"; exit 1; }
fi

# torch.compile compiles while shardlm builds; it waits for GO before its timed steps.
rm -f "$GO"
PYBENCH=(--device cuda --dtype bf16 --layers 12 --heads 12 --width 768 --seq 1024 --vocab 50304 --batch 16 --steps 10 --warmup 3)
COMPILE_PID=""
if [ $DRY = 0 ] && [ $QUICK = 0 ]; then
  timeout "$BUDGET" python3 bench/runtime/pytorch_train_step.py "${PYBENCH[@]}" --compile --go-file "$GO" \
    >"$LOGS/bench_compile.json" 2>"$LOGS/bench_compile.err" &
  COMPILE_PID=$!
fi

if [ $DRY = 0 ]; then
  build() {
    cmake --build "$BUILD" -j "$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)" --target shardlm test_gpu test_parallel test_plan test_trainer bench_train_step ${GEN:+-- -k 0} 2>&1 |
      tail -c 2000000
    return "${PIPESTATUS[0]}"
  }
  export -f build
  t=$(date +%s)
  stage build 300 60 build >"$LOGS/build.log" 2>&1
  rc=$?
  row "build (shardlm test_gpu test_parallel test_plan test_trainer bench_train_step, sm_90)" "$(verdict $rc)" "$(( $(date +%s) - t ))s$( [ $rc = 0 ] || echo ": $(grep -m1 -E 'error' "$LOGS/build.log" | cut -c1-200)")"
  [ $rc = 0 ] || grep -E "error" "$LOGS/build.log" | head -20
  "$SHARDLM" info >"$LOGS/info.log" 2>&1
fi
# torch.compile has compiled meanwhile: its timed steps run now, on an idle machine.
touch "$GO"
if [ -n "$COMPILE_PID" ]; then
  wait_compile() { while kill -0 "$COMPILE_PID" 2>/dev/null; do sleep 0.5; done; }
  export -f wait_compile
  stage "torch.compile baseline (rest of the compilation, timed steps)" 120 20 wait_compile
  kill "$COMPILE_PID" 2>/dev/null
  wait "$COMPILE_PID" 2>/dev/null
  cp "$LOGS/bench_compile.json" "$OUTDIR/compile.json" 2>/dev/null
fi

# ---- 4. training checks -----------------------------------------------------------------------
REPORT=(python3 "$ROOT/bench/gpu/report.py")
if [ $DRY = 1 ]; then DEV=cpu; STEPS=4; HALF=2; else DEV=cuda:0; STEPS=20; HALF=10; fi
train() {  # train RUN_NAME [overrides...]: the CPU demo config, shortened to $STEPS
  local dir=$RUNS/$1; shift
  "$SHARDLM" train --config configs/demo.toml "--train.run_dir=\"$dir\"" "--train.steps=$STEPS" \
    "--data.path=\"$FIXTURE/data\"" --monitor.embedded=false --monitor.jsonl=true --monitor.stdout=false \
    --validation.every=0 --validation.batches=2 "--ckpt.every=$HALF" --ckpt.async=false \
    --train.log_every=1 "$@"
}
export -f train
if [ -x "$SHARDLM" ] && [ -s "$FIXTURE/data/manifest.json" ]; then
  stage "train cpu fp32" 120 20 train cpu --train.device='"cpu"' >"$LOGS/train_cpu.log" 2>&1
  rc_cpu=$?
  stage "train $DEV fp32" 90 15 train dev --train.device="\"$DEV\"" >"$LOGS/train_dev.log" 2>&1
  rc=$?
  if [ $rc = 0 ] && [ $rc_cpu = 0 ]; then
    d=$("${REPORT[@]}" compare "$RUNS/dev" "$RUNS/cpu" --rel 1e-3 --steps "$STEPS" 2>&1); rc=$?
  else d="cpu rc $rc_cpu, $DEV rc $rc: $(tail -1 "$LOGS/train_dev.log" | cut -c1-160)"; [ $rc = 0 ] && rc=1; fi
  row "train demo on $DEV, fp32, losses vs CPU (1e-3 rel, $STEPS steps)" "$(verdict $rc)" "$d"
  # checkpoint at HALF, resume to the end: bitwise the same losses; a second
  # straight run tells whether the device itself repeats bitwise
  resume_run() {  # to HALF (the final save), then on from that checkpoint to STEPS
    STEPS=$HALF train resumed --train.device="\"$DEV\"" && train resumed --train.device="\"$DEV\"" --resume latest
  }
  export -f resume_run
  stage "train $DEV resume" 90 15 resume_run >"$LOGS/train_resume.log" 2>&1
  rc=$?
  if [ $rc = 0 ]; then
    d=$("${REPORT[@]}" bitwise "$RUNS/resumed" "$RUNS/dev" --from "$HALF" --to "$STEPS" 2>&1); rc=$?
    if [ $rc != 0 ] && [ $DRY = 0 ]; then
      stage "train $DEV repeat" 60 15 train repeat --train.device="\"$DEV\"" >"$LOGS/train_repeat.log" 2>&1 &&
        d="$d; straight run repeated: $("${REPORT[@]}" bitwise "$RUNS/repeat" "$RUNS/dev" --from 0 --to "$STEPS" 2>&1)"
    fi
    ls "$RUNS/resumed/checkpoints" >/dev/null 2>&1 && d="$d; checkpoints: $(ls "$RUNS/resumed/checkpoints" | grep -c step)"
  else d="rc $rc: $(tail -1 "$LOGS/train_resume.log" | cut -c1-160)"; fi
  row "checkpoint at $HALF, resume on $DEV: losses bitwise" "$(verdict $rc)" "$d"
  stage "train $DEV bf16" 90 15 train bf16 --train.device="\"$DEV\"" --train.precision='"bf16"' >"$LOGS/train_bf16.log" 2>&1
  rc=$?
  if [ $rc = 0 ]; then d=$("${REPORT[@]}" falls "$RUNS/bf16" 2>&1); rc=$?; else d="rc $rc: $(tail -1 "$LOGS/train_bf16.log" | cut -c1-160)"; fi
  row "train demo on $DEV, bf16: loss falls" "$(verdict $rc)" "$d"
  # 2 ranks on one device: ZeRO-3 + CPU offload, MPI between them; the same
  # global batch (2 x 4) as the 1-rank run (8)
  stage "train 2 ranks zero3 offload" 120 20 "$MPIRUN" -n 2 "$SHARDLM" train --config configs/demo.toml \
    "--train.run_dir=\"$RUNS/zero3\"" "--train.steps=$STEPS" "--data.path=\"$FIXTURE/data\"" \
    --monitor.embedded=false --monitor.jsonl=true --monitor.stdout=false --validation.every=0 \
    --validation.batches=2 "--ckpt.every=$HALF" --ckpt.async=false --train.device="\"$DEV\"" \
    --parallel.zero_stage=3 --parallel.cpu_offload=true --optimizer.name='"cpu_adam"' \
    $([ $DRY = 0 ] && echo "--parallel.backend=\"mpi\"") --data.batch_size=4 >"$LOGS/train_zero3.log" 2>&1
  rc=$?
  if [ $rc = 0 ]; then
    d=$("${REPORT[@]}" falls "$RUNS/zero3" 2>&1); rc=$?
    d="$d; vs 1 rank: $("${REPORT[@]}" compare "$RUNS/zero3" "$RUNS/dev" --rel 1e-2 --steps "$STEPS" 2>&1)"
  else d="rc $rc: $(grep -m1 -iE 'error|what' "$LOGS/train_zero3.log" | cut -c1-200)"; fi
  row "ZeRO-3 + CPU offload, 2 ranks on $DEV$([ $DRY = 0 ] && echo ' (parallel.backend = mpi)')" "$(verdict $rc)" "$d"
else
  row "training checks" FAIL "no shardlm binary ($SHARDLM) or no data fixture ($FIXTURE)"
fi

# ---- 5. gpu-labelled tests -----------------------------------------------------------------------
if [ $DRY = 0 ]; then
  stage "gpu tests" 180 30 bash -c "cd '$BUILD' && ctest -L gpu --output-on-failure --timeout 150" >"$LOGS/ctest_gpu.log" 2>&1
  rc=$?
  skipped=$(grep -cE '\*\*\*Skipped|\[  SKIPPED \]' "$LOGS/ctest_gpu.log")
  [ "$skipped" -eq 0 ] || [ $rc != 0 ] || rc=1
  row "gpu-labelled tests (none may be skipped)" "$(verdict $rc)" "$(grep -E 'tests passed' "$LOGS/ctest_gpu.log" | tail -1); skipped $skipped; $(grep -E '^\[  FAILED  \]' "$LOGS/ctest_gpu.log" | head -3 | tr '\n' ' ')"
else
  row "gpu-labelled tests" SKIP "dry run: no device (they report SKIPPED here)"
fi

# ---- 6. benchmarks ------------------------------------------------------------------------------------
if [ $DRY = 1 ]; then  # the plumbing, on a tiny model on the CPU
  BENCH_ARGS=(--device cpu --dtype fp32 --layers 1 --heads 2 --width 64 --seq 32 --vocab 256 --batch 2 --steps 2 --warmup 1)
  MATMUL=(--device cpu --size 256 --dtype fp32)
  PY=/usr/bin/python3
else
  BENCH_ARGS=("${PYBENCH[@]}")
  MATMUL=(--device cuda --size 8192 --dtype bf16)
  PY=python3
fi
stage "bf16 matmul peak" 60 10 "$PY" bench/gpu/matmul_peak.py "${MATMUL[@]}" >"$OUTDIR/matmul.json" 2>"$LOGS/matmul.err"
stage "pytorch eager" 90 15 "$PY" bench/runtime/pytorch_train_step.py "${BENCH_ARGS[@]}" >"$OUTDIR/eager.json" 2>"$LOGS/bench_eager.err"
BTS=$BUILD/bench/runtime/bench_train_step
stage "shardlm train step" 90 15 "$BTS" "${BENCH_ARGS[@]}" >"$OUTDIR/ours.json" 2>"$LOGS/bench_ours.err"
if [ $QUICK = 0 ] && [ $DRY = 0 ]; then
  stage "shardlm train step, checkpointing" 60 30 "$BTS" "${BENCH_ARGS[@]}" --checkpointing >"$OUTDIR/ours_ckpt.json" 2>>"$LOGS/bench_ours.err"
fi
"${REPORT[@]}" bench --dir "$OUTDIR" "${BENCH_ARGS[@]}" --json "$BENCH_JSON" >"$LOGS/bench_rows.txt" 2>&1
while IFS='|' read -r c r d; do [ -n "$c" ] && row "$c" "$r" "$d"; done <"$LOGS/bench_rows.txt"
for f in matmul eager ours ours_ckpt compile; do [ -e "$OUTDIR/$f.json" ] && mv "$OUTDIR/$f.json" "$LOGS/"; done
exit 0
