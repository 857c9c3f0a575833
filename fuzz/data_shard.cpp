// Fuzz target data_shard: one HDF5 token shard (a small valid file written by
// ShardWriter, mutated) through ShardReader, as the Loader and `prepare`'s
// cache read it: header attributes, doc_offsets, doc_hashes, token ranges in
// both the converted and the native type. HDF5 reads from a file, so the
// input is written to a scratch file first. Only core::Error may escape
// (DataError or H5Error naming the file); HDF5 itself is Debian's build, not
// instrumented, but a crash inside it still ends the run as a finding.
#include <algorithm>
#include <string>
#include <vector>

#include "data/shard.h"
#include "fuzz/fuzz_target.h"

using namespace shardlm;

SHARDLM_FUZZ_TARGET(data_shard) {
  static const bool init = [] {
    fuzz::quiet_logs();
    return true;
  }();
  (void)init;
  const std::string path = fuzz::scratch_file("shard.h5", data, size);
  fuzz::expect_errors(
      [&] {
        data::ShardReader r(path);
        const uint64_t n = r.tokens();
        const std::vector<uint64_t> offsets = r.doc_offsets();
        SHARDLM_FUZZ_CHECK(
            offsets.size() == r.docs() + 1 && offsets.front() == 0 && offsets.back() == n,
            "doc_offsets passed its checks but disagrees with the header");
        for (size_t i = 1; i < offsets.size(); ++i)
          SHARDLM_FUZZ_CHECK(offsets[i - 1] <= offsets[i], "doc_offsets decrease");
        const uint64_t take = std::min<uint64_t>(n, 4096);
        std::vector<uint32_t> ids = r.read(0, take);
        SHARDLM_FUZZ_CHECK(ids.size() == take, "read returned the wrong count");
        if (n > take) r.read(n - take, take);
        std::vector<uint32_t> native(take);
        r.read_native(0, take, native.data());
        fuzz::expect_errors([&] { r.doc_hashes(); }, path);
        // Past the end is an error, never a read out of bounds.
        fuzz::expect_errors([&] { r.read(n, 1); }, path);
      },
      path);
  return 0;
}
