// Optimizers over one flat fp32 shard: the ZeRO layer hands each rank a flat
// run of parameters and the matching gradients, and an Optimizer steps it.
// Which parameter each range of the shard belongs to comes as ParamSegments
// (FlatParams::segments builds them): ranges that skip weight decay (biases,
// norms, embeddings) and ranges whose 8-bit Adam states stay 32-bit.
//
// Kinds (make_optimizer): "adamw" (LibTorch ops, any device), "cpu_adam"
// (fused AVX2 kernel, many threads; for CPU offload), "adam8bit" (block-wise
// 8-bit moments; CPU kernel, CUDA kernel with SHARDLM_WITH_CUDA).
// All three implement the same AdamW update (decoupled weight decay).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

namespace shardlm::core {
class ConfigSection;
}

namespace shardlm::parallel {

struct ParamSegment {
  int64_t begin = 0;  // [begin, end) in the flat shard handed to step()
  int64_t end = 0;
  bool decay = true;             // decoupled weight decay applies
  bool keep_fp32_state = false;  // 8-bit Adam: keep 32-bit moments for this range
  int64_t param_numel = 0;       // elements of the whole parameter (0: end - begin)
  std::string name;
  bool embedding = false;  // an embedding table (see OptimizerConfig::embedding_fp32_state)
};

// The [optimizer] section of a run configuration.
struct OptimizerConfig {
  std::string name = "adamw";  // adamw | cpu_adam | adam8bit
  double lr = 3e-4;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  int64_t block_size = 256;           // adam8bit: values per quantisation block (256 or 2048)
  int64_t min_8bit_numel = 4096;      // adam8bit: smaller parameters keep 32-bit states
  bool embedding_fp32_state = false;  // adam8bit: embeddings keep 32-bit states
  bool fused = true;  // adamw: LibTorch's fused multi-tensor kernel where it has one (CUDA, >= 2.1)

  static OptimizerConfig from(const core::ConfigSection& s);
  void validate() const;
};

// Named tensors for checkpoints. Every optimizer has "step" (int64 scalar).
using StateDict = std::map<std::string, torch::Tensor>;

class Optimizer {
 public:
  explicit Optimizer(OptimizerConfig config);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual std::string name() const = 0;

  // Describes the shard; call before the first step (default: one segment
  // covering the shard, with decay). Segments must tile [0, N) in order.
  // Throws core::ModelError otherwise.
  void set_segments(std::vector<ParamSegment> segments);
  const std::vector<ParamSegment>& segments() const { return segments_; }

  // One AdamW step: params (N,) fp32 contiguous, updated in place; grads (N,)
  // fp32 on the same device. N must stay the same from step to step.
  void step(torch::Tensor params, const torch::Tensor& grads);

  void set_lr(double lr) { config_.lr = lr; }
  double lr() const { return config_.lr; }
  void set_weight_decay(double wd) { config_.weight_decay = wd; }
  double weight_decay() const { return config_.weight_decay; }
  int64_t steps() const { return step_; }
  const OptimizerConfig& config() const { return config_; }

  // The exact state (moments as stored, 8-bit ones included) for a checkpoint
  // of the same layout; load_state_dict() throws core::CheckpointError naming
  // the missing or mis-shaped entry.
  virtual StateDict state_dict() const = 0;
  virtual void load_state_dict(const StateDict& state) = 0;
  // The moments as dense fp32 (N,) "exp_avg" and "exp_avg_sq" plus "step":
  // layout-free, for resharding to another world size or optimizer kind.
  virtual StateDict dense_state() const = 0;
  virtual void load_dense_state(const StateDict& state) = 0;
  // Bytes of optimizer state held (moments, scales), for memory accounting.
  virtual int64_t state_bytes() const = 0;

 protected:
  // Allocates the state for a shard of n elements on `device` (first step or load).
  virtual void init_state(int64_t n, const torch::Device& device) = 0;
  virtual void do_step(torch::Tensor& params, const torch::Tensor& grads) = 0;
  // Throws CheckpointError unless `state` holds `key`; returns it.
  static const torch::Tensor& need(const StateDict& state, const std::string& key);
  // Reads "step" and makes sure the state exists for n elements on `device`.
  void begin_load(const StateDict& state, int64_t n, const torch::Device& device);
  torch::Tensor step_tensor() const { return torch::tensor(step_, torch::kLong); }
  // Segments with merged neighbours of equal decay (fewer kernel calls).
  std::vector<ParamSegment> decay_runs() const;

  OptimizerConfig config_;
  int64_t step_ = 0;
  int64_t numel_ = -1;  // shard size once known
  std::vector<ParamSegment> segments_;
};

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& config);

}  // namespace shardlm::parallel
