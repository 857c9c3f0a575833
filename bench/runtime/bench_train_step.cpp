// shardlm's side of the train-step benchmark: the GPT of model/ wrapped by the
// trainer's Engine (ShardedModel, ZeRO stage as given), one AdamW step per
// iteration on random tokens, timed like pytorch_train_step.py (same model,
// same optimizer settings, median of the timed steps). Prints one JSON line.
//
//   bench_train_step --threads 2                     (CPU benchmark model)
//   bench_train_step --device cuda --dtype bf16 --layers 12 --heads 12 --width 768 \
//                    --seq 1024 --vocab 50304 --batch 16  (GPT-2 124M)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/torch.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/env.h"
#include "model/gpt.h"
#include "parallel/device_memory.h"
#include "parallel/mpi_group.h"
#include "parallel/nccl_group.h"
#include "runtime/engine.h"

using namespace shardlm;

int main(int argc, char** argv) {
  core::prefer_passive_omp_wait(argv);  // what the shardlm binary does (core/env.h)
  CLI::App app{"shardlm train-step benchmark"};
  int64_t layers = 4, heads = 4, width = 256, seq = 128, batch = 8, vocab = 4096;
  int steps = 10, warmup = 3, threads = 0, zero = 0;
  std::string device = "cpu", dtype = "fp32", optimizer = "adamw";
  bool checkpointing = false;
  app.add_option("--layers", layers);
  app.add_option("--heads", heads);
  app.add_option("--width", width);
  app.add_option("--seq", seq);
  app.add_option("--batch", batch);
  app.add_option("--vocab", vocab);
  app.add_option("--steps", steps);
  app.add_option("--warmup", warmup);
  app.add_option("--threads", threads);
  app.add_option("--device", device);
  app.add_option("--dtype", dtype)->check(CLI::IsMember({"fp32", "bf16"}));
  app.add_option("--zero", zero);
  app.add_option("--optimizer", optimizer);
  app.add_flag("--checkpointing", checkpointing, "activation checkpointing");
  CLI11_PARSE(app, argc, argv);
  core::MpiSession mpi(&argc, &argv);
  if (threads > 0) at::set_num_threads(threads);

  torch::manual_seed(0);
  model::ModelConfig cfg;
  cfg.vocab_size = vocab;
  cfg.context_length = seq;
  cfg.n_layer = layers;
  cfg.n_head = heads;
  cfg.d_model = width;
  cfg.validate();
  torch::Device dev(device);
  model::GPT gpt(cfg);
  parallel::ShardedConfig sc;
  sc.zero_stage = zero;
  parallel::OptimizerConfig oc;
  oc.name = optimizer;
  oc.lr = 3e-4;
  oc.beta1 = 0.9;
  oc.beta2 = 0.95;
  oc.eps = 1e-8;
  oc.weight_decay = 0.1;
  std::shared_ptr<parallel::ProcessGroup> group;
  if (dev.is_cuda() && parallel::NcclGroup::compiled())
    group = parallel::NcclGroup::create(MPI_COMM_WORLD);
  else
    group = std::make_shared<parallel::MpiGroup>(MPI_COMM_WORLD);
  runtime::Engine engine(gpt, sc, oc, group, dev);
  auto opts = torch::TensorOptions().dtype(torch::kLong).device(dev);
  auto x = torch::randint(vocab, {batch, seq}, opts);
  auto y = torch::randint(vocab, {batch, seq}, opts);
  c10::ScalarType amp = dtype == "bf16" ? c10::kBFloat16 : c10::kFloat;
  model::ForwardOptions fo;
  fo.block_runner = engine.block_runner(checkpointing);

  std::vector<double> times;
  double loss_v = 0;
  for (int i = 0; i < warmup + steps; ++i) {
    if (dev.is_cuda()) torch::cuda::synchronize();
    auto t0 = std::chrono::steady_clock::now();
    engine.begin_micro_batch(true);
    torch::Tensor loss;
    {
      model::AutocastGuard ac(dev.type(), amp, amp != c10::kFloat);
      loss = model::loss(gpt->forward(x, fo), y);
    }
    loss.backward();
    engine.step(3e-4, 1.0);
    if (dev.is_cuda()) torch::cuda::synchronize();
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (i >= warmup) times.push_back(dt);
    loss_v = loss.item<double>();
  }
  std::sort(times.begin(), times.end());
  double med = times[times.size() / 2];
  // The caching allocator's high-water mark over the whole run (as PyTorch's
  // torch.cuda.max_memory_allocated in pytorch_train_step.py).
  nlohmann::json peak = nullptr;
  if (dev.is_cuda())
    if (auto m = parallel::cuda_memory(dev.has_index() ? dev.index() : 0)) peak = m->peak_allocated;
  nlohmann::json j = {{"impl", "shardlm"},
                      {"torch", TORCH_VERSION},
                      {"device", device},
                      {"dtype", dtype},
                      {"threads", at::get_num_threads()},
                      {"zero_stage", zero},
                      {"step_s", med},
                      {"tokens_per_s", batch * seq / med},
                      {"loss", loss_v},
                      {"peak_bytes", peak},
                      {"parameters", cfg.num_parameters()}};
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);  // before teardown, whatever happens there
  // Nothing may be in flight when the engine, its group and then MPI go: the
  // NCCL group's stream and the tensors recorded on it outlive neither.
  if (dev.is_cuda()) torch::cuda::synchronize();
  return 0;
}
