// Tokenizer files: shardlm's own JSON, GPT-2's encoder.json + vocab.bpe,
// tiktoken rank files and Hugging Face tokenizer.json (see tokenizer.h).
// Every reader names the file and the line or byte offset of what is wrong.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "core/json_int.h"
#include "core/log.h"
#include "data/tokenizer.h"
#include "data/tokenizer_model.h"
#include "data/utf8.h"

namespace shardlm::data {

using core::DataError;
using detail::BytesMap;
using detail::Merge;
using detail::TokenizerModel;
using detail::TokenKind;
using json = nlohmann::json;

namespace {

constexpr int kTokenizerFormatVersion = 1;
constexpr char kFormatName[] = "shardlm-tokenizer";

// ---- files ----------------------------------------------------------------------------------
std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SHARDLM_CHECK(in, DataError, "cannot open tokenizer file '{}': {}", path, std::strerror(errno));
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  SHARDLM_CHECK(!in.bad(), DataError, "cannot read tokenizer file '{}'", path);
  return s;
}

// "line L, column C (byte B)" of byte offset `at` in text.
std::string position(const std::string& text, size_t at) {
  at = std::min(at, text.size());
  size_t line = 1, col = 1;
  for (size_t i = 0; i < at; ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return fmt::format("line {}, column {} (byte {})", line, col, at);
}

json parse_json(const std::string& text, const std::string& path) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    // nlohmann counts bytes from 1 and points just past the bad character.
    const size_t at = e.byte > 0 ? e.byte - 1 : 0;
    SHARDLM_FAIL(DataError, "{}: not valid JSON at {}{}", path, position(text, at),
                 at >= text.size() - 1 ? " (the file ends early: truncated?)" : "");
  }
}

// A member of a JSON object, with an error naming the file and the field.
const json& field(const json& j, const char* key, const std::string& path, const char* parent) {
  SHARDLM_CHECK(j.is_object() && j.contains(key), DataError, "{}: field '{}{}' is missing", path,
                parent, key);
  return j.at(key);
}

std::string json_str(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      out += fmt::format("\\u{:04x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// ---- merges given as strings (vocab.bpe, tokenizer.json) ---------------------------------------
// `by_string` maps a token's byte-level string to its id.
void add_merge(TokenizerModel& m, const BytesMap<uint32_t>& by_string, const std::string& left,
               const std::string& right, const std::string& where) {
  const uint32_t* l = by_string.find(left);
  const uint32_t* r = by_string.find(right);
  SHARDLM_CHECK(l && r, DataError, "{}: merge '{} {}' names a token that is not in the vocabulary",
                where, left, right);
  const std::string both = left + right;
  const uint32_t* res = by_string.find(both);
  SHARDLM_CHECK(res, DataError, "{}: merge '{} {}' makes '{}', which is not in the vocabulary",
                where, left, right, both);
  m.merges.push_back(Merge{*l, *r, *res});
}

// Ordinary tokens from a {byte-level string: id} object; `skip` holds ids of
// special tokens that the same object lists (GPT-2, Hugging Face).
BytesMap<uint32_t> read_byte_level_vocab(TokenizerModel& m, const json& vocab,
                                         const std::string& where,
                                         const std::vector<uint32_t>& skip = {}) {
  SHARDLM_CHECK(vocab.is_object(), DataError, "{}: the vocabulary is not a JSON object", where);
  BytesMap<uint32_t> by_string(vocab.size());
  std::string bytes;
  for (const auto& [key, value] : vocab.items()) {
    SHARDLM_CHECK(value.is_number_unsigned() && value.get<uint64_t>() < detail::kMaxTokenId,
                  DataError, "{}: vocabulary entry '{}' has id {}, expected an integer in [0, {})",
                  where, key, value.dump(), detail::kMaxTokenId);
    const auto id = value.get<uint32_t>();
    by_string.get_or_insert(key, id);
    if (std::find(skip.begin(), skip.end(), id) != skip.end()) continue;
    SHARDLM_CHECK(byte_level_to_bytes(key, &bytes), DataError,
                  "{}: vocabulary entry '{}' (id {}) is not a byte-level token string", where, key,
                  id);
    SHARDLM_CHECK(!m.has(id), DataError, "{}: id {} is given to two vocabulary entries", where, id);
    m.add_token(id, bytes, TokenKind::kNormal);
  }
  return by_string;
}

// ---- tiktoken ----------------------------------------------------------------------------------
bool base64_decode(std::string_view in, std::string* out) {
  static const std::array<int8_t, 256> table = [] {
    std::array<int8_t, 256> t;
    t.fill(-1);
    const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(a[i])] = static_cast<int8_t>(i);
    return t;
  }();
  if (in.empty() || in.size() % 4 != 0) return false;
  out->clear();
  for (size_t i = 0; i < in.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = in[i + k];
      if (c == '=' && i + 4 == in.size() && k >= 2) {
        v[k] = 0;
        ++pad;
        continue;
      }
      if (pad) return false;  // data after '='
      v[k] = table[static_cast<unsigned char>(c)];
      if (v[k] < 0) return false;
    }
    const uint32_t w = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    *out += static_cast<char>(w >> 16);
    if (pad < 2) *out += static_cast<char>((w >> 8) & 0xFF);
    if (pad < 1) *out += static_cast<char>(w & 0xFF);
  }
  return true;
}

bool looks_like_tiktoken_line(std::string_view line) {
  const size_t sp = line.find(' ');
  if (sp == std::string_view::npos || sp == 0 || sp + 1 >= line.size()) return false;
  for (size_t i = 0; i < sp; ++i)
    if (!std::isalnum(static_cast<unsigned char>(line[i])) && line[i] != '+' && line[i] != '/' &&
        line[i] != '=')
      return false;
  for (size_t i = sp + 1; i < line.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(line[i])) && line[i] != '\r') return false;
  return true;
}

// The encodings OpenAI publishes as .tiktoken files: their pattern and
// special tokens (tiktoken_ext/openai_public.py), which the files do not hold.
struct KnownEncoding {
  const char* name;
  size_t ranks;
  const char* pattern;
  std::vector<std::pair<const char*, uint32_t>> specials;
};
const std::vector<KnownEncoding>& known_encodings() {
  static const std::vector<KnownEncoding> k = {
      {"r50k_base", 50256, "gpt2", {{"<|endoftext|>", 50256}}},
      {"p50k_base", 50280, "gpt2", {{"<|endoftext|>", 50256}}},
      {"cl100k_base",
       100256,
       "cl100k",
       {{"<|endoftext|>", 100257},
        {"<|fim_prefix|>", 100258},
        {"<|fim_middle|>", 100259},
        {"<|fim_suffix|>", 100260},
        {"<|endofprompt|>", 100276}}},
      {"o200k_base", 199998, "o200k", {{"<|endoftext|>", 199999}, {"<|endofprompt|>", 200018}}},
  };
  return k;
}

// Reads the ranks of a .tiktoken file into m (tokens only); returns their count.
size_t read_tiktoken_ranks(TokenizerModel& m, const std::string& text, const std::string& path) {
  size_t line_no = 0, count = 0, pos = 0;
  std::vector<size_t> line_of_rank;
  std::string bytes;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    const bool last = end == std::string::npos;
    if (last) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    ++line_no;
    const size_t line_start = pos;
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const size_t sp = line.find(' ');
    SHARDLM_CHECK(sp != std::string_view::npos && sp + 1 < line.size(), DataError,
                  "{}:{}: expected '<base64 token> <rank>' (byte {}){}", path, line_no, line_start,
                  last ? ": the file ends early (truncated?)" : "");
    SHARDLM_CHECK(base64_decode(line.substr(0, sp), &bytes), DataError,
                  "{}:{}: '{}' is not valid base64 (byte {})", path, line_no, line.substr(0, sp),
                  line_start);
    uint64_t rank = 0;
    for (char c : line.substr(sp + 1)) {
      SHARDLM_CHECK(c >= '0' && c <= '9' && rank < detail::kMaxTokenId, DataError,
                    "{}:{}: rank '{}' is not a number below {} (byte {})", path, line_no,
                    line.substr(sp + 1), detail::kMaxTokenId, line_start + sp + 1);
      rank = rank * 10 + static_cast<uint64_t>(c - '0');
    }
    SHARDLM_CHECK(rank < detail::kMaxTokenId, DataError, "{}:{}: rank {} is above {} (byte {})",
                  path, line_no, rank, detail::kMaxTokenId, line_start + sp + 1);
    if (rank >= line_of_rank.size()) line_of_rank.resize(rank + 1, 0);
    SHARDLM_CHECK(line_of_rank[rank] == 0, DataError, "{}:{}: rank {} was already given on line {}",
                  path, line_no, rank, line_of_rank[rank]);
    line_of_rank[rank] = line_no;
    m.add_token(static_cast<uint32_t>(rank), bytes, TokenKind::kNormal);
    ++count;
  }
  SHARDLM_CHECK(count > 0, DataError, "{}: no ranks in the file", path);
  return count;
}

// ---- Hugging Face pre-tokenizer
// ------------------------------------------------------------------
std::string hf_pattern(const json& pre, const std::string& path) {
  SHARDLM_CHECK(pre.is_object(), DataError,
                "{}: pre_tokenizer is {}: shardlm needs a byte-level pre-tokenizer", path,
                pre.dump());
  auto byte_level_ok = [&](const json& bl, const char* where) {
    SHARDLM_CHECK(!bl.value("add_prefix_space", false), DataError,
                  "{}: {}.add_prefix_space = true is not supported", path, where);
  };
  const std::string type = pre.value("type", "");
  if (type == "ByteLevel") {
    byte_level_ok(pre, "pre_tokenizer");
    SHARDLM_CHECK(pre.value("use_regex", true), DataError,
                  "{}: pre_tokenizer ByteLevel without use_regex has no split pattern", path);
    return "gpt2";
  }
  if (type == "Sequence") {
    const json& seq = field(pre, "pretokenizers", path, "pre_tokenizer.");
    if (seq.is_array() && seq.size() == 2 && seq[0].value("type", "") == "Split" &&
        seq[1].value("type", "") == "ByteLevel" && !seq[1].value("use_regex", true)) {
      byte_level_ok(seq[1], "pre_tokenizer.pretokenizers[1]");
      const json& pat = field(seq[0], "pattern", path, "pre_tokenizer.pretokenizers[0].");
      SHARDLM_CHECK(
          seq[0].value("behavior", "Isolated") == "Isolated" && !seq[0].value("invert", false),
          DataError, "{}: only Split with behavior Isolated (not inverted) is supported", path);
      if (pat.contains("Regex")) return pat.at("Regex").get<std::string>();
    }
  }
  SHARDLM_FAIL(DataError,
               "{}: pre_tokenizer {} is not supported (expected ByteLevel, or a Sequence of a "
               "Split regex and ByteLevel with use_regex false)",
               path, pre.dump().substr(0, 200));
}

std::shared_ptr<TokenizerModel> model_from_hf(const json& j, const std::string& path) {
  auto m = std::make_shared<TokenizerModel>();
  const json& model = field(j, "model", path, "");
  SHARDLM_CHECK(model.value("type", "BPE") == "BPE", DataError,
                "{}: model.type is '{}', expected 'BPE'", path, model.value("type", ""));
  SHARDLM_CHECK(!j.contains("normalizer") || j["normalizer"].is_null(), DataError,
                "{}: a normalizer is not supported (normalizer must be null)", path);
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    SHARDLM_CHECK(!model.contains(k) || model[k].is_null() || model[k] == "", DataError,
                  "{}: model.{} is not supported in a byte-level BPE", path, k);
  std::vector<uint32_t> special_ids;
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const json& t : j["added_tokens"]) {
      SpecialToken s;
      s.id = core::json_int<uint32_t>(field(t, "id", path, "added_tokens[]."),
                                      path + ": added_tokens[].id");
      s.content = field(t, "content", path, "added_tokens[].").get<std::string>();
      special_ids.push_back(s.id);
      m->specials.push_back(std::move(s));
    }
    detail::assign_default_roles(m->specials);
  }
  const BytesMap<uint32_t> by_string = read_byte_level_vocab(
      *m, field(model, "vocab", path, "model."), path + ": model.vocab", special_ids);
  const json& merges = field(model, "merges", path, "model.");
  SHARDLM_CHECK(merges.is_array(), DataError, "{}: model.merges is not an array", path);
  m->merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& mg = merges[i];
    const std::string where = fmt::format("{}: model.merges[{}]", path, i);
    if (mg.is_string()) {
      const std::string s = mg.get<std::string>();
      const size_t sp = s.find(' ');
      SHARDLM_CHECK(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos, DataError,
                    "{}: '{}' is not two tokens separated by one space", where, s);
      add_merge(*m, by_string, s.substr(0, sp), s.substr(sp + 1), where);
    } else {
      SHARDLM_CHECK(mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string(),
                    DataError, "{}: expected \"a b\" or [\"a\", \"b\"]", where);
      add_merge(*m, by_string, mg[0].get<std::string>(), mg[1].get<std::string>(), where);
    }
  }
  m->whole_piece_lookup = model.value("ignore_merges", false);
  m->pattern = hf_pattern(j.contains("pre_tokenizer") ? j["pre_tokenizer"] : json(), path);
  return m;
}

// ---- shardlm's own format
// -------------------------------------------------------------------------
std::shared_ptr<TokenizerModel> model_from_own(const json& j, const std::string& path) {
  auto m = std::make_shared<TokenizerModel>();
  const int version = core::json_int<int>(field(j, "version", path, ""), path + ": version");
  SHARDLM_CHECK(version >= 1 && version <= kTokenizerFormatVersion, DataError,
                "{}: format version {} is not one this shardlm reads (1..{})", path, version,
                kTokenizerFormatVersion);
  const std::string kind = field(j, "kind", path, "").get<std::string>();
  SHARDLM_CHECK(kind == "merges" || kind == "ranks", DataError,
                "{}: kind '{}', expected 'merges' or 'ranks'", path, kind);
  m->kind = kind == "merges" ? TokenizerModel::Kind::kMerges : TokenizerModel::Kind::kRanks;
  m->whole_piece_lookup = j.value("whole_piece_lookup", false);
  m->pattern = field(j, "pattern", path, "").get<std::string>();
  for (const json& t : field(j, "special_tokens", path, "")) {
    SpecialToken s;
    s.id = core::json_int<uint32_t>(field(t, "id", path, "special_tokens[]."),
                                    path + ": special_tokens[].id");
    s.content = field(t, "content", path, "special_tokens[].").get<std::string>();
    if (t.contains("roles")) s.roles = t["roles"].get<std::vector<std::string>>();
    m->specials.push_back(std::move(s));
  }
  read_byte_level_vocab(*m, field(j, "vocab", path, ""), path + ": vocab");
  const json& merges = field(j, "merges", path, "");
  m->merges.reserve(merges.size());
  BytesMap<uint32_t> by_bytes(m->tokens.size());
  for (uint32_t id = 0; id < m->tokens.size(); ++id)
    if (m->token_kind[id] == TokenKind::kNormal) by_bytes.get_or_insert(m->tokens[id], id);
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& mg = merges[i];
    SHARDLM_CHECK(
        mg.is_array() && mg.size() == 2 && mg[0].is_number_unsigned() && mg[1].is_number_unsigned(),
        DataError, "{}: merges[{}] is {}, expected [left id, right id]", path, i, mg.dump());
    const auto l = mg[0].get<uint32_t>(), r = mg[1].get<uint32_t>();
    SHARDLM_CHECK(m->has(l) && m->has(r), DataError, "{}: merges[{}] names an unknown id", path, i);
    const uint32_t* res = by_bytes.find(m->tokens[l] + m->tokens[r]);
    SHARDLM_CHECK(res, DataError, "{}: merges[{}] ({} + {}) makes no token of the vocabulary", path,
                  i, l, r);
    m->merges.push_back(Merge{l, r, *res});
  }
  return m;
}

Tokenizer finish(std::shared_ptr<TokenizerModel> m, const std::string& where) {
  m->finalize(where);
  return Tokenizer(std::move(m));
}

std::string sibling(const std::string& path, const char* name) {
  return (std::filesystem::path(path).parent_path() / name).string();
}

}  // namespace

// ---- loading
// ----------------------------------------------------------------------------------------
namespace {
// A JSON value of the wrong type (a string where an id belongs...) is a
// damaged file like any other: a DataError naming it.
template <class F>
Tokenizer json_errors_name(const std::string& path, F&& f) {
  try {
    return f();
  } catch (const json::exception& e) {
    SHARDLM_FAIL(DataError, "{}: unexpected content: {}", path, e.what());
  }
}
}  // namespace

Tokenizer Tokenizer::from_gpt2_files(const std::string& encoder_json,
                                     const std::string& vocab_bpe) {
  return json_errors_name(encoder_json, [&] { return gpt2_files(encoder_json, vocab_bpe); });
}

Tokenizer Tokenizer::load(const std::string& path) {
  return json_errors_name(path, [&] { return load_any(path); });
}

Tokenizer Tokenizer::gpt2_files(const std::string& encoder_json, const std::string& vocab_bpe) {
  auto m = std::make_shared<TokenizerModel>();
  const std::string enc_text = read_file(encoder_json);
  const json enc = parse_json(enc_text, encoder_json);
  // GPT-2 lists its one special token among the ordinary ones.
  std::vector<uint32_t> special_ids;
  if (enc.is_object() && enc.contains("<|endoftext|>")) {
    SpecialToken s{"<|endoftext|>",
                   core::json_int<uint32_t>(enc["<|endoftext|>"], encoder_json + ": <|endoftext|>"),
                   {"eos", "bos"}};
    special_ids.push_back(s.id);
    m->specials.push_back(s);
  }
  const BytesMap<uint32_t> by_string = read_byte_level_vocab(*m, enc, encoder_json, special_ids);
  const std::string bpe = read_file(vocab_bpe);
  size_t pos = 0, line_no = 0;
  while (pos < bpe.size()) {
    size_t end = bpe.find('\n', pos);
    const bool last = end == std::string::npos;
    if (last) end = bpe.size();
    std::string line = bpe.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    const size_t sp = line.find(' ');
    const std::string where = fmt::format("{}:{}", vocab_bpe, line_no);
    SHARDLM_CHECK(sp != std::string::npos && sp > 0 && sp + 1 < line.size() &&
                      line.find(' ', sp + 1) == std::string::npos,
                  DataError, "{}: expected two tokens separated by one space, got '{}'{}", where,
                  line, last ? " (the file ends early: truncated?)" : "");
    add_merge(*m, by_string, line.substr(0, sp), line.substr(sp + 1), where);
  }
  m->pattern = "gpt2";
  return finish(std::move(m), encoder_json);
}

Tokenizer Tokenizer::from_tiktoken(const std::string& path, const std::string& pattern,
                                   const std::vector<SpecialToken>& specials) {
  auto m = std::make_shared<TokenizerModel>();
  read_tiktoken_ranks(*m, read_file(path), path);
  m->kind = TokenizerModel::Kind::kRanks;
  m->whole_piece_lookup = true;
  m->pattern = pattern;
  m->specials = specials;
  return finish(std::move(m), path);
}

Tokenizer Tokenizer::load_any(const std::string& path) {
  const std::string text = read_file(path);
  size_t start = 0;
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) start = 3;  // UTF-8 byte order mark
  while (start < text.size() && std::isspace(static_cast<unsigned char>(text[start]))) ++start;
  SHARDLM_CHECK(start < text.size(), DataError, "{}: the file is empty", path);
  const std::string_view first_line =
      std::string_view(text).substr(start, text.find('\n', start) - start);

  if (text[start] == '{') {
    const json j = parse_json(text, path);
    if (j.is_object() && j.contains("format") && j["format"] == kFormatName) {
      Tokenizer tok = finish(model_from_own(j, path), path);
      const std::string stored = field(j, "hash", path, "").get<std::string>();
      SHARDLM_CHECK(stored == tok.hash(), DataError,
                    "{}: stored hash {} but the contents hash to {}: the file was edited or "
                    "corrupted",
                    path, stored, tok.hash());
      return tok;
    }
    if (j.is_object() && j.contains("model") && j["model"].is_object())
      return finish(model_from_hf(j, path), path);
    const std::string bpe = sibling(path, "vocab.bpe");
    SHARDLM_CHECK(std::filesystem::exists(bpe), DataError,
                  "{}: looks like GPT-2's encoder.json, but {} (its merges) is not beside it", path,
                  bpe);
    return gpt2_files(path, bpe);
  }
  if (first_line.rfind("#version", 0) == 0) {
    const std::string enc = sibling(path, "encoder.json");
    SHARDLM_CHECK(std::filesystem::exists(enc), DataError,
                  "{}: looks like GPT-2's vocab.bpe, but {} (its vocabulary) is not beside it",
                  path, enc);
    return gpt2_files(enc, path);
  }
  if (looks_like_tiktoken_line(first_line)) {
    auto m = std::make_shared<TokenizerModel>();
    const size_t count = read_tiktoken_ranks(*m, text, path);
    m->kind = TokenizerModel::Kind::kRanks;
    m->whole_piece_lookup = true;
    // The pattern and special tokens: by file name, else by vocabulary size.
    const std::string file = std::filesystem::path(path).filename().string();
    const KnownEncoding* known = nullptr;
    for (const KnownEncoding& k : known_encodings())
      if (file.find(k.name) != std::string::npos) known = &k;
    if (known) {
      SHARDLM_CHECK(count == known->ranks, DataError,
                    "{}: {} ranks, but {} has {}: the file is truncated or not {}", path, count,
                    known->name, known->ranks, known->name);
    } else {
      for (const KnownEncoding& k : known_encodings())
        if (count == k.ranks) known = &k;
    }
    if (known) {
      m->pattern = known->pattern;
      for (const auto& [content, id] : known->specials) m->specials.push_back({content, id, {}});
      detail::assign_default_roles(m->specials);
    } else {
      core::log::warn(
          "{}: not a known tiktoken encoding: using the GPT-2 pattern, no special "
          "tokens (Tokenizer::from_tiktoken sets them)",
          path);
      m->pattern = "gpt2";
    }
    return finish(std::move(m), path);
  }
  SHARDLM_FAIL(DataError,
               "{}: not a tokenizer file (expected shardlm JSON, Hugging Face tokenizer.json, "
               "GPT-2 encoder.json/vocab.bpe or a .tiktoken rank file; line 1 is '{}')",
               path, first_line.substr(0, 80));
}

// ---- saving
// -----------------------------------------------------------------------------------------
std::string Tokenizer::to_json() const {
  const TokenizerModel& m = *model_;
  std::string s = "{\n";
  s += fmt::format("  \"format\": \"{}\",\n  \"version\": {},\n", kFormatName,
                   kTokenizerFormatVersion);
  s += fmt::format("  \"kind\": \"{}\",\n  \"whole_piece_lookup\": {},\n", kind(),
                   m.whole_piece_lookup ? "true" : "false");
  s += fmt::format("  \"pattern_name\": \"{}\",\n  \"pattern\": {},\n", pattern_name(),
                   json_str(m.pre.regex()));
  s += fmt::format("  \"vocab_size\": {},\n  \"hash\": \"{}\",\n", m.tokens.size(), m.digest);
  s += "  \"special_tokens\": [";
  for (size_t i = 0; i < m.specials.size(); ++i) {
    const SpecialToken& t = m.specials[i];
    s += fmt::format("{}\n    {{\"id\": {}, \"content\": {}, \"roles\": [", i ? "," : "", t.id,
                     json_str(t.content));
    for (size_t r = 0; r < t.roles.size(); ++r) s += (r ? ", " : "") + json_str(t.roles[r]);
    s += "]}";
  }
  s += m.specials.empty() ? "],\n" : "\n  ],\n";
  s += "  \"vocab\": {";
  bool first = true;
  for (uint32_t id = 0; id < m.tokens.size(); ++id) {
    if (m.token_kind[id] != TokenKind::kNormal) continue;
    s += fmt::format("{}\n    {}: {}", first ? "" : ",",
                     json_str(bytes_to_byte_level(m.tokens[id])), id);
    first = false;
  }
  s += "\n  },\n  \"merges\": [";
  for (size_t i = 0; i < m.merges.size(); ++i)
    s += fmt::format("{}\n    [{}, {}]", i ? "," : "", m.merges[i].left, m.merges[i].right);
  s += m.merges.empty() ? "]\n}\n" : "\n  ]\n}\n";
  return s;
}

void Tokenizer::save(const std::string& path) const {
  core::write_file_atomic<DataError>(path, to_json());
}

namespace {
// GPT-2-style merges of a "ranks" model, as tiktoken's files are converted for
// Hugging Face: each token's bytes merged with the pairs of lower rank must
// end in exactly two parts, which are its merge. Tokens that BPE cannot reach
// that way get no merge (whole_piece_lookup still finds them).
std::vector<std::pair<uint32_t, uint32_t>> derived_merges(const TokenizerModel& m) {
  std::vector<std::pair<uint32_t, uint32_t>> out;
  std::vector<uint32_t> parts;
  for (uint32_t id = 0; id < m.tokens.size(); ++id) {
    if (m.token_kind[id] != TokenKind::kNormal || m.tokens[id].size() < 2) continue;
    const std::string& t = m.tokens[id];
    parts.clear();
    for (unsigned char b : t) parts.push_back(m.byte_id[b]);
    while (parts.size() > 2) {
      size_t best = 0;
      uint32_t best_rank = detail::kNoRank;
      for (size_t i = 0; i + 1 < parts.size(); ++i) {
        const detail::PairInfo p = m.pair(parts[i], parts[i + 1]);
        if (p.rank < id && p.rank < best_rank) {
          best_rank = p.rank;
          best = i;
        }
      }
      if (best_rank == detail::kNoRank) break;
      parts[best] = m.pair(parts[best], parts[best + 1]).result;
      parts.erase(parts.begin() + static_cast<long>(best) + 1);
    }
    if (parts.size() == 2 && m.pair(parts[0], parts[1]).result == id)
      out.emplace_back(parts[0], parts[1]);
  }
  return out;
}
}  // namespace

std::string Tokenizer::to_hf_json() const {
  const TokenizerModel& m = *model_;
  std::string s = "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n";
  s += "  \"added_tokens\": [";
  for (size_t i = 0; i < m.specials.size(); ++i)
    s += fmt::format(
        "{}\n    {{\"id\": {}, \"content\": {}, \"single_word\": false, \"lstrip\": false, "
        "\"rstrip\": false, \"normalized\": false, \"special\": true}}",
        i ? "," : "", m.specials[i].id, json_str(m.specials[i].content));
  s += m.specials.empty() ? "],\n" : "\n  ],\n";
  s += "  \"normalizer\": null,\n";
  const std::string byte_level =
      "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, "
      "\"use_regex\": ";
  if (pattern_name() == "gpt2") {
    s += "  \"pre_tokenizer\": " + byte_level + "true},\n";
  } else {
    s += "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "
         "\"pattern\": {\"Regex\": " +
         json_str(m.pre.regex()) + "}, \"behavior\": \"Isolated\", \"invert\": false}, " +
         byte_level + "false}]},\n";
  }
  s += "  \"post_processor\": null,\n";
  s += "  \"decoder\": " + byte_level + "true},\n";
  s += fmt::format(
      "  \"model\": {{\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
      "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
      "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": {},\n",
      m.whole_piece_lookup ? "true" : "false");
  s += "    \"vocab\": {";
  bool first = true;
  for (uint32_t id = 0; id < m.tokens.size(); ++id) {
    if (m.token_kind[id] == TokenKind::kNone) continue;
    const std::string key =
        m.token_kind[id] == TokenKind::kSpecial ? m.tokens[id] : bytes_to_byte_level(m.tokens[id]);
    s += fmt::format("{}\n      {}: {}", first ? "" : ",", json_str(key), id);
    first = false;
  }
  s += "\n    },\n    \"merges\": [";
  std::vector<std::pair<uint32_t, uint32_t>> merges;
  if (m.kind == TokenizerModel::Kind::kMerges) {
    for (const Merge& mg : m.merges) merges.emplace_back(mg.left, mg.right);
  } else {
    merges = derived_merges(m);
  }
  for (size_t i = 0; i < merges.size(); ++i)
    s += fmt::format("{}\n      {}", i ? "," : "",
                     json_str(bytes_to_byte_level(m.tokens[merges[i].first]) + " " +
                              bytes_to_byte_level(m.tokens[merges[i].second])));
  s += "\n    ]\n  }\n}\n";
  return s;
}

void Tokenizer::save_hf(const std::string& path) const {
  core::write_file_atomic<DataError>(path, to_hf_json());
}

}  // namespace shardlm::data
