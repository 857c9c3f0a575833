// Adam8bit: run layout, CPU and CUDA steps, state export (see adam8bit.h).
#include "parallel/adam8bit.h"

#include <ATen/Parallel.h>

#include "core/error.h"
#include "parallel/kernels/adam_cpu.h"

#ifdef SHARDLM_WITH_CUDA
#include <c10/cuda/CUDAStream.h>

#include "core/cuda_check.h"
#include "parallel/cuda/adam8bit.h"
#endif

namespace shardlm::parallel {

using kernels::num_blocks;

const kernels::CodeMap& Adam8bit::signed_code() {
  static const kernels::CodeMap c = kernels::dynamic_code_map(true);
  return c;
}
const kernels::CodeMap& Adam8bit::unsigned_code() {
  static const kernels::CodeMap c = kernels::dynamic_code_map(false);
  return c;
}

Adam8bit::Adam8bit(OptimizerConfig config) : Optimizer(std::move(config)) {
  config_.validate();
}

bool Adam8bit::keeps_fp32(const ParamSegment& s) const {
  const int64_t whole = s.param_numel > 0 ? s.param_numel : s.end - s.begin;
  return s.keep_fp32_state || whole < config_.min_8bit_numel ||
         (config_.embedding_fp32_state && s.embedding);
}

// ---- layout -------------------------------------------------------------------------

void Adam8bit::init_state(int64_t n, const torch::Device& device) {
  runs_.clear();
  int64_t n8 = 0, n32 = 0, blocks = 0;
  for (const ParamSegment& s : segments_) {
    if (s.end == s.begin) continue;
    const bool q = !keeps_fp32(s);
    if (!runs_.empty() && runs_.back().quantized == q && runs_.back().decay == s.decay) {
      runs_.back().end = s.end;
      continue;
    }
    runs_.push_back(Run{s.begin, s.end, q, s.decay, 0, 0});
  }
  for (Run& r : runs_) {
    const int64_t len = r.end - r.begin;
    if (r.quantized) {
      r.offset = n8;
      r.block_offset = blocks;
      n8 += len;
      blocks += num_blocks(len, config_.block_size);
    } else {
      r.offset = n32;
      n32 += len;
    }
  }
  (void)n;
  auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(device);
  auto code1 = torch::from_blob(const_cast<float*>(signed_code().data()), {256}, torch::kFloat);
  auto code2 = torch::from_blob(const_cast<float*>(unsigned_code().data()), {256}, torch::kFloat);
  code1_ = code1.to(device, /*non_blocking=*/false, /*copy=*/true);
  code2_ = code2.to(device, false, true);
  // Zero moments: the index of 0.0 in each map, absmax 0.
  const int64_t zero1 = kernels::quantize_nearest(signed_code().data(), 0.f);
  const int64_t zero2 = kernels::quantize_nearest(unsigned_code().data(), 0.f);
  q1_ = torch::full({n8}, zero1, f32.dtype(torch::kByte));
  q2_ = torch::full({n8}, zero2, f32.dtype(torch::kByte));
  absmax1_ = torch::zeros({blocks}, f32);
  absmax2_ = torch::zeros({blocks}, f32);
  m32_ = torch::zeros({n32}, f32);
  v32_ = torch::zeros({n32}, f32);
}

int64_t Adam8bit::state_bytes() const {
  if (!q1_.defined()) return 0;
  return static_cast<int64_t>(q1_.nbytes() + q2_.nbytes() + absmax1_.nbytes() + absmax2_.nbytes() +
                              m32_.nbytes() + v32_.nbytes());
}

// ---- step -----------------------------------------------------------------------------

void Adam8bit::do_step(torch::Tensor& p, const torch::Tensor& g) {
  if (q1_.device() != p.device()) {
    for (torch::Tensor* t : {&q1_, &q2_, &absmax1_, &absmax2_, &m32_, &v32_, &code1_, &code2_})
      *t = t->to(p.device());
  }
  if (p.device().is_cpu())
    step_cpu(p, g);
  else
    step_cuda(p, g);
}

void Adam8bit::step_cpu(torch::Tensor& p, const torch::Tensor& g) {
  const OptimizerConfig& c = config_;
  const kernels::AdamStep s =
      kernels::make_adam_step(c.lr, c.beta1, c.beta2, c.eps, c.weight_decay, step_);
  const bool decay_on = c.weight_decay != 0;
  float* pp = p.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  const int64_t B = c.block_size;
  for (const Run& r : runs_) {
    const int64_t len = r.end - r.begin;
    float* pr = pp + r.begin;
    const float* gr = gp + r.begin;
    if (r.quantized) {
      uint8_t* q1 = q1_.data_ptr<uint8_t>() + r.offset;
      uint8_t* q2 = q2_.data_ptr<uint8_t>() + r.offset;
      float* a1 = absmax1_.data_ptr<float>() + r.block_offset;
      float* a2 = absmax2_.data_ptr<float>() + r.block_offset;
      at::parallel_for(0, num_blocks(len, B), std::max<int64_t>(1, 32768 / B),
                       [&](int64_t b0, int64_t b1) {
                         kernels::adam8bit_step_blocks(pr, gr, q1, q2, a1, a2, signed_code().data(),
                                                       unsigned_code().data(), len, B, b0, b1, s,
                                                       decay_on && r.decay);
                       });
    } else {
      float* m = m32_.data_ptr<float>() + r.offset;
      float* v = v32_.data_ptr<float>() + r.offset;
      at::parallel_for(0, len, 32768, [&](int64_t b, int64_t e) {
        kernels::adam_step(pr + b, gr + b, m + b, v + b, e - b, s, decay_on && r.decay);
      });
    }
  }
}

void Adam8bit::step_cuda(torch::Tensor& p, const torch::Tensor& g) {
#ifdef SHARDLM_WITH_CUDA
  const OptimizerConfig& c = config_;
  const kernels::AdamStep s =
      kernels::make_adam_step(c.lr, c.beta1, c.beta2, c.eps, c.weight_decay, step_);
  const bool decay_on = c.weight_decay != 0;
  void* stream = c10::cuda::getCurrentCUDAStream(p.device().index()).stream();
  for (const Run& r : runs_) {
    const int64_t len = r.end - r.begin;
    if (r.quantized) {
      SHARDLM_CUDA_CHECK(static_cast<cudaError_t>(shardlm_adam8bit_step_cuda(
          p.data_ptr<float>() + r.begin, g.data_ptr<float>() + r.begin,
          q1_.data_ptr<uint8_t>() + r.offset, q2_.data_ptr<uint8_t>() + r.offset,
          absmax1_.data_ptr<float>() + r.block_offset, absmax2_.data_ptr<float>() + r.block_offset,
          code1_.data_ptr<float>(), code2_.data_ptr<float>(), len, static_cast<int>(c.block_size),
          &s, decay_on && r.decay ? 1 : 0, stream)));
    } else {
      // Same update as AdamW, on this run's slice.
      auto pr = p.narrow(0, r.begin, len);
      auto gr = g.narrow(0, r.begin, len);
      auto m = m32_.narrow(0, r.offset, len);
      auto v = v32_.narrow(0, r.offset, len);
      if (decay_on && r.decay) pr.mul_(s.decay_factor);
      m.mul_(c.beta1).add_(gr, 1 - c.beta1);
      v.mul_(c.beta2).addcmul_(gr, gr, 1 - c.beta2);
      pr.addcdiv_(m, (v.sqrt() / s.bias_correction2_sqrt).add_(c.eps), s.neg_step_size);
    }
  }
#else
  (void)g;
  SHARDLM_FAIL(core::NotCompiled,
               "adam8bit: the shard is on {} but this build has no CUDA (SHARDLM_WITH_CUDA off)",
               p.device().str());
#endif
}

// ---- state ------------------------------------------------------------------------------

StateDict Adam8bit::state_dict() const {
  SHARDLM_CHECK(q1_.defined(), core::CheckpointError, "adam8bit: no state before the first step");
  return {{"step", step_tensor()},
          {"block_size", torch::tensor(config_.block_size, torch::kLong)},
          {"q1", q1_},
          {"q2", q2_},
          {"absmax1", absmax1_},
          {"absmax2", absmax2_},
          {"exp_avg_fp32", m32_},
          {"exp_avg_sq_fp32", v32_}};
}

void Adam8bit::load_state_dict(const StateDict& state) {
  const int64_t block = need(state, "block_size").item<int64_t>();
  SHARDLM_CHECK(block == config_.block_size, core::CheckpointError,
                "adam8bit: the state was saved with block_size {} but this optimizer uses {}",
                block, config_.block_size);
  int64_t n = 0;
  for (const ParamSegment& s : segments_) n = std::max(n, s.end);
  SHARDLM_CHECK(n > 0, core::CheckpointError,
                "adam8bit: set_segments (the shard layout) before loading an exact state");
  begin_load(state, n, q1_.defined() ? q1_.device() : need(state, "q1").device());
  for (auto& [key, dst] : std::map<std::string, torch::Tensor*>{{"q1", &q1_},
                                                                {"q2", &q2_},
                                                                {"absmax1", &absmax1_},
                                                                {"absmax2", &absmax2_},
                                                                {"exp_avg_fp32", &m32_},
                                                                {"exp_avg_sq_fp32", &v32_}}) {
    const torch::Tensor& src = need(state, key);
    SHARDLM_CHECK(src.sizes() == dst->sizes() && src.scalar_type() == dst->scalar_type(),
                  core::CheckpointError,
                  "adam8bit: state '{}' is {} {} but this layout needs {} {}", key,
                  c10::toString(src.scalar_type()), c10::str(src.sizes()),
                  c10::toString(dst->scalar_type()), c10::str(dst->sizes()));
    dst->copy_(src);
  }
}

StateDict Adam8bit::dense_state() const {
  SHARDLM_CHECK(q1_.defined(), core::CheckpointError, "adam8bit: no state before the first step");
  const int64_t n = runs_.empty() ? 0 : runs_.back().end;
  auto m = torch::empty({n}, torch::kFloat), v = torch::empty({n}, torch::kFloat);
  auto q1 = q1_.cpu(), q2 = q2_.cpu(), a1 = absmax1_.cpu(), a2 = absmax2_.cpu();
  auto m32 = m32_.cpu(), v32 = v32_.cpu();
  for (const Run& r : runs_) {
    const int64_t len = r.end - r.begin;
    if (r.quantized) {
      kernels::dequantize_blockwise(signed_code().data(), q1.data_ptr<uint8_t>() + r.offset,
                                    a1.data_ptr<float>() + r.block_offset, len, config_.block_size,
                                    m.data_ptr<float>() + r.begin);
      kernels::dequantize_blockwise(unsigned_code().data(), q2.data_ptr<uint8_t>() + r.offset,
                                    a2.data_ptr<float>() + r.block_offset, len, config_.block_size,
                                    v.data_ptr<float>() + r.begin);
    } else {
      m.narrow(0, r.begin, len).copy_(m32.narrow(0, r.offset, len));
      v.narrow(0, r.begin, len).copy_(v32.narrow(0, r.offset, len));
    }
  }
  return {{"step", step_tensor()}, {"exp_avg", m}, {"exp_avg_sq", v}};
}

void Adam8bit::load_dense_state(const StateDict& state) {
  auto m = need(state, "exp_avg").to(torch::kCPU, torch::kFloat).contiguous();
  auto v = need(state, "exp_avg_sq").to(torch::kCPU, torch::kFloat).contiguous();
  SHARDLM_CHECK(m.dim() == 1 && v.sizes() == m.sizes(), core::CheckpointError,
                "adam8bit: exp_avg {} and exp_avg_sq {} must be flat and of one size",
                c10::str(m.sizes()), c10::str(v.sizes()));
  begin_load(state, m.numel(), q1_.defined() ? q1_.device() : torch::Device(torch::kCPU));
  auto q1 = q1_.cpu(), q2 = q2_.cpu(), a1 = absmax1_.cpu(), a2 = absmax2_.cpu();
  auto m32 = m32_.cpu(), v32 = v32_.cpu();
  for (const Run& r : runs_) {
    const int64_t len = r.end - r.begin;
    if (r.quantized) {
      kernels::quantize_blockwise(signed_code().data(), m.data_ptr<float>() + r.begin, len,
                                  config_.block_size, q1.data_ptr<uint8_t>() + r.offset,
                                  a1.data_ptr<float>() + r.block_offset);
      kernels::quantize_blockwise(unsigned_code().data(), v.data_ptr<float>() + r.begin, len,
                                  config_.block_size, q2.data_ptr<uint8_t>() + r.offset,
                                  a2.data_ptr<float>() + r.block_offset);
    } else {
      m32.narrow(0, r.offset, len).copy_(m.narrow(0, r.begin, len));
      v32.narrow(0, r.offset, len).copy_(v.narrow(0, r.begin, len));
    }
  }
  q1_.copy_(q1);
  q2_.copy_(q2);
  absmax1_.copy_(a1);
  absmax2_.copy_(a2);
  m32_.copy_(m32);
  v32_.copy_(v32);
}

}  // namespace shardlm::parallel
