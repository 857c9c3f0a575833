// HDF5 shards and the manifest (round trip, corruption, truncation), and the
// sample order (permutation, buckets, rank positions, LoaderState JSON).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <set>

#include "core/error.h"
#include "data/manifest.h"
#include "data/sampler.h"
#include "data/shard.h"
#include "data_test_util.h"

using namespace shardlm::data;
namespace tu = shardlm::data::test_util;
using shardlm::core::DataError;
using tu::error_of;
namespace fs = std::filesystem;

namespace {

ShardInfo write_shard(const std::string& path, const std::vector<std::vector<uint32_t>>& docs,
                      TokenDtype dtype, int compression, bool hashes = false) {
  ShardWriterOptions o;
  o.dtype = dtype;
  o.chunk_tokens = 256;
  o.compression = compression;
  o.with_hashes = hashes;
  o.vocab_size = dtype == TokenDtype::kUInt16 ? 50000 : 100000;
  o.tokenizer_hash = "tok";
  o.split = "train";
  ShardWriter w(path, o);
  for (size_t d = 0; d < docs.size(); ++d) {
    Hash128 k{d, d * 7};
    w.add(docs[d], hashes ? &k : nullptr);
  }
  return w.close(fs::path(path).filename().string());
}

}  // namespace

TEST(Shard, RoundTripBothDtypesWithAndWithoutCompression) {
  auto dir = tu::fresh_dir("shard_rt");
  for (auto dtype : {TokenDtype::kUInt16, TokenDtype::kUInt32}) {
    for (int level : {0, 4}) {
      std::vector<std::vector<uint32_t>> docs = {
          {1, 2, 3}, {}, {4}, std::vector<uint32_t>(1000, 7)};
      if (dtype == TokenDtype::kUInt32) docs[2][0] = 99999;
      std::string path = fmt::format("{}/s_{}_{}.h5", dir, dtype_name(dtype), level);
      auto info = write_shard(path, docs, dtype, level, true);
      EXPECT_EQ(info.tokens, 1004u);
      EXPECT_EQ(info.docs, 4u);
      EXPECT_EQ(info.bytes, fs::file_size(path));
      EXPECT_EQ(info.checksum, file_checksum(path));
      ShardReader r(path);
      EXPECT_EQ(r.dtype(), dtype);
      EXPECT_EQ(r.tokens(), 1004u);
      EXPECT_EQ(r.tokenizer_hash(), "tok");
      EXPECT_EQ(r.split(), "train");
      EXPECT_EQ(r.doc_offsets(), (std::vector<uint64_t>{0, 3, 3, 4, 1004}));
      EXPECT_EQ(r.read(0, 4), (std::vector<uint32_t>{1, 2, 3, docs[2][0]}));
      EXPECT_EQ(r.read(500, 3), (std::vector<uint32_t>{7, 7, 7}));
      auto h = r.doc_hashes();
      ASSERT_EQ(h.size(), 4u);
      EXPECT_EQ(h[3], (Hash128{3, 21}));
      EXPECT_NE(error_of([&] { r.read(1000, 5); }).find("[1000, 1005)"), std::string::npos);
    }
  }
}

TEST(Shard, CompressionShrinksRepetitiveTokens) {
  auto dir = tu::fresh_dir("shard_zip");
  std::vector<std::vector<uint32_t>> docs(50, std::vector<uint32_t>(1000, 42));
  auto plain = write_shard(dir + "/p.h5", docs, TokenDtype::kUInt16, 0);
  auto zipped = write_shard(dir + "/z.h5", docs, TokenDtype::kUInt16, 6);
  EXPECT_LT(zipped.bytes * 4, plain.bytes);
}

TEST(Shard, TokenTooLargeForUint16IsRejected) {
  auto dir = tu::fresh_dir("shard_big");
  ShardWriterOptions o;
  ShardWriter w(dir + "/x.h5", o);
  std::vector<uint32_t> doc = {1, 70000};
  EXPECT_NE(error_of([&] { w.add(doc); }).find("does not fit uint16"), std::string::npos);
}

TEST(Shard, UnfinishedWriterLeavesNoFile) {
  auto dir = tu::fresh_dir("shard_unfinished");
  {
    ShardWriter w(dir + "/y.h5", ShardWriterOptions{});
    w.add(std::vector<uint32_t>{1, 2, 3});
  }
  EXPECT_FALSE(fs::exists(dir + "/y.h5"));
}

TEST(Shard, FlippedByteIsDetectedByChecksumAndOnRead) {
  auto dir = tu::fresh_dir("shard_flip");
  std::string path = dir + "/c.h5";
  std::vector<std::vector<uint32_t>> docs;
  for (uint32_t d = 0; d < 100; ++d) docs.push_back(std::vector<uint32_t>(500, d));
  auto info = write_shard(path, docs, TokenDtype::kUInt16, 0);
  EXPECT_NO_THROW(verify_shard(path, info, true));
  int64_t at = tu::find_bytes(path, tu::u16_run(50, 8, 0));  // document 50's tokens
  ASSERT_GT(at, 0);
  tu::flip_byte(path, at);
  std::string msg = error_of([&] { verify_shard(path, info, true); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("checksum mismatch"), std::string::npos) << msg;
  // Without the whole-file check, HDF5's per-chunk Fletcher-32 catches it on read.
  EXPECT_NO_THROW(verify_shard(path, info, false));
  msg = error_of([&] {
    ShardReader r(path);
    r.read(0, r.tokens());
  });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("corrupted"), std::string::npos) << msg;
}

TEST(Shard, TruncatedFileIsDetected) {
  auto dir = tu::fresh_dir("shard_trunc");
  std::string path = dir + "/t.h5";
  auto info = write_shard(path, {std::vector<uint32_t>(5000, 3)}, TokenDtype::kUInt16, 0);
  tu::truncate_file(path, info.bytes - 100);
  std::string msg = error_of([&] { verify_shard(path, info, false); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  msg = error_of([&] {
    ShardReader r(path);
    r.read(0, r.tokens());
  });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  tu::write_file(path, "not hdf5 at all");
  msg = error_of([&] { ShardReader r(path); });
  EXPECT_NE(msg.find("not a readable HDF5 file"), std::string::npos) << msg;
}

TEST(Shard, ManifestRoundTripAndErrors) {
  auto dir = tu::fresh_dir("shard_manifest");
  std::string msg = error_of([&] { Manifest::load(dir); });
  EXPECT_NE(msg.find("no manifest.json in " + dir), std::string::npos) << msg;
  EXPECT_NE(msg.find("shardlm prepare"), std::string::npos) << msg;
  auto m = tu::write_dataset(dir, tu::stream_docs({100, 200, 300}), 250);
  auto back = Manifest::load(dir);
  EXPECT_EQ(back.to_json(), m.to_json());
  EXPECT_EQ(back.split("train").shards.size(), 2u);
  EXPECT_EQ(back.split("train").tokens, 600u);
  EXPECT_NE(error_of([&] { back.split("dev"); }).find("no split 'dev' (it has: test, train, val)"),
            std::string::npos);
  EXPECT_NE(
      error_of([&] { check_tokenizer(back, "other"); }).find("prepared with tokenizer test-tok"),
      std::string::npos);
  auto fp = back.fingerprint("train");
  back.splits["train"].shards[0].checksum = "xxh3-64:0";
  EXPECT_NE(back.fingerprint("train"), fp);
  tu::write_file(dir + "/manifest.json", "{\"format\": \"shardlm-dataset\", \"version\": 1}");
  EXPECT_NE(error_of([&] { Manifest::load(dir); }).find("missing or mistyped field"),
            std::string::npos);
}

TEST(Sampler, PermutationIsABijectionThatDependsOnTheSeed) {
  for (uint64_t n : {1ull, 2ull, 3ull, 5ull, 64ull, 1000ull, 4097ull}) {
    Permutation p(n, 7);
    std::vector<uint64_t> v(n);
    for (uint64_t i = 0; i < n; ++i) v[i] = p(i);
    std::sort(v.begin(), v.end());
    for (uint64_t i = 0; i < n; ++i) ASSERT_EQ(v[i], i) << "n=" << n;
  }
  Permutation a(1000, 1), b(1000, 2);
  int same = 0, fixed = 0;
  for (uint64_t i = 0; i < 1000; ++i) same += a(i) == b(i), fixed += a(i) == i;
  EXPECT_LT(same, 20);
  EXPECT_LT(fixed, 20);
}

TEST(Sampler, BucketedOrderIsAPermutationSortedWithinWindows) {
  uint64_t n = 1000;
  std::vector<uint32_t> len(n);
  for (uint64_t i = 0; i < n; ++i) len[i] = static_cast<uint32_t>((i * 37) % 500 + 2);
  SampleOrder order(n, 3, true, 128, len);
  std::set<uint64_t> seen;
  std::vector<uint64_t> e0;
  for (uint64_t p = 0; p < n; ++p) seen.insert(order.at(0, p)), e0.push_back(order.at(0, p));
  EXPECT_EQ(seen.size(), n);
  for (uint64_t p = 1; p < 128; ++p) EXPECT_LE(len[e0[p - 1]], len[e0[p]]);  // window 0 ascending
  for (uint64_t p = 129; p < 256; ++p)
    EXPECT_GE(len[e0[p - 1]], len[e0[p]]);  // window 1 descending
  // Another epoch: another order; the same epoch again (after another): the same.
  std::vector<uint64_t> e1;
  for (uint64_t p = 0; p < n; ++p) e1.push_back(order.at(1, p));
  EXPECT_NE(e0, e1);
  for (uint64_t p = 0; p < n; ++p) ASSERT_EQ(order.at(0, p), e0[p]);
  SampleOrder plain(10, 3, false);
  for (uint64_t p = 0; p < 10; ++p) EXPECT_EQ(plain.at(5, p), p);
}

TEST(Sampler, RankPositionsInterleaveAndMarkTheEnd) {
  EXPECT_EQ(rank_positions(8, 3, 1, 2, 100), (std::vector<int64_t>{9, 11, 13}));
  EXPECT_EQ(rank_positions(8, 3, 1, 2, 12), (std::vector<int64_t>{9, 11, -1}));
  std::set<int64_t> all;
  for (int r = 0; r < 4; ++r)
    for (auto p : rank_positions(40, 5, r, 4, 1000)) all.insert(p);
  EXPECT_EQ(all.size(), 20u);
  EXPECT_EQ(*all.begin(), 40);
  EXPECT_EQ(*all.rbegin(), 59);
}

TEST(Sampler, LoaderStateJsonRoundTrip) {
  LoaderState s;
  s.dataset = "abc";
  s.split = "train";
  s.mode = "documents";
  s.truncate = "split";
  s.seed = 18446744073709551557ull;  // above int64's range
  s.seq_len = 256;
  s.shuffle = false;
  s.bucket_window = 512;
  s.samples_per_epoch = 12345;
  s.epoch = 3;
  s.position = 640;
  s.step = 1000;
  s.world_size = 4;
  nlohmann::json j = s;
  auto back = j.get<LoaderState>();
  EXPECT_EQ(back.to_json(), s.to_json());
  EXPECT_EQ(back.seed, s.seed);
  j.erase("position");
  EXPECT_NE(error_of([&] { LoaderState::from_json(j); }).find("missing or mistyped"),
            std::string::npos);
}
