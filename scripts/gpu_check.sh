#!/usr/bin/env bash
# The prepared script for a lent GPU machine (H100/H200, no internet): unpacks
# the Debian packages carried in .gpu/debs (made by scripts/gpu_carry.sh),
# builds shardlm for sm_90 against the machine's CUDA LibTorch, runs the GPU
# tests and benchmarks, and writes logs and a results table under $OUT.
# Usage: scripts/gpu_check.sh [probe|full]   (idempotent; safe to rerun)
set -uo pipefail
MODE=${1:-full}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RESULTS=$OUT/results.md
echo "| what | value |" >"$RESULTS"; echo "|---|---|" >>"$RESULTS"
row() { echo "| $1 | $2 |" >>"$RESULTS"; }
T0=$(date +%s)

# ---- probe ------------------------------------------------------------------------
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  grep PRETTY_NAME /etc/os-release; ldd --version | head -1; nproc
  which mpirun mpicc nvcc cmake ninja python3
  python3 -c 'import torch;print("torch", torch.__version__, "cxx11abi", torch._C._GLIBCXX_USE_CXX11_ABI, "cuda", torch.version.cuda)'
  ls /usr/include | grep -iE 'hdf5|boost|mpi|fmt|toml|CLI|nlohmann|gtest|benchmark|pcre2|utf8proc' | tr '\n' ' '; echo
} 2>&1 | tee "$OUT/probe.log"
row gpu "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"

# ---- carried Debian packages: unpack those the image lacks ------------------------------
for f in .gpu/debs/*.deb; do
  pkg=$(dpkg-deb -f "$f" Package)
  # Skip what the image has, under its own name or Ubuntu's t64 name, or when
  # any header/library of the package already exists (mixing versions breaks).
  if dpkg-query -W -f='${Status}' "$pkg" "${pkg}t64" 2>/dev/null | grep -q "install ok installed"; then continue; fi
  clash=$(dpkg-deb -c "$f" | awk '$1 !~ /^d/ {print substr($6,2)}' | grep -E '^/usr/(include|lib|bin)/' |
          while read -r p; do [ -e "$p" ] && { echo "$p"; break; }; done)
  if [ -n "$clash" ]; then echo "skip $pkg ($clash exists)"; continue; fi
  # Only under /usr: never /lib or /bin (symlinks on merged-/usr images).
  other=$(dpkg-deb -c "$f" | awk '{print $6}' | grep -vE '^\./(usr(/.*)?)?$' | head -1)
  if [ -n "$other" ]; then echo "skip $pkg (installs $other)"; continue; fi
  dpkg -x "$f" / && echo "unpacked $pkg"
done >"$OUT/unpack.log" 2>&1
ldconfig
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1
row mpirun "$(mpirun --version 2>&1 | head -1)"

# ---- build --------------------------------------------------------------------------------
TORCH_PREFIX=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
NCCL_ROOT=$(python3 -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))' 2>/dev/null || echo /usr/local/cuda)
export NCCL_ROOT
export CUDACXX=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
B=build-gpu
cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
  -DNCCL_ROOT="$NCCL_ROOT" -DSHARDLM_PYTHON="$(command -v python3)" -DCMAKE_CUDA_ARCHITECTURES=90 >"$OUT/cmake.log" 2>&1 || { tail -40 "$OUT/cmake.log"; exit 1; }
grep "shardlm:" "$OUT/cmake.log"
t=$(date +%s)
TARGETS=(shardlm test_core test_gpu test_parallel test_model test_plan bench_train_step)
[ "$MODE" = probe ] && TARGETS=(shardlm test_core)
cmake --build $B -j "$(nproc)" --target "${TARGETS[@]}" -- -k 0 >"$OUT/build.log" 2>&1 ||
  { grep -E "error|Error" "$OUT/build.log" | head -40; tail -20 "$OUT/build.log"; }
row "build seconds" $(( $(date +%s) - t ))
$B/launcher/shardlm info | tee "$OUT/info.log"

# ---- tests ----------------------------------------------------------------------------------
export LD_LIBRARY_PATH=$NCCL_ROOT/lib:${LD_LIBRARY_PATH:-}
(cd $B && ctest -L gpu --output-on-failure -V --timeout 300) >"$OUT/ctest_gpu.log" 2>&1
row "gpu tests" "$(grep -E 'tests passed' "$OUT/ctest_gpu.log")"
grep -E "^\[ +(OK|FAILED|SKIPPED) +\]|Failure|error" "$OUT/ctest_gpu.log" | head -30
[ -z "${SKIP_CPU_TESTS:-}" ] && (cd $B && ctest -R '^(model|core)\.' --output-on-failure --timeout 300 -j 8) >"$OUT/ctest.log" 2>&1
row "model+core tests (LibTorch 2.x)" "$(grep -E 'tests passed' "$OUT/ctest.log")"
grep -E "\*\*\*|Failed" "$OUT/ctest.log" | head -20

if [ "$MODE" = full ]; then
  bench/gpu/run.sh "$B" "$OUT" "$RESULTS"
fi
row "total seconds" $(( $(date +%s) - T0 ))
echo; cat "$RESULTS"
