// Wall-clock limits in tests, and sanitizer builds.
//
// The tests' time limits are set for the optimised build. Under AddressSanitizer
// (./shardlm.sh test --asan, and the clang fuzz build) the same code runs 2-5x
// slower and a CPU-bound loop far more (every allocation and memory access is
// checked), and the allocator keeps freed memory in a quarantine (256 MB by
// default), so RSS says little about the program. Limits that measure speed
// are multiplied by kTimeScale there; goals that only a benchmark can judge
// (latency percentiles, memory growth) are printed and not judged.
#pragma once

namespace shardlm::testing {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitizerBuild = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kSanitizerBuild = true;
#else
inline constexpr bool kSanitizerBuild = false;
#endif
#else
inline constexpr bool kSanitizerBuild = false;
#endif

/// Multiplier for a wall-clock limit that measures speed: 1, or 5 under ASan.
inline constexpr double kTimeScale = kSanitizerBuild ? 5.0 : 1.0;

}  // namespace shardlm::testing
