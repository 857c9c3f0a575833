// Fuzz target data_manifest: a prepared dataset directory, manifest.json then
// its shard files (the input cut at fuzz::kFileSeparator into manifest.json,
// shard-0.h5, shard-1.h5, ...; the seeds name their shards so), opened as the
// Loader opens it (TokenDataset: manifest, split, per-shard size, header and
// tokenizer checks, checksums) and read sample by sample, in packed and
// documents mode. verify = "size" lets mutated shards reach HDF5, as a user
// who chose it would. Only core::Error may escape, naming a file of the dataset.
#include <algorithm>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/manifest.h"
#include "fuzz/fuzz_target.h"

using namespace shardlm;

SHARDLM_FUZZ_TARGET(data_manifest) {
  static const bool init = [] {
    fuzz::quiet_logs();
    return true;
  }();
  (void)init;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto parts = fuzz::split_files(input, 5);
  const std::string dir = fuzz::scratch_subdir("dataset");
  fuzz::scratch_file("dataset/manifest.json", parts[0]);
  for (size_t i = 1; i < parts.size(); ++i)
    fuzz::scratch_file("dataset/shard-" + std::to_string(i - 1) + ".h5", parts[i]);

  data::Manifest m;
  if (!fuzz::expect_errors([&] { m = data::Manifest::load(dir); }, dir)) return 0;
  (void)m.to_json();
  for (const auto& entry : m.splits) {
    const std::string& name = entry.first;  // clang 14 cannot capture a structured binding
    fuzz::expect_errors([&] { m.fingerprint(name); });
  }
  fuzz::expect_errors([&] { data::check_tokenizer(m, "0123"); });
  // Written and read back, a manifest is the same.
  const std::string copy = fuzz::scratch_subdir("dataset-copy");
  m.save(copy);
  const data::Manifest again = data::Manifest::load(copy);
  SHARDLM_FUZZ_CHECK(again.to_json() == m.to_json(), "save/load changed the manifest");

  for (const char* mode : {"packed", "documents"}) {
    data::DatasetOptions o;
    o.dir = dir;
    o.split = m.splits.empty() ? "train" : m.splits.begin()->first;
    o.mode = mode;
    o.seq_len = 8;
    o.truncate = size % 2 ? "split" : "head";
    o.verify = size % 3 ? "size" : "all";
    o.cache_mb = 1;
    fuzz::expect_errors(
        [&] {
          data::TokenDataset ds(o);
          std::vector<uint32_t> buf(static_cast<size_t>(o.seq_len) + 1);
          const uint64_t n = std::min<uint64_t>(ds.size(), 64);
          for (uint64_t i = 0; i < n; ++i) {
            const uint32_t len = ds.length(i);
            SHARDLM_FUZZ_CHECK(len >= 1 && len <= buf.size(),
                               "sample length " + std::to_string(len));
            ds.read(i, buf.data());
          }
        },
        dir);
  }
  return 0;
}
