/// @file
/// Integers read from JSON files that come from outside (tokenizers, manifests,
/// checkpoints, safetensors headers). nlohmann's `get<T>()` turns a float into
/// an integer with a plain cast (undefined behaviour when it is out of range:
/// fuzz_tokenizer_load found `3.4e34` as a token id) and wraps an integer that
/// does not fit T. `json_int<T>` accepts only an integer JSON number that fits.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace shardlm::core {

/// `v` as T when it is an integer JSON number within T's range; else throws E
/// saying "`what` is <v>, expected an integer in [min, max]".
///
///     m.vocab_size = core::json_int<uint64_t>(t.at("vocab_size"), path + ":
///     tokenizer.vocab_size");
template <class T, class E = DataError>
T json_int(const nlohmann::json& v, const std::string& what) {
  static_assert(std::is_integral_v<T> && sizeof(T) <= 8, "json_int<T>: T is an integer type");
  constexpr auto lo = std::numeric_limits<T>::min();
  constexpr auto hi = std::numeric_limits<T>::max();
  if (v.is_number_unsigned()) {  // >= 0
    const uint64_t u = v.get<uint64_t>();
    if (u <= static_cast<uint64_t>(hi)) return static_cast<T>(u);
  } else if (v.is_number_integer()) {  // signed storage: negative, or built in code
    const int64_t i = v.get<int64_t>();
    const bool fits = i >= 0 ? static_cast<uint64_t>(i) <= static_cast<uint64_t>(hi)
                             : std::is_signed_v<T> && i >= static_cast<int64_t>(lo);
    if (fits) return static_cast<T>(i);
  }
  throw E(fmt::format("{} is {}, expected an integer in [{}, {}]", what, v.dump(), lo, hi));
}

}  // namespace shardlm::core
