// Standalone GPU check for a machine with a GPU but without this project's
// other dependencies: the 8-bit Adam CUDA kernel against its CPU reference.
// Build and run (from the repository root):
//   nvcc -O2 -std=c++17 -I. -arch=sm_90 --fmad=false -Xcompiler -ffp-contract=off \
//     tests/parallel/gpu_check_main.cpp tests/parallel/adam8bit_gpu_check.cpp \
//     parallel/cuda/adam8bit.cu parallel/kernels/quant8.cpp parallel/kernels/adam_cpu.cpp \
//     -o /tmp/gpu_check && /tmp/gpu_check
// Exit status 0 when every case matches.
#include <cstdio>

#include "parallel/cuda/adam8bit.h"
#include "tests/parallel/adam8bit_gpu_check.h"

int main() {
  if (shardlm_cuda_device_count() == 0) {
    std::printf("SKIPPED: no CUDA device\n");
    return 0;
  }
  int failures = 0;
  struct Case {
    long long n;
    int block, steps;
  } cases[] = {{1000, 256, 5},
               {100003, 256, 20},
               {100003, 2048, 20},
               {4096 * 3 + 17, 512, 10},
               {50000000, 2048, 3}};
  for (const Case& c : cases) {
    auto r = shardlm::parallel::gpu_check::check_adam8bit_cuda(c.n, c.block, c.steps);
    std::printf("%s %s\n", r.ok ? "OK  " : "FAIL", r.message.c_str());
    failures += !r.ok;
  }
  return failures == 0 ? 0 : 1;
}
