// PCRE2-JIT pre-tokenizer (see pretokenizer.h).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "data/pretokenizer.h"

#include <pcre2.h>

#include <array>

#include "core/error.h"
#include "data/utf8.h"

namespace shardlm::data {

// ---- named patterns -------------------------------------------------------------------
// GPT-2 / r50k / p50k (openai/gpt-2 encoder.py), cl100k and o200k (tiktoken).
namespace {
const char kGpt2[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char kCl100k[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char kO200k[] =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Unicode White_Space, as the contents of a character class.
const char kWhiteSpace[] =
    R"(\x{9}-\x{d}\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000})";

// `\s` -> White_Space and `\S` -> its complement, inside and outside classes.
std::string rewrite_whitespace(const std::string& re) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < re.size(); ++i) {
    const char c = re[i];
    if (c == '\\' && i + 1 < re.size()) {
      const char e = re[i + 1];
      if (e == 's') {
        out += in_class ? std::string(kWhiteSpace) : "[" + std::string(kWhiteSpace) + "]";
      } else if (e == 'S' && !in_class) {
        out += "[^" + std::string(kWhiteSpace) + "]";
      } else {
        out += c;
        out += e;
      }
      ++i;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < re.size() && re[i + 1] == '^') out += re[++i];
      if (i + 1 < re.size() && re[i + 1] == ']') out += re[++i];
      continue;
    }
    if (in_class && c == '[' && i + 1 < re.size() && re[i + 1] == ':') {
      const size_t end = re.find(":]", i + 2);  // POSIX class [:alpha:]
      if (end != std::string::npos) {
        out.append(re, i, end + 2 - i);
        i = end + 1;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

pcre2_code* compile(const std::string& re, const std::string& shown) {
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(re.data()), re.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
  SHARDLM_CHECK(code, core::DataError,
                "pre-tokenizer pattern does not compile at offset {}: {} (pattern: {})", off,
                pcre2_message(err), shown);
  return code;
}
}  // namespace

const char* named_pattern(const std::string& name) {
  if (name == "gpt2" || name == "r50k" || name == "p50k" || name == "r50k_base" ||
      name == "p50k_base")
    return kGpt2;
  if (name == "cl100k" || name == "cl100k_base") return kCl100k;
  if (name == "o200k" || name == "o200k_base") return kO200k;
  return nullptr;
}

std::string pattern_name_of(const std::string& regex) {
  if (regex == kGpt2) return "gpt2";
  if (regex == kCl100k) return "cl100k";
  if (regex == kO200k) return "o200k";
  return "";
}

// ---- compiled pattern and per-thread match state -----------------------------------------
struct Pretokenizer::Impl {
  std::string regex, name;
  pcre2_code* code = nullptr;
  bool jit = false;
  // Decides the ASCII pieces of the GPT-2 or cl100k pattern without PCRE2.
  size_t (*ascii_piece)(const unsigned char*, size_t, size_t) = nullptr;
  ~Impl() { pcre2_code_free(code); }
};

// ---- the GPT-2 and cl100k patterns on ASCII, without the regex engine ---------------------
// Most pieces of English text and code are ASCII. For them the GPT-2 pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// reduces to a few rules on byte classes, which this function applies. It
// returns the length of the piece at s[i..n), or 0 when any byte the decision
// depends on is not ASCII (a letter, digit or space of another script could
// continue the run): then PCRE2 decides that piece. Pieces never depend on
// what came before them (the pattern has no lookbehind), so both can take
// turns. tests/data compares the two on random text.
namespace {
enum : uint8_t { kOther = 0, kLetter = 1, kDigit = 2, kSpace = 3, kNonAscii = 4 };
constexpr std::array<uint8_t, 256> ascii_classes() {
  std::array<uint8_t, 256> c{};
  for (int b = 0; b < 256; ++b) {
    c[b] = b >= 0x80                                          ? kNonAscii
           : (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') ? kLetter
           : (b >= '0' && b <= '9')                           ? kDigit
           : (b == ' ' || (b >= 0x09 && b <= 0x0D))           ? kSpace
                                                              : kOther;
  }
  return c;
}
constexpr std::array<uint8_t, 256> kClass = ascii_classes();

size_t gpt2_ascii_piece(const unsigned char* s, size_t i, size_t n) {
  const uint8_t c = kClass[s[i]];
  if (c == kNonAscii) return 0;
  if (s[i] == '\'' && i + 1 < n) {  // contractions come first, case-sensitive
    const unsigned char a = s[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 < n) {
      const unsigned char b = s[i + 2];
      if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    }
  }
  // " ?X+" for a letter, digit or other run X: an optional single space first.
  size_t j = i;
  uint8_t run = c;
  if (s[i] == ' ' && i + 1 < n && kClass[s[i + 1]] != kSpace) {
    run = kClass[s[i + 1]];
    if (run == kNonAscii) return 0;
    j = i + 1;
  }
  if (run != kSpace) {
    while (j < n && kClass[s[j]] == run) ++j;
    return j < n && kClass[s[j]] == kNonAscii ? 0 : j - i;
  }
  // Whitespace: "\s+(?!\S)" keeps the last space for the next piece when a
  // non-space follows (so " word" stays together); a single one stands alone.
  while (j < n && kClass[s[j]] == kSpace) ++j;
  if (j == n) return j - i;
  if (kClass[s[j]] == kNonAscii) return 0;  // U+00A0, U+3000... may continue the run
  return j - i >= 2 ? j - i - 1 : 1;
}

// The same for the cl100k pattern:
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//    ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
bool is_newline(unsigned char c) {
  return c == '\n' || c == '\r';
}

size_t cl100k_ascii_piece(const unsigned char* s, size_t i, size_t n) {
  const uint8_t c = kClass[s[i]];
  if (c == kNonAscii) return 0;
  const uint8_t next = i + 1 < n ? kClass[s[i + 1]] : kOther;
  if (s[i] == '\'' && i + 1 < n) {  // contractions, any case ('ſ' folds to 's': non-ASCII = 0)
    if (next == kNonAscii) return 0;
    const unsigned char a = s[i + 1] | 0x20;
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' || a == 'v' || a == 'l') && i + 2 < n) {
      if (kClass[s[i + 2]] == kNonAscii) return 0;
      const unsigned char b = s[i + 2] | 0x20;
      if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    }
  }
  // A word: letters, after at most one character that is not a newline,
  // letter or digit.
  const bool may_lead = c != kLetter && c != kDigit && !is_newline(s[i]);
  if (may_lead && next == kNonAscii) return 0;
  size_t j = may_lead && next == kLetter ? i + 1 : i;
  if (kClass[s[j]] == kLetter) {
    while (j < n && kClass[s[j]] == kLetter) ++j;
    return j < n && kClass[s[j]] == kNonAscii ? 0 : j - i;
  }
  if (c == kDigit) {  // one to three digits
    while (j < n && j - i < 3 && kClass[s[j]] == kDigit) ++j;
    return j - i < 3 && j < n && kClass[s[j]] == kNonAscii ? 0 : j - i;
  }
  // Punctuation and symbols, after at most one space, then any newlines.
  if (c == kOther || (s[i] == ' ' && next == kOther && i + 1 < n)) {
    j = c == kOther ? i : i + 1;
    while (j < n && kClass[s[j]] == kOther) ++j;
    if (j < n && kClass[s[j]] == kNonAscii) return 0;
    while (j < n && is_newline(s[j])) ++j;
    return j - i;
  }
  // Whitespace: up to the last newline of the run if it has one; else as GPT-2.
  while (j < n && kClass[s[j]] == kSpace) ++j;
  if (j < n && kClass[s[j]] == kNonAscii) return 0;
  for (size_t k = j; k > i; --k)
    if (is_newline(s[k - 1])) return k - i;
  if (j == n) return j - i;
  return j - i >= 2 ? j - i - 1 : 1;
}
}  // namespace

namespace {
// Match data (one ovector pair: only the whole match is needed) and a JIT stack
// per thread; they do not depend on the pattern, so one set serves all.
struct ThreadMatch {
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* mctx = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
  ThreadMatch() { pcre2_jit_stack_assign(mctx, nullptr, stack); }
  ~ThreadMatch() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(mctx);
    pcre2_match_data_free(md);
  }
};
ThreadMatch& thread_match() {
  thread_local ThreadMatch tm;
  return tm;
}
}  // namespace

Pretokenizer::Pretokenizer(const std::string& pattern, bool fast_paths) {
  auto impl = std::make_shared<Impl>();
  const char* named = named_pattern(pattern);
  SHARDLM_CHECK(!pattern.empty(), core::DataError, "pre-tokenizer pattern is empty");
  impl->regex = named ? named : pattern;
  impl->name = pattern_name_of(impl->regex);
  // Compile the pattern as written first, so that an error offset points into it.
  pcre2_code_free(compile(impl->regex, impl->regex));
  impl->code = compile(rewrite_whitespace(impl->regex), impl->regex);
  impl->jit = pcre2_jit_compile(impl->code, PCRE2_JIT_COMPLETE) == 0;
  if (fast_paths && impl->name == "gpt2") impl->ascii_piece = gpt2_ascii_piece;
  if (fast_paths && impl->name == "cl100k") impl->ascii_piece = cl100k_ascii_piece;
  impl_ = std::move(impl);
}

Pretokenizer::~Pretokenizer() = default;
const std::string& Pretokenizer::regex() const {
  return impl_->regex;
}
const std::string& Pretokenizer::name() const {
  return impl_->name;
}
bool Pretokenizer::jit() const {
  return impl_->jit;
}

// ---- splitting ------------------------------------------------------------------------------
void Pretokenizer::split(std::string_view text, Sink sink, void* ctx) const {
  ThreadMatch& tm = thread_match();
  const Impl& im = *impl_;
  PCRE2_SIZE* ov = pcre2_get_ovector_pointer(tm.md);
  size_t pos = 0;
  while (pos < text.size()) {
    // 1. The longest valid UTF-8 segment from pos: PCRE2 runs on it alone (as
    //    its own subject: the end of the segment acts like the end of text,
    //    which is also how an invalid byte acts, since no regex item matches it).
    const std::string_view rest = text.substr(pos);
    const size_t seg_len = utf8_valid_prefix(rest);
    const auto* seg = reinterpret_cast<PCRE2_SPTR>(rest.data());
    size_t off = 0, gap = 0;  // [gap, off): text not matched yet
    while (off < seg_len) {
      if (im.ascii_piece) {
        if (const size_t len = im.ascii_piece(seg, off, seg_len)) {
          if (off > gap) sink(ctx, rest.data() + gap, off - gap);
          sink(ctx, rest.data() + off, len);
          off = gap = off + len;
          continue;
        }
      }
      const int rc =
          im.jit ? pcre2_jit_match(im.code, seg, seg_len, off, 0, tm.md, tm.mctx)
                 : pcre2_match(im.code, seg, seg_len, off, PCRE2_NO_UTF_CHECK, tm.md, tm.mctx);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      SHARDLM_CHECK(rc >= 0, core::DataError, "pre-tokenizer regex failed at byte {}: {}",
                    pos + off, pcre2_message(rc));
      const size_t start = ov[0], end = ov[1];
      if (end == start) {
        // An empty match: step over one character (it joins the unmatched gap).
        size_t bad = 0;
        off += utf8_char(seg + off, seg_len - off, &bad);
        continue;
      }
      if (start > gap) sink(ctx, rest.data() + gap, start - gap);
      sink(ctx, rest.data() + start, end - start);
      off = gap = end;
    }
    if (seg_len > gap) sink(ctx, rest.data() + gap, seg_len - gap);
    pos += seg_len;
    // 2. A run of invalid sequences: one piece of raw bytes.
    size_t bad_end = pos;
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    while (bad_end < text.size()) {
      size_t bad = 0;
      if (utf8_char(p + bad_end, text.size() - bad_end, &bad)) break;
      bad_end += bad;
    }
    if (bad_end > pos) sink(ctx, text.data() + pos, bad_end - pos);
    pos = bad_end;
  }
}

// ---- safe cuts ------------------------------------------------------------------------------
namespace {
bool plain_ascii(char c) {
  return static_cast<unsigned char>(c) < 0x80 && c != ' ' && c != '\t' && c != '\n' && c != '\r' &&
         c != '\v' && c != '\f';
}
bool safe_at(std::string_view text, size_t i) {
  return i > 0 && i + 1 < text.size() && plain_ascii(text[i - 1]) && plain_ascii(text[i + 1]);
}
}  // namespace

size_t Pretokenizer::next_safe_cut(std::string_view text, size_t from) const {
  if (!has_safe_cuts()) return std::string_view::npos;
  for (size_t i = text.find('\n', from); i != std::string_view::npos; i = text.find('\n', i + 1))
    if (safe_at(text, i)) return i + 1;
  return std::string_view::npos;
}

size_t Pretokenizer::last_safe_cut(std::string_view text) const {
  if (!has_safe_cuts() || text.empty()) return std::string_view::npos;
  for (size_t i = text.rfind('\n'); i != std::string_view::npos && i > 0;
       i = text.rfind('\n', i - 1))
    if (safe_at(text, i)) return i + 1;
  return std::string_view::npos;
}

std::vector<std::string_view> Pretokenizer::safe_parts(std::string_view text,
                                                       size_t part_bytes) const {
  std::vector<std::string_view> parts;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end =
        begin + part_bytes < text.size() ? next_safe_cut(text, begin + part_bytes) : text.size();
    if (end == std::string_view::npos) end = text.size();
    parts.push_back(text.substr(begin, end - begin));
    begin = end;
  }
  return parts;
}

std::vector<std::string_view> Pretokenizer::split(std::string_view text) const {
  std::vector<std::string_view> out;
  for_each_piece(text, [&](const char* p, size_t n) { out.emplace_back(p, n); });
  return out;
}

}  // namespace shardlm::data
