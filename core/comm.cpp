// core::Comm helpers and the MPI implementation (see comm.h).
#include "core/comm.h"

#include "core/error.h"
#include "core/mpi_check.h"

namespace shardlm::core {

// ---- helpers ---------------------------------------------------------------------------

std::string broadcast_string(Comm& comm, std::string s, int root) {
  if (comm.size() > 1) comm.broadcast_bytes(s, root);
  return s;
}

int64_t all_reduce(Comm& comm, int64_t value, Reduce op) {
  std::vector<int64_t> v{value};
  if (comm.size() > 1) comm.all_reduce_i64(v, op);
  return v[0];
}

double all_reduce(Comm& comm, double value, Reduce op) {
  std::vector<double> v{value};
  if (comm.size() > 1) comm.all_reduce_f64(v, op);
  return v[0];
}

bool any_rank(Comm& comm, bool flag) {
  return all_reduce(comm, int64_t{flag ? 1 : 0}, Reduce::kMax) != 0;
}

bool all_ranks(Comm& comm, bool flag) {
  return all_reduce(comm, int64_t{flag ? 1 : 0}, Reduce::kMin) != 0;
}

void barrier(Comm& comm) {
  all_reduce(comm, int64_t{0}, Reduce::kSum);
}

// ---- MPI -------------------------------------------------------------------------------

namespace {
MPI_Op mpi_op(Reduce op) {
  switch (op) {
    case Reduce::kSum:
      return MPI_SUM;
    case Reduce::kMax:
      return MPI_MAX;
    case Reduce::kMin:
      return MPI_MIN;
  }
  return MPI_SUM;
}
}  // namespace

MpiComm::MpiComm(MPI_Comm comm) : comm_(comm) {
  SHARDLM_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  SHARDLM_MPI_CHECK(MPI_Comm_size(comm_, &size_));
}

MpiComm MpiComm::single() {
  return MpiComm(MPI_COMM_NULL, 0, 1);
}

std::unique_ptr<MpiComm> MpiComm::duplicate(MPI_Comm comm) {
  MPI_Comm dup = MPI_COMM_NULL;
  SHARDLM_MPI_CHECK(MPI_Comm_dup(comm, &dup));
  auto out = std::make_unique<MpiComm>(dup);
  out->owned_ = true;
  return out;
}

MpiComm::MpiComm(MpiComm&& other) noexcept
    : comm_(other.comm_), rank_(other.rank_), size_(other.size_), owned_(other.owned_) {
  other.owned_ = false;
}

MpiComm::~MpiComm() {
  // Not after MPI_Finalize (a static's destructor): the process is ending anyway.
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owned_ && !finalized) MPI_Comm_free(&comm_);
}

void MpiComm::broadcast_bytes(std::string& bytes, int root) {
  if (size_ == 1) return;
  int64_t n = static_cast<int64_t>(bytes.size());
  SHARDLM_MPI_CHECK(MPI_Bcast(&n, 1, MPI_INT64_T, root, comm_));
  SHARDLM_CHECK(n >= 0 && n < (int64_t{1} << 31), MpiError,
                "broadcast of {} bytes: at most 2 GiB at once", n);
  bytes.resize(static_cast<size_t>(n));
  if (n > 0) SHARDLM_MPI_CHECK(MPI_Bcast(bytes.data(), static_cast<int>(n), MPI_CHAR, root, comm_));
}

void MpiComm::all_reduce_i64(std::vector<int64_t>& values, Reduce op) {
  if (size_ == 1 || values.empty()) return;
  SHARDLM_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()),
                                  MPI_INT64_T, mpi_op(op), comm_));
}

void MpiComm::all_reduce_f64(std::vector<double>& values, Reduce op) {
  if (size_ == 1 || values.empty()) return;
  SHARDLM_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()),
                                  MPI_DOUBLE, mpi_op(op), comm_));
}

std::vector<std::string> MpiComm::gather_bytes(const std::string& mine, int root) {
  if (size_ == 1) return {mine};
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(size_), offs(size_);
  SHARDLM_MPI_CHECK(MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, root, comm_));
  int total = 0;
  for (int r = 0; r < size_; ++r) offs[r] = total, total += lens[r];
  std::vector<char> all(rank_ == root ? std::max(total, 1) : 1);
  SHARDLM_MPI_CHECK(MPI_Gatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), offs.data(),
                                MPI_CHAR, root, comm_));
  std::vector<std::string> out;
  if (rank_ == root)
    for (int r = 0; r < size_; ++r) out.emplace_back(all.data() + offs[r], lens[r]);
  return out;
}

}  // namespace shardlm::core
