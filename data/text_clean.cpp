// Text cleaning (see text_clean.h for the steps and their order).
#include "data/text_clean.h"

#include "data/utf8.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>

namespace shardlm::data {

// ---- config ---------------------------------------------------------------------

CleanConfig CleanConfig::from(const core::ConfigSection& s) {
  CleanConfig c;
  c.nfc = s.get("nfc", c.nfc);
  c.strip_control = s.get("strip_control", c.strip_control);
  c.whitespace = s.get("whitespace", c.whitespace);
  c.invalid_utf8 = s.get("invalid_utf8", c.invalid_utf8);
  c.min_chars = s.get("min_chars", c.min_chars);
  c.dedup = s.get("dedup", c.dedup);
  return c;
}

void CleanConfig::validate() const {
  core::config_require(
      whitespace == "normalize" || whitespace == "collapse" || whitespace == "keep", "whitespace",
      whitespace, "one of normalize, collapse, keep");
  core::config_require(invalid_utf8 == "replace" || invalid_utf8 == "reject", "invalid_utf8",
                       invalid_utf8, "one of replace, reject");
  core::config_require(min_chars >= 0, "min_chars", std::to_string(min_chars), "an integer >= 0");
}

nlohmann::json CleanConfig::to_json() const {
  return {{"nfc", nfc},
          {"strip_control", strip_control},
          {"whitespace", whitespace},
          {"invalid_utf8", invalid_utf8},
          {"min_chars", min_chars},
          {"dedup", dedup}};
}

// ---- stats ----------------------------------------------------------------------

// clang-format reflows this X-macro differently on every pass: one field per line.
// clang-format off
#define SHARDLM_CLEAN_FIELDS(X) \
  X(docs_in) \
  X(bytes_in) \
  X(invalid_sequences) \
  X(docs_invalid_utf8) \
  X(docs_rejected_utf8) \
  X(docs_nfc_changed) \
  X(control_removed) \
  X(docs_whitespace_changed) \
  X(docs_too_short) \
  X(docs_duplicate) \
  X(docs_out) \
  X(bytes_out)
// clang-format on

CleanStats& CleanStats::operator+=(const CleanStats& o) {
#define X(f) f += o.f;
  SHARDLM_CLEAN_FIELDS(X)
#undef X
  return *this;
}

nlohmann::json CleanStats::to_json() const {
  nlohmann::json j;
#define X(f) j[#f] = f;
  SHARDLM_CLEAN_FIELDS(X)
#undef X
  return j;
}

CleanStats CleanStats::from_json(const nlohmann::json& j) {
  CleanStats s;
#define X(f) s.f = j.value(#f, int64_t{0});
  SHARDLM_CLEAN_FIELDS(X)
#undef X
  return s;
}

// ---- UTF-8 ----------------------------------------------------------------------

namespace {

// Code point of the valid sequence of `len` bytes at p (utf8_char said so).
inline int32_t decode(const unsigned char* p, size_t len) {
  switch (len) {
    case 1:
      return p[0];
    case 2:
      return ((p[0] & 0x1F) << 6) | (p[1] & 0x3F);
    case 3:
      return ((p[0] & 0x0F) << 12) | ((p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    default:
      return ((p[0] & 0x07) << 18) | ((p[1] & 0x3F) << 12) | ((p[2] & 0x3F) << 6) | (p[3] & 0x3F);
  }
}

bool is_space_separator(int32_t cp) {
  if (cp < 0x80) return cp == ' ';
  return utf8proc_category(cp) == UTF8PROC_CATEGORY_ZS;
}

bool is_control(int32_t cp) {
  return (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') || (cp >= 0x7F && cp <= 0x9F) ||
         cp == 0xFEFF;
}

}  // namespace

int64_t repair_utf8(std::string& text) {
  size_t valid = utf8_valid_prefix(text);
  if (valid == text.size()) return 0;
  // The same replacement as utf8_sanitize (one U+FFFD per maximal subpart), counted.
  auto* p = reinterpret_cast<const unsigned char*>(text.data());
  std::string out(text, 0, valid);
  int64_t replaced = 0;
  for (size_t i = valid, n = text.size(); i < n;) {
    size_t bad = 0, len = utf8_char(p + i, n - i, &bad);
    if (len) {
      out.append(text, i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      i += bad;
      ++replaced;
    }
  }
  text.swap(out);
  return replaced;
}

int64_t count_code_points(std::string_view text) {
  int64_t n = 0;
  for (unsigned char c : text) n += (c & 0xC0) != 0x80;
  return n;
}

// ---- cleaning -------------------------------------------------------------------

namespace {

// NFC through utf8proc; only text with a code point >= U+0300 can change.
bool to_nfc(std::string& text) {
  bool maybe = false;
  for (unsigned char c : text) {
    if (c >= 0xCC) {
      maybe = true;
      break;
    }
  }
  if (!maybe) return false;
  utf8proc_uint8_t* out = nullptr;
  auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                        static_cast<utf8proc_ssize_t>(text.size()), &out,
                        static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) return false;  // cannot happen on repaired text; keep it unchanged
  std::unique_ptr<utf8proc_uint8_t, void (*)(void*)> hold(out, &std::free);
  std::string_view result(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
  if (result == text) return false;
  text.assign(result);
  return true;
}

// Control characters and line breaks / space separators, one pass over code points.
// Returns how many code points were mapped to '\n' or ' ' (or dropped: \r of \r\n).
int64_t map_code_points(std::string& text, bool strip_control, bool whitespace, int64_t& removed) {
  auto* p = reinterpret_cast<const unsigned char*>(text.data());
  auto* end = p + text.size();
  std::string out;
  out.reserve(text.size());
  int32_t cp;
  int64_t mapped = 0;
  while (p < end) {
    size_t bad = 0, n = *p < 0x80 ? 1 : utf8_char(p, static_cast<size_t>(end - p), &bad);
    if (n == 0) n = bad;  // unreachable after repair_utf8: copied as it is
    cp = n == 0 || bad ? 0xFFFD : decode(p, n);
    p += n;
    if (whitespace) {
      if (cp == '\r') {
        ++mapped;
        if (p < end && *p == '\n') continue;
        cp = '\n';
      } else if (cp == '\v' || cp == '\f' || cp == 0x85 || cp == 0x2028 || cp == 0x2029) {
        cp = '\n', ++mapped;
      } else if (cp != ' ' && is_space_separator(cp)) {
        cp = ' ', ++mapped;
      }
    }
    if (strip_control && is_control(cp)) {
      ++removed;
      continue;
    }
    if (cp < 0x80)
      out.push_back(static_cast<char>(cp));
    else
      out.append(reinterpret_cast<const char*>(p - n), n);
  }
  text.swap(out);
  return mapped;
}

// Fast checks that let plain text skip the two passes above and below (most
// English text has nothing to change).
bool only_plain_ascii(const std::string& text) {
  for (unsigned char c : text)
    if ((c < 0x20 && c != '\n' && c != '\t') || c >= 0x7F) return false;
  return true;
}

// Whether normalize_lines (without collapse) would leave `text` as it is.
bool lines_normal(const std::string& text) {
  if (text.empty()) return true;
  char last = text.back();
  if (last == ' ' || last == '\t' || last == '\n') return false;
  size_t line = 0;  // start of the current line
  for (;;) {
    size_t i = line;
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    if (i < text.size() && text[i] == '\n') {  // a blank line: allowed only as one empty line
      if (line == 0 || i != line || (i + 1 < text.size() && text[i + 1] == '\n')) return false;
    }
    size_t eol = text.find('\n', line);
    if (eol == std::string::npos) return true;
    if (eol > 0 && (text[eol - 1] == ' ' || text[eol - 1] == '\t')) return false;
    line = eol + 1;
  }
}

// Per line: trailing blanks removed, runs of blanks after the indentation squeezed
// (collapse); at most one empty line in a row; leading empty lines and trailing
// whitespace of the document removed. Returns whether anything changed.
bool normalize_lines(std::string& text, bool collapse) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0, n = text.size();
  int pending_newlines = 0;
  bool started = false, tab_squeezed = false;
  while (i < n) {
    size_t eol = text.find('\n', i);
    if (eol == std::string::npos) eol = n;
    size_t last = eol;
    while (last > i && (text[last - 1] == ' ' || text[last - 1] == '\t')) --last;
    if (last == i) {  // an empty (or blank) line
      if (started) ++pending_newlines;
    } else {
      if (started) out.append(static_cast<size_t>(std::min(pending_newlines + 1, 2)), '\n');
      pending_newlines = 0;
      started = true;
      size_t j = i;
      while (j < last && (text[j] == ' ' || text[j] == '\t')) out.push_back(text[j++]);
      for (; j < last; ++j) {
        char c = text[j];
        if (collapse && (c == ' ' || c == '\t')) {
          tab_squeezed |= c == '\t';
          if (out.back() != ' ') out.push_back(' ');
        } else {
          out.push_back(c);
        }
      }
    }
    i = eol + 1;
  }
  bool changed = tab_squeezed || out.size() != text.size();
  text.swap(out);
  return changed;
}

}  // namespace

CleanOutcome clean_text(std::string& text, const CleanConfig& cfg, CleanStats& stats,
                        int64_t known_invalid) {
  stats.docs_in += 1;
  stats.bytes_in += static_cast<int64_t>(text.size());
  int64_t invalid = known_invalid + repair_utf8(text);
  if (invalid > 0) {
    stats.invalid_sequences += invalid;
    stats.docs_invalid_utf8 += 1;
    if (cfg.invalid_utf8 == "reject") {
      stats.docs_rejected_utf8 += 1;
      return CleanOutcome::kRejectedUtf8;
    }
  }
  if (cfg.nfc && to_nfc(text)) stats.docs_nfc_changed += 1;
  bool ws = cfg.whitespace != "keep";
  if (cfg.strip_control || ws) {
    int64_t removed = 0, mapped = 0;
    if (!only_plain_ascii(text)) mapped = map_code_points(text, cfg.strip_control, ws, removed);
    stats.control_removed += removed;
    bool collapse = cfg.whitespace == "collapse";
    bool changed = ws && (collapse || !lines_normal(text)) && normalize_lines(text, collapse);
    if (mapped > 0 || changed) stats.docs_whitespace_changed += 1;
  }
  if (count_code_points(text) < cfg.min_chars || text.empty()) {
    stats.docs_too_short += 1;
    return CleanOutcome::kTooShort;
  }
  stats.docs_out += 1;
  stats.bytes_out += static_cast<int64_t>(text.size());
  return CleanOutcome::kKept;
}

}  // namespace shardlm::data
