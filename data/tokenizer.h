// shardlm's byte-level BPE tokenizer, written here: train, encode, decode,
// save and load (own JSON, GPT-2's encoder.json + vocab.bpe, tiktoken rank
// files, Hugging Face tokenizer.json). Exact against GPT-2 and tiktoken's
// r50k/cl100k/o200k. Torch-free, so that everything using it compiles fast.
//
//   auto tok = Tokenizer::load(".cache/reference/.../r50k_base.tiktoken");
//   std::vector<uint32_t> ids = tok.encode("Hello world");   // {15496, 995}
//   std::string text = tok.decode(ids);
//
// How encoding works (docs/tokenizer.md has the long version):
//   1. special tokens (only when allowed) cut the text into segments;
//   2. the pre-tokenizer regex cuts each segment into pieces ("Hello", " world");
//   3. each piece becomes ids by BPE: start from one token per byte, then merge
//      the adjacent pair of lowest rank until no pair can merge; a per-thread
//      cache remembers the ids of pieces already seen.
// A Tokenizer is immutable and cheap to copy (shared state); every method is
// thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace shardlm::data {

namespace detail {
struct TokenizerModel;
}

// A token matched as a whole in the input (when allowed) and never produced by
// BPE. `roles` names what it is for: "pad", "unk", "bos", "eos" (or none).
struct SpecialToken {
  std::string content;
  uint32_t id = 0;
  std::vector<std::string> roles;
};

class Tokenizer {
 public:
  // Bytes only: 256 tokens (id = byte value), GPT-2 pattern, no merges.
  Tokenizer();
  explicit Tokenizer(std::shared_ptr<const detail::TokenizerModel> model);

  // ---- loading and saving ----------------------------------------------------------
  // Detects the format from the contents: shardlm JSON, Hugging Face
  // tokenizer.json, a .tiktoken rank file (pattern and special tokens from the
  // file name or vocabulary size: r50k, p50k, cl100k, o200k), or GPT-2's
  // encoder.json / vocab.bpe (the other file is taken from the same folder).
  // Throws DataError naming the file and the line or byte offset of bad input.
  static Tokenizer load(const std::string& path);
  static Tokenizer from_gpt2_files(const std::string& encoder_json, const std::string& vocab_bpe);
  // A .tiktoken file with an explicit pattern (name or regex) and special tokens.
  static Tokenizer from_tiktoken(const std::string& path, const std::string& pattern,
                                 const std::vector<SpecialToken>& specials);
  // shardlm's own versioned JSON (with a digest checked on load); written
  // atomically (temporary file + rename), so a failed save leaves the old file.
  void save(const std::string& path) const;
  // Hugging Face tokenizer.json (BPE model, byte-level pre-tokenizer).
  void save_hf(const std::string& path) const;
  std::string to_json() const;
  std::string to_hf_json() const;

  // ---- encoding and decoding -------------------------------------------------------------
  // Token ids of `text` (any bytes). With allow_special, the contents of special
  // tokens in the text become those tokens; without, they are ordinary text.
  std::vector<uint32_t> encode(std::string_view text, bool allow_special = false) const;
  // Appends the ids of `text` to `out`.
  void encode_into(std::string_view text, std::vector<uint32_t>& out,
                   bool allow_special = false) const;
  // encode() of one long text on `threads` threads (0 = all cores): the text
  // is cut at places where the pre-tokenizer never joins across (see
  // Pretokenizer::has_safe_cuts), so the ids are exactly those of encode().
  // Custom patterns, and special tokens that contain a newline, run on one thread.
  std::vector<uint32_t> encode_parallel(std::string_view text, int threads = 0,
                                        bool allow_special = false) const;
  // encode() of each text on `threads` threads (0 = all cores).
  std::vector<std::vector<uint32_t>> encode_batch(const std::vector<std::string>& texts,
                                                  int threads = 0,
                                                  bool allow_special = false) const;
  // The text of `ids`; byte sequences that are not valid UTF-8 become U+FFFD.
  // Throws DataError naming the first id that is not in the vocabulary.
  std::string decode(const std::vector<uint32_t>& ids) const;
  // The exact bytes of `ids` (decode_bytes(encode(x)) == x for any bytes x).
  std::string decode_bytes(const std::vector<uint32_t>& ids) const;
  // decode_bytes for a model's output: ids the tokenizer lacks (a model
  // vocabulary padded past the tokenizer's, e.g. to a multiple of 64) have no
  // text and are skipped instead of refused.
  std::string decode_model_ids(const std::vector<int64_t>& ids) const;

  // ---- vocabulary ------------------------------------------------------------------------
  // One more than the largest id (ids without a token in between count too,
  // as in tiktoken's cl100k).
  size_t vocab_size() const;
  bool is_token(uint32_t id) const;
  // The bytes of a token (a special token's content); throws DataError for an unknown id.
  const std::string& token_bytes(uint32_t id) const;
  // The id of an ordinary token with exactly these bytes.
  std::optional<uint32_t> token_id(std::string_view bytes) const;
  size_t num_merges() const;
  // A special token by content ("<|endoftext|>") or by role ("eos").
  std::optional<uint32_t> special_id(const std::string& name) const;
  std::optional<uint32_t> eos_id() const;
  std::optional<uint32_t> bos_id() const;
  std::optional<uint32_t> pad_id() const;
  std::optional<uint32_t> unk_id() const;
  const std::vector<SpecialToken>& special_tokens() const;

  const std::string& pattern() const;  // the pre-tokenizer regex
  std::string pattern_name() const;    // "gpt2", "cl100k", "o200k" or "custom"
  // "merges" (GPT-2 style: ranked pairs) or "ranks" (tiktoken: any adjacent
  // pair whose concatenation is a token merges, by that token's rank).
  std::string kind() const;
  // Stable hex digest (XXH3-128) of vocabulary, merges, pattern and special tokens.
  std::string hash() const;
  // Where it came from: a path, or "trained", or "bytes".
  const std::string& source() const;

  const detail::TokenizerModel& model() const { return *model_; }

 private:
  static Tokenizer load_any(const std::string& path);
  static Tokenizer gpt2_files(const std::string& encoder_json, const std::string& vocab_bpe);
  std::shared_ptr<const detail::TokenizerModel> model_;
};

// ---- training ----------------------------------------------------------------------------------
struct TokenizerTrainOptions {
  size_t vocab_size = 0;         // total, with the 256 byte tokens and the special tokens
  size_t min_frequency = 2;      // a pair seen fewer times is never merged
  std::string pattern = "gpt2";  // name (gpt2, cl100k, o200k) or regex
  std::vector<std::string> special_tokens;  // user-defined, after the four below
  int threads = 0;                          // 0 = all cores
  bool progress = true;                     // progress bar on a terminal (stderr)
  // Special tokens with a role, reserved first (ids 0..3); "" leaves one out.
  std::string pad_token = "<|pad|>";
  std::string unk_token = "<|unk|>";
  std::string bos_token = "<|bos|>";
  std::string eos_token = "<|endoftext|>";
  // Files are read in blocks of this many bytes (cut at safe line ends).
  size_t read_block_bytes = 32 << 20;

  void validate() const;  // throws ConfigError naming the field
};

// Trains on the files named by `input_paths` (files, directories read
// recursively, or glob patterns). Ids: special tokens first, then the 256
// bytes, then one per merge. Deterministic: the same corpus and options give
// the same tokenizer whatever the thread count. Throws DataError when an input
// is missing or no file is found.
Tokenizer train_tokenizer(const TokenizerTrainOptions& options,
                          const std::vector<std::string>& input_paths);
// The same on texts in memory (tests, small corpora).
Tokenizer train_tokenizer_on_texts(const TokenizerTrainOptions& options,
                                   const std::vector<std::string>& texts);

}  // namespace shardlm::data
