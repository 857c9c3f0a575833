// ShardedModel: ZeRO stages 0-3 with CPU offload (see sharded_model.h).
#include "parallel/sharded_model.h"

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>

#include <unordered_map>

#include "core/config.h"
#include "core/error.h"
#include "parallel/grad_clip.h"

namespace shardlm::parallel {

// ---- configuration ----------------------------------------------------------------

ShardedConfig ShardedConfig::from(const core::ConfigSection& s) {
  ShardedConfig c;
  c.zero_stage = s.get("zero_stage", c.zero_stage);
  c.cpu_offload = s.get("cpu_offload", c.cpu_offload);
  c.prefetch = s.get("prefetch", c.prefetch);
  c.offload_params = s.get("offload_params", c.offload_params);
  c.backend = s.get("backend", c.backend);
  c.collective_timeout_s = s.get("collective_timeout_s", c.collective_timeout_s);
  return c;
}

void ShardedConfig::validate() const {
  core::config_require(zero_stage >= 0 && zero_stage <= 3, "zero_stage", std::to_string(zero_stage),
                       "0 (DDP), 1, 2 or 3");
  if (offload_params)
    core::config_require(zero_stage == 3 && cpu_offload, "offload_params", "true",
                         "zero_stage = 3 and cpu_offload = true (layer streaming offloads the "
                         "sharded parameters of ZeRO-3 along with its optimizer states)");
  core::config_require(backend == "auto" || backend == "nccl" || backend == "mpi", "backend",
                       backend, "\"auto\", \"nccl\" or \"mpi\"");
  // Below 1 s MPI's own start-up skew would trip it; above a week it means "never".
  core::config_require(collective_timeout_s >= 1 && collective_timeout_s <= 7 * 86400,
                       "collective_timeout_s", std::to_string(collective_timeout_s),
                       "seconds in 1 .. 604800 (default 600)");
}

ProcessGroupOptions ShardedConfig::group_options() const {
  ProcessGroupOptions o;
  o.timeout = std::chrono::milliseconds(static_cast<int64_t>(collective_timeout_s * 1000.0));
  return o;
}

// ---- storage that comes and goes ------------------------------------------------------
// Stage 3 frees a unit's full parameters between uses, and stages 2-3 free the
// full gradients between steps, without changing the tensors that point at
// them (the module's parameters, .grad fields, autograd's saved views): the
// storage keeps its identity and only its bytes are released and reallocated.

namespace {
bool has_storage(const torch::Tensor& t) {
  return t.storage().nbytes() > 0;
}

void free_storage(const torch::Tensor& t) {
  c10::StorageImpl* s = t.storage().unsafeGetStorageImpl();
  if (s->nbytes() == 0) return;
  s->set_data_ptr_noswap(at::DataPtr(nullptr, t.device()));
  s->set_nbytes(0);
}

void alloc_storage(const torch::Tensor& t) {
  c10::StorageImpl* s = t.storage().unsafeGetStorageImpl();
  if (s->nbytes() != 0) return;
  const size_t n = static_cast<size_t>(t.numel()) * t.element_size();
  s->set_data_ptr_noswap(s->allocator()->allocate(n));
  s->set_nbytes(n);
}

int64_t held_bytes(const torch::Tensor& t) {
  return t.defined() ? static_cast<int64_t>(t.storage().nbytes()) : 0;
}
}  // namespace

// ---- units ----------------------------------------------------------------------------

struct ShardedModel::Unit {
  size_t index = 0;
  std::string name;
  bool root = false;
  std::vector<torch::Tensor> params;  // the module's parameters, views of flat
  std::unique_ptr<FlatParams> flat;   // full parameters (padded,)
  torch::Tensor grad_full;            // (padded,); the parameters' .grad view it
  torch::Tensor param_shard;          // stage 3: this rank's parameters (shard,)
  torch::Tensor staging;              // streaming on a GPU: the shard copied to the device
  torch::Tensor grad_shard;           // stages 1-3: reduced gradient of the shard
  torch::Tensor reduce_buf;           // stages 2-3: a later micro-batch's reduce-scatter output
  bool grad_shard_empty = true;
  torch::Tensor master, host_grad;  // offload: fp32 master and gradient on the CPU
  std::unique_ptr<Optimizer> opt;
  std::vector<std::pair<std::shared_ptr<torch::autograd::Node>, uintptr_t>> hooks;
  int64_t expected = 0;  // parameters that receive gradients
  int64_t ready = 0;     // of those, arrived this micro-batch
  bool reduced = false;
  bool frozen = false;  // layer-wise training: no gradients, no step
  bool into_buf = false;
  WorkPtr reduce_work, gather_work;
  CopyStream::TicketPtr to_device;  // offload: the last copy of `master` up (step, gather)
  CopyStream::TicketPtr to_host;    // offload: the last copy of a gradient down
  torch::Tensor landed;             // streaming, accumulation: a later micro-batch's shard
  bool pending_add = false;         // `landed` is still to be added to host_grad
  bool gathered = true;
  bool streamed = false;  // offload_params: the shard lives in `master` only

  // The tensor the optimizer steps on the compute device (streamed: the host).
  torch::Tensor opt_params(int stage, int rank) const {
    if (streamed) return master;
    if (stage == 0) return flat->flat();
    if (stage == 3) return param_shard;
    return flat->shard(rank);
  }
};

namespace {
// Fires after autograd accumulated a parameter's gradient into .grad.
class ReadyHook final : public torch::autograd::FunctionPostHook {
 public:
  ReadyHook(std::function<void()> on_ready) : on_ready_(std::move(on_ready)) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    on_ready_();
    return outputs;
  }

 private:
  std::function<void()> on_ready_;
};
}  // namespace

// Identity on a unit's output whose backward gathers the unit's parameters
// again (stage 3) before autograd reaches the unit's own backward.
struct PreBackwardFn : public torch::autograd::Function<PreBackwardFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor y,
                               int64_t model, int64_t unit) {
    ctx->saved_data["model"] = model;
    ctx->saved_data["unit"] = unit;
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* self = reinterpret_cast<ShardedModel*>(ctx->saved_data["model"].toInt());
    self->pre_backward(static_cast<size_t>(ctx->saved_data["unit"].toInt()));
    return {grads[0], torch::Tensor(), torch::Tensor()};
  }
};

// ---- construction ---------------------------------------------------------------------

ShardedModel::ShardedModel(std::shared_ptr<torch::nn::Module> module,
                           std::vector<std::shared_ptr<torch::nn::Module>> units,
                           std::shared_ptr<ProcessGroup> group, ShardedConfig config,
                           OptimizerConfig optimizer)
    : module_(std::move(module)), group_(std::move(group)), config_(config) {
  config_.validate();
  optimizer.validate();
  const int stage = static_cast<int>(config_.zero_stage);
  const int rank = group_->rank(), world = group_->size();

  // Names of the module's parameters, and which unit holds each.
  std::unordered_map<const void*, std::string> names;
  for (const auto& item : module_->named_parameters(true))
    names[item.value().unsafeGetTensorImpl()] = item.key();
  std::unordered_map<const void*, size_t> owner;
  std::vector<std::vector<torch::Tensor>> unit_params(units.size() + 1);
  for (size_t i = 0; i < units.size(); ++i) {
    for (const torch::Tensor& p : units[i]->parameters(true)) {
      const void* key = p.unsafeGetTensorImpl();
      SHARDLM_CHECK(names.count(key), core::ModelError,
                    "ShardedModel: unit {} has a parameter that is not the module's", i);
      SHARDLM_CHECK(!owner.count(key), core::ModelError,
                    "ShardedModel: parameter '{}' is in units {} and {}", names[key], owner[key],
                    i);
      owner[key] = i;
      unit_params[i].push_back(p);
    }
  }
  for (const auto& item : module_->named_parameters(true))
    if (!owner.count(item.value().unsafeGetTensorImpl()))
      unit_params[units.size()].push_back(item.value());

  torch::NoGradGuard no_grad;
  for (const auto& ps : unit_params)
    if (!ps.empty()) {
      copier_ = std::make_unique<CopyStream>(ps[0].device());
      break;
    }
  if (!copier_) copier_ = std::make_unique<CopyStream>(torch::Device(torch::kCPU));
  for (size_t i = 0; i < unit_params.size(); ++i) {
    if (unit_params[i].empty() && i == units.size()) break;  // no root parameters
    auto u = std::make_unique<Unit>();
    u->index = i;
    u->root = i == units.size();
    u->name = u->root ? "root" : "unit" + std::to_string(i);
    u->params = unit_params[i];
    std::vector<std::string> pnames;
    for (const torch::Tensor& p : u->params) pnames.push_back(names[p.unsafeGetTensorImpl()]);
    const torch::Device device =
        u->params.empty() ? torch::Device(torch::kCPU) : u->params[0].device();
    u->flat = std::make_unique<FlatParams>(u->params, pnames, world, device);
    group_->broadcast(u->flat->flat(), 0);  // every rank starts from rank 0's values
    auto views = u->flat->views();
    u->grad_full = torch::zeros_like(u->flat->flat());
    auto gviews = u->flat->views(u->grad_full);
    for (size_t k = 0; k < u->params.size(); ++k) {
      u->params[k].set_data(views[k]);
      u->params[k].mutable_grad() = gviews[k];
    }
    const int64_t shard = u->flat->shard_numel();
    if (stage >= 1) u->grad_shard = torch::zeros({shard}, u->grad_full.options());
    if (stage == 3) u->param_shard = u->flat->shard(rank).clone();
    if (config_.cpu_offload) {
      u->master = u->opt_params(stage, rank).to(torch::kCPU, torch::kFloat, false, true);
      u->host_grad = torch::zeros_like(u->master);
      // Pinned host memory, so that the copies to and from the GPU are DMA
      // and run asynchronously on the copy stream.
      if (device.is_cuda()) {
        u->master = u->master.pin_memory();
        u->host_grad = u->host_grad.pin_memory();
      }
    }
    if (config_.offload_params) {
      u->streamed = true;
      if (device.is_cpu() && u->flat->flat().scalar_type() == torch::kFloat) {
        u->param_shard = u->master;  // the all-gather reads the host shard itself
      } else {
        u->param_shard = torch::Tensor();
        u->staging = torch::empty({shard}, u->flat->flat().options());
        free_storage(u->staging);
      }
      free_storage(u->grad_shard);
      free_storage(u->grad_full);
    }
    u->opt = make_optimizer(optimizer);
    u->opt->set_segments(stage == 0 ? u->flat->segments(0, u->flat->padded_numel())
                                    : u->flat->shard_segments(rank));
    // Readiness of the unit's gradients, from each parameter's AccumulateGrad.
    Unit* raw = u.get();
    for (const torch::Tensor& p : u->params) {
      if (!p.requires_grad()) continue;
      auto acc = torch::autograd::impl::grad_accumulator(p);
      uintptr_t key = acc->add_post_hook(std::make_unique<ReadyHook>([this, raw] {
        if (++raw->ready == raw->expected) on_unit_grads_ready(*raw);
      }));
      u->hooks.emplace_back(std::move(acc), key);
      ++u->expected;
    }
    units_.push_back(std::move(u));
  }
  if (stage == 3)
    for (auto& u : units_) release_params(*u);
  peak_ = memory();
}

ShardedModel::~ShardedModel() {
  for (auto& u : units_)
    for (auto& [node, key] : u->hooks) node->del_post_hook(key);
}

// ---- gathering (stage 3) ---------------------------------------------------------------

void ShardedModel::gather(Unit& u, bool wait) {
  if (config_.zero_stage != 3) return;
  if (!u.gathered && !u.gather_work) {
    alloc_storage(u.flat->flat());
    if (u.staging.defined()) {
      // Streamed to a GPU: host shard -> device, then the all-gather, both
      // issued on the copy stream, so the collective waits for the copy and
      // the compute stream waits for neither (Work::wait orders it later).
      alloc_storage(u.staging);
      u.to_device = copier_->run(
          [&] {
            u.staging.copy_(u.master, /*non_blocking=*/true);
            u.gather_work = group_->all_gather_async(u.flat->flat(), u.staging);
          },
          {u.staging, u.flat->flat()});
    } else {
      u.gather_work = group_->all_gather_async(u.flat->flat(), u.param_shard);
    }
    note_memory();
  }
  if (wait && u.gather_work) {
    u.gather_work->wait();
    u.gather_work.reset();
    u.gathered = true;
    // The collective's stream was recorded on the staging storage: the caching
    // allocator keeps it until the all-gather has read it.
    if (u.staging.defined()) free_storage(u.staging);
  }
}

void ShardedModel::release_params(Unit& u) {
  if (config_.zero_stage != 3) return;
  if (u.gather_work) {
    u.gather_work->wait();
    u.gather_work.reset();
  }
  free_storage(u.flat->flat());
  u.gathered = false;
}

void ShardedModel::gather_all() {
  for (auto& u : units_) gather(*u, false);
  for (auto& u : units_) gather(*u, true);
}

void ShardedModel::pre_backward(size_t i) {
  Unit& u = *units_[i];
  gather(u, true);
  if (config_.prefetch && i > 0) gather(*units_[i - 1], false);
  // Streaming: the unit's full gradient exists from here until it has landed.
  if (u.streamed && !u.frozen && !has_storage(u.grad_full)) {
    alloc_storage(u.grad_full);
    u.grad_full.zero_();
    note_memory();
  }
}

// ---- micro-batches --------------------------------------------------------------------

void ShardedModel::begin_micro_batch(bool last) {
  finish_reductions();
  last_micro_batch_ = last;
  in_step_ = true;
  for (auto& u : units_) {
    u->ready = 0;
    u->reduced = false;
    // Streamed units get theirs just before their backward (pre_backward);
    // the root's gradients come first in backward, so it gets them now.
    const bool lazy = u->streamed && !u->root;
    if (config_.zero_stage >= 2 && !lazy && !has_storage(u->grad_full)) {
      alloc_storage(u->grad_full);
      u->grad_full.zero_();
    }
  }
  if (config_.zero_stage == 3 && units_.back()->root) gather(*units_.back(), true);
  note_memory();
}

torch::Tensor ShardedModel::run_unit(size_t i, const torch::Tensor& x, const UnitFn& f) {
  SHARDLM_CHECK(i < units_.size() && !units_[i]->root, core::ModelError, "ShardedModel: no unit {}",
                i);
  Unit& u = *units_[i];
  if (config_.zero_stage != 3) return f(x);
  gather(u, true);
  if (config_.prefetch && i + 1 < units_.size() && !units_[i + 1]->root)
    gather(*units_[i + 1], false);
  torch::Tensor y = f(x);
  if (torch::GradMode::is_enabled() && y.requires_grad())
    y = PreBackwardFn::apply(y, reinterpret_cast<int64_t>(this), static_cast<int64_t>(i));
  release_params(u);
  return y;
}

void ShardedModel::on_unit_grads_ready(Unit& u) {
  const int stage = static_cast<int>(config_.zero_stage);
  if (stage == 3) release_params(u);
  if (stage <= 1 && !last_micro_batch_) return;  // gradients accumulate locally
  if (u.reduced) return;
  u.reduced = true;
  if (u.streamed) {
    // Reduce-scatter into a transient device shard; land the previous unit's
    // result on the host meanwhile, so at most two units' gradients are on
    // the device.
    if (!has_storage(u.grad_full)) {  // a unit whose backward never ran
      alloc_storage(u.grad_full);
      u.grad_full.zero_();
    }
    alloc_storage(u.grad_shard);
    note_memory();
    u.reduce_work = group_->reduce_scatter_async(u.grad_shard, u.grad_full, ReduceOp::kAvg);
    for (Unit* prev : in_flight_) land_grads(*prev);
    in_flight_.assign(1, &u);
    return;
  }
  if (stage == 0) {
    u.reduce_work = group_->all_reduce_async(u.grad_full, ReduceOp::kAvg);
    return;
  }
  // The first reduction of a step lands in the shard gradient itself, later
  // ones (accumulation) in a buffer that finish_reductions() adds.
  u.into_buf = !u.grad_shard_empty;
  if (u.into_buf && !u.reduce_buf.defined()) u.reduce_buf = torch::empty_like(u.grad_shard);
  u.reduce_work = group_->reduce_scatter_async(u.into_buf ? u.reduce_buf : u.grad_shard,
                                               u.grad_full, ReduceOp::kAvg);
}

// Streaming: a unit's reduced gradient shard goes to the host (copied at a
// step's first micro-batch, added at later ones) and its device buffers go.
// The copy down runs on the copy stream; the host waits for it only when it
// reads host_grad (finish_landing: the step, or the next landing of the unit).
void ShardedModel::land_grads(Unit& u) {
  if (!u.reduce_work) return;
  u.reduce_work->wait();
  u.reduce_work.reset();
  torch::NoGradGuard no_grad;
  finish_landing(u);  // a previous micro-batch's landing of this unit
  if (u.grad_shard_empty) {
    u.to_host = copier_->copy(u.host_grad, u.grad_shard);
  } else {
    if (!u.landed.defined())
      u.landed = torch::empty_like(u.host_grad,
                                   torch::TensorOptions().pinned_memory(u.grad_shard.is_cuda()));
    u.to_host = copier_->copy(u.landed, u.grad_shard);
    u.pending_add = true;
  }
  u.grad_shard_empty = false;
  free_storage(u.grad_full);  // recorded on the copy stream: reused only after the copy
  free_storage(u.grad_shard);
}

void ShardedModel::finish_landing(Unit& u) {
  CopyStream::host_waits(u.to_host);
  u.to_host.reset();
  if (u.pending_add) {
    u.host_grad.add_(u.landed);
    u.pending_add = false;
  }
}

void ShardedModel::finish_reductions() {
  if (!in_step_) return;
  in_step_ = false;
  const int stage = static_cast<int>(config_.zero_stage);
  if (stage <= 1 && !last_micro_batch_) return;
  // Units whose hooks did not fire (unused parameters), in unit order.
  for (auto& u : units_)
    if (!u->reduced && !u->frozen) {
      if (stage == 3) release_params(*u);
      u->ready = u->expected;
      u->reduced = false;
      on_unit_grads_ready(*u);
    }
  for (auto& u : units_) {
    if (u->streamed) {
      land_grads(*u);
      finish_landing(*u);
      // A unit that received nothing this step (frozen) has no stale host gradient.
      if (u->grad_shard_empty) u->host_grad.zero_();
      continue;
    }
    if (u->reduce_work) u->reduce_work->wait();
    u->reduce_work.reset();
    if (stage >= 1) {
      if (u->into_buf) u->grad_shard.add_(u->reduce_buf);
      u->grad_shard_empty = false;
    }
    if (stage >= 2) free_storage(u->grad_full);
  }
  in_flight_.clear();  // every streamed reduction has landed
}

// ---- step -------------------------------------------------------------------------------

std::vector<torch::Tensor> ShardedModel::reduced_grads() {
  finish_reductions();
  std::vector<torch::Tensor> grads;
  for (auto& u : units_)
    grads.push_back(u->streamed               ? u->host_grad
                    : config_.zero_stage == 0 ? u->grad_full
                                              : u->grad_shard);
  return grads;
}

void ShardedModel::zero_grads() {
  for (auto& u : units_) {
    if (config_.zero_stage <= 1) u->grad_full.zero_();
    if (config_.zero_stage >= 1) {
      if (has_storage(u->grad_shard)) u->grad_shard.zero_();
      u->grad_shard_empty = true;
    }
  }
}

void ShardedModel::skip_step() {
  finish_reductions();
  zero_grads();
}

torch::Tensor ShardedModel::step(double max_grad_norm) {
  const int stage = static_cast<int>(config_.zero_stage);
  const int rank = group_->rank();
  std::vector<torch::Tensor> grads = reduced_grads();
  // Stage 0 gradients are replicated (norm without a group); later stages are
  // disjoint shards (norm over the group).
  ProcessGroup* over = stage == 0 ? nullptr : group_.get();
  torch::Tensor norm = max_grad_norm > 0 ? clip_grad_norm_tensor(grads, max_grad_norm, over)
                                         : global_grad_norm_tensor(grads, over);
  std::vector<WorkPtr> gathers;
  torch::NoGradGuard no_grad;
  // Offload (not streamed): every unit's gradient goes down first, so that the
  // copies of later units overlap the CPU steps of earlier ones.
  if (config_.cpu_offload)
    for (size_t k = 0; k < units_.size(); ++k) {
      Unit& u = *units_[k];
      if (!u.frozen && !u.streamed) u.to_host = copier_->copy(u.host_grad, grads[k]);
    }
  for (size_t k = 0; k < units_.size(); ++k) {
    Unit& u = *units_[k];
    if (u.frozen) continue;
    torch::Tensor params = u.opt_params(stage, rank);
    // The CPU writes `master`: the last copy up from it must be done.
    CopyStream::host_waits(u.to_device);
    u.to_device.reset();
    if (u.streamed) {
      u.opt->step(u.master, u.host_grad);  // the next gather reads `master`
      continue;
    }
    if (config_.cpu_offload) {
      CopyStream::host_waits(u.to_host);
      u.to_host.reset();
      u.opt->step(u.master, u.host_grad);
      // Up again on the copy stream, with the all-gather that reads it (stages 1-2).
      u.to_device = copier_->run(
          [&] {
            params.copy_(u.master, /*non_blocking=*/true);
            if (stage == 1 || stage == 2)
              gathers.push_back(group_->all_gather_async(u.flat->flat(), params));
          },
          {params, u.flat->flat()});
      copier_->compute_waits(u.to_device);  // the next forward reads the parameters
      continue;
    }
    u.opt->step(params, grads[k]);
    if (stage == 1 || stage == 2)
      gathers.push_back(group_->all_gather_async(u.flat->flat(), params));
  }
  for (auto& w : gathers) w->wait();
  zero_grads();
  return norm;
}

// ---- checkpoint state -----------------------------------------------------------------

StateDict ShardedModel::state_dict() const {
  const int stage = static_cast<int>(config_.zero_stage);
  const int rank = group_->rank();
  StateDict out;
  for (const auto& u : units_) {
    torch::Tensor params = config_.cpu_offload ? u->master : u->opt_params(stage, rank);
    auto range = stage == 0 ? std::pair<int64_t, int64_t>{0, u->flat->padded_numel()}
                            : u->flat->shard_range(rank);
    out[u->name + ".params"] = params.detach().to(torch::kCPU, false, true);
    out[u->name + ".range"] =
        torch::tensor({range.first, range.second, u->flat->padded_numel()}, torch::kLong);
    for (const auto& [key, value] : u->opt->state_dict())
      out[u->name + ".optim." + key] = value.to(torch::kCPU, false, true);
  }
  return out;
}

void ShardedModel::load_state_dict(const StateDict& state) {
  const int stage = static_cast<int>(config_.zero_stage);
  const int rank = group_->rank();
  torch::NoGradGuard no_grad;
  std::vector<WorkPtr> gathers;
  for (auto& u : units_) {
    auto need = [&](const std::string& key) -> const torch::Tensor& {
      auto it = state.find(u->name + "." + key);
      SHARDLM_CHECK(it != state.end(), core::CheckpointError, "sharded model state has no '{}.{}'",
                    u->name, key);
      return it->second;
    };
    torch::Tensor params = u->opt_params(stage, rank);
    const torch::Tensor& saved = need("params");
    SHARDLM_CHECK(saved.numel() == params.numel(), core::CheckpointError,
                  "sharded model state '{}.params' has {} elements; this rank's shard has {} "
                  "(another world size, stage or model?)",
                  u->name, saved.numel(), params.numel());
    params.copy_(saved.view_as(params));
    if (config_.cpu_offload && !u->streamed) u->master.copy_(saved.view_as(u->master));
    StateDict opt;
    const std::string prefix = u->name + ".optim.";
    for (const auto& [key, value] : state)
      if (key.rfind(prefix, 0) == 0) opt[key.substr(prefix.size())] = value;
    u->opt->load_state_dict(opt);
    if (stage == 1 || stage == 2)
      gathers.push_back(group_->all_gather_async(u->flat->flat(), params));
  }
  for (auto& w : gathers) w->wait();
}

std::pair<int64_t, int64_t> ShardedModel::unit_range(size_t i) const {
  const Unit& u = *units_.at(i);
  if (config_.zero_stage == 0) return {0, u.flat->padded_numel()};
  return u.flat->shard_range(group_->rank());
}

torch::Tensor ShardedModel::unit_params(size_t i) const {
  const Unit& u = *units_.at(i);
  torch::Tensor p = config_.cpu_offload
                        ? u.master
                        : u.opt_params(static_cast<int>(config_.zero_stage), group_->rank());
  return p.detach().to(torch::kCPU, false, true);
}

StateDict ShardedModel::unit_dense_state(size_t i) const {
  const Unit& u = *units_.at(i);
  if (u.opt->steps() == 0) return {};
  StateDict d = u.opt->dense_state();
  for (auto& [k, v] : d) v = v.to(torch::kCPU, false, true);
  return d;
}

void ShardedModel::load_unit(size_t i, const torch::Tensor& saved, const StateDict* optimizer,
                             bool dense) {
  const int stage = static_cast<int>(config_.zero_stage);
  Unit& u = *units_.at(i);
  torch::NoGradGuard no_grad;
  torch::Tensor params = u.opt_params(stage, group_->rank());
  SHARDLM_CHECK(saved.numel() == params.numel(), core::CheckpointError,
                "unit {}: {} elements given, this rank holds {}", u.name, saved.numel(),
                params.numel());
  params.copy_(saved.view_as(params));
  if (config_.cpu_offload && !u.streamed) u.master.copy_(saved.view_as(u.master));
  if (optimizer && !optimizer->empty()) {
    if (dense)
      u.opt->load_dense_state(*optimizer);
    else
      u.opt->load_state_dict(*optimizer);
  }
}

void ShardedModel::finish_load() {
  const int stage = static_cast<int>(config_.zero_stage);
  std::vector<WorkPtr> gathers;
  for (auto& u : units_)
    if (stage == 1 || stage == 2)
      gathers.push_back(
          group_->all_gather_async(u->flat->flat(), u->opt_params(stage, group_->rank())));
  for (auto& w : gathers) w->wait();
}

// ---- accessors ----------------------------------------------------------------------------

void ShardedModel::set_lr(double lr) {
  for (auto& u : units_) u->opt->set_lr(lr);
}

void ShardedModel::set_frozen(size_t i, bool frozen) {
  SHARDLM_CHECK(i < units_.size() && !units_[i]->root, core::ModelError,
                "ShardedModel: unit {} cannot be frozen", i);
  Unit& u = *units_[i];
  u.frozen = frozen;
  for (auto& p : u.params) p.set_requires_grad(!frozen);
}

bool ShardedModel::frozen(size_t i) const {
  return units_.at(i)->frozen;
}

int64_t ShardedModel::num_trainable_params() const {
  int64_t n = 0;
  for (const auto& u : units_)
    if (!u->frozen) n += u->flat->numel();
  return n;
}

int64_t ShardedModel::num_params() const {
  int64_t n = 0;
  for (const auto& u : units_) n += u->flat->numel();
  return n;
}

const FlatParams& ShardedModel::unit_layout(size_t i) const {
  return *units_.at(i)->flat;
}

const std::string& ShardedModel::unit_name(size_t i) const {
  return units_.at(i)->name;
}
Optimizer& ShardedModel::unit_optimizer(size_t i) {
  return *units_.at(i)->opt;
}

ShardedModel::Memory ShardedModel::memory() const {
  Memory m;
  for (const auto& u : units_) {
    m.params += held_bytes(u->flat->flat()) + held_bytes(u->staging);
    if (!u->streamed) m.params += held_bytes(u->param_shard);  // else it is `master`
    m.grads += held_bytes(u->grad_full) + held_bytes(u->grad_shard) + held_bytes(u->reduce_buf);
    if (config_.cpu_offload)
      m.host += held_bytes(u->master) + held_bytes(u->host_grad) + u->opt->state_bytes();
    else
      m.optimizer += u->opt->state_bytes();
  }
  return m;
}

void ShardedModel::note_memory() {
  const Memory m = memory();
  peak_.params = std::max(peak_.params, m.params);
  peak_.grads = std::max(peak_.grads, m.grads);
  peak_.optimizer = std::max(peak_.optimizer, m.optimizer);
  peak_.host = std::max(peak_.host, m.host);
}

}  // namespace shardlm::parallel
