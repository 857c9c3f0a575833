// fuzz_make_seeds OUT_DIR SOURCE_DIR: writes the seed corpus of every fuzz
// target to OUT_DIR/<target>/ (seeds.h); `./shardlm.sh fuzz` runs it first.
#include <cstdio>
#include <exception>

#include "core/env.h"
#include "fuzz/seeds.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s OUT_DIR SOURCE_DIR\n", argv[0]);
    return 2;
  }
  try {
    shardlm::core::MpiSession mpi(&argc, &argv);
    for (const auto& [target, n] : shardlm::fuzz::write_seeds(argv[1], argv[2]))
      std::printf("%-20s %zu seeds\n", target.c_str(), n);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_make_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
