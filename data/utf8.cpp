// UTF-8 validation/repair and the GPT-2 byte-level character map (see utf8.h).
#include "data/utf8.h"

#include <cstring>

namespace shardlm::data {

// ---- UTF-8 ---------------------------------------------------------------------

size_t utf8_char(const unsigned char* p, size_t n, size_t* bad) {
  const unsigned c = p[0];
  if (c < 0x80) return 1;
  // Allowed range of the second byte and the total length for each lead byte
  // (Unicode Table 3-7); all later bytes are 80..BF.
  unsigned lo = 0x80, hi = 0xBF;
  size_t len;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;  // no overlongs
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;  // no overlongs
    if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    *bad = 1;  // continuation byte, C0, C1 or F5..FF: never valid
    return 0;
  }
  for (size_t i = 1; i < len; ++i) {
    if (i >= n) {
      *bad = i;  // truncated: the valid start so far is one maximal subpart
      return 0;
    }
    const unsigned b = p[i];
    const bool ok = (i == 1) ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) {
      *bad = i;
      return 0;
    }
  }
  return len;
}

size_t utf8_valid_prefix(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // ASCII runs 8 bytes at a time: most text is mostly ASCII.
    while (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    size_t bad = 0;
    const size_t len = utf8_char(p + i, n - i, &bad);
    if (len == 0) return i;
    i += len;
  }
  return n;
}

std::string utf8_sanitize(std::string_view s) {
  size_t valid = utf8_valid_prefix(s);
  if (valid == s.size()) return std::string(s);
  std::string out(s.substr(0, valid));
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = valid;
  while (i < s.size()) {
    size_t bad = 0;
    const size_t len = utf8_char(p + i, s.size() - i, &bad);
    if (len) {
      out.append(s.data() + i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD
      i += bad;
    }
  }
  return out;
}

std::string utf8_encode(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

// ---- GPT-2 byte-level characters --------------------------------------------------

namespace {

// Code point of each byte's printable stand-in, as GPT-2's bytes_to_unicode().
std::array<uint32_t, 256> byte_level_code_points() {
  std::array<uint32_t, 256> cps{};
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    cps[b] = printable ? b : next++;
  }
  return cps;
}

}  // namespace

const std::array<std::string, 256>& byte_level_chars() {
  static const std::array<std::string, 256> chars = [] {
    std::array<std::string, 256> c;
    auto cps = byte_level_code_points();
    for (int b = 0; b < 256; ++b) c[b] = utf8_encode(cps[b]);
    return c;
  }();
  return chars;
}

std::string bytes_to_byte_level(std::string_view bytes) {
  const auto& chars = byte_level_chars();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) out += chars[b];
  return out;
}

bool byte_level_to_bytes(std::string_view text, std::string* bytes) {
  // Inverse map indexed by code point (all stand-ins are below U+0144).
  static const std::array<int, 512> inverse = [] {
    std::array<int, 512> inv;
    inv.fill(-1);
    auto cps = byte_level_code_points();
    for (int b = 0; b < 256; ++b) inv[cps[b]] = b;
    return inv;
  }();
  bytes->clear();
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  size_t i = 0;
  while (i < text.size()) {
    size_t bad = 0;
    const size_t len = utf8_char(p + i, text.size() - i, &bad);
    if (len == 0 || len > 2) return false;
    const uint32_t cp = len == 1 ? p[i] : ((p[i] & 0x1Fu) << 6) | (p[i + 1] & 0x3Fu);
    if (cp >= inverse.size() || inverse[cp] < 0) return false;
    *bytes += static_cast<char>(inverse[cp]);
    i += len;
  }
  return true;
}

}  // namespace shardlm::data
