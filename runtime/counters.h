// What a training run counts, and carries across a resume. To add a counter:
// declare the field and name it in the macro below; checkpoints save and
// restore it from then on (a checkpoint without it reads the default).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_int.h"

namespace shardlm::runtime {

struct Counters {
  int64_t step = 0;            // optimizer steps done
  int64_t tokens_seen = 0;     // target tokens trained on, over all ranks
  std::vector<double> losses;  // the global mean loss of every step
  double best_val_loss = 0;    // the best validation so far (its step: best_step)
  int64_t best_step = -1;
  double final_val_loss = 0;  // the latest validation's loss

  NLOHMANN_DEFINE_TYPE_INTRUSIVE_WITH_DEFAULT(Counters, step, tokens_seen, losses, best_val_loss,
                                              best_step, final_val_loss)

  std::string key() const { return "counters"; }
  nlohmann::json state() const { return *this; }
  void load_state(const nlohmann::json& j) {
    // nlohmann casts a float to an integer unchecked (undefined out of range)
    for (const char* k : {"step", "tokens_seen", "best_step"})
      if (j.contains(k))
        core::json_int<int64_t, core::CheckpointError>(j.at(k), std::string("counters.") + k);
    *this = j.get<Counters>();
  }
};

}  // namespace shardlm::runtime
