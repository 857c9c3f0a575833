// Controls (see controls.h).
#include "runtime/controls.h"

#include <chrono>
#include <filesystem>
#include <utility>

#include <fmt/format.h>

#include "core/log.h"
#include "runtime/inspect.h"

namespace shardlm::runtime {

namespace fs = std::filesystem;

Controls::Controls(Targets t, const core::Env& env, double clip,
                   std::optional<data::Tokenizer> tokenizer)
    : t_(std::move(t)), env_(env), clip_(clip), tokenizer_(std::move(tokenizer)) {}

std::string Controls::poll() {
  if (!env_.is_root()) return {};
  auto cmds = t_.reporter->control().poll();
  return cmds.empty() ? std::string() : monitor::encode_commands(cmds);
}

void Controls::apply_all(const std::string& encoded, int64_t step) {
  if (encoded.empty()) return;
  for (const auto& c : monitor::decode_commands(encoded)) apply(c, step);
}

void Controls::apply(const monitor::ControlCommand& c, int64_t step) {
  using K = monitor::ControlKind;
  std::string note;
  switch (c.kind) {
    case K::kPause:
      paused_ = true;
      note = "paused";
      break;
    case K::kResume:
      paused_ = false;
      note = "resumed";
      break;
    case K::kStop:
      stop_ = true;
      note = "stop requested";
      break;
    case K::kSaveCheckpoint:
      save_ = true;
      note = "checkpoint requested";
      break;
    case K::kSetLr:
      t_.schedule->set_lr_at(step, c.value);
      note = fmt::format("lr = {:.3g}", c.value);
      break;
    case K::kSetWeightDecay:
      t_.engine->set_weight_decay(c.value);
      note = fmt::format("weight decay = {}", c.value);
      break;
    case K::kSetClip:
      clip_ = c.value;
      note = fmt::format("clip = {}", c.value);
      break;
    case K::kSetBatch:
      if (c.accumulation > 0) *t_.accumulation = c.accumulation;
      if (c.micro_batch > 0) t_.data->set_batch_size(c.micro_batch);
      note =
          fmt::format("micro-batch {} x accumulation {}", t_.data->batch_size(), *t_.accumulation);
      break;
    case K::kSetEarlyStopping: {
      auto ec = t_.early->config();
      ec.enabled = c.early.enabled;
      if (c.early.patience > 0) ec.patience = c.early.patience;
      ec.min_delta = c.early.min_delta;
      t_.early->reconfigure(ec);
      note = fmt::format("early stopping {} (patience {}, min delta {})", ec.enabled ? "on" : "off",
                         ec.patience, ec.min_delta);
      break;
    }
    case K::kInspect:
      inspect(c, step);
      return;
    default:
      if (env_.is_root())
        t_.reporter->control().ack(c, step, false, "not handled by a training run");
      return;
  }
  core::log::info0("control at step {}: {}", step, note);
  if (env_.is_root()) t_.reporter->control().ack(c, step, true, note);
  if (c.kind == K::kPause || c.kind == K::kResume)
    t_.reporter->event(
        c.kind == K::kPause ? monitor::EventKind::kPaused : monitor::EventKind::kResumed, step,
        note);
}

// Every rank runs the request (a ZeRO-3 forward gathers blocks from all);
// rank 0 answers. Requests are identical on all ranks, so a refusal is too.
void Controls::inspect(const monitor::ControlCommand& c, int64_t step) {
  t_.engine->gather_all();
  InspectTarget target;
  target.model = t_.model;
  target.runner = t_.engine->block_runner(false);
  target.tokenizer = tokenizer_ ? &*tokenizer_ : nullptr;
  target.device = t_.device;
  target.step = step;  // generate: tokens stream to the viewer as rank 0 produces them
  target.request_id = c.id;
  if (env_.is_root())
    target.partial = [this, &c](const nlohmann::json& d) {
      t_.reporter->control().inspect_result(c, true, d, "", true);
    };
  nlohmann::json data;
  std::string error;
  auto t0 = std::chrono::steady_clock::now();
  try {
    data = inspect_model(c.inspect_what, c.args, target);
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!env_.is_root()) return;
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  core::log::debug("inspect {} at step {}: {} in {:.0f} ms", c.inspect_what, step,
                   error.empty() ? "answered" : error, ms);
  t_.reporter->control().inspect_result(c, error.empty(), data, error);
}

Knobs Controls::knobs() const {
  return {clip_, t_.engine->weight_decay(), t_.data->batch_size(), *t_.accumulation};
}

nlohmann::json Controls::state() const {
  return {{"clip", clip_},
          {"weight_decay", t_.engine->weight_decay()},
          {"micro_batch", t_.data->batch_size()},
          {"accumulation", *t_.accumulation}};
}

void Controls::load_state(const nlohmann::json& j) {
  clip_ = j.at("clip").get<double>();
  t_.engine->set_weight_decay(j.at("weight_decay").get<double>());
}

std::optional<data::Tokenizer> find_data_tokenizer(const std::string& configured,
                                                   const std::string& data_path,
                                                   const data::Manifest& manifest,
                                                   core::Comm& comm) {
  const std::string& want = manifest.tokenizer_hash;
  std::optional<data::Tokenizer> tokenizer;
  if (!configured.empty()) {
    tokenizer = data::Tokenizer::load(configured);
    data::check_tokenizer(manifest, tokenizer->hash());
  } else {
    fs::path data_dir(data_path);
    for (const fs::path& p :
         {data_dir / "tokenizer.json", data_dir.parent_path() / "tokenizer.json"}) {
      std::error_code ec;
      if (!fs::is_regular_file(p, ec)) continue;
      try {
        data::Tokenizer t = data::Tokenizer::load(p.string());
        if (!want.empty() && t.hash() != want) {
          core::log::info0("{} is not the data's tokenizer (hash {}, data {}): not used",
                           p.string(), t.hash(), want);
          continue;
        }
        tokenizer = std::move(t);
        core::log::debug("tokenizer for inspection: {}", p.string());
        break;
      } catch (const std::exception& e) {
        core::log::warn0("{}: not a tokenizer ({}); model inspection will not encode prompts",
                         p.string(), e.what());
      }
    }
  }
  // Inspection is collective: every rank must take the same path.
  const bool have = tokenizer.has_value();
  if (!core::all_ranks(comm, have) && have) {
    core::log::warn("another rank has no tokenizer for inspection: prompts will not be encoded");
    tokenizer.reset();
  }
  return tokenizer;
}

}  // namespace shardlm::runtime
