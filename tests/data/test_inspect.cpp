// Reading a prepared dataset back (data/inspect.h, `shardlm data inspect`):
// documents in split order across shard boundaries, ranges at the ends of a
// split, errors that name the file, and which tokenizer.json is the data's.
#include <gtest/gtest.h>

#include <filesystem>

#include "data/inspect.h"
#include "data/tokenizer.h"
#include "data_test_util.h"

using namespace shardlm::data;
namespace tu = shardlm::data::test_util;
namespace fs = std::filesystem;

namespace {

// 7 documents of 5..11 tokens, about 16 tokens per shard: several shards, each
// with one or two documents.
std::vector<std::vector<uint32_t>> seven_docs() {
  return tu::stream_docs({5, 6, 7, 8, 9, 10, 11});
}

}  // namespace

TEST(DataInspect, DocumentsInSplitOrderAcrossShards) {
  const auto dir = tu::fresh_dir("inspect_docs");
  const auto docs = seven_docs();
  const Manifest m = tu::write_dataset(dir, docs, 16);
  ASSERT_GE(m.split("train").shards.size(), 3u);

  const auto all = read_documents(m, "train", 0, 100);
  ASSERT_EQ(all.size(), docs.size());
  uint64_t in_shard = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].index, i);
    EXPECT_EQ(all[i].tokens, docs[i]) << "document " << i;
    if (i > 0 && all[i].shard != all[i - 1].shard) in_shard = 0;
    EXPECT_EQ(all[i].index_in_shard, in_shard++) << "document " << i;
  }
  EXPECT_EQ(all.front().shard, "train-00000.h5");
  EXPECT_EQ(all.back().shard, m.split("train").shards.back().file);

  // A range that starts inside a later shard and runs past the end of the split.
  const auto tail = read_documents(m, "train", 4, 10);
  ASSERT_EQ(tail.size(), 3u);
  for (size_t i = 0; i < tail.size(); ++i) {
    EXPECT_EQ(tail[i].index, 4 + i);
    EXPECT_EQ(tail[i].tokens, docs[4 + i]);
  }
  EXPECT_EQ(read_documents(m, "train", 2, 1).at(0).tokens, docs[2]);
  EXPECT_TRUE(read_documents(m, "train", 7, 3).empty());
  EXPECT_TRUE(read_documents(m, "val", 0, 3).empty());  // an empty split
}

TEST(DataInspect, ErrorsNameTheManifestOrTheShard) {
  const auto dir = tu::fresh_dir("inspect_errors");
  const Manifest m = tu::write_dataset(dir, seven_docs(), 16);
  std::string e = tu::error_of([&] { read_documents(m, "dev", 0, 1); });
  EXPECT_NE(e.find("no split 'dev'"), std::string::npos) << e;
  EXPECT_NE(e.find("manifest.json"), std::string::npos) << e;

  // The last shard truncated: reading the first documents still works (that
  // shard is never opened); reading into it names the file.
  const auto& last = m.split("train").shards.back();
  tu::truncate_file(dir + "/" + last.file, last.bytes / 2);
  EXPECT_EQ(read_documents(m, "train", 0, 1).size(), 1u);
  e = tu::error_of([&] { read_documents(m, "train", 0, 100); });
  EXPECT_NE(e.find(last.file), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
}

TEST(DataInspect, FindsTheTokenizerWithTheDatasHash) {
  TokenizerTrainOptions opt;
  opt.vocab_size = 300;
  opt.progress = false;
  const Tokenizer ours = train_tokenizer_on_texts(opt, {"the data of the dataset, the data"});
  opt.vocab_size = 290;
  const Tokenizer other = train_tokenizer_on_texts(opt, {"another text, another tokenizer"});
  ASSERT_NE(ours.hash(), other.hash());

  const auto root = tu::fresh_dir("inspect_tokenizer");
  const std::string dir = root + "/data";
  const Manifest m =
      tu::write_dataset(dir, seven_docs(), 16, ours.vocab_size(), "train", ours.hash());
  EXPECT_EQ(find_dataset_tokenizer(m), "");  // none yet

  ours.save(root + "/tokenizer.json");  // in the parent: found
  EXPECT_EQ(fs::path(find_dataset_tokenizer(m)), fs::absolute(root + "/tokenizer.json"));

  other.save(dir + "/tokenizer.json");  // in the folder, another hash: skipped
  EXPECT_EQ(fs::path(find_dataset_tokenizer(m)), fs::absolute(root + "/tokenizer.json"));

  tu::write_file(root + "/tokenizer.json", "not a tokenizer");  // unreadable: skipped too
  EXPECT_EQ(find_dataset_tokenizer(m), "");

  ours.save(dir + "/tokenizer.json");  // in the folder, the data's own: found first
  EXPECT_EQ(fs::path(find_dataset_tokenizer(m)), fs::absolute(dir + "/tokenizer.json"));
}
