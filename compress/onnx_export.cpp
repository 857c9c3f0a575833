// ONNX export (onnx_export.h): the GPT forward pass as an ONNX graph, node by
// node, through the protobuf classes of Debian's libonnx-dev.
//
// Shapes in comments: B batch, T sequence (both dynamic), C d_model, H heads,
// D head_dim, F d_ff, V vocabulary. Every tensor name is unique: "l{layer}.{what}".
#include "compress/onnx_export.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>

#include "core/error.h"
#include "core/fs.h"

#ifdef SHARDLM_WITH_ONNX
#include <onnx/onnx_pb.h>
#endif

namespace shardlm::model::compress {

using torch::Tensor;

bool onnx_export_available() {
#ifdef SHARDLM_WITH_ONNX
  return true;
#else
  return false;
#endif
}

#ifndef SHARDLM_WITH_ONNX
void export_onnx(const GPT&, const std::string&, const OnnxExportOptions&) {
  SHARDLM_FAIL(core::NotCompiled,
               "ONNX export needs libonnx-dev at build time (apt-get install libonnx-dev, then "
               "re-run cmake)");
}
#else

namespace {

constexpr double kPi = 3.14159265358979323846;

// ---- a small graph builder ---------------------------------------------------------------

class Graph {
 public:
  explicit Graph(onnx::GraphProto* g) : g_(g) {}

  // An fp32 initializer (copied from a CPU tensor); returns its name.
  std::string weight(const std::string& name, const Tensor& t) {
    Tensor c = t.detach().to(torch::kCPU, torch::kFloat).contiguous();
    onnx::TensorProto* p = g_->add_initializer();
    p->set_name(name);
    p->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : c.sizes()) p->add_dims(d);
    p->set_raw_data(std::string(static_cast<const char*>(c.data_ptr()),
                                static_cast<size_t>(c.numel()) * sizeof(float)));
    return name;
  }
  // An int64 initializer of shape (n), or a scalar when `scalar`.
  std::string ints(const std::string& name, const std::vector<int64_t>& v, bool scalar = false) {
    onnx::TensorProto* p = g_->add_initializer();
    p->set_name(name);
    p->set_data_type(onnx::TensorProto::INT64);
    if (!scalar) p->add_dims(static_cast<int64_t>(v.size()));
    for (int64_t x : v) p->add_int64_data(x);
    return name;
  }
  std::string scalar(const std::string& name, float v) {
    onnx::TensorProto* p = g_->add_initializer();
    p->set_name(name);
    p->set_data_type(onnx::TensorProto::FLOAT);
    p->add_float_data(v);
    return name;
  }
  // One node with one output named `out`; returns `out`.
  onnx::NodeProto* node(const std::string& op, const std::vector<std::string>& in,
                        const std::string& out) {
    onnx::NodeProto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(out);
    for (const auto& s : in) n->add_input(s);
    n->add_output(out);
    return n;
  }
  std::string op(const std::string& op, const std::vector<std::string>& in,
                 const std::string& out) {
    node(op, in, out);
    return out;
  }
  std::string transpose(const std::string& in, const std::vector<int64_t>& perm,
                        const std::string& out) {
    auto* a = node("Transpose", {in}, out)->add_attribute();
    a->set_name("perm");
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t p : perm) a->add_ints(p);
    return out;
  }
  static void attr_int(onnx::NodeProto* n, const std::string& name, int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void attr_float(onnx::NodeProto* n, const std::string& name, float v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(v);
  }

 private:
  onnx::GraphProto* g_;
};

void value_info(onnx::ValueInfoProto* v, const std::string& name, int32_t elem,
                const std::vector<std::string>& dims) {
  v->set_name(name);
  auto* tt = v->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(elem);
  for (const auto& d : dims) {
    auto* dim = tt->mutable_shape()->add_dim();
    if (d.front() >= '0' && d.front() <= '9')
      dim->set_dim_value(std::stoll(d));
    else
      dim->set_dim_param(d);
  }
}

// ---- the GPT graph --------------------------------------------------------------------

class GptWriter {
 public:
  GptWriter(Graph& g, const GPTImpl& m) : g_(g), m_(m), cfg_(m.config()) {}

  void write() {
    const int64_t C = cfg_.d_model;
    // x (B, T, C) = wte[ids] (* sqrt(C)) + positions[:T]
    std::string x = g_.op("Gather", {g_.weight("wte.weight", m_.wte->weight), "input_ids"}, "emb");
    if (cfg_.scale_embeddings)
      x = g_.op("Mul", {x, g_.scalar("emb_scale", std::sqrt(static_cast<float>(C)))}, "emb_scaled");
    // T as a (1) tensor, sliced from Shape(ids) = [B, T].
    std::string shape = g_.op("Shape", {"input_ids"}, "ids_shape");
    t1_ = g_.op("Slice", {shape, g_.ints("one", {1}), g_.ints("two", {2})}, "seq_len");
    zero_ = g_.ints("zero", {0});
    if (cfg_.positional == "learned" || cfg_.positional == "sinusoidal") {
      Tensor table = cfg_.positional == "learned" ? m_.wpe->weight : sinusoid_table();
      std::string pos =
          g_.op("Slice", {g_.weight("positions", table), zero_, t1_, zero_}, "pos");  // (T, C)
      x = g_.op("Add", {x, pos}, "emb_pos");
    }
    if (cfg_.positional == "rope") {  // (T, 1, D) cos and sin, broadcast over batch and heads
      Tensor cos, sin;
      rope_tables(&cos, &sin);
      std::string shape = g_.ints("rope_shape", {-1, 1, cfg_.head_dim()});
      rope_cos_ = g_.op(
          "Reshape",
          {g_.op("Slice", {g_.weight("rope_cos", cos), zero_, t1_, zero_}, "rope_cos_t"), shape},
          "rope_cos_t3");
      rope_sin_ = g_.op(
          "Reshape",
          {g_.op("Slice", {g_.weight("rope_sin", sin), zero_, t1_, zero_}, "rope_sin_t"), shape},
          "rope_sin_t3");
    }
    // Causal mask (T, T): 0 on and below the diagonal, -inf above, sliced from (L, L).
    const int64_t L = cfg_.context_length;
    Tensor bias =
        torch::full({L, L}, -std::numeric_limits<float>::infinity(), torch::kFloat).triu_(1);
    const std::string tt = "seq_len2";
    Graph::attr_int(g_.node("Concat", {t1_, t1_}, tt), "axis", 0);
    mask_ = g_.op(
        "Slice",
        {g_.weight("causal_bias", bias), g_.ints("zero2", {0, 0}), tt, g_.ints("axes01", {0, 1})},
        "mask");
    for (int64_t l = 0; l < cfg_.n_layer; ++l) x = block(l, x);
    x = layer_norm(x, *m_.ln_f, "ln_f");
    // logits (B, T, V) = x @ W_out^T, W_out (V, C) shared with wte when tied.
    std::string w_out = cfg_.tied_embeddings ? "wte.weight" : g_.weight("lm_head", m_.lm_head);
    g_.op("MatMul", {x, g_.transpose(w_out, {1, 0}, "w_out_t")}, "logits");
  }

 private:
  Tensor sinusoid_table() const {
    // As GPTImpl::sinusoid_table: PE[p, 2i] = sin(p w_i), PE[p, 2i+1] = cos(p w_i).
    const int64_t len = cfg_.context_length, C = cfg_.d_model;
    auto pos = torch::arange(len, torch::kFloat64).unsqueeze(1);
    auto inv = torch::exp(torch::arange(0, C, 2, torch::kFloat64) * (-std::log(10000.0) / C));
    auto angle = pos * inv;
    return torch::stack({angle.sin(), angle.cos()}, -1).reshape({len, C}).to(torch::kFloat);
  }

  // As GPTImpl::rope_tables: angle[p, i] = (p * pos_scale) * theta^(-2i/D); cos = [cos, cos],
  // sin = [-sin, sin] over the last dim; ceil(context_length * scaling factor) rows.
  void rope_tables(Tensor* cos, Tensor* sin) const {
    const int64_t D = cfg_.head_dim();
    const double s = cfg_.rope_scaling_factor;
    const auto len = static_cast<int64_t>(std::ceil(cfg_.context_length * s));
    double theta = cfg_.rope_theta, pos_scale = 1.0;
    if (cfg_.rope_scaling == "linear") pos_scale = 1.0 / s;
    if (cfg_.rope_scaling == "ntk") theta *= std::pow(s, static_cast<double>(D) / (D - 2));
    auto inv = torch::pow(theta, torch::arange(0, D, 2, torch::kFloat64) / -static_cast<double>(D));
    auto angle = (torch::arange(len, torch::kFloat64) * pos_scale).unsqueeze(1) * inv;
    *cos = torch::cat({angle.cos(), angle.cos()}, -1).to(torch::kFloat);
    *sin = torch::cat({-angle.sin(), angle.sin()}, -1).to(torch::kFloat);
  }

  // RoPE on x (B, T, H, D), rotate-half convention: x cos + [x2, x1] sin.
  std::string rope(const std::string& x, const std::string& name) {
    const int64_t D = cfg_.head_dim(), half = D / 2;
    std::string axis = c_ints("axis3", {3});
    std::string x1 =
        g_.op("Slice", {x, c_ints("zero1", {0}), c_ints("half", {half}), axis}, name + ".x1");
    std::string x2 =
        g_.op("Slice", {x, c_ints("half", {half}), c_ints("dim", {D}), axis}, name + ".x2");
    Graph::attr_int(g_.node("Concat", {x2, x1}, name + ".rot"), "axis", 3);
    return g_.op("Add",
                 {g_.op("Mul", {x, rope_cos_}, name + ".xcos"),
                  g_.op("Mul", {name + ".rot", rope_sin_}, name + ".rsin")},
                 name + ".rope");
  }

  std::string layer_norm(const std::string& x, const LayerNormImpl& ln, const std::string& name) {
    std::vector<std::string> in{x, g_.weight(name + ".weight", ln.weight)};
    if (ln.bias.defined()) in.push_back(g_.weight(name + ".bias", ln.bias));
    auto* n = g_.node("LayerNormalization", in, name + ".out");
    Graph::attr_int(n, "axis", -1);
    Graph::attr_float(n, "epsilon", static_cast<float>(ln.eps));
    return name + ".out";
  }

  // x (..., in) @ W^T + b for a torch Linear (W (out, in) stored transposed).
  std::string linear(const std::string& x, const torch::nn::Linear& lin, const std::string& name) {
    SHARDLM_CHECK(lin->weight.numel() > 0, core::ModelError,
                  "onnx export: {} has no resident weight (a quantised model run on the fly); "
                  "load it with load::load_dense",
                  name);
    std::string y =
        g_.op("MatMul", {x, g_.weight(name + ".weight_t", lin->weight.t())}, name + ".mm");
    if (lin->bias.defined()) y = g_.op("Add", {y, g_.weight(name + ".bias", lin->bias)}, name);
    return y;
  }

  std::string attention(int64_t l, const std::string& x, CausalSelfAttentionImpl& a) {
    const std::string p = "l" + std::to_string(l) + ".attn";
    const int64_t H = cfg_.n_head, D = cfg_.head_dim(), C = cfg_.d_model;
    std::string q, k, v;  // (B, T, H, D)
    if (a.c_attn) {
      std::string qkv = linear(x, a.c_attn, p + ".c_attn");  // (B, T, 3C)
      qkv = g_.op("Reshape", {qkv, g_.ints(p + ".shape5", {0, 0, 3, H, D})}, p + ".qkv5");
      auto pick = [&](int64_t i, const char* what) {
        std::string idx = g_.ints(p + ".idx" + what, {i}, /*scalar=*/true);
        auto* n = g_.node("Gather", {qkv, idx}, p + "." + what);
        Graph::attr_int(n, "axis", 2);
        return p + "." + what;
      };
      q = pick(0, "q");
      k = pick(1, "k");
      v = pick(2, "v");
    } else {
      std::string shape4 = g_.ints(p + ".shape4", {0, 0, H, D});
      q = g_.op("Reshape", {linear(x, a.q_proj, p + ".q_proj"), shape4}, p + ".q");
      k = g_.op("Reshape", {linear(x, a.k_proj, p + ".k_proj"), shape4}, p + ".k");
      v = g_.op("Reshape", {linear(x, a.v_proj, p + ".v_proj"), shape4}, p + ".v");
    }
    if (cfg_.positional == "rope") {
      q = rope(q, p + ".q");
      k = rope(k, p + ".k");
    }
    q = g_.transpose(q, {0, 2, 1, 3}, p + ".qh");  // (B, H, T, D)
    k = g_.transpose(k, {0, 2, 3, 1}, p + ".kt");  // (B, H, D, T)
    v = g_.transpose(v, {0, 2, 1, 3}, p + ".vh");  // (B, H, T, D)
    // scores = q k^T / sqrt(D) + mask; probs = softmax over keys; y = probs v
    std::string s = g_.op("MatMul", {q, k}, p + ".qk");  // (B, H, T, T)
    s = g_.op("Mul", {s, g_.scalar(p + ".scale", static_cast<float>(1.0 / std::sqrt(D)))},
              p + ".scaled");
    s = g_.op("Add", {s, mask_}, p + ".masked");
    Graph::attr_int(g_.node("Softmax", {s}, p + ".probs"), "axis", -1);
    std::string y = g_.op("MatMul", {p + ".probs", v}, p + ".y");  // (B, H, T, D)
    y = g_.transpose(y, {0, 2, 1, 3}, p + ".yt");                  // (B, T, H, D)
    y = g_.op("Reshape", {y, g_.ints(p + ".shape3", {0, 0, C})}, p + ".merged");
    return linear(y, a.c_proj, p + ".c_proj");
  }

  std::string mlp(int64_t l, const std::string& x, MLPImpl& m) {
    const std::string p = "l" + std::to_string(l) + ".mlp";
    std::string h = linear(x, m.c_fc, p + ".c_fc");  // (B, T, F)
    const std::string& act = cfg_.activation;
    if (act == "relu") {
      h = g_.op("Relu", {h}, p + ".act");
    } else if (act == "silu") {
      h = g_.op("Mul", {h, g_.op("Sigmoid", {h}, p + ".sig")}, p + ".act");
    } else {
      // gelu:      0.5 x (1 + erf(x / sqrt 2))
      // gelu_tanh: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
      std::string inner;
      if (act == "gelu") {
        inner = g_.op("Erf", {g_.op("Mul", {h, sqrt_half()}, p + ".xs")}, p + ".erf");
      } else {
        std::string x3 = g_.op("Mul", {g_.op("Mul", {h, h}, p + ".x2"), h}, p + ".x3");
        std::string u =
            g_.op("Add", {h, g_.op("Mul", {x3, c("gelu_c", 0.044715f)}, p + ".cx3")}, p + ".u");
        u = g_.op("Mul", {u, c("gelu_k", static_cast<float>(std::sqrt(2.0 / kPi)))}, p + ".ku");
        inner = g_.op("Tanh", {u}, p + ".tanh");
      }
      std::string one_plus = g_.op("Add", {inner, c("one_f", 1.0f)}, p + ".1p");
      h = g_.op("Mul", {g_.op("Mul", {h, c("half_f", 0.5f)}, p + ".hx"), one_plus}, p + ".act");
    }
    return linear(h, m.c_proj, p + ".c_proj");
  }

  std::string block(int64_t l, const std::string& x) {
    auto& b = *m_.blocks->ptr<BlockImpl>(l);
    const std::string p = "l" + std::to_string(l);
    if (cfg_.pre_norm) {
      std::string h = g_.op("Add", {x, attention(l, layer_norm(x, *b.ln_1, p + ".ln_1"), *b.attn)},
                            p + ".res1");
      return g_.op("Add", {h, mlp(l, layer_norm(h, *b.ln_2, p + ".ln_2"), *b.mlp)}, p + ".res2");
    }
    std::string h =
        layer_norm(g_.op("Add", {x, attention(l, x, *b.attn)}, p + ".res1"), *b.ln_1, p + ".ln_1");
    return layer_norm(g_.op("Add", {h, mlp(l, h, *b.mlp)}, p + ".res2"), *b.ln_2, p + ".ln_2");
  }

  // A float constant shared by every layer.
  std::string c(const std::string& name, float v) {
    if (!consts_.count(name)) consts_[name] = g_.scalar(name, v);
    return consts_[name];
  }
  // An int64 constant shared by every layer.
  std::string c_ints(const std::string& name, const std::vector<int64_t>& v) {
    if (!consts_.count(name)) consts_[name] = g_.ints(name, v);
    return consts_[name];
  }
  std::string sqrt_half() { return c("inv_sqrt2", static_cast<float>(1.0 / std::sqrt(2.0))); }

  Graph& g_;
  const GPTImpl& m_;
  const ModelConfig& cfg_;
  std::string t1_, zero_, mask_, rope_cos_, rope_sin_;
  std::map<std::string, std::string> consts_;
};

}  // namespace

void export_onnx(const GPT& model, const std::string& path, const OnnxExportOptions& opts) {
  const ModelConfig& cfg = model->config();
  SHARDLM_CHECK(opts.opset >= 17, core::ModelError,
                "onnx export: opset {} has no LayerNormalization; use 17 or later", opts.opset);
  torch::NoGradGuard no_grad;
  onnx::ModelProto mp;
  mp.set_ir_version(onnx::IR_VERSION);
  mp.set_producer_name(opts.producer);
  mp.set_model_version(1);
  mp.add_opset_import()->set_version(opts.opset);  // the default domain ""
  onnx::GraphProto* g = mp.mutable_graph();
  g->set_name("shardlm_gpt");
  value_info(g->add_input(), "input_ids", onnx::TensorProto::INT64, {"batch", "sequence"});
  value_info(g->add_output(), "logits", onnx::TensorProto::FLOAT,
             {"batch", "sequence", std::to_string(cfg.vocab_size)});
  Graph graph(g);
  GptWriter(graph, *model).write();

  core::write_file_atomic<core::CheckpointError>(path, [&](std::ostream& out) {
    SHARDLM_CHECK(mp.SerializeToOstream(&out), core::CheckpointError,
                  "{}: write failed (a model over 2 GiB needs external data, not supported)", path);
  });
}

#endif  // SHARDLM_WITH_ONNX

}  // namespace shardlm::model::compress
