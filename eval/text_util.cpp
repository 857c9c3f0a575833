// String helpers (see text_util.h).
#include "eval/text_util.h"

#include <utf8proc.h>

#include "data/utf8.h"

namespace shardlm::eval {

namespace {

bool is_ws_cp(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// The code point at s[i..] (sets *len to its byte length); invalid bytes give
// 0xFFFFFFFF with *len the length of the invalid part.
uint32_t code_point(std::string_view s, size_t i, size_t* len) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + i;
  size_t bad = 0;
  size_t n = data::utf8_char(p, s.size() - i, &bad);
  if (n == 0) {
    *len = bad;
    return 0xFFFFFFFFu;
  }
  *len = n;
  utf8proc_int32_t cp = 0;
  utf8proc_iterate(p, static_cast<utf8proc_ssize_t>(n), &cp);
  return static_cast<uint32_t>(cp);
}

}  // namespace

std::vector<std::string> split_whitespace(std::string_view text) {
  std::vector<std::string> out;
  std::string cur;
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {  // the fast path: ASCII
      if (is_ws_cp(c)) {
        if (!cur.empty()) out.push_back(std::move(cur)), cur.clear();
      } else {
        cur += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    size_t len = 0;
    const uint32_t cp = code_point(text, i, &len);
    if (is_ws_cp(cp)) {
      if (!cur.empty()) out.push_back(std::move(cur)), cur.clear();
    } else {
      cur.append(text.substr(i, len));
    }
    i += len;
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

bool is_whitespace_char(std::string_view c) {
  if (c.empty()) return false;
  size_t len = 0;
  return is_ws_cp(code_point(c, 0, &len));
}

std::string lowercase_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      out += static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
      ++i;
      continue;
    }
    size_t len = 0;
    const uint32_t cp = code_point(text, i, &len);
    if (cp == 0xFFFFFFFFu) {
      out.append(text.substr(i, len));
    } else {
      out += data::utf8_encode(static_cast<uint32_t>(utf8proc_tolower(static_cast<int32_t>(cp))));
    }
    i += len;
  }
  return out;
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += sep;
    out += parts[i];
  }
  return out;
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || (s[b] >= '\t' && s[b] <= '\r'))) ++b;
  while (e > b && (s[e - 1] == ' ' || (s[e - 1] >= '\t' && s[e - 1] <= '\r'))) --e;
  return std::string(s.substr(b, e - b));
}

}  // namespace shardlm::eval
