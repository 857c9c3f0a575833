// UTF-8 validation and repair, and GPT-2's byte <-> printable-character map.
//
// The tokenizer works on bytes, so any input (also invalid UTF-8) encodes and
// decodes back exactly; only Tokenizer::decode() turns invalid sequences into
// U+FFFD, replacing each "maximal subpart" (Unicode 15, section 3.9) by one
// replacement character, as Python's bytes.decode(errors="replace") and the
// WHATWG TextDecoder do.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace shardlm::data {

// Length of the UTF-8 sequence at p[0..n) when it is one valid character
// (1..4); otherwise 0 and `*bad` receives the length of the maximal invalid
// subpart (>= 1) that one U+FFFD stands for.
size_t utf8_char(const unsigned char* p, size_t n, size_t* bad);

// Bytes from the start of s that form valid UTF-8 (stops at the first invalid
// sequence; == s.size() when all of s is valid).
size_t utf8_valid_prefix(std::string_view s);

// s with every invalid sequence replaced by U+FFFD (s itself when valid).
std::string utf8_sanitize(std::string_view s);

// The UTF-8 encoding of code point cp (cp < 0x110000, not a surrogate).
std::string utf8_encode(uint32_t cp);

// GPT-2's bytes_to_unicode(): each byte value as one printable character
// (UTF-8 encoded). Printable Latin-1 bytes map to themselves; the rest map to
// U+0100 upwards (space -> "Ġ", newline -> "Ċ"). Used by encoder.json,
// vocab.bpe and Hugging Face tokenizer.json files.
const std::array<std::string, 256>& byte_level_chars();
// Encodes raw bytes as byte-level characters.
std::string bytes_to_byte_level(std::string_view bytes);
// Decodes a byte-level string back to bytes; false when it holds a character
// outside the 256 of the map (the caller names the file and entry).
bool byte_level_to_bytes(std::string_view text, std::string* bytes);

}  // namespace shardlm::data
