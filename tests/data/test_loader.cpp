// data::Loader: rows are exactly the stored tokens, masks, bucketing waste, the
// epoch covers the split once over all ranks, exact resume (also 4 -> 2 ranks),
// the prefetch queue, and errors for corrupted or mismatched data. The only test
// file of data/ that includes LibTorch.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "core/error.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data_test_util.h"

using namespace shardlm::data;
namespace tu = shardlm::data::test_util;
using shardlm::core::DataError;
using tu::error_of;
namespace fs = std::filesystem;

namespace {

constexpr uint32_t kMod = 65521;

LoaderConfig packed(const std::string& dir, int64_t B = 4, int64_t T = 16) {
  LoaderConfig c;
  c.path = dir;
  c.batch_size = B;
  c.seq_len = T;
  c.seed = 42;
  c.prefetch = 2;
  return c;
}

// A packed dataset: 5 shards, 997 documents of 1..40 tokens; token k of the
// stream has value k % kMod.
std::string packed_dataset(const std::string& name, uint64_t* total = nullptr) {
  auto dir = tu::fresh_dir(name);
  std::vector<uint64_t> lengths;
  uint64_t n = 0;
  for (int d = 0; d < 997; ++d) lengths.push_back(d % 40 + 1), n += d % 40 + 1;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) tu::write_dataset(dir, tu::stream_docs(lengths, kMod), n / 5);
  MPI_Barrier(MPI_COMM_WORLD);
  if (total) *total = n;
  return dir;
}

std::vector<int64_t> real_ids(const Batch& b) {
  std::vector<int64_t> v;
  for (auto s : b.sample_ids)
    if (s >= 0) v.push_back(s);
  return v;
}

bool same_batch(const Batch& a, const Batch& b) {
  return a.sample_ids == b.sample_ids && a.epoch == b.epoch && a.step == b.step &&
         torch::equal(a.input_ids, b.input_ids) && torch::equal(a.targets, b.targets) &&
         torch::equal(a.loss_mask, b.loss_mask) && torch::equal(a.attention_mask, b.attention_mask);
}

// Samples of one epoch seen by `world` simulated ranks, from the loaders' state.
void run_to_epoch_end(std::vector<std::unique_ptr<Loader>>& ranks, std::vector<int64_t>& seen) {
  int64_t epoch = ranks[0]->state().epoch;
  while (ranks[0]->state().epoch == epoch) {
    for (auto& l : ranks) {
      auto b = l->next();
      for (auto s : real_ids(b)) seen.push_back(s);
    }
  }
}

void expect_exactly_once(std::vector<int64_t> seen, int64_t samples) {
  std::sort(seen.begin(), seen.end());
  ASSERT_EQ(static_cast<int64_t>(seen.size()), samples);
  for (int64_t i = 0; i < samples; ++i) ASSERT_EQ(seen[static_cast<size_t>(i)], i);
}

}  // namespace

TEST(Loader, PackedRowsAreWindowsOfTheTokenStream) {
  uint64_t total = 0;
  auto dir = packed_dataset("ld_rows", &total);
  Loader l(packed(dir, 4, 16), 0, 1);
  EXPECT_EQ(l.samples_per_epoch(), static_cast<int64_t>((total - 1) / 16));
  for (int step = 0; step < 20; ++step) {
    Batch b = l.next();
    ASSERT_EQ(b.input_ids.sizes(), (std::vector<int64_t>{4, 16}));
    EXPECT_EQ(b.input_ids.dtype(), torch::kInt64);
    EXPECT_EQ(b.loss_mask.dtype(), torch::kFloat32);
    EXPECT_EQ(b.attention_mask.dtype(), torch::kBool);
    EXPECT_EQ(b.step, step);
    EXPECT_EQ(b.tokens, 64);
    for (int64_t r = 0; r < 4; ++r) {
      int64_t s = b.sample_ids[static_cast<size_t>(r)];
      for (int64_t t = 0; t < 16; ++t) {  // crosses document and shard boundaries
        ASSERT_EQ(b.input_ids[r][t].item<int64_t>(), (s * 16 + t) % kMod);
        ASSERT_EQ(b.targets[r][t].item<int64_t>(), (s * 16 + t + 1) % kMod);
      }
    }
    EXPECT_TRUE(b.loss_mask.eq(1).all().item<bool>());
    EXPECT_TRUE(b.attention_mask.all().item<bool>());
  }
}

TEST(Loader, OrderDependsOnSeedAndEpochOnly) {
  auto dir = packed_dataset("ld_seed");
  auto ids = [&](int64_t seed, int skip, int prefetch) {
    auto c = packed(dir);
    c.seed = seed;
    c.prefetch = prefetch;
    Loader l(c, 0, 1);
    for (int i = 0; i < skip; ++i) l.next();
    return l.next().sample_ids;
  };
  EXPECT_EQ(ids(1, 0, 2), ids(1, 0, 0));  // prefetch does not change the batches
  EXPECT_NE(ids(1, 0, 2), ids(2, 0, 2));
  auto c = packed(dir);
  Loader l(c, 0, 1);
  auto steps = l.steps_per_epoch();
  std::vector<int64_t> first = l.next().sample_ids, next_epoch;
  for (int64_t i = 1; i < steps; ++i) l.next();
  Batch b = l.next();
  EXPECT_EQ(b.epoch, 1);
  EXPECT_NE(b.sample_ids, first);
}

TEST(Loader, EpochCoversTheSplitOnceForSimulatedRanks) {
  auto dir = packed_dataset("ld_cover");
  for (int world : {1, 3, 4}) {
    std::vector<std::unique_ptr<Loader>> ranks;
    for (int r = 0; r < world; ++r)
      ranks.push_back(std::make_unique<Loader>(packed(dir, 5), r, world));
    std::vector<int64_t> seen;
    int64_t steps = 0;
    int64_t fill = 0;
    while (ranks[0]->state().epoch == 0) {
      for (auto& l : ranks) {
        auto b = l->next();
        for (auto s : b.sample_ids) fill += s < 0;
        // A fill row is all padding: no loss, no attention.
        for (size_t r = 0; r < b.sample_ids.size(); ++r)
          if (b.sample_ids[r] < 0)
            EXPECT_EQ(b.loss_mask[static_cast<int64_t>(r)].sum().item<float>(), 0.f);
        for (auto s : real_ids(b)) seen.push_back(s);
      }
      ++steps;
    }
    EXPECT_EQ(steps, ranks[0]->steps_per_epoch());
    EXPECT_EQ(fill, steps * 5 * world - ranks[0]->samples_per_epoch());
    expect_exactly_once(seen, ranks[0]->samples_per_epoch());
  }
}

TEST(Loader, DropLastBatchSkipsThePartialStep) {
  auto dir = packed_dataset("ld_drop");
  auto c = packed(dir, 7);
  c.last_batch = "drop";
  Loader l(c, 0, 1);
  int64_t S = l.samples_per_epoch();
  EXPECT_EQ(l.steps_per_epoch(), S / 7);
  for (int64_t i = 0; i < l.steps_per_epoch(); ++i) {
    auto b = l.next();
    EXPECT_EQ(b.epoch, 0);
    EXPECT_EQ(real_ids(b).size(), 7u);
  }
  EXPECT_EQ(l.next().epoch, 1);
}

TEST(Loader, ResumeYieldsExactlyTheSameBatches) {
  auto dir = packed_dataset("ld_resume");
  auto c = packed(dir, 3);
  Loader a(c, 1, 2);
  for (int i = 0; i < 7; ++i) a.next();
  LoaderState saved = a.state();
  EXPECT_EQ(saved.position, 7 * 3 * 2);
  EXPECT_EQ(saved.step, 7);
  std::vector<Batch> expected;
  for (int i = 0; i < 40; ++i) expected.push_back(a.next());  // crosses into epoch 1
  // Through JSON, as a checkpoint would store it.
  auto restored = LoaderState::from_json(nlohmann::json::parse(saved.to_json().dump()));
  Loader b(c, 1, 2);
  b.next();  // a fresh loader that already moved: load_state must reset it
  b.load_state(restored);
  for (int i = 0; i < 40; ++i)
    ASSERT_TRUE(same_batch(b.next(), expected[static_cast<size_t>(i)])) << i;
  // Documents mode too.
  auto d = c;
  d.mode = "documents";
  d.seq_len = 32;
  Loader x(d, 0, 1);
  for (int i = 0; i < 5; ++i) x.next();
  auto st = x.state();
  auto want = x.next();
  Loader y(d, 0, 1);
  y.load_state(st);
  EXPECT_TRUE(same_batch(y.next(), want));
}

TEST(Loader, ResumeFromFourRanksToTwoHasNoRepeatsOrGaps) {
  auto dir = packed_dataset("ld_4to2");
  for (const char* mode : {"packed", "documents"}) {
    auto c = packed(dir, 4);
    c.mode = mode;
    std::vector<std::unique_ptr<Loader>> four, two;
    for (int r = 0; r < 4; ++r) four.push_back(std::make_unique<Loader>(c, r, 4));
    std::vector<int64_t> seen;
    for (int step = 0; step < 9; ++step)
      for (auto& l : four)
        for (auto s : real_ids(l->next())) seen.push_back(s);
    LoaderState s = four[0]->state();
    for (auto& l : four) EXPECT_EQ(l->state().to_json(), s.to_json());  // every rank saves the same
    EXPECT_EQ(s.world_size, 4);
    auto c2 = c;
    c2.batch_size = 3;  // another batch size as well
    for (int r = 0; r < 2; ++r) {
      two.push_back(std::make_unique<Loader>(c2, r, 2));
      two.back()->load_state(s);
    }
    run_to_epoch_end(two, seen);
    expect_exactly_once(seen, four[0]->samples_per_epoch());
  }
}

TEST(Loader, LoadStateRefusesAnotherOrder) {
  auto dir = packed_dataset("ld_refuse");
  Loader a(packed(dir), 0, 1);
  a.next();
  auto s = a.state();
  auto c = packed(dir);
  c.seed = 43;
  Loader b(c, 0, 1);
  std::string msg = error_of([&] { b.load_state(s); });
  EXPECT_NE(msg.find("seed = 42"), std::string::npos) << msg;
  auto other = s;
  other.dataset = "0000";
  msg = error_of([&] { a.load_state(other); });
  EXPECT_NE(msg.find("dataset"), std::string::npos) << msg;
  other = s;
  other.position = s.samples_per_epoch;
  EXPECT_NE(error_of([&] { a.load_state(other); }).find("out of range"), std::string::npos);
}

TEST(Loader, DocumentsModeRowsMasksAndCausalMask) {
  auto dir = tu::fresh_dir("ld_docs");
  std::vector<uint64_t> lengths = {5, 1, 30, 9, 2, 17, 64, 3};
  auto docs = tu::stream_docs(lengths, kMod);
  tu::write_dataset(dir, docs, 40);
  auto c = packed(dir, 3, 24);
  c.mode = "documents";
  c.bucket_window = 1;
  c.pad_to_multiple = 8;
  Loader l(c, 0, 1);
  EXPECT_EQ(l.samples_per_epoch(), 7);  // the 1-token document has no target
  std::set<int64_t> seen;
  for (int step = 0; step < 3; ++step) {
    Batch b = l.next();
    int64_t L = b.input_ids.size(1);
    EXPECT_LE(L, 24);
    EXPECT_EQ(L % 8, 0);
    int64_t longest = 0;
    for (size_t r = 0; r < 3; ++r) {
      int64_t s = b.sample_ids[r];
      auto row = static_cast<int64_t>(r);
      if (s < 0) {
        EXPECT_EQ(b.attention_mask[row].sum().item<int64_t>(), 0);
        continue;
      }
      seen.insert(s);
      size_t d = static_cast<size_t>(s) + (s >= 1 ? 1 : 0);  // sample -> document (doc 1 skipped)
      int64_t k =
          std::min<int64_t>(static_cast<int64_t>(docs[d].size()) - 1, 24);  // head truncation
      longest = std::max(longest, k);
      for (int64_t t = 0; t < L; ++t) {
        bool real = t < k;
        ASSERT_EQ(b.attention_mask[row][t].item<bool>(), real);
        ASSERT_EQ(b.loss_mask[row][t].item<float>(), real ? 1.f : 0.f);
        if (real) {
          ASSERT_EQ(b.input_ids[row][t].item<int64_t>(), docs[d][static_cast<size_t>(t)]);
          ASSERT_EQ(b.targets[row][t].item<int64_t>(), docs[d][static_cast<size_t>(t) + 1]);
        } else {
          ASSERT_EQ(b.targets[row][t].item<int64_t>(), Batch::kIgnoreIndex);
          ASSERT_EQ(b.input_ids[row][t].item<int64_t>(), 65535);  // pad = EOS of the manifest
        }
      }
    }
    EXPECT_EQ(L, std::min<int64_t>(24, (longest + 7) / 8 * 8));
    EXPECT_EQ(b.tokens, b.loss_mask.sum().item<float>());
    auto m = b.causal_mask();  // (B, 1, L, L)
    ASSERT_EQ(m.sizes(), (std::vector<int64_t>{3, 1, L, L}));
    for (int64_t i = 0; i < L; ++i)
      for (int64_t j = 0; j < L; ++j)
        ASSERT_EQ(m[0][0][i][j].item<bool>(), j <= i && b.attention_mask[0][j].item<bool>());
  }
  EXPECT_EQ(seen.size(), 7u);
}

TEST(Loader, TruncateSplitCoversLongDocuments) {
  auto dir = tu::fresh_dir("ld_split");
  auto docs = tu::stream_docs({50, 10}, kMod);
  tu::write_dataset(dir, docs, 1000);
  auto c = packed(dir, 8, 16);
  c.mode = "documents";
  c.truncate = "split";
  c.shuffle = false;
  Loader l(c, 0, 1);
  EXPECT_EQ(l.samples_per_epoch(), 4 + 1);  // pieces [0,17) [16,33) [32,49) [48,50) + doc 2
  Batch b = l.next();
  std::set<int64_t> targets;
  for (int64_t r = 0; r < 5; ++r)
    for (int64_t t = 0; t < b.input_ids.size(1); ++t)
      if (b.loss_mask[r][t].item<float>() > 0) targets.insert(b.targets[r][t].item<int64_t>());
  // Every token but each document's first is a target exactly once.
  EXPECT_EQ(targets.size(), 49u + 9u);
  EXPECT_EQ(b.tokens, 49 + 9);
}

TEST(Loader, BucketingKeepsPaddingUnderTenPercent) {
  auto dir = tu::fresh_dir("ld_bucket");
  std::mt19937 rng(5);
  std::lognormal_distribution<double> dist(4.5, 0.9);  // median ~90 tokens, long tail
  std::vector<uint64_t> lengths;
  for (int i = 0; i < 6000; ++i)
    lengths.push_back(std::clamp<uint64_t>(static_cast<uint64_t>(dist(rng)), 4, 2000));
  tu::write_dataset(dir, tu::stream_docs(lengths, kMod), 100000);
  auto waste = [&](int64_t window) {
    auto c = packed(dir, 16, 512);
    c.mode = "documents";
    c.bucket_window = window;
    Loader l(c, 0, 1);
    for (int64_t i = 0; i < l.steps_per_epoch(); ++i) l.next();
    return l.stats().padding_fraction();
  };
  double bucketed = waste(1024), plain = waste(1);
  std::printf(
      "[ padding ] documents mode, 6000 docs (lognormal lengths 4..2000, T=512, B=16): "
      "%.1f%% of tokens are padding with bucket_window=1024, %.1f%% without\n",
      bucketed * 100, plain * 100);
  ::testing::Test::RecordProperty("padding_bucketed", std::to_string(bucketed));
  EXPECT_LT(bucketed, 0.10);
  EXPECT_GT(plain, bucketed * 3);
}

TEST(Loader, PrefetchQueueIsBoundedAndWaitTimeIsCounted) {
  auto dir = packed_dataset("ld_prefetch");
  auto c = packed(dir);
  c.prefetch = 3;
  Loader l(c, 0, 1);
  l.next();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // a slow training step
  auto s = l.stats();
  EXPECT_EQ(s.batches, 1);
  EXPECT_LE(s.produced, 1 + 3);
  EXPECT_GE(s.produced, 1 + 3 - 1);  // it did fill the queue meanwhile
  l.next();
  s = l.stats();
  EXPECT_LT(s.last_wait_seconds, 0.05);  // ready
  EXPECT_GE(s.wait_seconds, s.last_wait_seconds);
  EXPECT_GT(s.produce_seconds, 0);
}

TEST(Loader, CorruptedOrMismatchedDataGivesClearErrors) {
  uint64_t total = 0;
  auto dir = packed_dataset("ld_corrupt", &total);
  auto m = Manifest::load(dir);
  std::string shard = dir + "/" + m.split("train").shards[2].file;
  auto c = packed(dir);
  // Tokenizer hash mismatch.
  auto t = c;
  t.tokenizer_hash = "another";
  EXPECT_NE(error_of([&] { Loader l(t, 0, 1); }).find("prepared with tokenizer test-tok"),
            std::string::npos);
  // Empty split, unknown split.
  auto e = c;
  e.split = "val";
  EXPECT_NE(error_of([&] { Loader l(e, 0, 1); }).find("split 'val' is empty"), std::string::npos);
  // One byte flipped: the checksum at open; with verify = "size", the chunk
  // checksum on read.
  auto bytes = fs::file_size(shard);
  // A byte inside the token data: tokens hold their stream index, so look for a run.
  uint64_t start = m.split("train").shards[0].tokens + m.split("train").shards[1].tokens;
  int64_t at = tu::find_bytes(shard, tu::u16_run(static_cast<uint32_t>(start + 500), 4));
  ASSERT_GT(at, 0);
  tu::flip_byte(shard, at);
  std::string msg = error_of([&] { Loader l(c, 0, 1); });
  EXPECT_NE(msg.find(shard), std::string::npos) << msg;
  EXPECT_NE(msg.find("checksum mismatch"), std::string::npos) << msg;
  auto v = c;
  v.verify = "size";
  v.prefetch = 2;
  Loader lazy(v, 0, 1);
  msg = error_of([&] {
    for (int64_t i = 0; i < lazy.steps_per_epoch(); ++i) lazy.next();
  });
  EXPECT_NE(msg.find(shard), std::string::npos) << msg;
  EXPECT_NE(msg.find("corrupted"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { lazy.next(); }), "");  // stays broken
  // Truncated.
  tu::flip_byte(shard, at);  // restore
  EXPECT_NO_THROW(Loader ok(c, 0, 1));
  tu::truncate_file(shard, bytes - 1);
  msg = error_of([&] { Loader l(c, 0, 1); });
  EXPECT_NE(msg.find(shard), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  // Missing manifest.
  fs::remove(dir + "/manifest.json");
  EXPECT_NE(error_of([&] { Loader l(c, 0, 1); }).find("no manifest.json"), std::string::npos);
}

// ---- real ranks (mpiexec -n 2 and -n 4) ----------------------------------------------

namespace {
// All ranks' values, on every rank.
std::vector<int64_t> allgather(const std::vector<int64_t>& mine, MPI_Comm comm) {
  int world = 0;
  MPI_Comm_size(comm, &world);
  int n = static_cast<int>(mine.size());
  std::vector<int> counts(static_cast<size_t>(world)), displs(static_cast<size_t>(world));
  MPI_Allgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, comm);
  int total = 0;
  for (int r = 0; r < world; ++r)
    displs[static_cast<size_t>(r)] = total, total += counts[static_cast<size_t>(r)];
  std::vector<int64_t> all(static_cast<size_t>(total));
  MPI_Allgatherv(mine.data(), n, MPI_INT64_T, all.data(), counts.data(), displs.data(), MPI_INT64_T,
                 comm);
  return all;
}
}  // namespace

TEST(LoaderMpi, EpochUnionOverRanksIsTheWholeSplit) {
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  auto dir = packed_dataset("ldmpi_cover");
  for (const char* mode : {"packed", "documents"}) {
    auto c = packed(dir, 6);
    c.mode = mode;
    Loader l(c, rank, world);
    std::vector<int64_t> mine;
    for (int64_t i = 0; i < l.steps_per_epoch(); ++i) {
      auto b = l.next();
      EXPECT_EQ(b.epoch, 0);
      for (auto s : real_ids(b)) mine.push_back(s);
    }
    EXPECT_EQ(l.state().epoch, 1);
    expect_exactly_once(allgather(mine, MPI_COMM_WORLD), l.samples_per_epoch());
  }
}

TEST(LoaderMpi, ResumeOnFewerRanksContinuesWithoutRepeatsOrGaps) {
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  auto dir = packed_dataset("ldmpi_resume");
  auto c = packed(dir, 4);
  std::vector<int64_t> before;
  std::string saved;
  {
    Loader l(c, rank, world);
    for (int i = 0; i < 11; ++i)
      for (auto s : real_ids(l.next())) before.push_back(s);
    saved = l.state().to_json().dump();
  }
  // Every rank saved the same state.
  std::string root = saved;
  int n = static_cast<int>(root.size());
  MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
  root.resize(static_cast<size_t>(n));
  MPI_Bcast(root.data(), n, MPI_CHAR, 0, MPI_COMM_WORLD);
  EXPECT_EQ(saved, root);
  // Continue on half the ranks (at least one) to the end of the epoch.
  int new_world = std::max(1, world / 2);
  MPI_Comm sub;
  MPI_Comm_split(MPI_COMM_WORLD, rank < new_world ? 0 : MPI_UNDEFINED, rank, &sub);
  std::vector<int64_t> after;
  int64_t samples = 0;
  if (rank < new_world) {
    Loader l(c, rank, new_world);
    l.load_state(LoaderState::from_json(nlohmann::json::parse(root)));
    samples = l.samples_per_epoch();
    while (l.state().epoch == 0)
      for (auto s : real_ids(l.next())) after.push_back(s);
    MPI_Comm_free(&sub);
  }
  auto all = allgather(before, MPI_COMM_WORLD);
  auto rest = allgather(after, MPI_COMM_WORLD);
  all.insert(all.end(), rest.begin(), rest.end());
  MPI_Bcast(&samples, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
  expect_exactly_once(all, samples);
}

TEST(Loader, ChunkCacheEvictsAndReadsExactlyWhatIsStored) {
  // 1.2 MB of uint16 tokens in chunks of 1024: more than a 1 MiB cache holds.
  auto dir = tu::fresh_dir("ld_cache");
  tu::write_dataset(dir, tu::stream_docs(std::vector<uint64_t>(600, 1000), kMod), 250000);
  DatasetOptions o;
  o.dir = dir;
  o.seq_len = 100;
  o.cache_mb = 1;
  TokenDataset cached(o);
  o.cache_mb = 0;
  TokenDataset direct(o);
  Permutation perm(cached.size(), 9);
  std::vector<uint32_t> a(101), b(101);
  for (uint64_t p = 0; p < cached.size(); ++p) {
    uint64_t i = perm(p);
    cached.read(i, a.data());
    direct.read(i, b.data());
    ASSERT_EQ(a, b) << "sample " << i;
    ASSERT_EQ(a[0], (i * 100) % kMod);
  }
  uint64_t chunks = (600000 + 1023) / 1024;
  EXPECT_GT(cached.cache_misses(), chunks);  // evicted chunks were read again
  EXPECT_GT(cached.cache_hits(), 0u);
  EXPECT_EQ(direct.cache_hits() + direct.cache_misses(), 0u);
}

TEST(Loader, FullVerificationIsSharedAmongTheRanks) {
  auto dir = packed_dataset("ld_verify_share");
  auto m = Manifest::load(dir);
  ASSERT_EQ(m.split("train").shards.size(), 5u);
  std::string shard = dir + "/" + m.split("train").shards[3].file;
  uint64_t start = 0;
  for (int s = 0; s < 3; ++s) start += m.split("train").shards[static_cast<size_t>(s)].tokens;
  int64_t at = tu::find_bytes(shard, tu::u16_run(static_cast<uint32_t>(start + 100), 4));
  ASSERT_GT(at, 0);
  tu::flip_byte(shard, at);
  auto c = packed(dir);
  // Shard 3 belongs to rank 1 of 2: rank 1 finds it at open, rank 0 does not
  // (it would only meet the bad chunk when reading it).
  EXPECT_NE(error_of([&] { Loader l(c, 1, 2); }).find("checksum mismatch"), std::string::npos);
  EXPECT_NO_THROW(Loader l(c, 0, 2));
  c.verify = "all";
  EXPECT_NE(error_of([&] { Loader l(c, 0, 2); }).find("checksum mismatch"), std::string::npos);
}
