// String helpers shared by the metrics: whitespace splitting as Python's
// str.split() (ASCII and Unicode whitespace), UTF-8 lowercasing (utf8proc),
// replace / join. Torch-free.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace shardlm::eval {

// Whitespace-separated tokens of `text`: ASCII whitespace, the separators
// U+001C..U+001F and the Unicode spaces Python's str.split() uses (U+0085,
// U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000).
std::vector<std::string> split_whitespace(std::string_view text);
// Whether the UTF-8 character `c` (one code point) is such whitespace.
bool is_whitespace_char(std::string_view c);
// Simple (one-to-one) Unicode lowercase of UTF-8 text; invalid bytes are kept.
std::string lowercase_utf8(std::string_view text);
// Replaces every occurrence of `from` (non-empty) by `to` in place.
void replace_all(std::string& s, std::string_view from, std::string_view to);
std::string join(const std::vector<std::string>& parts, std::string_view sep);
// Leading and trailing ASCII whitespace removed.
std::string trim(std::string_view s);

}  // namespace shardlm::eval
