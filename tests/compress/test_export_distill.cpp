// ONNX export and distillation (compress), and the `shardlm compress` /
// `shardlm export --format onnx` commands end to end. The ONNX graph is checked
// by tests/compress/onnx_check.py: onnx.checker, then a numpy evaluation
// compared with LibTorch's logits for several batch and sequence sizes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "compress/distill.h"
#include "compress/io.h"
#include "compress/onnx_export.h"
#include "compress/quantize.h"
#include "data/manifest.h"
#include "load/model_bundle.h"
#include "model/generate.h"
#include "model/safetensors.h"
#include "tests/compress/compress_helpers.h"
#include "tests/model/helpers.h"

using namespace shardlm::model;
using namespace shardlm::model::compress;
using shardlm::model::test_util::what_of;
using torch::Tensor;
namespace fs = std::filesystem;
namespace ct = shardlm::model::compress::test_util;

namespace {

std::string tmp_path(const std::string& name) {
  fs::create_directories(SHARDLM_TEST_TMP);
  fs::path p = fs::path(SHARDLM_TEST_TMP) / ("compress_" + name + std::to_string(::getpid()));
  fs::remove_all(p);
  return p.string();
}

// Runs a command; returns its exit status and fills `out` with stdout + stderr.
int run_cmd(const std::string& cmd, std::string* out) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  const int st = ::pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

bool python_has_onnx() {
  std::string out;
  return run_cmd(std::string(SHARDLM_PYTHON) + " -c 'import onnx, numpy'", &out) == 0;
}

// Writes the cases file the checker reads: ids of several (B, T) and LibTorch's logits.
void write_cases(GPT m, const std::string& path) {
  torch::NoGradGuard g;
  nlohmann::json cases = nlohmann::json::array();
  torch::manual_seed(9);
  for (auto [B, T] : {std::pair<int64_t, int64_t>{2, 5}, {1, 11}, {3, 1}}) {
    Tensor ids = torch::randint(0, m->config().vocab_size, {B, T}, torch::kLong);
    Tensor logits = m->forward(ids).contiguous();
    std::vector<int64_t> flat_ids(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel());
    nlohmann::json rows = nlohmann::json::array();
    for (int64_t b = 0; b < B; ++b)
      rows.push_back(
          std::vector<int64_t>(flat_ids.begin() + b * T, flat_ids.begin() + (b + 1) * T));
    cases.push_back({{"ids", rows},
                     {"shape", logits.sizes().vec()},
                     {"logits", std::vector<float>(logits.data_ptr<float>(),
                                                   logits.data_ptr<float>() + logits.numel())}});
  }
  std::ofstream(path) << nlohmann::json{{"cases", cases}, {"tol", 1e-4}}.dump();
}

}  // namespace

// ---- ONNX -------------------------------------------------------------------------------------

TEST(OnnxExport, GraphPassesTheCheckerAndMatchesLibTorchLogits) {
  if (!onnx_export_available()) GTEST_SKIP() << "built without libonnx-dev";
  if (!python_has_onnx()) GTEST_SKIP() << SHARDLM_PYTHON << " has no onnx module";
  // Every architecture switch the exporter handles, two at a time.
  std::vector<ModelConfig> configs(4, ct::tiny_config());  // a fifth is pushed below
  configs[1].positional = "sinusoidal";
  configs[1].activation = "gelu";
  configs[1].fused_qkv = false;
  configs[1].tied_embeddings = false;
  configs[2].pre_norm = false;
  configs[2].bias = false;
  configs[2].activation = "relu";
  configs[2].scale_embeddings = true;
  configs[3].activation = "silu";
  configs[3].n_layer = 1;
  configs[3].positional = "rope";
  configs[3].fused_qkv = false;
  configs.push_back(ct::tiny_config());
  configs[4].positional = "rope";
  configs[4].rope_scaling = "linear";
  configs[4].rope_scaling_factor = 2.0;
  for (size_t i = 0; i <= configs.size(); ++i) {
    // The last round exports the trained model (logits of realistic size).
    const bool trained = i == configs.size();
    SCOPED_TRACE(trained ? "trained" : configs[i].to_json().dump());
    torch::manual_seed(20 + i);
    GPT m = trained ? ct::trained_tiny() : GPT(configs[i]);
    const std::string onnx_path = tmp_path("m" + std::to_string(i)) + ".onnx";
    const std::string cases = onnx_path + ".json";
    export_onnx(m, onnx_path);
    write_cases(m, cases);
    std::string out;
    const int rc = run_cmd(
        std::string(SHARDLM_PYTHON) + " " + SHARDLM_ONNX_CHECK + " " + onnx_path + " " + cases,
        &out);
    std::printf("%s", out.c_str());
    EXPECT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("check_model: ok"), std::string::npos) << out;
    fs::remove(onnx_path);
    fs::remove(cases);
  }
}

TEST(OnnxExport, OpsetBelow17IsRefused) {
  GPT m(ct::tiny_config());
  OnnxExportOptions o;
  o.opset = 16;
  const std::string msg = what_of([&] { export_onnx(m, tmp_path("opset") + ".onnx", o); });
  if (!onnx_export_available()) GTEST_SKIP() << msg;
  EXPECT_NE(msg.find("LayerNormalization"), std::string::npos) << msg;
}

// ---- distillation ---------------------------------------------------------------------------

TEST(Distill, LossIsZeroForTheTeacherItselfAndScalesWithTauSquared) {
  torch::manual_seed(1);
  Tensor t = torch::randn({2, 3, 10}), s = torch::randn({2, 3, 10});
  EXPECT_NEAR(distill_kl(t, t, {}, 2.0).item<double>(), 0.0, 1e-6);
  EXPECT_GT(distill_kl(s, t, {}, 1.0).item<double>(), 0.0);
  // KL at tau of logits z equals KL at 1 of z / tau, times tau^2.
  EXPECT_NEAR(distill_kl(s, t, {}, 3.0).item<double>(),
              9.0 * distill_kl(s / 3.0, t / 3.0, {}, 1.0).item<double>(), 1e-5);
  // Masked positions do not count.
  Tensor mask = torch::ones({2, 3});
  mask[1][2] = 0;
  Tensor s2 = s.clone();
  s2[1][2] += 100;
  EXPECT_NEAR(distill_kl(s2, t, mask, 1.0).item<double>(),
              distill_kl(s, t, mask, 1.0).item<double>(), 1e-6);
  DistillConfig c;
  c.alpha = 1.5;
  EXPECT_NE(what_of([&] { c.validate(); }).find("alpha"), std::string::npos);
}

TEST(Distill, AFewStepsBringTheStudentCloserToTheTeacher) {
  GPT teacher = ct::trained_tiny();
  ModelConfig sc = ct::tiny_config();
  sc.n_layer = 1;
  sc.d_model = 32;
  sc.n_head = 2;
  torch::manual_seed(7);
  GPT student(sc);
  std::vector<shardlm::data::Batch> held;
  for (int i = 0; i < 3; ++i) held.push_back(ct::synthetic_batch(8, 32, 777000 + i));
  const double before = mean_kl(teacher, student, held);
  DistillConfig c;
  c.steps = 40;
  c.lr = 3e-3;
  c.log_every = 10;
  int64_t step = 0;
  int logged = 0;
  auto logs = distill(
      teacher, student, [&] { return ct::synthetic_batch(16, 32, 5000 + step++); }, c,
      [&](const DistillLog&) { ++logged; });
  const double after = mean_kl(teacher, student, held);
  std::printf("KL(teacher || student) on held-out batches: %.4f -> %.4f\n", before, after);
  EXPECT_EQ(logs.size(), 40u);
  EXPECT_EQ(logged, 4);
  EXPECT_LT(after, 0.5 * before);
  EXPECT_LT(logs.back().loss, logs.front().loss);
  ModelConfig other = sc;
  other.vocab_size = 65;
  GPT wrong(other);
  EXPECT_NE(what_of([&] {
              distill(
                  teacher, wrong, [&] { return ct::synthetic_batch(2, 8, 1); }, c);
            }).find("vocab_size"),
            std::string::npos);
}

// ---- the commands ------------------------------------------------------------------------------

TEST(CompressCli, QuantizePruneAndExportWriteLoadableOutputs) {
  const std::string src = tmp_path("cli_src"), q = tmp_path("cli_q"), p = tmp_path("cli_p");
  save_safetensors(ct::trained_tiny(), src);
  const std::string bin = SHARDLM_BINARY;
  std::string out;
  ASSERT_EQ(run_cmd(bin + " compress quantize --model " + src + " --out " + q +
                        " --method int4 --group-size 32 --runtime on_the_fly",
                    &out),
            0)
      << out;
  EXPECT_NE(out.find("weights "), std::string::npos) << out;
  EXPECT_EQ(shardlm::load::load_model(q).format, "safetensors+int4");
  out.clear();
  ASSERT_EQ(run_cmd(bin + " compress prune --model " + src + " --out " + p +
                        " --method neurons --sparsity 0.5",
                    &out),
            0)
      << out;
  EXPECT_EQ(shardlm::load::load_model(p).model->config().d_ff, 128);
  out.clear();
  if (onnx_export_available()) {
    ASSERT_EQ(
        run_cmd(bin + " export --format onnx --model " + q + " --out " + q + "/model.onnx", &out),
        0)
        << out;
    EXPECT_GT(fs::file_size(q + "/model.onnx"), 0u);  // from the on-the-fly model: dense again
    GPT on_the_fly = shardlm::load::load_model(q).model;
    EXPECT_NE(what_of([&] { export_onnx(on_the_fly, q + "/bad.onnx"); }).find("load_dense"),
              std::string::npos);
  }
  out.clear();
  EXPECT_NE(
      run_cmd(bin + " compress quantize --model " + src + " --out " + q + " --method int3", &out),
      0);
}

TEST(CompressCli, DistillFromAPreparedDatasetLowersTheKl) {
  const std::string work = tmp_path("cli_distill");
  fs::create_directories(work);
  {
    std::ofstream corpus(work + "/corpus.txt");
    const char* words[] = {"the",  "model", "learns",  "from", "a",    "teacher",
                           "with", "soft",  "targets", "and",  "hard", "labels"};
    for (int i = 0; i < 400; ++i) {
      for (int w = 0; w < 12; ++w) corpus << words[(i * 7 + w * (i % 5 + 1)) % 12] << ' ';
      corpus << (i % 4 == 3 ? "\n\n" : "\n");
    }
  }
  const std::string bin = SHARDLM_BINARY;
  std::string out;
  ASSERT_EQ(run_cmd(bin + " tokenizer train --input " + work +
                        "/corpus.txt --vocab-size 300 --out " + work + "/tok.json --no-progress",
                    &out),
            0)
      << out;
  ASSERT_EQ(run_cmd(bin + " prepare -i " + work + "/corpus.txt -o " + work + "/data -t " + work +
                        "/tok.json --no-progress prepare.val_fraction=0.1",
                    &out),
            0)
      << out;
  // The teacher: any model over the tokenizer's vocabulary; a random one with large
  // weights (peaked, far-from-uniform outputs), so the student has something to learn.
  // alpha = 1: pure distillation, so the KL is what the student minimises.
  const auto V = static_cast<int64_t>(shardlm::data::Manifest::load(work + "/data").vocab_size);
  ModelConfig tc = ct::tiny_config();
  tc.vocab_size = V;
  tc.init_std = 0.3;
  torch::manual_seed(3);
  save_safetensors(GPT(tc), work + "/teacher");
  std::ofstream(work + "/student.toml") << "[model]\nvocab_size = " << V
                                        << "\ncontext_length = 32\nn_layer = 1\nn_head = "
                                           "2\nd_model = 32\n[distill]\nlr = 3e-3\nalpha = 1.0\n";
  out.clear();
  ASSERT_EQ(run_cmd(bin + " compress distill --teacher " + work + "/teacher --student-config " +
                        work + "/student.toml --data " + work +
                        "/data --steps 60 --seq-len 32 --out " + work + "/student",
                    &out),
            0)
      << out;
  double before = 0, after = 0;
  const auto at = out.find("KL(teacher || student)");
  ASSERT_NE(at, std::string::npos) << out;
  ASSERT_EQ(std::sscanf(out.c_str() + out.find(':', at) + 1, " %lf -> %lf", &before, &after), 2)
      << out;
  std::printf("distill CLI: KL %.4f -> %.4f\n", before, after);
  EXPECT_LT(after, 0.75 * before) << out;
  EXPECT_EQ(shardlm::load::load_model(work + "/student").model->config().d_model, 32);
}
