// PagedKV (paged_kv.h): slot bookkeeping of one step and the attention over
// the pool. Shapes: N tokens in the step, H heads, D head dim, L keys of a
// sequence (its context including this step's tokens), Bd decoding sequences.
#include "serve/paged_kv.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace shardlm::serve {

using torch::Tensor;

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// What each layer needs to attend for one step; built once per step.
class StepAttention : public model::AttentionBackend {
 public:
  StepAttention(std::vector<Tensor>& k, std::vector<Tensor>& v) : k_(k), v_(v) {}

  Tensor slots;  // (N) where each token's key and value go
  // Decoding sequences (one token each), attended together.
  Tensor dec_rows;   // (Bd) their tokens' rows in the step
  Tensor dec_slots;  // (Bd * Lmax) their keys' slots, padded
  Tensor dec_bias;   // (Bd, 1, 1, Lmax) 0, or -inf on padding
  int64_t dec_len = 0;
  // Prefill chunks, one at a time.
  struct Chunk {
    int64_t row = 0, count = 0;
    Tensor slots;  // (L)
    Tensor bias;   // (count, L) causal: query j sits at position start + j
  };
  std::vector<Chunk> chunks;

  Tensor attend(int64_t layer, const Tensor& q, const Tensor& k, const Tensor& v) override {
    // q, k, v (1, H, N, D) -> (1, H, N, D)
    const int64_t H = q.size(1), N = q.size(2), D = q.size(3);
    const double scale = 1.0 / std::sqrt(static_cast<double>(D));
    Tensor& kp = k_[static_cast<size_t>(layer)];  // (slots, H, D)
    Tensor& vp = v_[static_cast<size_t>(layer)];
    kp.index_copy_(0, slots, k[0].transpose(0, 1).to(kp.scalar_type()));  // (N, H, D)
    vp.index_copy_(0, slots, v[0].transpose(0, 1).to(vp.scalar_type()));
    Tensor q0 = q[0];  // (H, N, D)
    Tensor out = torch::empty({H, N, D}, q.options());
    if (dec_rows.defined()) {
      const int64_t Bd = dec_rows.size(0), L = dec_len;
      Tensor qd = q0.index_select(1, dec_rows).transpose(0, 1).unsqueeze(2);  // (Bd, H, 1, D)
      Tensor kd = kp.index_select(0, dec_slots).view({Bd, L, H, D}).to(q.scalar_type());
      Tensor vd = vp.index_select(0, dec_slots).view({Bd, L, H, D}).to(q.scalar_type());
      Tensor qk = at::matmul(qd, kd.permute({0, 2, 3, 1}));  // (Bd, H, 1, L)
      Tensor p = at::softmax(at::add(dec_bias.to(qk.scalar_type()), qk, scale), -1);
      Tensor y = at::matmul(p, vd.transpose(1, 2));                // (Bd, H, 1, D)
      out.index_copy_(1, dec_rows, y.squeeze(2).transpose(0, 1));  // (H, Bd, D)
    }
    for (const Chunk& c : chunks) {
      Tensor qc = q0.narrow(1, c.row, c.count);                     // (H, n, D)
      Tensor kc = kp.index_select(0, c.slots).to(q.scalar_type());  // (L, H, D)
      Tensor vc = vp.index_select(0, c.slots).to(q.scalar_type());
      Tensor qk = at::matmul(qc, kc.permute({1, 2, 0}));  // (H, n, L)
      Tensor p = at::softmax(at::add(c.bias.to(qk.scalar_type()), qk, scale), -1);
      out.narrow(1, c.row, c.count).copy_(at::matmul(p, vc.transpose(0, 1)));  // (H, n, D)
    }
    return out.unsqueeze(0);
  }

 private:
  std::vector<Tensor>& k_;
  std::vector<Tensor>& v_;
};

}  // namespace

PagedKV::PagedKV(const model::ModelConfig& mc, int num_blocks, int block_size, torch::Device device,
                 torch::ScalarType dtype)
    : block_size_(block_size) {
  const int64_t slots = int64_t{num_blocks} * block_size;
  auto opts = torch::dtype(dtype).device(device);
  for (int64_t l = 0; l < mc.n_layer; ++l) {
    k_.push_back(torch::zeros({slots, mc.n_head, mc.head_dim()}, opts));
    v_.push_back(torch::zeros({slots, mc.n_head, mc.head_dim()}, opts));
  }
}

int64_t PagedKV::block_bytes(const model::ModelConfig& mc, int block_size,
                             torch::ScalarType dtype) {
  return 2 * mc.n_layer * int64_t{block_size} * mc.n_head * mc.head_dim() *
         static_cast<int64_t>(c10::elementSize(dtype));
}

int64_t PagedKV::bytes() const {
  int64_t b = 0;
  for (const auto* list : {&k_, &v_})
    for (const auto& t : *list) b += t.numel() * static_cast<int64_t>(t.element_size());
  return b;
}

Tensor PagedKV::step(model::GPT& model, const std::vector<ChunkInput>& chunks) {
  SHARDLM_CHECK(!chunks.empty(), core::ModelError, "PagedKV::step: no chunks");
  torch::NoGradGuard no_grad;
  const torch::Device device = k_[0].device();
  const int64_t bs = block_size_;
  auto slot = [&](const ChunkInput& c, int64_t t) {
    return static_cast<int64_t>((*c.blocks)[static_cast<size_t>(t / bs)]) * bs + t % bs;
  };

  // Packed ids, positions and slots of every chunk's tokens: (N).
  std::vector<int64_t> ids, pos, slots, sample_rows;
  int64_t dec_len = 0;
  for (const ChunkInput& c : chunks) {
    SHARDLM_CHECK(c.count >= 1 && c.blocks &&
                      static_cast<int64_t>(c.blocks->size()) * bs >= c.start + c.count,
                  core::ModelError, "PagedKV::step: a chunk of {} tokens at {} has {} blocks",
                  c.count, c.start, c.blocks ? c.blocks->size() : 0);
    for (int64_t t = c.start; t < c.start + c.count; ++t) {
      ids.push_back(c.tokens[t]);
      pos.push_back(t);
      slots.push_back(slot(c, t));
    }
    if (c.sample) sample_rows.push_back(static_cast<int64_t>(ids.size()) - 1);
    if (c.count == 1) dec_len = std::max(dec_len, c.start + 1);
  }
  const auto N = static_cast<int64_t>(ids.size());
  auto index = [&](const std::vector<int64_t>& v) {
    return torch::tensor(v, torch::kLong).to(device);
  };

  StepAttention att(k_, v_);
  att.slots = index(slots);
  std::vector<int64_t> dec_rows, dec_slots;
  std::vector<float> dec_bias;
  int64_t row = 0;
  for (const ChunkInput& c : chunks) {
    const int64_t L = c.start + c.count;  // keys this chunk's last query sees
    std::vector<int64_t> ctx(static_cast<size_t>(L));
    for (int64_t t = 0; t < L; ++t) ctx[static_cast<size_t>(t)] = slot(c, t);
    if (c.count == 1) {
      dec_rows.push_back(row);
      for (int64_t t = 0; t < dec_len; ++t) {
        dec_slots.push_back(t < L ? ctx[static_cast<size_t>(t)] : 0);
        dec_bias.push_back(t < L ? 0.0f : -std::numeric_limits<float>::infinity());
      }
    } else {
      StepAttention::Chunk ch;
      ch.row = row;
      ch.count = c.count;
      ch.slots = index(ctx);
      // Query j (position start + j) sees keys 0 .. start + j.
      Tensor qpos = torch::arange(c.start, L, torch::kLong).unsqueeze(1);  // (n, 1)
      Tensor kpos = torch::arange(L, torch::kLong).unsqueeze(0);           // (1, L)
      ch.bias = torch::zeros({c.count, L}).masked_fill_(kpos > qpos, kNegInf).to(device);
      att.chunks.push_back(std::move(ch));
    }
    row += c.count;
  }
  if (!dec_rows.empty()) {
    const auto Bd = static_cast<int64_t>(dec_rows.size());
    att.dec_rows = index(dec_rows);
    att.dec_slots = index(dec_slots);
    att.dec_len = dec_len;
    att.dec_bias = torch::tensor(dec_bias).view({Bd, 1, 1, dec_len}).to(device);
  }

  model::ForwardOptions opts;
  opts.positions = index(pos).view({1, N});
  opts.attention_backend = &att;
  Tensor h = model->hidden(index(ids).view({1, N}), opts);  // (1, N, C)
  if (sample_rows.empty()) return torch::empty({0, model->config().vocab_size});
  return model->project(h[0].index_select(0, index(sample_rows))).to(torch::kFloat);  // (S, V)
}

}  // namespace shardlm::serve
