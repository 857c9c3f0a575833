// JSON Lines in and out: every task file (choice, factual, generation prompts),
// the samples to rate and the ratings themselves. A malformed line or a missing
// field is a DataError naming the file and the line; appends are flushed and
// fsync'ed one line at a time, so a crash loses at most the line being written.
// Torch-free.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace shardlm::eval {

// One parsed line and where it came from (for error messages).
struct JsonLine {
  nlohmann::json value;
  std::string file;
  size_t line = 0;  // 1-based
  // "<file>:<line>" for messages.
  std::string where() const;
  // value[key] as T; DataError "<file>:<line>: field 'key' ..." when absent or of another type.
  template <class T>
  T get(const char* key) const;
  // value[key] as T, or `def` when absent (DataError when present with another type).
  template <class T>
  T get_or(const char* key, const T& def) const;
};

// Every non-blank line of `path`, each a JSON object. Throws DataError naming the
// file (cannot be read) or the file and line (not JSON, not an object). With
// `tolerate_torn_tail`, a last line without a newline that does not parse is
// skipped (a crash while appending), not an error.
std::vector<JsonLine> read_jsonl(const std::string& path, bool tolerate_torn_tail = false);

// Appends one line (compact JSON + "\n") to `path`, then flushes and fsyncs.
void append_jsonl(const std::string& path, const nlohmann::json& value);

}  // namespace shardlm::eval
