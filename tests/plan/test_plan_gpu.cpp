// The planner against a real GPU step (label gpu; SKIPPED without a CUDA
// device or a CUDA build): GPT-2 124M at T = 1024 in bf16 on one GPU,
// ZeRO-0 over NCCL at world 1, without and with activation checkpointing.
// The CUDA caching allocator's statistics give the truth: its peak of
// allocated bytes during one micro-batch's forward and backward, minus what
// was allocated before it (the model states), against the plan's activation
// peak (20%); ShardedModel::peak_memory() against the plan's model states
// (10%). Run on a GPU machine: build/tests/plan/test_plan --gtest_filter='PlanGpu.*'
#include <gtest/gtest.h>
#include <mpi.h>

#include <torch/cuda.h>
#include <torch/torch.h>

#ifdef SHARDLM_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "model/autocast.h"
#include "model/gpt.h"
#include "parallel/nccl_group.h"
#include "plan/plan.h"
#include "runtime/engine.h"

namespace shardlm::plan {
namespace {

TEST(PlanGpu, Gpt2PeakAllocatedMatchesThePlan) {
#ifndef SHARDLM_WITH_CUDA
  GTEST_SKIP() << "built without CUDA";
#else
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  if (!parallel::NcclGroup::compiled()) GTEST_SKIP() << "built without NCCL";
  namespace alloc = c10::cuda::CUDACachingAllocator;
  const auto aggregate = static_cast<size_t>(c10::cuda::CUDACachingAllocator::StatType::AGGREGATE);
  const int64_t B = 4, T = 1024;
  for (bool ckpt : {false, true}) {
    SCOPED_TRACE(ckpt ? "with checkpointing" : "without checkpointing");
    model::ModelConfig cfg;  // GPT-2 small: the defaults
    auto group = parallel::NcclGroup::create(MPI_COMM_SELF);
    torch::manual_seed(1);
    model::GPT gpt(cfg);  // a handle: the engine shares the module
    runtime::Engine engine(gpt, parallel::ShardedConfig{}, parallel::OptimizerConfig{}, group,
                           torch::Device(torch::kCUDA, 0));
    gpt->train();
    int64_t act_peak = 0;
    for (int step = 0; step < 2; ++step) {
      auto opts = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kLong);
      auto ids = torch::randint(cfg.vocab_size, {B, T}, opts);
      torch::cuda::synchronize();
      const int64_t before = alloc::getDeviceStats(0).allocated_bytes[aggregate].current;
      alloc::resetPeakStats(0);
      engine.begin_micro_batch(true);
      model::ForwardOptions fo;
      fo.block_runner = engine.block_runner(ckpt);
      torch::Tensor loss;
      {
        model::AutocastGuard ac(torch::kCUDA, torch::kBFloat16, true);
        loss = model::loss(gpt->forward(ids, fo), ids);
      }
      loss.backward();
      torch::cuda::synchronize();
      act_peak = alloc::getDeviceStats(0).allocated_bytes[aggregate].peak - before;
      engine.step(1e-4, 1.0);
    }
    PlanInput in;
    in.model = cfg;
    in.micro_batch = B;
    in.seq_len = T;
    in.precision = "bf16";
    in.activation_checkpointing = ckpt;
    in.fused_attention = model::fused_attention_available();
    in.autocast_weight_cache = true;
    in.device = device_profile("h100");
    in.net = network_profile("dgx-h100");
    const Plan p = make_plan(in);
    const auto peak = engine.sharded().peak_memory();
    const double states = static_cast<double>(peak.params + peak.grads + peak.optimizer);
    const double want_states = static_cast<double>(p.memory.states.peak.device());
    EXPECT_NEAR(want_states, states, 0.10 * states);
    const double want_act = static_cast<double>(p.memory.activations.peak);
    EXPECT_NEAR(want_act, static_cast<double>(act_peak), 0.20 * act_peak)
        << "predicted " << want_act << " measured " << act_peak;
    std::printf(
        "GPT-2 124M, B %lld T %lld bf16%s: activation peak predicted %.0f measured %lld; "
        "model states predicted %.0f measured %.0f\n",
        static_cast<long long>(B), static_cast<long long>(T), ckpt ? " ckpt" : "", want_act,
        static_cast<long long>(act_peak), want_states, states);
  }
#endif
}

}  // namespace
}  // namespace shardlm::plan
