// Fuzz target ckpt: a committed checkpoint directory, manifest.json then its
// rank files (the input cut at fuzz::kFileSeparator; rank file i is written
// as rank-0000i-of-0000N.h5, the names the seeds' manifests use), inside a run
// directory whose `latest` names it. Read as a resume reads it:
// resolve_checkpoint("latest") (manifest checks, verify: sizes, checksums),
// then CheckpointReader's ranges, per-rank tensors, raw optimizer state and
// read_parameters, also when verify failed (`shardlm ckpt` tools and a
// mutated file whose manifest was fixed up reach them). Only core::Error may
// escape; sizes above 1M elements are not read (the allocation a manifest
// asks for is not what this target measures).
#include <algorithm>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "ckpt/checkpoint.h"
#include "fuzz/fuzz_target.h"

using namespace shardlm;

namespace {
constexpr int64_t kMaxRead = 1 << 20;

void read_everything(const ckpt::CheckpointReader& r, const std::string& dir) {
  fuzz::expect_errors([&] { r.step(); }, dir);
  const nlohmann::json& m = r.manifest();
  int64_t total = 0;
  if (m.contains("units") && m["units"].is_object()) {
    for (const auto& item : m["units"].items()) {
      const std::string unit = item.key();  // clang 14 cannot capture a structured binding
      int64_t numel = 0;
      if (!fuzz::expect_errors([&] { numel = r.unit_numel(unit); }, dir)) continue;
      total += std::max<int64_t>(0, std::min(numel, kMaxRead));
      fuzz::expect_errors([&] { r.has_optimizer_state(unit); }, dir);
      for (const char* what : {"params", "exp_avg", "exp_avg_sq"})
        fuzz::expect_errors(
            [&] {
              const int64_t end = std::min(numel, kMaxRead);
              const torch::Tensor t = r.read_range(unit, what, 0, end);
              SHARDLM_FUZZ_CHECK(t.numel() == end, "read_range returned the wrong size");
            },
            dir);
      for (int rank = 0; rank < std::min(r.world_size(), 4); ++rank)
        fuzz::expect_errors([&] { r.unit_raw(rank, unit); }, dir);
    }
  }
  for (int rank = 0; rank < std::min(r.world_size(), 4); ++rank)
    fuzz::expect_errors([&] { r.rank_tensors(rank); }, dir);
  if (total < kMaxRead) fuzz::expect_errors([&] { ckpt::read_parameters(r); }, dir);
}

}  // namespace

SHARDLM_FUZZ_TARGET(ckpt) {
  static const bool init = [] {
    fuzz::quiet_logs();
    return true;
  }();
  (void)init;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto parts = fuzz::split_files(input, 5);
  const std::string run = fuzz::scratch_subdir("run");
  const std::string dir = fuzz::scratch_subdir("run/checkpoints/step-000001");
  fuzz::scratch_file("run/checkpoints/latest", "step-000001\n");
  fuzz::scratch_file("run/checkpoints/step-000001/manifest.json", parts[0]);
  const size_t world = parts.size() - 1;
  for (size_t i = 1; i < parts.size(); ++i)
    fuzz::scratch_file("run/checkpoints/step-000001/" +
                           ckpt::rank_file_name(static_cast<int>(i - 1), static_cast<int>(world)),
                       parts[i]);

  // The resume path: `latest`, verified.
  fuzz::expect_errors([&] { ckpt::resolve_checkpoint(run, "latest"); }, run);
  fuzz::expect_errors([&] { ckpt::list_checkpoints(run); }, run);
  std::unique_ptr<ckpt::CheckpointReader> r;
  if (!fuzz::expect_errors([&] { r = std::make_unique<ckpt::CheckpointReader>(dir); }, dir))
    return 0;
  fuzz::expect_errors([&] { r->verify(); }, dir);
  read_everything(*r, dir);
  return 0;
}
