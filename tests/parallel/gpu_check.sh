#!/usr/bin/env bash
# GPU checks of parallel/ for a machine with a GPU and nvcc but none of this
# project's other dependencies (no MPI, HDF5 or Debian LibTorch needed):
# builds the 8-bit Adam CUDA kernel with its CPU reference and compares them
# (tests/parallel/gpu_check_main.cpp), printing one OK/FAIL line per case with
# the kernel time. Run from the repository root; exit status 0 when all match.
set -euo pipefail
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
nvcc --version | tail -1
nvcc -O2 -std=c++17 -I. -arch=sm_90 --fmad=false -Xcompiler -ffp-contract=off \
  tests/parallel/gpu_check_main.cpp tests/parallel/adam8bit_gpu_check.cpp \
  parallel/cuda/adam8bit.cu parallel/kernels/quant8.cpp parallel/kernels/adam_cpu.cpp \
  -o "$out/gpu_check"
"$out/gpu_check" | tee "$out/gpu_check.txt"
