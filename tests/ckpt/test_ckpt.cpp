// Checkpointer and CheckpointReader on synthetic snapshots: ranges read back
// exactly whatever world wrote them, commits are atomic, damaged files are
// named, `latest` falls back to an intact checkpoint, retention keeps what it should.
#include <gtest/gtest.h>
#include <mpi.h>

#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "ckpt/checkpoint.h"
#include "core/error.h"

using namespace shardlm;
namespace fs = std::filesystem;

namespace {

int mpi_rank(MPI_Comm c = MPI_COMM_WORLD) {
  int r;
  MPI_Comm_rank(c, &r);
  return r;
}
int mpi_size(MPI_Comm c = MPI_COMM_WORLD) {
  int r;
  MPI_Comm_size(c, &r);
  return r;
}

// A shared temporary run directory (rank 0's pid, broadcast), empty: pids wrap,
// and an earlier process's checkpoints there would change what a test sees.
std::string run_dir(const std::string& name, MPI_Comm comm = MPI_COMM_WORLD) {
  int pid = getpid(), rank = 0;
  MPI_Bcast(&pid, 1, MPI_INT, 0, comm);
  MPI_Comm_rank(comm, &rank);
  const std::string dir =
      (fs::path(testing::TempDir()) / fmt::format("shardlm_ckpt_{}_{}", name, pid)).string();
  if (rank == 0) fs::remove_all(dir);
  MPI_Barrier(comm);
  return dir;
}

// Unit "a" of 10 elements and unit "b" of 7, values 100*u + i, split evenly.
ckpt::Snapshot synthetic(int64_t step, int rank, int world, bool optimizer = true) {
  ckpt::Snapshot s;
  s.step = step;
  int k = 0;
  for (auto [name, n] : std::vector<std::pair<std::string, int64_t>>{{"a", 10}, {"b", 7}}) {
    ckpt::UnitPiece u;
    u.name = name;
    u.numel = n;
    u.begin = n * rank / world;
    u.end = n * (rank + 1) / world;
    u.params = torch::arange(u.begin, u.end, torch::kFloat) + 100 * k + step;
    if (optimizer) {
      u.exp_avg = u.params * 2;
      u.exp_avg_sq = u.params * 3;
    }
    u.layout = nlohmann::json::array({{{"name", name + ".w"}, {"shape", {n}}, {"offset", 0}}});
    s.units.push_back(u);
    ++k;
  }
  s.rank_tensors["rng"] = torch::full({4}, rank, torch::kByte);
  s.state = {{"hello", "world"}, {"step", step}};
  return s;
}

}  // namespace

TEST(Ckpt, WritesAndReadsRangesOnOneRank) {
  std::string dir = run_dir("one", MPI_COMM_SELF);
  ckpt::CheckpointConfig cfg;
  ckpt::Checkpointer c(cfg, dir, std::make_shared<core::MpiComm>(MPI_COMM_SELF));
  c.save(synthetic(5, 0, 1), /*async=*/true);
  c.wait();
  auto found = ckpt::resolve_checkpoint(dir, "latest");
  ASSERT_TRUE(found);
  ckpt::CheckpointReader r(*found);
  r.verify();
  EXPECT_EQ(r.step(), 5);
  EXPECT_TRUE(
      torch::equal(r.read_range("a", "params", 2, 9), torch::arange(2, 9, torch::kFloat) + 5));
  EXPECT_TRUE(torch::equal(r.read_range("b", "exp_avg_sq", 0, 7),
                           (torch::arange(0, 7, torch::kFloat) + 105) * 3));
  EXPECT_EQ(r.manifest()["state"]["hello"], "world");
  auto params = ckpt::read_parameters(r);
  EXPECT_EQ(params.at("b.w").numel(), 7);
  EXPECT_THROW(r.read_range("c", "params", 0, 1), core::CheckpointError);
  EXPECT_THROW(r.read_range("a", "params", 5, 11), core::CheckpointError);
}

TEST(Ckpt, DamageIsNamedAndLatestFallsBack) {
  std::string dir = run_dir("damage", MPI_COMM_SELF);
  ckpt::CheckpointConfig cfg;
  cfg.keep_last = 5;
  ckpt::Checkpointer c(cfg, dir, std::make_shared<core::MpiComm>(MPI_COMM_SELF));
  c.save(synthetic(1, 0, 1), false);
  c.save(synthetic(2, 0, 1), false);
  fs::path step2 = fs::path(dir) / "checkpoints" / "step-000002";
  fs::path file = step2 / ckpt::rank_file_name(0, 1);
  auto expect_error = [&](const std::string& what) {
    try {
      ckpt::CheckpointReader(step2.string()).verify();
      FAIL() << "no error for " << what;
    } catch (const core::CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find(file.string()), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  // One byte flipped: checksum.
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::string flipped = bytes;
  flipped[flipped.size() / 2] ^= 0x5a;
  std::ofstream(file, std::ios::binary) << flipped;
  expect_error("checksum");
  // Truncated.
  std::ofstream(file, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  expect_error("truncated");
  // Missing.
  fs::remove(file);
  expect_error("missing");
  // `latest` names step 2, which is damaged: resume falls back to step 1.
  auto found = ckpt::resolve_checkpoint(dir, "latest");
  ASSERT_TRUE(found);
  EXPECT_EQ(fs::path(*found).filename(), "step-000001");
  // A malformed manifest is named too.
  std::ofstream(step2 / "manifest.json") << "{ not json";
  EXPECT_THROW(ckpt::CheckpointReader(step2.string()), core::CheckpointError);
}

TEST(Ckpt, RetentionKeepsLastBestAndEvery) {
  std::string dir = run_dir("prune", MPI_COMM_SELF);
  ckpt::CheckpointConfig cfg;
  cfg.keep_last = 2;
  cfg.keep_best = 1;
  cfg.keep_every = 4;
  ckpt::Checkpointer c(cfg, dir, std::make_shared<core::MpiComm>(MPI_COMM_SELF));
  for (int s = 1; s <= 9; ++s) {
    auto snap = synthetic(s, 0, 1, false);
    snap.val_loss = s == 3 ? 0.5 : 1.0 + s;  // step 3 is the best
    c.save(std::move(snap), false);
  }
  std::vector<std::string> names;
  for (const auto& d : ckpt::list_checkpoints(dir))
    names.push_back(fs::path(d).filename().string());
  EXPECT_EQ(names,
            (std::vector<std::string>{"step-000003", "step-000004", "step-000008", "step-000009"}));
  // No leftovers of the commit protocol.
  for (const auto& e : fs::directory_iterator(fs::path(dir) / "checkpoints"))
    EXPECT_EQ(e.path().filename().string().find('.'), std::string::npos)
        << e.path();  // .tmp, .deleting
}

TEST(Ckpt, RetentionKeepsTheSaveLatestNames) {
  // A run resumed from step 2 while steps 3..5 of an abandoned timeline exist:
  // its save at step 3 replaces that step; with keep_last = 1 ranking by step
  // number would keep step 5 and delete the save just made.
  std::string dir = run_dir("prune_latest", MPI_COMM_SELF);
  ckpt::CheckpointConfig cfg;
  cfg.keep_last = 5;
  cfg.keep_best = 0;
  {
    ckpt::Checkpointer c(cfg, dir, std::make_shared<core::MpiComm>(MPI_COMM_SELF));
    for (int s = 1; s <= 5; ++s) c.save(synthetic(s, 0, 1, false), false);
  }
  cfg.keep_last = 1;
  ckpt::Checkpointer c(cfg, dir, std::make_shared<core::MpiComm>(MPI_COMM_SELF));
  c.save(synthetic(3, 0, 1, false), false);
  std::vector<std::string> names;
  for (const auto& d : ckpt::list_checkpoints(dir))
    names.push_back(fs::path(d).filename().string());
  EXPECT_EQ(names, (std::vector<std::string>{"step-000003", "step-000005"}));
  auto latest = ckpt::resolve_checkpoint(dir, "latest");
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(fs::path(*latest).filename().string(), "step-000003");
}

TEST(Ckpt, WriteFailureKeepsThePreviousCheckpoint) {
  std::string dir = run_dir("fail", MPI_COMM_SELF);
  ckpt::CheckpointConfig cfg;
  ckpt::Checkpointer c(cfg, dir, std::make_shared<core::MpiComm>(MPI_COMM_SELF));
  c.save(synthetic(1, 0, 1), false);
  // An unwritable tensor type makes the rank file fail half-way.
  auto bad = synthetic(2, 0, 1);
  bad.rank_tensors["complex"] = torch::zeros({2}, torch::kComplexFloat);
  EXPECT_THROW(c.save(std::move(bad), false), core::CheckpointError);
  auto found = ckpt::resolve_checkpoint(dir, "latest");
  ASSERT_TRUE(found);
  EXPECT_EQ(fs::path(*found).filename(), "step-000001");
  EXPECT_FALSE(fs::exists(fs::path(dir) / "checkpoints" / "step-000002.tmp"));
}

// Under mpiexec: every rank writes its pieces; rank 0 reads every range back
// alone, as a smaller world resuming would.
TEST(CkptMpi, AnyWorldReadsWhatAnotherWrote) {
  int rank = mpi_rank(), world = mpi_size();
  std::string dir = run_dir("mpi");
  ckpt::CheckpointConfig cfg;
  ckpt::Checkpointer c(cfg, dir, core::MpiComm::duplicate(MPI_COMM_WORLD));
  c.save(synthetic(7, rank, world), true);
  c.wait();
  MPI_Barrier(MPI_COMM_WORLD);
  ckpt::CheckpointReader r(*ckpt::resolve_checkpoint(dir, "latest"));
  EXPECT_EQ(r.world_size(), world);
  // Ranges that cross the writers' boundaries.
  EXPECT_TRUE(
      torch::equal(r.read_range("a", "params", 0, 10), torch::arange(0, 10, torch::kFloat) + 7));
  EXPECT_TRUE(torch::equal(r.read_range("b", "exp_avg", 1, 6),
                           (torch::arange(1, 6, torch::kFloat) + 107) * 2));
  EXPECT_TRUE(
      torch::equal(r.rank_tensors(world - 1).at("rng"), torch::full({4}, world - 1, torch::kByte)));
}
