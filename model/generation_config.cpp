// GenerationConfig: reading, validation and JSON. No LibTorch here.
#include "model/generation_config.h"

#include <cmath>

namespace shardlm::model {

using core::config_require;

namespace {
std::string value_text(double v) {
  return fmt::format("{}", v);
}
std::string value_text(int64_t v) {
  return std::to_string(v);
}
}  // namespace

GenerationConfig GenerationConfig::from(const core::ConfigSection& s) {
  GenerationConfig c;
  c.strategy = s.get("strategy", c.strategy);
  c.max_new_tokens = s.get("max_new_tokens", c.max_new_tokens);
  c.num_return_sequences = s.get("num_return_sequences", c.num_return_sequences);
  c.temperature = s.get("temperature", c.temperature);
  c.top_k = s.get("top_k", c.top_k);
  c.top_p = s.get("top_p", c.top_p);
  c.min_p = s.get("min_p", c.min_p);
  c.repetition_penalty = s.get("repetition_penalty", c.repetition_penalty);
  c.frequency_penalty = s.get("frequency_penalty", c.frequency_penalty);
  c.presence_penalty = s.get("presence_penalty", c.presence_penalty);
  c.num_beams = s.get("num_beams", c.num_beams);
  c.length_penalty = s.get("length_penalty", c.length_penalty);
  c.early_stopping = s.get("early_stopping", c.early_stopping);
  c.eos_ids = s.get("eos_ids", c.eos_ids);
  c.stop_strings = s.get("stop", c.stop_strings);
  c.seed = s.get("seed", c.seed);
  c.use_cache = s.get("use_cache", c.use_cache);
  c.pad_id = s.get("pad_id", c.pad_id);
  return c;
}

void GenerationConfig::validate() const {
  config_require(strategy == "greedy" || strategy == "sample" || strategy == "beam", "strategy",
                 strategy, "one of greedy, sample, beam");
  config_require(max_new_tokens > 0, "max_new_tokens", value_text(max_new_tokens),
                 "a positive integer");
  config_require(num_return_sequences > 0, "num_return_sequences", value_text(num_return_sequences),
                 "a positive integer");
  if (strategy == "greedy")
    config_require(num_return_sequences == 1, "num_return_sequences",
                   value_text(num_return_sequences),
                   "1 with strategy = \"greedy\" (every greedy sequence is the same)");
  config_require(temperature >= 0 && std::isfinite(temperature), "temperature",
                 value_text(temperature), "a finite number >= 0 (0 = greedy)");
  config_require(top_k >= 0, "top_k", value_text(top_k), "an integer >= 0 (0 = off)");
  config_require(top_p > 0 && top_p <= 1, "top_p", value_text(top_p), "a probability in (0, 1]");
  config_require(min_p >= 0 && min_p <= 1, "min_p", value_text(min_p), "a fraction in [0, 1]");
  config_require(repetition_penalty > 0 && std::isfinite(repetition_penalty), "repetition_penalty",
                 value_text(repetition_penalty),
                 "a positive factor (1 = off, > 1 discourages repeats)");
  config_require(std::isfinite(frequency_penalty), "frequency_penalty",
                 value_text(frequency_penalty), "a finite number");
  config_require(std::isfinite(presence_penalty), "presence_penalty", value_text(presence_penalty),
                 "a finite number");
  config_require(num_beams > 0, "num_beams", value_text(num_beams), "a positive integer");
  if (strategy == "beam")
    config_require(num_return_sequences <= num_beams, "num_return_sequences",
                   value_text(num_return_sequences),
                   fmt::format("at most num_beams = {} with beam search", num_beams));
  config_require(std::isfinite(length_penalty), "length_penalty", value_text(length_penalty),
                 "a finite exponent");
  for (int64_t id : eos_ids) config_require(id >= 0, "eos_ids", value_text(id), "token ids >= 0");
  for (const auto& seq : stop_token_sequences) {
    config_require(!seq.empty(), "stop_token_sequences", "[]", "non-empty id sequences");
    for (int64_t id : seq)
      config_require(id >= 0, "stop_token_sequences", value_text(id), "token ids >= 0");
  }
  for (const auto& s : stop_strings)
    config_require(!s.empty(), "stop", "\"\"", "non-empty stop strings");
  config_require(seed >= -1, "seed", value_text(seed), "a seed >= 0, or -1 for a random one");
  config_require(pad_id >= 0, "pad_id", value_text(pad_id), "a token id >= 0");
}

nlohmann::json GenerationConfig::to_json() const {
  return {{"strategy", strategy},
          {"max_new_tokens", max_new_tokens},
          {"num_return_sequences", num_return_sequences},
          {"temperature", temperature},
          {"top_k", top_k},
          {"top_p", top_p},
          {"min_p", min_p},
          {"repetition_penalty", repetition_penalty},
          {"frequency_penalty", frequency_penalty},
          {"presence_penalty", presence_penalty},
          {"num_beams", num_beams},
          {"length_penalty", length_penalty},
          {"early_stopping", early_stopping},
          {"eos_ids", eos_ids},
          {"stop_token_sequences", stop_token_sequences},
          {"stop", stop_strings},
          {"seed", seed},
          {"use_cache", use_cache},
          {"pad_id", pad_id}};
}

}  // namespace shardlm::model
