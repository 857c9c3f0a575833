// Engine (see engine.h): the GPT cut into units for parallel::ShardedModel.
#include "runtime/engine.h"

#include "core/error.h"
#include "model/activation_checkpoint.h"

namespace shardlm::runtime {

Engine::Engine(model::GPT model, parallel::ShardedConfig sharding, parallel::OptimizerConfig opt,
               std::shared_ptr<parallel::ProcessGroup> group, torch::Device device)
    : model_(std::move(model)), group_(std::move(group)), weight_decay_(opt.weight_decay) {
  model_->to(device);
  std::vector<std::shared_ptr<torch::nn::Module>> units;
  for (const auto& block : *model_->blocks) units.push_back(block);
  sharded_ = std::make_unique<parallel::ShardedModel>(model_.ptr(), std::move(units), group_,
                                                      sharding, std::move(opt));
}

void Engine::set_trainable_top_blocks(int64_t k) {
  trainable_k_ = k;
  int64_t n = static_cast<int64_t>(model_->blocks->size());
  for (int64_t i = 0; i < n; ++i) sharded_->set_frozen(static_cast<size_t>(i), i < n - k);
}

model::BlockRunner Engine::block_runner(bool activation_checkpointing) {
  parallel::ShardedModel* sm = sharded_.get();
  return [sm, activation_checkpointing](int64_t layer, const model::BlockFn& run_block,
                                        const torch::Tensor& x) {
    if (!activation_checkpointing) return sm->run_unit(static_cast<size_t>(layer), x, run_block);
    return sm->run_unit(static_cast<size_t>(layer), x, [&run_block](const torch::Tensor& h) {
      return model::checkpoint(run_block, h);
    });
  };
}

torch::Tensor Engine::step(double lr, double clip) {
  sharded_->set_lr(lr);
  return sharded_->step(clip);
}

void Engine::set_weight_decay(double wd) {
  weight_decay_ = wd;
  for (size_t i = 0; i < sharded_->num_units(); ++i)
    sharded_->unit_optimizer(i).set_weight_decay(wd);
}

}  // namespace shardlm::runtime
