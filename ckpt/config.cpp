// Reading and checking [ckpt].
#include "ckpt/config.h"

namespace shardlm::ckpt {

CheckpointConfig CheckpointConfig::from(const core::ConfigSection& s) {
  CheckpointConfig c;
  c.every = s.get("every", c.every);
  c.keep_last = s.get("keep_last", c.keep_last);
  c.keep_best = s.get("keep_best", c.keep_best);
  c.keep_every = s.get("keep_every", c.keep_every);
  c.async = s.get("async", c.async);
  c.save_final = s.get("save_final", c.save_final);
  c.resume = s.get("resume", c.resume);
  return c;
}

void CheckpointConfig::validate() const {
  using core::config_require;
  config_require(every >= 0, "every", std::to_string(every),
                 "an integer >= 0 (0 = at the end only)");
  config_require(keep_last >= 1, "keep_last", std::to_string(keep_last), "an integer >= 1");
  config_require(keep_best >= 0, "keep_best", std::to_string(keep_best), "an integer >= 0");
  config_require(keep_every >= 0, "keep_every", std::to_string(keep_every), "an integer >= 0");
}

}  // namespace shardlm::ckpt
