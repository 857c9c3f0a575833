// Model inspection (inspect.h): the payloads of docs/monitor-inspect.md.
#include "runtime/inspect.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "core/error.h"
#include "data/utf8.h"
#include "runtime/playground.h"

namespace shardlm::runtime {

using nlohmann::json;
using torch::Tensor;

namespace {

// Training mode and autograd off for the duration of a request.
class EvalScope {
 public:
  explicit EvalScope(model::GPT& m) : model_(m), was_training_(m->is_training()) { m->eval(); }
  ~EvalScope() { model_->train(was_training_); }
  EvalScope(const EvalScope&) = delete;
  EvalScope& operator=(const EvalScope&) = delete;

 private:
  model::GPT& model_;
  bool was_training_;
  torch::NoGradGuard no_grad_;
};

// A token's bytes as valid UTF-8 (a byte-level token may hold half a character).
std::string token_text(const data::Tokenizer& tok, uint32_t id) {
  return data::utf8_sanitize(tok.token_bytes(id));
}

std::vector<uint32_t> encode_prompt(const InspectTarget& t, const json& args) {
  SHARDLM_CHECK(t.tokenizer != nullptr, core::ConfigError,
                "this run has no tokenizer to encode a prompt: set train.tokenizer (or put "
                "tokenizer.json in data.path or its parent folder)");
  std::string prompt =
      args.value("prompt", std::string("Once upon a time there was a little model"));
  SHARDLM_CHECK(!prompt.empty(), core::ConfigError, "the prompt is empty");
  auto ids = t.tokenizer->encode(prompt);
  SHARDLM_CHECK(!ids.empty(), core::ConfigError, "the prompt encodes to no tokens");
  const int64_t limit = std::min<int64_t>(t.max_prompt_tokens, t.model->config().context_length);
  if (static_cast<int64_t>(ids.size()) > limit) ids.resize(static_cast<size_t>(limit));
  return ids;
}

Tensor ids_tensor(const std::vector<uint32_t>& ids, torch::Device device) {
  std::vector<int64_t> v(ids.begin(), ids.end());
  return torch::tensor(v, torch::kLong).view({1, -1}).to(device);
}

int64_t layer_arg(const json& args, const char* key, int64_t n_layer) {
  if (!args.contains(key)) return n_layer - 1;
  SHARDLM_CHECK(args[key].is_number_integer(), core::ConfigError, "{} must be an integer", key);
  int64_t l = args[key].get<int64_t>();
  SHARDLM_CHECK(l >= 0 && l < n_layer, core::ConfigError,
                "{} {} is out of range: the model has layers 0..{}", key, l, n_layer - 1);
  return l;
}

std::vector<double> to_vector(const Tensor& t) {
  Tensor c = t.to(torch::kCPU, torch::kDouble).contiguous().view({-1});
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

// ---- attention -----------------------------------------------------------------------

json attention(InspectTarget& t, const json& args) {
  const auto& cfg = t.model->config();
  const int64_t layer = layer_arg(args, "layer", cfg.n_layer);
  auto ids = encode_prompt(t, args);
  EvalScope scope(t.model);
  model::ForwardOptions opts;
  opts.capture_attention = true;
  opts.block_runner = t.runner;
  t.model->hidden(ids_tensor(ids, t.device), opts);
  auto captured = t.model->captured_attention();
  SHARDLM_CHECK(static_cast<int64_t>(captured.size()) == cfg.n_layer, core::ModelError,
                "captured {} attention maps for {} layers", captured.size(), cfg.n_layer);
  Tensor w = captured[static_cast<size_t>(layer)][0].to(torch::kCPU, torch::kFloat);  // (H, T, T)
  const int64_t H = w.size(0), T = w.size(1);
  json tokens = json::array();
  for (uint32_t id : ids) tokens.push_back(token_text(*t.tokenizer, id));
  json weights = json::array();
  auto acc = w.accessor<float, 3>();
  for (int64_t h = 0; h < H; ++h) {
    json rows = json::array();
    for (int64_t q = 0; q < T; ++q) {
      json row = json::array();
      for (int64_t k = 0; k < T; ++k) {
        // Rounded to 4 decimals: the map is drawn, and the message stays small.
        double v = std::clamp(static_cast<double>(acc[h][q][k]), 0.0, 1.0);
        row.push_back(std::round(v * 1e4) / 1e4);
      }
      rows.push_back(std::move(row));
    }
    weights.push_back(std::move(rows));
  }
  return {{"tokens", tokens},
          {"layers", cfg.n_layer},
          {"heads", H},
          {"layer", layer},
          {"weights", weights}};
}

// ---- embeddings ----------------------------------------------------------------------

json embeddings(InspectTarget& t, const json& args) {
  const int64_t V = t.model->config().vocab_size;
  int64_t limit = 2000;
  if (args.contains("limit")) {
    SHARDLM_CHECK(args["limit"].is_number_integer() && args["limit"].get<int64_t>() >= 1,
                  core::ConfigError, "limit must be an integer >= 1");
    limit = args["limit"].get<int64_t>();
  }
  const int64_t n = std::min(limit, V);
  SHARDLM_CHECK(n >= 3, core::ConfigError, "a projection needs at least 3 tokens, not {}", n);
  EvalScope scope(t.model);
  Tensor x = t.model->wte->weight.slice(0, 0, n).to(torch::kCPU, torch::kDouble);  // (n, C)
  x = x - x.mean(0, true);
  // PCA by the eigenvectors of the covariance (C x C; C is the model width).
  Tensor cov = x.t().mm(x) / static_cast<double>(n - 1);
  auto [evals, evecs] = at::linalg_eigh(cov, "L");  // ascending
  const int64_t C = cov.size(0);
  Tensor top = evecs.slice(1, C - 2, C).flip({1});  // (C, 2), largest first
  Tensor pts = x.mm(top);                           // (n, 2)
  double total = std::max(evals.sum().item<double>(), 1e-30);
  auto ev = to_vector(evals.slice(0, C - 2, C).flip({0}) / total);
  json tokens = json::array(), ids = json::array(), points = json::array();
  auto p = to_vector(pts);
  for (int64_t i = 0; i < n; ++i) {
    ids.push_back(i);
    const bool known = t.tokenizer && i < static_cast<int64_t>(t.tokenizer->vocab_size());
    tokens.push_back(known ? token_text(*t.tokenizer, static_cast<uint32_t>(i))
                           : "#" + std::to_string(i));
    points.push_back({std::round(p[2 * i] * 1e5) / 1e5, std::round(p[2 * i + 1] * 1e5) / 1e5});
  }
  return {{"method", "pca"},
          {"tokens", tokens},
          {"ids", ids},
          {"points", points},
          {"explained_variance", {std::clamp(ev[0], 0.0, 1.0), std::clamp(ev[1], 0.0, 1.0)}}};
}

// ---- activations ---------------------------------------------------------------------

json histogram(const Tensor& v, double lo, double hi, int64_t bins) {
  if (!(hi > lo)) hi = lo + 1e-6;
  Tensor counts = torch::histc(v, bins, lo, hi).to(torch::kLong);
  json edges = json::array(), c = json::array();
  for (int64_t i = 0; i <= bins; ++i)
    edges.push_back(lo + (hi - lo) * static_cast<double>(i) / bins);
  auto cv = counts.accessor<int64_t, 1>();
  for (int64_t i = 0; i < bins; ++i) c.push_back(cv[i]);
  return {{"edges", edges}, {"counts", c}};
}

json activations(InspectTarget& t, const json& args) {
  const auto& cfg = t.model->config();
  auto ids = encode_prompt(t, args);
  const bool want_neuron = args.contains("neuron");
  const int64_t neuron_layer = layer_arg(args, "layer", cfg.n_layer);
  int64_t neuron = 0;
  if (want_neuron) {
    SHARDLM_CHECK(args["neuron"].is_number_integer(), core::ConfigError,
                  "neuron must be an integer");
    neuron = args["neuron"].get<int64_t>();
    SHARDLM_CHECK(neuron >= 0 && neuron < cfg.ffn_dim(), core::ConfigError,
                  "neuron {} is out of range: the MLP has units 0..{}", neuron, cfg.ffn_dim() - 1);
  }
  EvalScope scope(t.model);
  std::map<int64_t, Tensor> hidden;  // layer -> (T, F), the last call's (a block may run twice)
  std::vector<std::shared_ptr<model::MLPImpl>> mlps;
  for (int64_t l = 0; l < cfg.n_layer; ++l) {
    auto mlp = t.model->blocks[static_cast<size_t>(l)]->as<model::BlockImpl>()->mlp.ptr();
    mlp->observe = [&hidden, l](const Tensor& h) {
      hidden[l] = h.detach().to(torch::kCPU, torch::kFloat);
    };
    mlps.push_back(mlp);
  }
  struct Unhook {
    std::vector<std::shared_ptr<model::MLPImpl>>& m;
    ~Unhook() {
      for (auto& p : m) p->observe = nullptr;
    }
  } unhook{mlps};
  model::ForwardOptions opts;
  opts.block_runner = t.runner;
  t.model->hidden(ids_tensor(ids, t.device), opts);

  json layers = json::array();
  for (const auto& [l, h] : hidden) {
    Tensor v = h.reshape({-1});
    double mn = v.min().item<double>(), mx = v.max().item<double>();
    layers.push_back({{"name", "blocks." + std::to_string(l) + ".mlp"},
                      {"layer", l},
                      {"mean", v.mean().item<double>()},
                      {"std", v.numel() > 1 ? v.std().item<double>() : 0.0},
                      {"min", mn},
                      {"max", mx},
                      {"zero_frac", (v.abs() < 1e-3).to(torch::kDouble).mean().item<double>()},
                      {"histogram", histogram(v, mn, mx, 24)}});
  }
  json out = {{"layers", layers}};
  if (want_neuron && hidden.count(neuron_layer)) {
    Tensor col = hidden[neuron_layer].select(1, neuron);  // (T,)
    const int64_t k = std::min<int64_t>(10, col.numel());
    auto [vals, idx] = col.topk(k);
    json top = json::array();
    for (int64_t i = 0; i < k; ++i) {
      const int64_t pos = idx[i].item<int64_t>();
      std::vector<uint32_t> ctx(ids.begin() + std::max<int64_t>(0, pos - 4), ids.begin() + pos + 1);
      top.push_back({{"token", token_text(*t.tokenizer, ids[static_cast<size_t>(pos)])},
                     {"value", vals[i].item<double>()},
                     {"context", data::utf8_sanitize(t.tokenizer->decode_bytes(ctx))}});
    }
    out["neuron"] = {{"layer", neuron_layer}, {"index", neuron}, {"top", top}};
  }
  return out;
}

// ---- architecture --------------------------------------------------------------------

// "shardlm::model::BlockImpl" -> "Block", "torch::nn::LinearImpl" -> "Linear".
std::string type_name(const torch::nn::Module& m) {
  std::string s = m.name();
  auto colon = s.rfind("::");
  if (colon != std::string::npos) s = s.substr(colon + 2);
  if (s.size() > 4 && s.compare(s.size() - 4, 4, "Impl") == 0) s.resize(s.size() - 4);
  return s;
}

json arch_node(const std::string& name, const torch::nn::Module& m) {
  int64_t params = 0;
  bool trainable = false;
  // sizes() stays valid for a ZeRO-3 shard whose storage has been released.
  for (const auto& p : m.parameters(true)) {
    int64_t n = 1;
    for (auto d : p.sizes()) n *= d;
    params += n;
    trainable = trainable || p.requires_grad();
  }
  json node = {{"name", name}, {"type", type_name(m)}, {"params", params}};
  if (params > 0) node["trainable"] = trainable;
  json children = json::array();
  for (const auto& p : m.named_parameters(false)) {
    json leaf = {{"name", p.key()},
                 {"type", "Parameter"},
                 {"params", 1},
                 {"shape", json::array()},
                 {"trainable", p.value().requires_grad()}};
    int64_t n = 1;
    for (auto d : p.value().sizes()) {
      leaf["shape"].push_back(d);
      n *= d;
    }
    leaf["params"] = n;
    children.push_back(std::move(leaf));
  }
  for (const auto& c : m.named_children()) children.push_back(arch_node(c.key(), *c.value()));
  if (!children.empty()) node["children"] = std::move(children);
  return node;
}

// ---- generate --------------------------------------------------------------------------

json generate(InspectTarget& t, const json& args) {
  SHARDLM_CHECK(t.tokenizer != nullptr, core::ConfigError,
                "this run has no tokenizer to encode a prompt: set train.tokenizer (or put "
                "tokenizer.json in data.path or its parent folder)");
  json request = args;
  request.erase("target");  // "live": this is it
  PlaygroundRequest r = parse_playground_request(request);
  if (r.cfg.seed < 0)  // one seed on every rank, from the request
    r.cfg.seed = static_cast<int64_t>(std::hash<std::string>{}(t.request_id) & 0x7fffffffffffull);
  // The engine's block runner (a ZeRO-3 block is gathered before it runs) for
  // every forward of the generation; the model's own runner comes back after.
  struct RunnerSwap {
    model::GPT& m;
    model::BlockRunner saved;
    RunnerSwap(model::GPT& model, const model::BlockRunner& r)
        : m(model), saved(model->default_block_runner) {
      if (r) m->default_block_runner = r;
    }
    ~RunnerSwap() { m->default_block_runner = saved; }
  } swap(t.model, t.runner);
  json last;
  run_playground(r, t.model, *t.tokenizer, [&](const json& event) {
    json d = event;
    d["target"] = "live";
    if (t.step >= 0) d["step"] = t.step;
    if (!last.is_null() && t.partial) t.partial(last);  // an earlier prompt's end
    last = nullptr;
    if (d["event"] == "done")
      last = std::move(d);
    else if (t.partial)
      t.partial(d);
  });
  return last;
}

}  // namespace

json inspect_model(const std::string& what, const json& args_in, InspectTarget& t) {
  SHARDLM_CHECK(!t.model.is_empty(), core::ConfigError, "no model to inspect");
  const json args = args_in.is_object() ? args_in : json::object();
  if (what == "attention") return attention(t, args);
  if (what == "embeddings") return embeddings(t, args);
  if (what == "activations") return activations(t, args);
  if (what == "architecture") return {{"root", arch_node("gpt", *t.model)}};
  if (what == "generate") return generate(t, args);
  throw core::ConfigError(fmt::format("cannot inspect '{}': expected attention, embeddings, "
                                      "activations, architecture or generate",
                                      what),
                          __FILE__, __LINE__);
}

}  // namespace shardlm::runtime
