// The training batches of one rank: a data::Loader that a change of the
// micro-batch size (auto_batch, the dashboard's set_batch) reopens at the same
// position, and its place in a checkpoint ("loader").
#pragma once

#include <memory>
#include <vector>

#include "data/loader.h"
#include "runtime/state.h"

namespace shardlm::runtime {

class TrainData {
 public:
  TrainData(data::LoaderConfig cfg, int rank, int world);

  // The next `n` micro-batches of this rank.
  std::vector<data::Batch> next(int64_t n);
  // Reopens the loader with micro-batches of `b` rows, continuing with the
  // sample after the last one returned.
  void set_batch_size(int64_t b);
  int64_t batch_size() const { return cfg_.batch_size; }
  const data::LoaderConfig& config() const { return cfg_; }
  const data::Manifest& manifest() const { return loader_->manifest(); }

  StateSlot state_slot();  // "loader": data::LoaderState as JSON

 private:
  data::LoaderConfig cfg_;
  int rank_, world_;
  std::unique_ptr<data::Loader> loader_;
};

}  // namespace shardlm::runtime
