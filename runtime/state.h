// The state protocol: what a checkpoint holds beside the model is a list of
// parts, each saved under its key. A part either implements
//   std::string key() const;  nlohmann::json state() const;  void load_state(const json&);
// (Counters, EarlyStopping, Controls) or is adapted by a StateSlot built from
// two functions (the loader, the LR schedule, the loss scaler, which keep
// their own state types). Trainer::Impl::resumables() lists them; saving and
// restoring is one loop over that list (save_states / load_states).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace shardlm::runtime {

struct StateSlot {
  std::string key;
  std::function<nlohmann::json()> save;
  std::function<void(const nlohmann::json&)> load;

  // A slot for an object with key(), state() and load_state(json).
  template <class T>
  static StateSlot of(T& part) {
    return {part.key(), [&part] { return part.state(); },
            [&part](const nlohmann::json& j) { part.load_state(j); }};
  }
};

// {key: state} of every slot.
nlohmann::json save_states(const std::vector<StateSlot>& slots);
// Restores every slot from `saved` (as save_states wrote it); throws
// core::CheckpointError naming `where` and the missing key.
void load_states(const std::vector<StateSlot>& slots, const nlohmann::json& saved,
                 const std::string& where);

}  // namespace shardlm::runtime
