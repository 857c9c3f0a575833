// Activation checkpointing as a custom autograd function (see the header).
//
// forward:  y = fn(x) under no-grad; save x, the RNG state and autocast state.
// backward: restore RNG + autocast, x' = x.detach().requires_grad_(),
//           y' = fn(x'), backward(y', dy) — this accumulates the parameters'
//           gradients exactly as the direct graph would — and return x'.grad.
#include "model/activation_checkpoint.h"

#include <ATen/core/ivalue.h>

#include "model/autocast.h"

namespace shardlm::model {

namespace {

// Holds the callable across forward and backward (IValue capsule).
struct FnHolder : torch::CustomClassHolder {
  explicit FnHolder(BlockFn f) : fn(std::move(f)) {}
  BlockFn fn;
};

class CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x,
                               c10::intrusive_ptr<FnHolder> holder) {
    ctx->saved_data["fn"] = c10::IValue::make_capsule(holder);
    ctx->saved_data["cpu_rng"] = at::detail::getDefaultCPUGenerator().get_state();
    bool cuda = x.is_cuda();
    ctx->saved_data["cuda"] = cuda;
    if (cuda) {
      ctx->saved_data["cuda_rng"] = at::globalContext().defaultGenerator(x.device()).get_state();
    }
    AutocastState ac = AutocastState::current();
    ctx->saved_data["ac_cpu"] = ac.cpu;
    ctx->saved_data["ac_cpu_dtype"] = static_cast<int64_t>(ac.cpu_dtype);
    ctx->saved_data["ac_cuda"] = ac.cuda;
    ctx->saved_data["ac_cuda_dtype"] = static_cast<int64_t>(ac.cuda_dtype);
    ctx->save_for_backward({x});
    torch::NoGradGuard no_grad;
    return holder->fn(x);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto holder = ctx->saved_data["fn"].toCapsule();
    auto* fn = static_cast<FnHolder*>(holder.get());
    bool cuda = ctx->saved_data["cuda"].toBool();

    // Replay the forward's RNG, then put the current state back afterwards.
    at::Generator cpu_gen = at::detail::getDefaultCPUGenerator();  // shares the default
    auto cpu_now = cpu_gen.get_state();
    cpu_gen.set_state(ctx->saved_data["cpu_rng"].toTensor());
    at::Generator cuda_gen;
    at::Tensor cuda_now;
    if (cuda) {
      cuda_gen = at::globalContext().defaultGenerator(saved[0].device());
      cuda_now = cuda_gen.get_state();
      cuda_gen.set_state(ctx->saved_data["cuda_rng"].toTensor());
    }
    AutocastState before = AutocastState::current();
    AutocastState ac;
    ac.cpu = ctx->saved_data["ac_cpu"].toBool();
    ac.cpu_dtype = static_cast<at::ScalarType>(ctx->saved_data["ac_cpu_dtype"].toInt());
    ac.cuda = ctx->saved_data["ac_cuda"].toBool();
    ac.cuda_dtype = static_cast<at::ScalarType>(ctx->saved_data["ac_cuda_dtype"].toInt());

    torch::Tensor x = saved[0].detach().requires_grad_(saved[0].requires_grad());
    torch::Tensor y;
    {
      torch::AutoGradMode grad_on(true);
      ac.apply();
      y = fn->fn(x);
      before.apply();
    }
    cpu_gen.set_state(cpu_now);
    if (cuda) cuda_gen.set_state(cuda_now);
    torch::autograd::backward({y}, {grads[0]});
    return {x.requires_grad() ? x.grad() : torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor checkpoint(const BlockFn& fn, const torch::Tensor& x) {
  if (!torch::GradMode::is_enabled()) return fn(x);
  // The recomputation must run even when x itself needs no gradient (frozen
  // embeddings), so that the block's own parameters still receive theirs.
  torch::Tensor input = x.requires_grad() ? x : x.detach().requires_grad_(true);
  return CheckpointFunction::apply(input, c10::make_intrusive<FnHolder>(fn));
}

}  // namespace shardlm::model
