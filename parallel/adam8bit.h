// Adam8bit: AdamW whose two moments are stored block-wise in 8 bits with
// dynamic code maps (kernels/quant8.h, after bitsandbytes). State is about
// 2 bytes per element plus 8 bytes per block, ~25% of fp32 Adam's 8 bytes.
//
// The shard is cut into runs of neighbouring segments of one kind: 8-bit runs
// (blocks of config.block_size start at the run's first element) and fp32
// runs for parameters smaller than config.min_8bit_numel, for segments marked
// keep_fp32_state, and for embeddings when config.embedding_fp32_state.
// CPU shards use the reference kernel over LibTorch's threads; CUDA shards the
// kernel in parallel/cuda/adam8bit.cu (builds with SHARDLM_WITH_CUDA).
#pragma once

#include "parallel/kernels/quant8.h"
#include "parallel/optimizer.h"

namespace shardlm::parallel {

class Adam8bit final : public Optimizer {
 public:
  explicit Adam8bit(OptimizerConfig config);
  std::string name() const override { return "adam8bit"; }

  struct Run {
    int64_t begin = 0, end = 0;  // in the shard
    bool quantized = false;      // 8-bit states; else fp32
    bool decay = true;
    int64_t offset = 0;        // into q1/q2 (quantized) or m32/v32 (fp32)
    int64_t block_offset = 0;  // into absmax1/absmax2 (quantized)
  };
  const std::vector<Run>& runs() const { return runs_; }
  int64_t quantized_numel() const { return q1_.defined() ? q1_.numel() : 0; }

  // "step", "block_size", "q1", "q2" (uint8), "absmax1", "absmax2", "exp_avg_fp32",
  // "exp_avg_sq_fp32": the exact state, for a checkpoint of the same layout.
  StateDict state_dict() const override;
  void load_state_dict(const StateDict& state) override;
  // Dequantised (N,) moments; loading quantises them again (lossy once).
  StateDict dense_state() const override;
  void load_dense_state(const StateDict& state) override;
  int64_t state_bytes() const override;

  static const kernels::CodeMap& signed_code();
  static const kernels::CodeMap& unsigned_code();

 protected:
  void init_state(int64_t n, const torch::Device& device) override;
  void do_step(torch::Tensor& params, const torch::Tensor& grads) override;

 private:
  void step_cpu(torch::Tensor& p, const torch::Tensor& g);
  void step_cuda(torch::Tensor& p, const torch::Tensor& g);
  bool keeps_fp32(const ParamSegment& s) const;

  std::vector<Run> runs_;
  torch::Tensor q1_, q2_;            // (N8,) uint8 code indices
  torch::Tensor absmax1_, absmax2_;  // (blocks,) fp32
  torch::Tensor m32_, v32_;          // (N32,) fp32 moments of the fp32 runs
  torch::Tensor code1_, code2_;      // (256,) fp32 code maps on the state's device
};

}  // namespace shardlm::parallel
