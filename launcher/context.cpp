// Lazy MPI start-up for subcommands that need it.
#include "core/log.h"
#include "launcher/app.h"

namespace shardlm::launcher {

const core::Env& Context::env_with_mpi() {
  if (!mpi_) {
    mpi_ = std::make_unique<core::MpiSession>(argc_, argv_);
    env_.reset();
  }
  return env();
}

const core::Env& Context::env() {
  if (!env_) {
    env_ = std::make_unique<core::Env>(core::Env::detect());
    core::log::set_rank(env_->rank, env_->world_size);
    env_->apply_threads();
  }
  return *env_;
}

}  // namespace shardlm::launcher
