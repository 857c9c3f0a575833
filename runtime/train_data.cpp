// TrainData (see train_data.h).
#include "runtime/train_data.h"

namespace shardlm::runtime {

TrainData::TrainData(data::LoaderConfig cfg, int rank, int world)
    : cfg_(std::move(cfg)),
      rank_(rank),
      world_(world),
      loader_(std::make_unique<data::Loader>(cfg_, rank, world)) {}

std::vector<data::Batch> TrainData::next(int64_t n) {
  std::vector<data::Batch> out;
  out.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out.push_back(loader_->next());
  return out;
}

void TrainData::set_batch_size(int64_t b) {
  if (b == cfg_.batch_size) return;
  // The loader's batch size is fixed per Loader: reopen at the same position.
  auto st = loader_->state();
  cfg_.batch_size = b;
  loader_ = std::make_unique<data::Loader>(cfg_, rank_, world_);
  loader_->load_state(st);
}

StateSlot TrainData::state_slot() {
  return {
      "loader", [this] { return loader_->state().to_json(); },
      [this](const nlohmann::json& j) { loader_->load_state(data::LoaderState::from_json(j)); }};
}

}  // namespace shardlm::runtime
