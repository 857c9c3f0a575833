// Fuzz target tokenizer_roundtrip: encode -> decode on arbitrary bytes, the
// round trip being the oracle (decode_bytes(encode(x)) == x, with and without
// special tokens), through four tokenizers: bytes only, a small BPE trained
// here with special tokens, and tiktoken's cl100k_base and o200k_base (their
// regexes are the hardest pre-tokenizer paths) when the reference files are
// present (scripts/fetch_reference.sh; SHARDLM_REFERENCE_DIR overrides where).
// The first input byte picks the tokenizer and the flags, the rest is the text.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "data/utf8.h"
#include "fuzz/fuzz_target.h"

using namespace shardlm;

#ifndef SHARDLM_REFERENCE_DIR
#define SHARDLM_REFERENCE_DIR ""
#endif

namespace {

const char kTrainText[] =
    "In the beginning God created the heaven and the earth. And the earth was without form, "
    "and void; and darkness was upon the face of the deep. It's 2024: don't, won't, we've "
    "\xc3\xa9t\xc3\xa9 \xe4\xb8\x96\xe7\x95\x8c 12345 \t\r\n  <|endoftext|> the the the";

std::vector<data::Tokenizer> tokenizers() {
  std::vector<data::Tokenizer> out;
  out.emplace_back();  // bytes only
  data::TokenizerTrainOptions o;
  o.vocab_size = 300;
  o.min_frequency = 1;
  o.threads = 1;
  o.progress = false;
  o.special_tokens = {"<|user|>", "\n\n<|sep|>"};  // one with newlines: encode_parallel's caveat
  out.push_back(data::train_tokenizer_on_texts(o, {kTrainText, kTrainText}));
  std::string ref = SHARDLM_REFERENCE_DIR;
  if (const char* env = std::getenv("SHARDLM_REFERENCE_DIR")) ref = env;
  for (const char* name : {"cl100k_base", "o200k_base"}) {
    const std::string path = ref + "/gpt-tokenizer/data/" + name + ".tiktoken";
    if (!ref.empty() && std::filesystem::exists(path)) out.push_back(data::Tokenizer::load(path));
  }
  return out;
}

const std::vector<data::Tokenizer>& the_tokenizers() {
  static const std::vector<data::Tokenizer> toks = [] {
    fuzz::quiet_logs();
    return tokenizers();
  }();
  return toks;
}

}  // namespace

#ifdef SHARDLM_FUZZ_LIBFUZZER
// Loading the tiktoken files takes tens of seconds under ASan on a busy
// machine: done before the first input, so libFuzzer's -timeout does not count it.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)the_tokenizers();
  return 0;
}
#endif

SHARDLM_FUZZ_TARGET(tokenizer_roundtrip) {
  const std::vector<data::Tokenizer>& toks = the_tokenizers();
  if (size == 0) return 0;
  const data::Tokenizer& tok = toks[data[0] % toks.size()];
  const bool special = (data[0] >> 4) & 1;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);

  const std::vector<uint32_t> ids = tok.encode(text, special);
  for (uint32_t id : ids) {
    SHARDLM_FUZZ_CHECK(tok.is_token(id), "encode gave unknown id " + std::to_string(id));
    if (!special)
      for (const data::SpecialToken& s : tok.special_tokens())
        SHARDLM_FUZZ_CHECK(s.id != id, "special token " + s.content + " without allow_special");
  }
  SHARDLM_FUZZ_CHECK(tok.decode_bytes(ids) == text, "decode_bytes(encode(x)) != x");
  const std::string shown = tok.decode(ids);
  SHARDLM_FUZZ_CHECK(data::utf8_valid_prefix(shown) == shown.size(), "decode is not valid UTF-8");
  // encode_into appends: the same ids after a prefix.
  std::vector<uint32_t> more = {0};
  tok.encode_into(text, more, special);
  SHARDLM_FUZZ_CHECK(
      more.size() == ids.size() + 1 && std::equal(ids.begin(), ids.end(), more.begin() + 1),
      "encode_into differs from encode");
  // A batch of the halves is the halves encoded one by one (the per-thread cache).
  const std::vector<std::string> halves = {text.substr(0, text.size() / 2),
                                           text.substr(text.size() / 2)};
  const auto batch = tok.encode_batch(halves, 1, special);
  SHARDLM_FUZZ_CHECK(batch.size() == 2 && batch[0] == tok.encode(halves[0], special) &&
                         batch[1] == tok.encode(halves[1], special),
                     "encode_batch differs from encode");
  return 0;
}
