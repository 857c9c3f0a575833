// Fuzz target tokenizer_load: Tokenizer::load on one file (shardlm JSON,
// Hugging Face tokenizer.json, a .tiktoken rank file, GPT-2's encoder.json
// with its vocab.bpe beside it), or from_gpt2_files on two (the input cut at
// fuzz::kFileSeparator). A tokenizer that loads must round-trip bytes,
// re-save and re-load to the same hash, and export to Hugging Face's format
// and back to the same ids.
#include <string>

#include "data/tokenizer.h"
#include "data/utf8.h"
#include "fuzz/fuzz_target.h"

using namespace shardlm;

namespace {

void exercise(const data::Tokenizer& tok, std::string_view input) {
  const std::string text(input.substr(0, 2048));
  for (bool special : {false, true}) {
    const std::vector<uint32_t> ids = tok.encode(text, special);
    for (uint32_t id : ids)
      SHARDLM_FUZZ_CHECK(tok.is_token(id), "encode gave id " + std::to_string(id));
    SHARDLM_FUZZ_CHECK(tok.decode_bytes(ids) == text, "decode_bytes(encode(x)) != x");
    const std::string shown = tok.decode(ids);
    SHARDLM_FUZZ_CHECK(data::utf8_valid_prefix(shown) == shown.size(), "decode is not UTF-8");
  }
  // shardlm's own format keeps everything: the same hash after a save and a load.
  const std::string own = fuzz::scratch_file("resaved.json", "");
  tok.save(own);
  const data::Tokenizer again = data::Tokenizer::load(own);
  SHARDLM_FUZZ_CHECK(again.hash() == tok.hash(), "save/load changed the hash");
  // Hugging Face's format: the same ids for the text (GPT-2-style merges only:
  // a tiktoken model's tokens that no merge reaches are found whole by
  // shardlm, which Hugging Face's BPE has no way to say).
  if (tok.kind() != "merges") return;
  const std::string hf = fuzz::scratch_file("exported/tokenizer.json", "");
  tok.save_hf(hf);
  const data::Tokenizer from_hf = data::Tokenizer::load(hf);
  SHARDLM_FUZZ_CHECK(from_hf.encode(text) == tok.encode(text), "HF export encodes differently");
}

}  // namespace

SHARDLM_FUZZ_TARGET(tokenizer_load) {
  static const bool init = [] {
    fuzz::quiet_logs();
    fuzz::scratch_subdir("exported");
    return true;
  }();
  (void)init;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto parts = fuzz::split_files(input, 2);
  const std::string dir = fuzz::scratch_subdir("in");
  if (parts.size() == 2) {
    // GPT-2's pair: by either file (the other is found beside it) and explicitly.
    const std::string enc = dir + "/encoder.json", bpe = dir + "/vocab.bpe";
    fuzz::scratch_file("in/encoder.json", parts[0]);
    fuzz::scratch_file("in/vocab.bpe", parts[1]);
    data::Tokenizer tok;
    if (fuzz::expect_errors([&] { tok = data::Tokenizer::from_gpt2_files(enc, bpe); }, dir))
      exercise(tok, parts[1]);
    fuzz::expect_errors([&] { data::Tokenizer::load(bpe); }, dir);
    return 0;
  }
  // One file: the name decides nothing but the tiktoken encoding's defaults.
  const std::string path = fuzz::scratch_file("in/tokenizer", input);
  data::Tokenizer tok;
  if (fuzz::expect_errors([&] { tok = data::Tokenizer::load(path); }, dir)) exercise(tok, input);
  return 0;
}
