// Environment detection: MPI first, launcher variables second.
#include "env.h"

#include <unistd.h>

#include <cstdlib>
#include <thread>

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include "log.h"
#include "mpi_check.h"

namespace shardlm::core {

// ---- MpiSession -------------------------------------------------------------------

MpiSession::MpiSession(int* argc, char*** argv) {
  int inited = 0;
  SHARDLM_MPI_CHECK(MPI_Initialized(&inited));
  if (inited) {
    SHARDLM_MPI_CHECK(MPI_Query_thread(&provided_));
    return;
  }
  SHARDLM_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided_));
  owner_ = true;
  // Errors come back as codes, so the check macros can throw instead of MPI aborting.
  SHARDLM_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
}

MpiSession::~MpiSession() {
  if (owner_ && active()) MPI_Finalize();
}

bool MpiSession::active() {
  int inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  return inited && !finalized;
}

void MpiSession::abort(int code) {
  if (active()) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

// ---- Env ----------------------------------------------------------------------------

namespace {
int env_int(const char* name, int def) {
  const char* v = std::getenv(name);
  if (!v || !*v) return def;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  return (end && *end == 0) ? static_cast<int>(x) : def;
}
bool has_env(const char* name) {
  return std::getenv(name) != nullptr;
}
}  // namespace

Env Env::detect() {
  Env e;
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  e.hostname = host;

  if (MpiSession::active()) {
    SHARDLM_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &e.rank));
    SHARDLM_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &e.world_size));
    MPI_Comm local;
    SHARDLM_MPI_CHECK(
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, e.rank, MPI_INFO_NULL, &local));
    SHARDLM_MPI_CHECK(MPI_Comm_rank(local, &e.local_rank));
    SHARDLM_MPI_CHECK(MPI_Comm_size(local, &e.local_size));
    SHARDLM_MPI_CHECK(MPI_Comm_free(&local));
    e.source = "mpi";
  } else if (has_env("OMPI_COMM_WORLD_RANK")) {
    e.rank = env_int("OMPI_COMM_WORLD_RANK", 0);
    e.world_size = env_int("OMPI_COMM_WORLD_SIZE", 1);
    e.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
    e.local_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1);
    e.source = "ompi";
  } else if (has_env("PMIX_RANK")) {
    e.rank = env_int("PMIX_RANK", 0);
    e.world_size = env_int("PMIX_SIZE", env_int("SLURM_NTASKS", 1));
    e.local_rank = env_int("PMIX_LOCAL_RANK", env_int("SLURM_LOCALID", 0));
    e.local_size = env_int("PMIX_LOCAL_SIZE", env_int("SLURM_NTASKS_PER_NODE", 1));
    e.source = "pmix";
  } else if (has_env("SLURM_PROCID")) {
    e.rank = env_int("SLURM_PROCID", 0);
    e.world_size = env_int("SLURM_NTASKS", 1);
    e.local_rank = env_int("SLURM_LOCALID", 0);
    e.local_size = env_int("SLURM_NTASKS_PER_NODE", 1);
    e.source = "slurm";
  }

  if (torch::cuda::is_available()) {
    int n = static_cast<int>(torch::cuda::device_count());
    if (n > 0) e.device = "cuda:" + std::to_string(e.local_rank % n);
  }

  int cores = static_cast<int>(std::thread::hardware_concurrency());
  if (cores <= 0) cores = 1;
  int omp = env_int("OMP_NUM_THREADS", 0);
  e.cpu_threads = omp > 0 ? omp : std::max(1, cores / std::max(1, e.local_size));
  return e;
}

void Env::apply_threads() const {
  at::set_num_threads(cpu_threads);
}

void prefer_passive_omp_wait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("SHARDLM_OMP_REEXEC") != nullptr)
    return;
  ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  ::setenv("SHARDLM_OMP_REEXEC", "1", 1);  // never twice, even if the variable is dropped
  ::execv("/proc/self/exe", argv);
  // No /proc (or exec refused): go on with the policy libgomp already read.
}

}  // namespace shardlm::core
