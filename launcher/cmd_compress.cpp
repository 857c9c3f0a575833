// `shardlm compress quantize|prune|distill`: a smaller model from a trained one.
// Each reads anything `generate --model` accepts, writes a directory that
// `generate --model` (and serve, eval) loads, copies the tokenizer beside it and
// prints the size before and after. docs/compression.md explains the methods.
#include <cstdio>
#include <filesystem>

#include <fmt/format.h>

#include "compress/distill.h"
#include "compress/io.h"
#include "compress/prune.h"
#include "compress/quantize.h"
#include "core/config.h"
#include "core/error.h"
#include "data/loader.h"
#include "launcher/app.h"
#include "load/model_bundle.h"
#include "model/generate.h"
#include "model/safetensors.h"

namespace shardlm::launcher {

namespace fs = std::filesystem;
namespace mc = model::compress;

namespace {

void copy_tokenizer(const std::string& tokenizer, const std::string& out) {
  if (!tokenizer.empty())
    fs::copy_file(tokenizer, fs::path(out) / fs::path(tokenizer).filename(),
                  fs::copy_options::overwrite_existing);
}

void print_sizes(const char* what, const std::string& in, int64_t in_params, const std::string& out,
                 int64_t out_params) {
  // A checkpoint source has no single weights file: count its fp32 parameters.
  int64_t in_bytes = mc::weights_file_bytes(in);
  const char* in_note = "";
  if (in_bytes == 0) {
    in_bytes = 4 * in_params;
    in_note = " (fp32 parameters)";
  }
  const double a = static_cast<double>(in_bytes) / 1e6;
  const double b = static_cast<double>(mc::weights_file_bytes(out)) / 1e6;
  std::printf("%s: %s -> %s\n  parameters %lld -> %lld\n  weights %.2f MB%s -> %.2f MB (x%.2f)\n",
              what, in.c_str(), out.c_str(), static_cast<long long>(in_params),
              static_cast<long long>(out_params), a, in_note, b, b > 0 ? a / b : 0.0);
}

// Batches of a prepared dataset for one process.
data::LoaderConfig loader_config(const std::string& dir, const std::string& split, int64_t batch,
                                 int64_t seq_len) {
  data::LoaderConfig c;
  c.path = dir;
  c.split = split;
  c.batch_size = batch;
  c.seq_len = seq_len;
  c.validate();
  return c;
}

struct DataArgs {
  std::string data;
  int64_t batch_size = 8, seq_len = 0;  // 0: the model's context_length
};
void add_data_options(CLI::App* cmd, DataArgs& d) {
  cmd->add_option("--batch-size", d.batch_size, "Rows per batch");
  cmd->add_option("--seq-len", d.seq_len, "Tokens per row (default: the model's context_length)");
}

// ---- quantize --------------------------------------------------------------------------------

void add_quantize(CLI::App& parent, Command& run) {
  auto* cmd = parent.add_subcommand("quantize", "INT8 (per channel) or INT4 (per group) weights");
  struct Args {
    std::string model, out;
    mc::QuantConfig q;
    bool asymmetric = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--model,-m", a->model, "Model to quantise")->required();
  cmd->add_option("--out,-o", a->out, "Output directory")->required();
  cmd->add_option("--method", a->q.method, "int8 | int4")->check(CLI::IsMember({"int8", "int4"}));
  cmd->add_option("--group-size", a->q.group_size, "int4: input columns per scale (32, 64, 128)");
  cmd->add_flag("--asymmetric", a->asymmetric, "int4: a zero point per group");
  cmd->add_flag("--embeddings", a->q.embeddings, "Also int8 the embeddings (and lm_head)");
  cmd->add_option("--runtime", a->q.runtime,
                  "How loading runs it: dequantized (fp32 speed) | on_the_fly (int weights "
                  "resident, each block dequantised as it runs)");
  cmd->callback([&run, a] {
    run = [a] {
      a->q.symmetric = !a->asymmetric;
      a->q.validate();
      load::ModelBundle im = load::load_dense(a->model);
      mc::QuantizedModel qm = mc::quantize(im.model, a->q);
      mc::save_quantized(qm, a->out);
      copy_tokenizer(im.tokenizer_path, a->out);
      const int64_t n = im.model->config().num_parameters();
      print_sizes(("quantize " + a->q.method).c_str(), im.source, n, a->out, n);
      return 0;
    };
  });
}

// ---- prune -------------------------------------------------------------------------------------

void add_model_prune(CLI::App& parent, Command& run) {
  auto* cmd = parent.add_subcommand("prune", "Magnitude, MLP-neuron or attention-head pruning");
  struct Args {
    std::string model, out;
    mc::PruneConfig p;
    DataArgs d;
    int64_t batches = 4;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--model,-m", a->model, "Model to prune")->required();
  cmd->add_option("--out,-o", a->out, "Output directory")->required();
  cmd->add_option("--method", a->p.method,
                  "magnitude (unstructured) | neurons (smaller d_ff) | heads (masked)")
      ->check(CLI::IsMember({"magnitude", "neurons", "heads"}));
  cmd->add_option("--sparsity", a->p.sparsity, "Share removed, in [0, 1)");
  cmd->add_option("--scope", a->p.scope, "magnitude: global | layer");
  cmd->add_option("--score", a->p.score, "neurons, heads: l2 | taylor (needs --data)");
  cmd->add_option("--data", a->d.data, "Prepared dataset for the taylor score");
  cmd->add_option("--batches", a->batches, "taylor: batches to score over");
  add_data_options(cmd, a->d);
  cmd->callback([&run, a] {
    run = [a] {
      a->p.validate();
      load::ModelBundle im = load::load_dense(a->model);
      mc::Batches batches;
      if (a->p.score == "taylor" && a->p.method != "magnitude") {
        SHARDLM_CHECK(!a->d.data.empty(), core::ConfigError,
                      "prune --score taylor needs --data (a prepared dataset)");
        const int64_t T = a->d.seq_len > 0 ? a->d.seq_len : im.model->config().context_length;
        data::Loader loader(loader_config(a->d.data, "train", a->d.batch_size, T), 0, 1);
        for (int64_t i = 0; i < a->batches; ++i) {
          data::Batch b = loader.next();
          batches.emplace_back(b.input_ids, b.targets.clamp_min(0));
        }
      }
      mc::PruneResult r = mc::prune(im.model, a->p, batches);
      model::save_safetensors(r.model, a->out);
      copy_tokenizer(im.tokenizer_path, a->out);
      print_sizes(("prune " + a->p.method).c_str(), im.source, im.model->config().num_parameters(),
                  a->out, r.model->config().num_parameters());
      std::printf("  block weight sparsity %.4f%s\n", r.sparsity,
                  a->p.method == "neurons" ? "" : " (zeros are stored: quantise to shrink)");
      return 0;
    };
  });
}

// ---- distill -----------------------------------------------------------------------------------

void add_distill(CLI::App& parent, Command& run) {
  auto* cmd = parent.add_subcommand("distill", "Train a smaller student on a teacher's outputs");
  struct Args {
    std::string teacher, student_config, out;
    mc::DistillConfig c;
    DataArgs d;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--teacher", a->teacher, "Teacher model")->required();
  cmd->add_option("--student-config", a->student_config,
                  "TOML with the student's [model] (and optional [distill]) section")
      ->required();
  cmd->add_option("--data", a->d.data, "Prepared dataset (train; val for the report)")->required();
  cmd->add_option("--out,-o", a->out, "Output directory")->required();
  cmd->add_option("--steps", a->c.steps, "Optimizer steps");
  cmd->add_option("--temperature", a->c.temperature, "Softmax temperature tau");
  cmd->add_option("--alpha", a->c.alpha, "Weight of the KL term (1 - alpha on cross entropy)");
  cmd->add_option("--lr", a->c.lr, "AdamW learning rate");
  add_data_options(cmd, a->d);
  cmd->callback([&run, a, cmd] {
    run = [a, cmd] {
      core::RunConfig rc = core::RunConfig::load(a->student_config);
      model::ModelConfig scfg = rc.get<model::ModelConfig>("model");
      mc::DistillConfig c = rc.get<mc::DistillConfig>("distill");
      // Flags given on the command line win over the file.
      if (cmd->count("--steps")) c.steps = a->c.steps;
      if (cmd->count("--temperature")) c.temperature = a->c.temperature;
      if (cmd->count("--alpha")) c.alpha = a->c.alpha;
      if (cmd->count("--lr")) c.lr = a->c.lr;
      c.validate();
      load::ModelBundle teacher = load::load_dense(a->teacher);
      torch::manual_seed(c.seed);
      model::GPT student(scfg);
      const int64_t T = a->d.seq_len > 0
                            ? a->d.seq_len
                            : std::min(scfg.context_length, teacher.model->config().context_length);
      data::Loader train(loader_config(a->d.data, "train", a->d.batch_size, T), 0, 1);
      // Held-out batches for the report: the val split when the dataset has one.
      const auto& splits = data::Manifest::load(a->d.data).splits;
      const bool has_val = splits.count("val") && splits.at("val").tokens > 0;
      const std::string held = has_val ? "val" : "train";
      data::Loader val(loader_config(a->d.data, held, a->d.batch_size, T), 0, 1);
      std::vector<data::Batch> report;
      for (int i = 0; i < 4; ++i) report.push_back(val.next());
      const double kl0 = mc::mean_kl(teacher.model, student, report);
      mc::distill(
          teacher.model, student, [&] { return train.next(); }, c,
          [](const mc::DistillLog& l) {
            std::printf("step %lld  loss %.4f  kl*tau^2 %.4f  ce %.4f\n",
                        static_cast<long long>(l.step), l.loss, l.kl, l.ce);
            std::fflush(stdout);
          });
      const double kl1 = mc::mean_kl(teacher.model, student, report);
      model::save_safetensors(student, a->out);
      copy_tokenizer(teacher.tokenizer_path, a->out);
      std::printf("KL(teacher || student) on 4 %s batches: %.4f -> %.4f nats/token\n", held.c_str(),
                  kl0, kl1);
      print_sizes("distill", teacher.source, teacher.model->config().num_parameters(), a->out,
                  scfg.num_parameters());
      return 0;
    };
  });
}

}  // namespace

void register_compress(CLI::App& app, Context&, Command& run) {
  auto* cmd = app.add_subcommand("compress", "Quantise, prune or distill a model");
  cmd->require_subcommand(1);
  add_quantize(*cmd, run);
  add_model_prune(*cmd, run);
  add_distill(*cmd, run);
}

}  // namespace shardlm::launcher
