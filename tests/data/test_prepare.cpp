// `prepare` end to end with a byte-level stand-in tokenizer: cleaning counts,
// dedup, the hash split (stable when files are added), shards and manifest,
// caching (skip, partial redo, full redo), and ranks splitting the files.
#include <gtest/gtest.h>
#include <mpi.h>

#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "core/error.h"
#include "data/prepare.h"
#include "data/shard.h"
#include "data_test_util.h"

using namespace shardlm::data;
namespace tu = shardlm::data::test_util;
using shardlm::core::DataError;
namespace fs = std::filesystem;

namespace {

PrepareConfig config_for(const std::string& dir, std::vector<std::string> inputs) {
  PrepareConfig c;
  c.inputs = std::move(inputs);
  c.output = dir + "/out";
  c.clean.min_chars = 5;
  c.val_fraction = 0.2;
  c.test_fraction = 0.1;
  c.threads = 2;
  c.progress = false;
  c.chunk_tokens = 64;
  return c;
}

// Every document of a prepared split, decoded, in stored order.
std::vector<std::string> split_texts(const Manifest& m, const std::string& split,
                                     uint32_t offset = 0) {
  std::vector<std::string> out;
  for (const auto& sh : m.split(split).shards) {
    ShardReader r((fs::path(m.dir) / sh.file).string());
    auto off = r.doc_offsets();
    for (size_t d = 0; d + 1 < off.size(); ++d)
      out.push_back(tu::byte_decode(r.read(off[d], off[d + 1] - off[d]), offset));
  }
  return out;
}

std::map<std::string, std::string> split_of_each(const Manifest& m) {
  std::map<std::string, std::string> where;
  for (const char* s : {"train", "val", "test"})
    for (auto& t : split_texts(m, s)) where[t] = s;
  return where;
}

std::string doc(int i) {
  return fmt::format("document number {} says {}", i, std::string(i % 7 + 1, 'x'));
}

// Paragraph-separated .txt with documents [a, b).
std::string txt_docs(int a, int b) {
  std::string s;
  for (int i = a; i < b; ++i) s += doc(i) + "\n\n";
  return s;
}

void bump_mtime(const std::string& path) {
  fs::last_write_time(path, fs::last_write_time(path) + std::chrono::seconds(5));
}

}  // namespace

TEST(Prepare, EndToEndCleansDedupsSplitsAndWritesShards) {
  auto dir = tu::fresh_dir("prep_e2e");
  // a.txt: 40 documents, one short, one with invalid UTF-8, one with a control char.
  tu::write_file(dir + "/in/a.txt",
                 txt_docs(0, 40) + "tiny\n\nbad \xff byte here\n\nctl\x01 char here\n");
  // b.jsonl.gz: 30 documents of which 10 repeat a.txt's (exact duplicates after cleaning).
  std::string jsonl;
  for (int i = 30; i < 60; ++i)
    jsonl += nlohmann::json({{"text", doc(i) + "  \r\n"}}).dump() + "\n";
  tu::write_gz(dir + "/in/b.jsonl.gz", jsonl);
  tu::write_gz(dir + "/in/sub/c.txt.gz", txt_docs(60, 100));
  auto cfg = config_for(dir, {dir + "/in"});
  auto res = prepare(cfg, tu::byte_encoder());
  EXPECT_FALSE(res.up_to_date);
  EXPECT_EQ(res.files_tokenized, 3);
  const Manifest& m = res.manifest;
  EXPECT_EQ(m.dtype, TokenDtype::kUInt16);
  EXPECT_EQ(m.tokenizer_hash, "bytes+0");
  auto clean = m.report.at("clean");
  EXPECT_EQ(clean.at("docs_in").get<int>(), 40 + 3 + 30 + 40);
  EXPECT_EQ(clean.at("docs_too_short").get<int>(), 1);
  EXPECT_EQ(clean.at("docs_invalid_utf8").get<int>(), 1);
  EXPECT_EQ(clean.at("control_removed").get<int>(), 1);
  EXPECT_EQ(clean.at("docs_duplicate").get<int>(), 10);
  EXPECT_EQ(m.report.at("documents_kept").get<int>(), 100 + 2);
  // Every kept document exactly once over the splits, in the split its hash says,
  // with its tokens = bytes + EOS.
  auto where = split_of_each(m);
  EXPECT_EQ(where.size(), 102u);
  uint64_t tokens = 0, docs = 0;
  for (const auto& [text, split] : where) {
    EXPECT_EQ(split, split_of(hash128(text), 0.2, 0.1)) << text;
    tokens += text.size() + 1;
  }
  for (const auto& [name, s] : m.splits) docs += s.docs;
  EXPECT_EQ(docs, 102u);
  EXPECT_EQ(m.splits.at("train").tokens + m.splits.at("val").tokens + m.splits.at("test").tokens,
            tokens);
  EXPECT_GT(m.splits.at("val").docs, 5u);
  EXPECT_GT(m.splits.at("test").docs, 2u);
  EXPECT_TRUE(where.count("ctl char here"));
  EXPECT_TRUE(where.count("bad \xef\xbf\xbd byte here"));
  EXPECT_TRUE(where.count(doc(35)));  // the jsonl copy cleaned to the same text
  for (const auto& [name, s] : m.splits)
    for (const auto& sh : s.shards) EXPECT_NO_THROW(verify_shard(m.dir + "/" + sh.file, sh, true));
}

TEST(Prepare, ShardSizeAndUint32Vocabulary) {
  auto dir = tu::fresh_dir("prep_u32");
  tu::write_file(dir + "/in/a.txt", txt_docs(0, 400));
  auto cfg = config_for(dir, {dir + "/in/a.txt"});
  cfg.val_fraction = cfg.test_fraction = 0;
  cfg.shard_mb = 4000.0 / (1 << 20);  // ~1000 uint32 tokens per shard
  auto enc = tu::byte_encoder(70000);
  auto m = prepare(cfg, enc).manifest;
  EXPECT_EQ(m.dtype, TokenDtype::kUInt32);
  const auto& train = m.split("train");
  EXPECT_GT(train.shards.size(), 5u);
  for (size_t i = 0; i + 1 < train.shards.size(); ++i) {
    EXPECT_GE(train.shards[i].tokens, 1000u);
    EXPECT_LT(train.shards[i].tokens, 1100u);  // a shard closes at the first document past the size
  }
  auto texts = split_texts(m, "train", 70000);
  EXPECT_EQ(texts.size(), 400u);
  EXPECT_EQ(texts[7], doc(7));
}

TEST(Prepare, SplitIsStableWhenFilesAreAdded) {
  auto dir = tu::fresh_dir("prep_stable");
  tu::write_file(dir + "/in/a.txt", txt_docs(0, 200));
  auto cfg = config_for(dir, {dir + "/in"});
  auto before = split_of_each(prepare(cfg, tu::byte_encoder()).manifest);
  tu::write_file(dir + "/in/b.txt", txt_docs(200, 400));
  auto after = split_of_each(prepare(cfg, tu::byte_encoder()).manifest);
  EXPECT_EQ(after.size(), 400u);
  for (const auto& [text, split] : before) EXPECT_EQ(after.at(text), split) << text;
}

TEST(Prepare, CacheSkipsRedoesChangedFilesOnlyAndSaysWhy) {
  auto dir = tu::fresh_dir("prep_cache");
  for (int f = 0; f < 3; ++f)
    tu::write_file(fmt::format("{}/in/f{}.txt", dir, f), txt_docs(f * 50, f * 50 + 50));
  auto cfg = config_for(dir, {dir + "/in"});
  auto enc = tu::byte_encoder();
  auto r1 = prepare(cfg, enc);
  EXPECT_EQ(r1.files_tokenized, 3);
  EXPECT_NE(r1.reason.find("no manifest yet"), std::string::npos) << r1.reason;

  auto r2 = prepare(cfg, enc);
  EXPECT_TRUE(r2.up_to_date);
  EXPECT_EQ(r2.files_tokenized, 0);
  EXPECT_EQ(r2.manifest.to_json(), r1.manifest.to_json());

  // One file changes: only it is tokenised again.
  tu::write_file(dir + "/in/f1.txt", txt_docs(50, 99));
  bump_mtime(dir + "/in/f1.txt");
  auto r3 = prepare(cfg, enc);
  EXPECT_FALSE(r3.up_to_date);
  EXPECT_EQ(r3.files_tokenized, 1);
  EXPECT_EQ(r3.files_cached, 2);
  EXPECT_NE(r3.reason.find("f1.txt"), std::string::npos) << r3.reason;
  EXPECT_EQ(split_of_each(r3.manifest).size(), 149u);

  // A file removed: nothing to tokenise, the shards are assembled again without it.
  fs::remove(dir + "/in/f2.txt");
  auto r4 = prepare(cfg, enc);
  EXPECT_EQ(r4.files_tokenized, 0);
  EXPECT_NE(r4.reason.find("removed (f2.txt)"), std::string::npos) << r4.reason;
  EXPECT_EQ(split_of_each(r4.manifest).size(), 99u);

  // Shard settings only: re-assembled from the cache.
  cfg.shard_mb = 0.001;
  auto r5 = prepare(cfg, enc);
  EXPECT_EQ(r5.files_tokenized, 0);
  EXPECT_NE(r5.reason.find("assembling the shards again"), std::string::npos) << r5.reason;
  EXPECT_GT(r5.manifest.split("train").shards.size(), r4.manifest.split("train").shards.size());

  // Another tokenizer or cleaning config: everything again.
  auto r6 = prepare(cfg, tu::byte_encoder(1));
  EXPECT_EQ(r6.files_tokenized, 2);
  EXPECT_NE(r6.reason.find("tokenizer changed"), std::string::npos) << r6.reason;
  cfg.clean.min_chars = 6;
  auto r7 = prepare(cfg, tu::byte_encoder(1));
  EXPECT_EQ(r7.files_tokenized, 2);
  EXPECT_NE(r7.reason.find("cleaning config changed"), std::string::npos) << r7.reason;
  // Stale cache entries were removed: two files, two cache entries (.h5 + .json).
  int entries = 0;
  for (auto& e : fs::directory_iterator(cfg.output + "/cache"))
    entries += e.path().extension() == ".h5";
  EXPECT_EQ(entries, 2);
  // Shards on disk are exactly those of the manifest.
  std::set<std::string> on_disk, listed;
  for (auto& e : fs::directory_iterator(cfg.output))
    if (e.path().extension() == ".h5") on_disk.insert(e.path().filename().string());
  for (auto& [n, s] : r7.manifest.splits)
    for (auto& sh : s.shards) listed.insert(sh.file);
  EXPECT_EQ(on_disk, listed);
}

TEST(Prepare, ErrorsNameTheInput) {
  auto dir = tu::fresh_dir("prep_err");
  auto cfg = config_for(dir, {dir + "/missing.txt"});
  try {
    prepare(cfg, tu::byte_encoder());
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.txt"), std::string::npos);
  }
  tu::write_file(dir + "/bad.jsonl", "{\"text\": \"fine text\"}\nnot json\n");
  cfg.inputs = {dir + "/bad.jsonl"};
  try {
    prepare(cfg, tu::byte_encoder());
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2: malformed JSON"), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(Manifest::exists(cfg.output));
}

// Under mpiexec: every rank calls prepare; the files are divided among the ranks.
TEST(PrepareMpi, RanksSplitTheFilesAndAgreeOnTheResult) {
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  auto dir = tu::fresh_dir("prep_mpi");
  int files = 2 * world;
  if (rank == 0)
    for (int f = 0; f < files; ++f)
      tu::write_file(fmt::format("{}/in/f{}.txt", dir, f), txt_docs(f * 30, f * 30 + 30));
  MPI_Barrier(MPI_COMM_WORLD);
  auto cfg = config_for(dir, {dir + "/in"});
  auto res = prepare(cfg, tu::byte_encoder());
  EXPECT_EQ(res.files_tokenized, files);
  EXPECT_EQ(res.files_tokenized_here, 2);  // equal sizes: two files per rank
  auto where = split_of_each(res.manifest);
  EXPECT_EQ(where.size(), static_cast<size_t>(files * 30));
  std::string fp = res.manifest.fingerprint("train");
  std::string root_fp = fp;
  root_fp.resize(16);
  MPI_Bcast(root_fp.data(), 16, MPI_CHAR, 0, MPI_COMM_WORLD);
  EXPECT_EQ(fp, root_fp);
  // Again: up to date on every rank.
  auto again = prepare(cfg, tu::byte_encoder());
  EXPECT_TRUE(again.up_to_date);
}
