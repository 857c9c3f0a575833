// Text cleaning and normalisation, applied to every document before it is
// tokenised. Each step is configurable (CleanConfig, TOML [prepare.clean]) and
// counted (CleanStats), so that the preparation report says what was changed.
//
// Order of the steps (docs/data.md explains each):
//   1. invalid UTF-8: each maximal invalid subpart (Unicode 3.9, as utf8.h and
//      Python's errors="replace") becomes U+FFFD ("replace"), or the document is
//      dropped ("reject")
//   2. Unicode NFC (utf8proc), skipped for text below U+0300, which is already NFC
//   3. control characters (category Cc, and U+FEFF) removed, except \t and \n
//   4. whitespace: \r\n and \r become \n, other line breaks (\v \f U+2028 U+2029)
//      become \n, space separators (U+00A0, U+3000, ...) become ' ', trailing
//      blanks of each line removed, at most one empty line in a row, the document
//      trimmed; "collapse" also squeezes runs of blanks inside a line (not the
//      indentation); "keep" does none of this
//   5. documents with fewer than min_chars code points dropped
// Exact duplicates (same cleaned text) are removed later, at assembly (prepare.h).
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/config.h"

namespace shardlm::data {

struct CleanConfig {
  bool nfc = true;
  bool strip_control = true;
  std::string whitespace = "normalize";  // normalize | collapse | keep
  std::string invalid_utf8 = "replace";  // replace | reject
  int64_t min_chars = 16;                // code points after cleaning
  bool dedup = true;                     // drop exact duplicates (at assembly)

  static CleanConfig from(const core::ConfigSection& s);
  void validate() const;
  nlohmann::json to_json() const;
};

// Counts over all documents seen; added up across files and ranks.
struct CleanStats {
  int64_t docs_in = 0;
  int64_t bytes_in = 0;
  int64_t invalid_sequences = 0;   // invalid UTF-8 subparts found (U+FFFD inserted)
  int64_t docs_invalid_utf8 = 0;   // documents that had any
  int64_t docs_rejected_utf8 = 0;  // of those, dropped (invalid_utf8 = "reject")
  int64_t docs_nfc_changed = 0;
  int64_t control_removed = 0;  // code points
  int64_t docs_whitespace_changed = 0;
  int64_t docs_too_short = 0;
  int64_t docs_duplicate = 0;  // filled at assembly
  int64_t docs_out = 0;
  int64_t bytes_out = 0;

  CleanStats& operator+=(const CleanStats& o);
  nlohmann::json to_json() const;
  static CleanStats from_json(const nlohmann::json& j);
};

enum class CleanOutcome { kKept, kRejectedUtf8, kTooShort };

// Cleans `text` in place following `cfg` and adds to `stats` (docs_in, bytes_in
// and every count of the steps above; docs_out/bytes_out when kept).
// `known_invalid` is the number of invalid sequences a reader already replaced
// in this document (JSON must be repaired before it can be parsed).
CleanOutcome clean_text(std::string& text, const CleanConfig& cfg, CleanStats& stats,
                        int64_t known_invalid = 0);

// utf8_sanitize in place, counting: each maximal invalid subpart becomes U+FFFD;
// returns how many were replaced (0: the text was valid and is unchanged).
int64_t repair_utf8(std::string& text);
// Number of code points of valid UTF-8.
int64_t count_code_points(std::string_view text);

}  // namespace shardlm::data
