// safetensors I/O and the checks against PyTorch: golden files written by an
// independent plain-PyTorch GPT (tests/model/golden/golden.py, run here at test
// time into the build directory), and the reverse check where Python reads
// shardlm's exported files and reproduces shardlm's logits.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sys/resource.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "model/gpt.h"
#include "model/safetensors.h"
#include "tests/model/helpers.h"

using namespace shardlm::model;
using shardlm::core::CheckpointError;
using shardlm::model::test_util::rel_err;
using shardlm::model::test_util::what_of;
using torch::Tensor;
namespace fs = std::filesystem;

namespace {

// A fresh directory under the build tree for one test.
fs::path scratch(const std::string& name) {
  fs::path d = fs::path(SHARDLM_TEST_TMP) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

ModelConfig tiny_gpt2() {
  ModelConfig c;
  c.vocab_size = 29;
  c.context_length = 12;
  c.n_layer = 2;
  c.n_head = 2;
  c.d_model = 8;
  return c;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void spit(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}

int run(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

bool python_has_torch() {
  static const int rc = run(std::string(SHARDLM_PYTHON) + " -c 'import torch' >/dev/null 2>&1");
  return rc == 0;
}

}  // namespace

// ---- the file format
// ------------------------------------------------------------------------------

TEST(Safetensors, RoundTripEveryDtypeAndMetadata) {
  fs::path d = scratch("st_roundtrip");
  torch::manual_seed(0);
  NamedTensors in{{"f32", torch::randn({3, 4})},
                  {"bf16", torch::randn({5}).to(torch::kBFloat16)},
                  {"f16", torch::randn({2, 2}).to(torch::kHalf)},
                  {"i64", torch::arange(7, torch::kLong)},
                  {"u8", torch::randint(0, 255, {9}, torch::kByte)},
                  {"bool", torch::rand({4}) > 0.5},
                  {"empty", torch::zeros({0, 3})},
                  {"scalar", torch::tensor(2.5)},
                  {"strided", torch::randn({4, 6}).t()}};
  write_safetensors((d / "a.safetensors").string(), in, {{"format", "pt"}});
  SafetensorsFile f = read_safetensors((d / "a.safetensors").string());
  ASSERT_EQ(f.tensors.size(), in.size());
  for (const auto& [name, t] : in) {
    ASSERT_TRUE(f.contains(name)) << name;
    EXPECT_EQ(f.at(name).scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(f.at(name), t)) << name;
  }
  EXPECT_EQ(f.metadata.at("format"), "pt");
  uint64_t header_len = 0;
  std::memcpy(&header_len, slurp(d / "a.safetensors").data(), 8);
  EXPECT_EQ(header_len % 8, 0u);  // the data section starts 8-byte aligned
  EXPECT_FALSE(fs::exists(d / "a.safetensors.tmp"));
  std::string msg = what_of([&] { f.at("nope"); });
  EXPECT_NE(msg.find("'nope'"), std::string::npos);
}

// A full disk while overwriting a saved file: a clear error, the saved file
// whole, no partial temporary left. The disk fills through a file-size limit
// (RLIMIT_FSIZE, with SIGXFSZ ignored so that write(2) fails with EFBIG).
TEST(Safetensors, FullDiskKeepsTheSavedFile) {
  fs::path d = scratch("st_full");
  const std::string p = (d / "m.safetensors").string();
  NamedTensors small{{"w", torch::arange(16, torch::kFloat)}};
  write_safetensors(p, small);
  const std::string before = slurp(p);
  NamedTensors big{{"w", torch::randn({1 << 20})}};  // 4 MiB
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = old;
  lim.rlim_cur = 1 << 20;  // 1 MiB per file
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
  const std::string msg = what_of([&] { write_safetensors(p, big); });
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_NE(msg.find("m.safetensors.tmp: write failed (disk full?)"), std::string::npos) << msg;
  EXPECT_EQ(slurp(p), before);
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  EXPECT_TRUE(torch::equal(read_safetensors(p).at("w"), small[0].second));
}

TEST(Safetensors, CorruptFilesNameTheFileAndTensor) {
  fs::path d = scratch("st_corrupt");
  const std::string p = (d / "x.safetensors").string();
  write_safetensors(p, {{"a", torch::ones({4})}, {"b", torch::ones({16})}});
  const std::string good = slurp(p);

  spit(p, good.substr(0, good.size() - 10));  // truncated inside "b"
  std::string msg = what_of([&] { read_safetensors(p); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("'b'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;

  spit(p, good.substr(0, 5));
  EXPECT_THROW(read_safetensors(p), CheckpointError);
  std::string huge = good;
  huge[7] = 0x7f;  // header length far beyond the file
  spit(p, huge);
  EXPECT_NE(what_of([&] { read_safetensors(p); }).find("header length"), std::string::npos);
  std::string bad_json = good;
  bad_json[8] = '[';
  spit(p, bad_json);
  EXPECT_NE(what_of([&] { read_safetensors(p); }).find("JSON"), std::string::npos);
  std::string bad_dtype = good;
  bad_dtype.replace(bad_dtype.find("F32"), 3, "Q32");
  spit(p, bad_dtype);
  EXPECT_NE(what_of([&] { read_safetensors(p); }).find("Q32"), std::string::npos);
  EXPECT_THROW(read_safetensors((d / "missing.safetensors").string()), CheckpointError);
}

// ---- saving and loading a GPT
// ---------------------------------------------------------------------------

TEST(Safetensors, Gpt2ArchitectureUsesHuggingFaceLayout) {
  fs::path d = scratch("st_gpt2");
  torch::manual_seed(1);
  GPT m(tiny_gpt2());
  m->eval();
  save_safetensors(m, d.string());
  SafetensorsFile f = read_safetensors((d / "model.safetensors").string());
  // HF's Conv1D stores linear weights (in, out); the tied lm_head is not stored.
  EXPECT_EQ(f.at("transformer.h.1.attn.c_attn.weight").sizes(), (std::vector<int64_t>{8, 24}));
  EXPECT_TRUE(torch::equal(f.at("transformer.h.1.attn.c_attn.weight"),
                           m->blocks->ptr<BlockImpl>(1)->attn->c_attn->weight.t()));
  EXPECT_EQ(f.at("transformer.h.0.mlp.c_proj.weight").sizes(), (std::vector<int64_t>{32, 8}));
  EXPECT_TRUE(f.contains("transformer.wpe.weight"));
  EXPECT_FALSE(f.contains("lm_head.weight"));
  EXPECT_EQ(f.tensors.size(), 4u + 2 * 12u);
  auto j = nlohmann::json::parse(slurp(d / "config.json"));
  EXPECT_EQ(j["model_type"], "gpt2");
  EXPECT_EQ(j["n_embd"], 8);
  EXPECT_EQ(j["activation_function"], "gelu_new");

  GPT back = load_safetensors(d.string());
  back->eval();
  Tensor ids = torch::randint(0, 29, {2, 12}, torch::kLong);
  EXPECT_TRUE(torch::equal(back->forward(ids), m->forward(ids)));
  EXPECT_EQ(back->config().to_json(), m->config().to_json());
}

TEST(Safetensors, OtherArchitecturesUseShardlmNamesAndRoundTrip) {
  fs::path d = scratch("st_rope");
  ModelConfig c = tiny_gpt2();
  c.positional = "rope";
  c.tied_embeddings = false;
  c.fused_qkv = false;
  c.bias = false;
  torch::manual_seed(2);
  GPT m(c);
  m->eval();
  save_safetensors(m, (d / "out").string());
  SafetensorsFile f = read_safetensors((d / "out" / "model.safetensors").string());
  EXPECT_TRUE(f.contains("blocks.0.attn.q_proj.weight"));
  EXPECT_TRUE(f.contains("lm_head"));
  EXPECT_EQ(nlohmann::json::parse(slurp(d / "out" / "config.json"))["model_type"], "shardlm");
  GPT back = load_safetensors((d / "out" / "model.safetensors").string());  // a file path works too
  back->eval();
  Tensor ids = torch::randint(0, 29, {1, 20}, torch::kLong);
  EXPECT_TRUE(torch::equal(back->forward(ids), m->forward(ids)));

  // A config that does not describe the model is refused before anything is written.
  ModelConfig wrong = c;
  wrong.d_model = 16;
  EXPECT_THROW(save_safetensors(m, wrong, (d / "wrong").string()), shardlm::core::ModelError);
  EXPECT_FALSE(fs::exists(d / "wrong" / "model.safetensors"));
}

TEST(Safetensors, LoadErrorsNameFileAndTensor) {
  fs::path d = scratch("st_errors");
  torch::manual_seed(3);
  GPT m(tiny_gpt2());
  save_safetensors(m, d.string());
  const fs::path weights = d / "model.safetensors";
  NamedTensors state = export_state(*m);
  auto with = [&](const std::function<void(NamedTensors&)>& edit) {
    NamedTensors s = state;
    edit(s);
    write_safetensors(weights.string(), s);
    return what_of([&] { load_safetensors(d.string()); });
  };
  std::string msg = with([](NamedTensors& s) { s[5].second = torch::zeros({3, 3}); });
  EXPECT_NE(msg.find(weights.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("'" + state[5].first + "'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("shape [3,3]"), std::string::npos) << msg;

  msg = with([](NamedTensors& s) { s[2].second = s[2].second.to(torch::kLong); });
  EXPECT_NE(msg.find("'" + state[2].first + "'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("floating"), std::string::npos) << msg;

  msg = with([](NamedTensors& s) { s.erase(s.begin() + 7); });
  EXPECT_NE(msg.find("'" + state[7].first + "' is missing"), std::string::npos) << msg;

  msg = with(
      [](NamedTensors& s) { s.emplace_back("transformer.h.9.ln_1.weight", torch::ones({8})); });
  EXPECT_NE(msg.find("unexpected tensor 'transformer.h.9.ln_1.weight'"), std::string::npos) << msg;

  // A bf16 file and HF GPT2Model's bare names (no "transformer.") both load.
  NamedTensors bare;
  for (const auto& [n, t] : state) bare.emplace_back(n.substr(12), t.to(torch::kBFloat16));
  bare.emplace_back("h.0.attn.bias", torch::ones({1, 1, 12, 12}));  // HF's mask buffer
  write_safetensors(weights.string(), bare);
  GPT back = load_safetensors(d.string());
  EXPECT_LT(rel_err(back->wte->weight, m->wte->weight), 1e-2);
  EXPECT_EQ(back->wte->weight.scalar_type(), torch::kFloat);

  spit(d / "config.json", "{\"model_type\": \"llama\"}");
  msg = what_of([&] { load_safetensors(d.string()); });
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  // shardlm's own config: what is wrong in it, and the file it is in
  spit(d / "config.json", "{\"shardlm_config\": {\"n_layer\": 2, \"n_layers\": 2}}");
  msg = what_of([&] { load_safetensors(d.string()); });
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown key \"n_layers\""), std::string::npos) << msg;
  spit(d / "config.json", "{\"shardlm_config\": {\"n_head\": 1e30}}");
  msg = what_of([&] { load_safetensors(d.string()); });
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.n_head"), std::string::npos) << msg;
}

// ---- golden files from PyTorch
// ------------------------------------------------------------------------

class Golden : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!python_has_torch()) return;
    fs::remove_all(SHARDLM_GOLDEN_DIR);
    made_ = run(std::string(SHARDLM_PYTHON) + " " + SHARDLM_GOLDEN_SCRIPT + " make " +
                SHARDLM_GOLDEN_DIR) == 0;
  }
  void SetUp() override {
    if (!python_has_torch()) GTEST_SKIP() << SHARDLM_PYTHON << " has no torch";
    ASSERT_TRUE(made_) << "golden.py make failed";
  }
  static inline bool made_ = false;
};

// Logits, loss and every gradient of the four golden cases within 1e-5 relative.
TEST_F(Golden, LogitsLossAndGradientsMatchPyTorch) {
  for (const char* name : {"gpt2", "rope", "sinusoidal", "rope_ntk"}) {
    SCOPED_TRACE(name);
    const fs::path dir = fs::path(SHARDLM_GOLDEN_DIR) / name;
    GPT m = load_safetensors(dir.string());  // the Python-written file through our loader
    m->eval();
    SafetensorsFile g = read_safetensors((dir / "golden.safetensors").string());
    ForwardOptions opts;
    if (g.contains("attention_mask")) opts.attention_mask = g.at("attention_mask");
    Tensor logits = m->forward(g.at("ids"), opts);
    Tensor l = loss(logits, g.at("targets"), g.at("loss_mask"));
    EXPECT_LT(rel_err(logits, g.at("logits")), 1e-5);
    EXPECT_NEAR(l.item<double>(), g.at("loss").item<double>(), 1e-5 * g.at("loss").item<double>());
    l.backward();
    // Gradients in the file's layout: copy them into a twin model and export it.
    GPT twin(m->config());
    {
      torch::NoGradGuard ng;
      auto grads = m->named_parameters();
      for (auto& p : twin->named_parameters()) p.value().copy_(grads[p.key()].grad());
    }
    size_t compared = 0;
    for (const auto& [n, t] : export_state(*twin)) {
      ASSERT_TRUE(g.contains("grad." + n)) << n;
      EXPECT_LT(rel_err(t, g.at("grad." + n)), 1e-5) << n;
      ++compared;
    }
    EXPECT_EQ(compared + 5 + (opts.attention_mask.defined() ? 1 : 0), g.tensors.size());
  }
}

// shardlm exports (C++-initialised weights); Python reads the files with its own
// safetensors reader and reproduces shardlm's logits.
TEST_F(Golden, PythonReproducesLogitsFromShardlmExport) {
  std::vector<ModelConfig> configs;
  ModelConfig gpt2 = tiny_gpt2();
  gpt2.fused_qkv = false;  // exported as HF's fused c_attn anyway
  configs.push_back(gpt2);
  ModelConfig rope = tiny_gpt2();
  rope.positional = "rope";
  rope.rope_scaling = "ntk";
  rope.rope_scaling_factor = 2;
  rope.tied_embeddings = false;
  rope.activation = "gelu";
  configs.push_back(rope);
  ModelConfig sin = tiny_gpt2();
  sin.positional = "sinusoidal";
  sin.pre_norm = false;
  sin.bias = false;
  sin.scale_embeddings = true;
  configs.push_back(sin);
  std::string dirs;
  for (size_t i = 0; i < configs.size(); ++i) {
    torch::manual_seed(100 + i);
    GPT m(configs[i]);
    m->eval();
    fs::path d = scratch("export_check_" + std::to_string(i));
    save_safetensors(m, d.string());
    Tensor ids = torch::randint(0, 29, {2, 12}, torch::kLong);
    Tensor mask = torch::ones({2, 12}, torch::kLong);
    mask[1].narrow(0, 0, 3).zero_();
    ForwardOptions opts;
    opts.attention_mask = mask;
    torch::NoGradGuard ng;
    write_safetensors((d / "expected.safetensors").string(),
                      {{"ids", ids}, {"attention_mask", mask}, {"logits", m->forward(ids, opts)}});
    dirs += " " + d.string();
  }
  // One Python start for all (importing torch takes seconds on a busy machine).
  EXPECT_EQ(run(std::string(SHARDLM_PYTHON) + " " + SHARDLM_GOLDEN_SCRIPT + " check" + dirs), 0);
}
