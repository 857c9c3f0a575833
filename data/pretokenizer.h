// The pre-tokenizer: splits text into pieces with a regex before BPE runs on
// each piece separately, so that merges never cross a word boundary.
//
// Regexes run through PCRE2 with JIT. `\s`/`\S` are rewritten to Unicode's
// White_Space property (what tiktoken's Rust regex and GPT-2's Python `regex`
// use; PCRE2's own \s differs on U+180E). Pieces always cover the text exactly:
// text the regex does not match becomes a piece of its own, and invalid UTF-8
// (which the regex cannot see) is passed through as pieces of raw bytes, each
// maximal run of invalid sequences one piece. So encoding is lossless for any
// bytes.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace shardlm::data {

// The regex of a named pattern: "gpt2" (also "r50k", "p50k"), "cl100k",
// "o200k"; nullptr when `name` names none of them.
const char* named_pattern(const std::string& name);
// The name of `regex` when it is one of the named patterns, else "".
std::string pattern_name_of(const std::string& regex);

class Pretokenizer {
 public:
  // `pattern`: a name (see named_pattern) or a PCRE2 regex. Throws DataError
  // naming the offset in the pattern and PCRE2's message when it does not
  // compile. fast_paths: the GPT-2 and cl100k patterns decide ASCII pieces
  // without PCRE2 (same pieces, ~3x faster); false runs everything through
  // PCRE2 (tests compare the two).
  explicit Pretokenizer(const std::string& pattern = "gpt2", bool fast_paths = true);
  ~Pretokenizer();
  Pretokenizer(const Pretokenizer&) = default;
  Pretokenizer& operator=(const Pretokenizer&) = default;

  const std::string& regex() const;  // the regex as given (names resolved)
  const std::string& name() const;   // "gpt2", "cl100k", "o200k" or "" (custom)
  bool jit() const;                  // false when PCRE2 has no JIT on this CPU

  // Where text may be cut so that splitting the parts gives the same pieces
  // as splitting the whole: right after a newline that stands between two
  // ASCII characters other than whitespace. True for the named patterns (a
  // newline there is a piece of its own or ends one); false for a custom
  // regex, which gets no cuts.
  bool has_safe_cuts() const { return !name().empty(); }
  // The first safe cut (the offset just after the newline) at or after
  // `from`, or npos (always npos without has_safe_cuts()).
  size_t next_safe_cut(std::string_view text, size_t from) const;
  // The last safe cut in text, or npos.
  size_t last_safe_cut(std::string_view text) const;
  // text cut at safe places into parts of about `part_bytes` (one part when
  // there is no safe cut).
  std::vector<std::string_view> safe_parts(std::string_view text, size_t part_bytes) const;

  // Calls sink(ctx, p, n) for each piece of `text`, in order; the pieces
  // concatenate to `text`. Thread-safe (per-thread match data).
  using Sink = void (*)(void* ctx, const char* p, size_t n);
  void split(std::string_view text, Sink sink, void* ctx) const;

  template <class F>
  void for_each_piece(std::string_view text, F&& f) const {
    split(
        text, [](void* c, const char* p, size_t n) { (*static_cast<F*>(c))(p, n); },
        const_cast<void*>(static_cast<const void*>(&f)));
  }
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace shardlm::data
