// Helpers of the compression tests: small configurations, a synthetic language
// a tiny model learns in a few seconds (so quantisation and distillation are
// measured on a trained model, not on random weights), and its batches.
#pragma once

#include <torch/torch.h>

#include "data/loader.h"
#include "model/gpt.h"

namespace shardlm::model::compress::test_util {

inline ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab_size = 64;
  c.context_length = 32;
  c.n_layer = 2;
  c.n_head = 4;
  c.d_model = 64;  // head_dim 16; d_ff 256 (divisible by every int4 group size)
  return c;
}

// A stochastic "language" over 64 tokens: token t is followed by (5 t + 3) mod 64
// with probability 0.8, else by a uniformly random token. (B, T + 1) windows.
inline torch::Tensor synthetic_windows(int64_t B, int64_t T, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  torch::Tensor x = torch::empty({B, T + 1}, torch::kLong);
  torch::Tensor start = torch::randint(0, 64, {B}, gen, torch::kLong);
  torch::Tensor coin = torch::rand({B, T + 1}, gen);
  torch::Tensor noise = torch::randint(0, 64, {B, T + 1}, gen, torch::kLong);
  x.select(1, 0).copy_(start);
  for (int64_t t = 1; t <= T; ++t) {
    torch::Tensor det = (x.select(1, t - 1) * 5 + 3).remainder(64);
    x.select(1, t).copy_(torch::where(coin.select(1, t) < 0.8, det, noise.select(1, t)));
  }
  return x;
}

// A data::Batch of the synthetic language (packed mode: no padding).
inline data::Batch synthetic_batch(int64_t B, int64_t T, uint64_t seed) {
  torch::Tensor w = synthetic_windows(B, T, seed);
  data::Batch b;
  b.input_ids = w.narrow(1, 0, T).contiguous();
  b.targets = w.narrow(1, 1, T).contiguous();
  b.loss_mask = torch::ones({B, T});
  return b;
}

// The tiny model trained for 150 AdamW steps on the synthetic language (~2 s);
// built once per test process.
inline GPT trained_tiny() {
  static GPT model = [] {
    torch::manual_seed(11);
    GPT m(tiny_config());
    torch::optim::AdamW opt(m->parameters(), torch::optim::AdamWOptions(3e-3));
    for (int64_t step = 0; step < 150; ++step) {
      data::Batch b = synthetic_batch(16, 32, 1000 + step);
      torch::Tensor l = loss(m->forward(b.input_ids), b.targets);
      opt.zero_grad();
      l.backward();
      opt.step();
    }
    m->eval();
    return m;
  }();
  return model;
}

// Mean cross entropy (nats per token) of `m` on held-out synthetic batches.
inline double held_out_loss(GPT m, int64_t batches = 4) {
  torch::NoGradGuard no_grad;
  double sum = 0;
  for (int64_t i = 0; i < batches; ++i) {
    data::Batch b = synthetic_batch(16, 32, 900000 + i);
    sum += loss(m->forward(b.input_ids), b.targets).item<double>();
  }
  return sum / static_cast<double>(batches);
}

}  // namespace shardlm::model::compress::test_util
