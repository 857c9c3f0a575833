// When a generated sequence ends (EOS, stop token sequences, stop strings) and
// how its text is streamed safely (whole UTF-8 characters, never a stop string).
// Torch-free: the generator, the CLI and the server share it. model/ does not
// know the tokenizer, so text comes from a DecodeFn the caller provides
// (data::Tokenizer::decode_bytes).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_set>
#include <vector>

#include "model/generation_config.h"

namespace shardlm::model {

// The exact bytes of a token sequence; decode(a ++ b) must equal decode(a) + decode(b)
// (true of byte-level BPE).
using DecodeFn = std::function<std::string(const std::vector<int64_t>&)>;

enum class FinishReason {
  kNone,      // still running
  kEos,       // produced an EOS id
  kStop,      // output ends with a stop token sequence or contains a stop string
  kLength,    // max_new_tokens, or the model's context_length (learned positions)
  kCallback,  // the streaming callback asked to stop
};
const char* to_string(FinishReason r);

class StopCriteria {
 public:
  // Throws ConfigError when cfg has stop strings but `decode` is empty.
  StopCriteria(const GenerationConfig& cfg, DecodeFn decode = {});
  // Whether the output so far (newest token last) ends here: kEos, kStop or kNone.
  // `matched` receives the stop string, or the ids of a stop sequence as text.
  // Only occurrences that end in the newest token are found (checked every step).
  FinishReason check(const std::vector<int64_t>& generated, std::string* matched = nullptr) const;
  bool empty() const { return eos_.empty() && sequences_.empty() && strings_.empty(); }

 private:
  std::unordered_set<int64_t> eos_;
  std::vector<std::vector<int64_t>> sequences_;
  std::vector<std::string> strings_;
  size_t longest_string_ = 0;  // bytes; a token has >= 1 byte, so that many tokens suffice
  DecodeFn decode_;
};

// The printable text of a growing token sequence. push() returns only text that
// is final: whole UTF-8 characters, and never the start of a stop string until
// it is known not to become one. Once a stop string appears, nothing from it on
// is returned and stopped() is true.
class TextStream {
 public:
  explicit TextStream(DecodeFn decode, std::vector<std::string> stop_strings = {});
  std::string push(int64_t token);  // the text now safe to print (maybe "")
  std::string finish();             // what is still held back (nothing after a stop)
  bool stopped() const { return stopped_; }
  const std::string& text() const { return emitted_; }  // everything returned so far

 private:
  std::string release(bool at_end);
  DecodeFn decode_;
  std::vector<std::string> stops_;
  std::string pending_;  // decoded bytes not yet returned
  std::string emitted_;
  bool stopped_ = false;
};

}  // namespace shardlm::model
