// prepare_completion (completion.h): from a parsed request to the engine's Job.
#include "serve/completion.h"

#include <fmt/format.h>

namespace shardlm::serve {

PreparedCompletion prepare_completion(const CompletionRequest& r, const data::Tokenizer& tok,
                                      const ModelInfo& mi, const ServeConfig& cfg) {
  PreparedCompletion out;
  Job& job = out.job;
  job.n = r.n;
  job.params = r.params;
  for (size_t i = 0; i < r.prompts.size(); ++i) {
    const PromptInput& p = r.prompts[i];
    std::vector<int64_t> ids = p.ids;
    const std::string field = r.prompts.size() == 1 ? "prompt" : fmt::format("prompt[{}]", i);
    if (!p.is_ids) {
      auto v = tok.encode(p.text);
      ids.assign(v.begin(), v.end());
    }
    for (size_t t = 0; t < ids.size(); ++t)
      if (ids[t] >= mi.vocab_size)
        throw RequestError(400,
                           fmt::format("{} token {} is id {}, outside the vocabulary [0, {})",
                                       field, t, ids[t], mi.vocab_size),
                           "prompt");
    const auto len = static_cast<int64_t>(ids.size());
    if (len >= mi.context_length)
      throw RequestError(400,
                         fmt::format("{} has {} tokens; this model's context is {} tokens "
                                     "(prompt + max_tokens): shorten the prompt",
                                     field, len, mi.context_length),
                         "prompt");
    if (len + r.params.max_tokens > mi.context_length)
      throw RequestError(
          400,
          fmt::format("max_tokens is {}, but {} has {} tokens and this model's context is {} "
                      "tokens: max_tokens may be at most {}",
                      r.params.max_tokens, field, len, mi.context_length, mi.context_length - len),
          "max_tokens");
    out.prompt_tokens += len;
    job.prompts.push_back(std::move(ids));
  }
  const int64_t most = int64_t{cfg.max_batch} * 16;
  if (job.rows() > most)
    throw RequestError(400,
                       fmt::format("{} prompts x n {} = {} rows; at most {} per request",
                                   r.prompts.size(), r.n, job.rows(), most),
                       "n");
  // Deterministic requests are cached, streamed or not (the stream changes how
  // the answer is sent, not what it is).
  if (r.params.deterministic() && cfg.cache_entries > 0)
    out.cache_key = dump({{"model", mi.source},
                          {"prompts", job.prompts},
                          {"n", r.n},
                          {"params", r.params.to_json()}});
  return out;
}

}  // namespace shardlm::serve
