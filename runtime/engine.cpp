// Engine (see engine.h): flat parameters and gradients, DDP-style averaging
// over the process group, global clipping and the optimizer step.
#include "runtime/engine.h"

#include <chrono>

#include "model/activation_checkpoint.h"
#include "parallel/grad_clip.h"
#include "runtime/core/error.h"

namespace shardlm::runtime {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

Engine::Engine(model::GPT model, parallel::OptimizerConfig opt, parallel::ProcessGroup* group,
               torch::Device device)
    : model_(std::move(model)), opt_cfg_(std::move(opt)), group_(group), device_(device) {
  model_->to(device_);
  // Every rank starts from rank 0's parameters.
  if (group_ && group_->size() > 1) {
    torch::NoGradGuard no_grad;
    for (auto& p : model_->parameters()) {
      // Through host memory: the MPI group moves CPU tensors.
      auto buf = p.detach().to(torch::kCPU, torch::kFloat32).contiguous();
      group_->broadcast(buf, 0);
      p.copy_(buf);
    }
  }
  set_trainable([](const std::string&) { return true; });
}

void Engine::set_trainable(const std::function<bool(const std::string&)>& trainable) {
  std::vector<std::string> names;
  std::vector<torch::Tensor> params;
  for (auto& np : model_->named_parameters()) {
    bool on = trainable(np.key());
    np.value().set_requires_grad(on);
    if (!on) np.value().mutable_grad() = torch::Tensor();
    if (on) {
      names.push_back(np.key());
      params.push_back(np.value());
    }
  }
  if (names == names_ && optimizer_) return;
  // Keep the optimizer state of parameters that stay trainable.
  std::map<std::string, torch::Tensor> kept;
  if (optimizer_ && optimizer_->steps() > 0) kept = optimizer_state();
  names_ = std::move(names);
  params_ = std::move(params);
  rebuild();
  if (!kept.empty()) load_optimizer_state(kept);
}

void Engine::rebuild() {
  SHARDLM_CHECK(!params_.empty(), core::ConfigError, "no trainable parameters");
  // One flat buffer for this rank (DDP: every rank holds and steps all of it).
  flat_ = std::make_unique<parallel::FlatParams>(params_, names_, 1, device_);
  grad_ = torch::zeros_like(flat_->flat());
  auto pviews = flat_->views(flat_->flat());
  auto gviews = flat_->views(grad_);
  for (size_t i = 0; i < params_.size(); ++i) {
    params_[i].set_data(pviews[i]);
    params_[i].mutable_grad() = gviews[i];
  }
  optimizer_ = parallel::make_optimizer(opt_cfg_);
  optimizer_->set_segments(flat_->shard_segments(0));
}

model::BlockRunner Engine::block_runner(bool activation_checkpointing) const {
  if (!activation_checkpointing) return {};
  return [](int64_t, const model::BlockFn& run_block, const torch::Tensor& x) {
    return model::checkpoint(run_block, x);
  };
}

void Engine::zero_grad() {
  grad_.zero_();
  // Autograd may have replaced a gradient tensor (e.g. after set_trainable);
  // re-point every parameter's gradient at its view of the flat buffer.
  auto gviews = flat_->views(grad_);
  for (size_t i = 0; i < params_.size(); ++i)
    if (!params_[i].grad().defined() || !params_[i].grad().is_same(gviews[i]))
      params_[i].mutable_grad() = gviews[i];
}

void Engine::reduce() {
  auto t0 = std::chrono::steady_clock::now();
  // A gradient autograd wrote elsewhere (should not happen) is copied back in.
  auto gviews = flat_->views(grad_);
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& g = params_[i].grad();
    if (g.defined() && !g.is_same(gviews[i])) {
      gviews[i].copy_(g);
      params_[i].mutable_grad() = gviews[i];
    }
  }
  if (group_ && group_->size() > 1) group_->all_reduce(grad_, parallel::ReduceOp::kAvg);
  reduce_s_ = seconds_since(t0);
}

double Engine::clip(double max_norm) {
  if (max_norm <= 0) return parallel::global_grad_norm({grad_}, nullptr);
  return parallel::clip_grad_norm(std::vector<torch::Tensor>{grad_}, max_norm);
}

void Engine::step(double lr) {
  optimizer_->set_lr(lr);
  torch::NoGradGuard no_grad;
  optimizer_->step(flat_->flat(), grad_);
}

int64_t Engine::model_state_bytes() const {
  if (!flat_) return 0;
  return flat_->flat().numel() * 4 + grad_.numel() * 4 + optimizer_->state_bytes();
}

std::map<std::string, torch::Tensor> Engine::optimizer_state() const {
  std::map<std::string, torch::Tensor> out;
  auto dense = optimizer_->dense_state();
  for (const char* key : {"exp_avg", "exp_avg_sq"}) {
    auto it = dense.find(key);
    if (it == dense.end()) continue;
    auto views = flat_->views(it->second);
    for (size_t i = 0; i < names_.size(); ++i)
      out[std::string(key) + "/" + names_[i]] = views[i].clone();
  }
  out["step"] = dense.count("step") ? dense.at("step") : torch::tensor(optimizer_->steps());
  return out;
}

void Engine::load_optimizer_state(const std::map<std::string, torch::Tensor>& state) {
  parallel::StateDict dense;
  for (const char* key : {"exp_avg", "exp_avg_sq"}) {
    auto buf = torch::zeros_like(flat_->flat());
    auto views = flat_->views(buf);
    for (size_t i = 0; i < names_.size(); ++i) {
      auto it = state.find(std::string(key) + "/" + names_[i]);
      if (it != state.end()) views[i].copy_(it->second.view(views[i].sizes()));
    }
    dense[key] = buf;
  }
  auto it = state.find("step");
  dense["step"] = it != state.end() ? it->second : torch::tensor(int64_t{0});
  optimizer_->load_dense_state(dense);
}

}  // namespace shardlm::runtime
