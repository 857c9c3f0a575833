// save_states / load_states (see state.h).
#include "runtime/state.h"

#include "core/error.h"

namespace shardlm::runtime {

nlohmann::json save_states(const std::vector<StateSlot>& slots) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& s : slots) out[s.key] = s.save();
  return out;
}

void load_states(const std::vector<StateSlot>& slots, const nlohmann::json& saved,
                 const std::string& where) {
  for (const auto& s : slots) {
    SHARDLM_CHECK(saved.contains(s.key), core::CheckpointError,
                  "{}: the checkpoint has no '{}' state (written by an older shardlm?)", where,
                  s.key);
    // nlohmann's type errors and core::json_int's out-of-range values alike
    const auto malformed = [&](const std::exception& e) {
      SHARDLM_FAIL(core::CheckpointError, "{}: the '{}' state is malformed: {}", where, s.key,
                   e.what());
    };
    try {
      s.load(saved.at(s.key));
    } catch (const nlohmann::json::exception& e) {
      malformed(e);
    } catch (const core::CheckpointError& e) {
      malformed(e);
    }
  }
}

}  // namespace shardlm::runtime
