// One fuzz target = one input surface of shardlm, fed through the same public
// entry point a user's file or request reaches (Tokenizer::load,
// RunConfig::parse, ShardReader, read_safetensors, parse_message...).
//
//   SHARDLM_FUZZ_TARGET(tokenizer_load) {   // (data, size) in scope
//     auto tmp = fuzz::scratch_file("tokenizer.json", data, size);
//     fuzz::expect_errors([&] { data::Tokenizer::load(tmp); });
//     return 0;
//   }
//
// Built two ways (fuzz/CMakeLists.txt):
//  - with clang and -fsanitize=fuzzer (SHARDLM_FUZZ_LIBFUZZER): the macro
//    defines LLVMFuzzerTestOneInput, one executable per target;
//  - anywhere else: the macro registers the function by name, so a normal
//    gtest (tests/fuzz) replays seeds and crash inputs through exactly the
//    code the fuzzer runs, with g++ and under `./shardlm.sh test --asan`.
//
// The oracle: a documented error (core::Error and its subclasses, a serve
// RequestError, a monitor ProtocolError) is a correct answer to bad input;
// anything else that escapes (std::out_of_range, nlohmann's type_error,
// std::bad_alloc, ...) is a finding, and so is a sanitizer report, a hang or
// a broken round trip (fuzz::check).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace shardlm::fuzz {

using TargetFn = int (*)(const uint8_t* data, size_t size);

// ---- the registry (gtest replay builds only) -----------------------------------------------
bool register_target(const char* name, TargetFn fn);
// nullptr when no target has that name.
TargetFn find_target(const std::string& name);
std::vector<std::string> target_names();

// ---- helpers for targets ----------------------------------------------------------------------
// A private directory for this process (under $TMPDIR), created on first use
// and removed at exit: targets whose entry point reads a file write the input there.
const std::string& scratch_dir();
// Writes `bytes` to scratch_dir()/name (replacing it) and returns the path.
std::string scratch_file(const std::string& name, std::string_view bytes);
inline std::string scratch_file(const std::string& name, const uint8_t* data, size_t size) {
  return scratch_file(name, std::string_view(reinterpret_cast<const char*>(data), size));
}
// Empties scratch_dir()/name (a directory) and returns its path.
std::string scratch_subdir(const std::string& name);

// Inputs that hold several files are cut at this line (it is in every
// dictionary of such a target, so mutations keep and move it).
inline constexpr std::string_view kFileSeparator = "\n--shardlm-fuzz-next-file--\n";
std::vector<std::string_view> split_files(std::string_view input, size_t max_parts);

// Quiet logging: the loaders warn about what they accept with a fix.
void quiet_logs();

// A failed oracle: under libFuzzer prints what and aborts (the fuzzer saves
// the input); in the replay build throws std::logic_error (the gtest reports it).
[[noreturn]] void oracle_failed(const char* expr, const char* file, int line,
                                const std::string& detail);

// Runs `f`: a core::Error (the documented answer to bad input) must name
// `must_name` (the file, the field...) when that is not empty; any other
// exception escapes to the fuzzer as a finding. Returns whether `f` succeeded.
template <class F>
bool expect_errors(F&& f, const std::string& must_name = "") {
  try {
    f();
    return true;
  } catch (const core::Error& e) {
    if (!must_name.empty() && std::string_view(e.what()).find(must_name) == std::string_view::npos)
      oracle_failed("the error names the input", __FILE__, __LINE__,
                    "expected '" + must_name + "' in: " + e.what());
    return false;
  }
}

}  // namespace shardlm::fuzz

#define SHARDLM_FUZZ_CHECK(cond, detail)                                              \
  do {                                                                                \
    if (!(cond)) ::shardlm::fuzz::oracle_failed(#cond, __FILE__, __LINE__, (detail)); \
  } while (0)

#if defined(SHARDLM_FUZZ_LIBFUZZER)
#define SHARDLM_FUZZ_TARGET(name) \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
#else
#define SHARDLM_FUZZ_TARGET(name)                                     \
  static int shardlm_fuzz_##name(const uint8_t* data, size_t size);   \
  [[maybe_unused]] static const bool shardlm_fuzz_registered_##name = \
      ::shardlm::fuzz::register_target(#name, &shardlm_fuzz_##name);  \
  static int shardlm_fuzz_##name(const uint8_t* data, size_t size)
#endif
