// GPT-2 initialisation (Radford et al. 2019, as nanoGPT does it): every weight
// matrix and embedding ~ N(0, init_std), biases 0, LayerNorm gains 1, and the two
// projections that write into the residual stream (attn.c_proj, mlp.c_proj) ~
// N(0, init_std / sqrt(2 n_layer)), so the residual's variance does not grow with
// depth (each block adds two such terms).
#include <cmath>

#include "model/gpt.h"

namespace shardlm::model {

namespace {
void init_linear(const torch::nn::Linear& lin, double std) {
  if (!lin) return;
  lin->weight.normal_(0.0, std);
  if (lin->bias.defined()) lin->bias.zero_();
}

void init_norm(const LayerNorm& ln) {
  ln->weight.fill_(1.0);
  if (ln->bias.defined()) ln->bias.zero_();
}
}  // namespace

void init_gpt2(GPTImpl& m) {
  torch::NoGradGuard no_grad;
  const ModelConfig& cfg = m.config();
  const double std = cfg.init_std;
  const double resid_std = std / std::sqrt(2.0 * static_cast<double>(cfg.n_layer));
  m.wte->weight.normal_(0.0, std);
  if (m.wpe) m.wpe->weight.normal_(0.0, std);
  for (size_t l = 0; l < m.blocks->size(); ++l) {
    auto b = m.blocks->ptr<BlockImpl>(l);
    init_norm(b->ln_1);
    init_norm(b->ln_2);
    init_linear(b->attn->c_attn, std);
    init_linear(b->attn->q_proj, std);
    init_linear(b->attn->k_proj, std);
    init_linear(b->attn->v_proj, std);
    init_linear(b->attn->c_proj, resid_std);
    init_linear(b->mlp->c_fc, std);
    init_linear(b->mlp->c_proj, resid_std);
  }
  init_norm(m.ln_f);
  if (m.lm_head.defined()) m.lm_head.normal_(0.0, std);
}

}  // namespace shardlm::model
