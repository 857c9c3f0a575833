// Training: the merges on a corpus small enough to check by hand, determinism
// across thread counts, files versus texts, special tokens, options, and a
// trained tokenizer saved, loaded and exported to tokenizer.json giving the
// same ids through each path.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "data/tokenizer.h"
#include "data/utf8.h"
#include "tokenizer_test_util.h"

namespace shardlm::data {
namespace {

namespace fs = std::filesystem;

TokenizerTrainOptions options(size_t vocab, int threads = 1) {
  TokenizerTrainOptions o;
  o.vocab_size = vocab;
  o.threads = threads;
  o.progress = false;
  return o;
}

// A corpus with some structure: made-up words from a few hundred stems with
// English-like letter frequencies, numbers, code, Unicode, odd whitespace.
std::vector<std::string> corpus() {
  std::mt19937 rng(3);
  const std::string letters = "eeeeetttaaaoooiiinnnsssrrhhlldcumfpgwybvk";
  std::uniform_int_distribution<size_t> letter(0, letters.size() - 1);
  std::uniform_int_distribution<int> stem_len(2, 7), n_words(5, 60), pick(0, 399), extra(0, 19);
  std::vector<std::string> stems;
  for (int i = 0; i < 400; ++i) {
    std::string s;
    for (int k = stem_len(rng); k > 0; --k) s += letters[letter(rng)];
    stems.push_back(s);
  }
  const char* extras[] = {"世界", "naïve",  "🌍",   "def f(x):", "return 42;", "  ",           "\t",
                          "1999", "Hello",  "THE", "x\r\ny",    "(a, b)",     "it's",         "—",
                          "\n\n", "\u3000", "{}",  "0.5",       "...",        "<|endoftext|>"};
  std::vector<std::string> docs;
  for (int d = 0; d < 300; ++d) {
    std::string doc;
    for (int i = n_words(rng); i > 0; --i) {
      doc += extra(rng) == 0 ? extras[extra(rng)] : stems[static_cast<size_t>(pick(rng))];
      doc += (i % 9 == 0) ? "\n" : " ";
    }
    docs.push_back(doc + "\n");
  }
  return docs;
}

TEST(TokenizerTrain, MergesTheMostFrequentPairsFirst) {
  // Pieces: "ab" x1, " ab" x3, " cd" x1. (a,b) occurs 4 times, then (' ', ab)
  // 3 times; every other pair occurs once, under min_frequency 2.
  TokenizerTrainOptions o = options(4 + 256 + 10);
  const Tokenizer t = train_tokenizer_on_texts(o, {"ab ab ab ab cd"});
  ASSERT_EQ(t.num_merges(), 2u);
  EXPECT_EQ(t.vocab_size(), 4u + 256u + 2u);
  EXPECT_EQ(t.token_bytes(260), "ab");
  EXPECT_EQ(t.token_bytes(261), " ab");
  EXPECT_EQ(t.encode("ab ab cd"), (std::vector<uint32_t>{260, 261, 4 + ' ', 4 + 'c', 4 + 'd'}));
  // Special tokens come first with their roles; bytes follow.
  EXPECT_EQ(t.pad_id(), 0u);
  EXPECT_EQ(t.unk_id(), 1u);
  EXPECT_EQ(t.bos_id(), 2u);
  EXPECT_EQ(t.eos_id(), 3u);
  EXPECT_EQ(t.special_id("<|endoftext|>"), 3u);
  EXPECT_EQ(t.token_bytes(4 + 'a'), "a");
}

TEST(TokenizerTrain, TiesGoToTheSmallerPairAndMinFrequencyHolds) {
  TokenizerTrainOptions o = options(256 + 10);
  o.pad_token = o.unk_token = o.bos_token = o.eos_token = "";
  // Pieces "xyz" x1 and " xyz" x2: (x,y) and (y,z) occur 3 times each; (x,y)
  // has the smaller ids and goes first; then (xy, z) 3 times; (' ', xyz) only
  // 2 times, under min_frequency 3.
  o.min_frequency = 3;
  const Tokenizer t = train_tokenizer_on_texts(o, {"xyz xyz xyz"});
  ASSERT_EQ(t.num_merges(), 2u);
  EXPECT_EQ(t.token_bytes(256), "xy");
  EXPECT_EQ(t.token_bytes(257), "xyz");
}

TEST(TokenizerTrain, SameResultOnAnyThreadCountAndFromFiles) {
  const auto docs = corpus();
  const Tokenizer one = train_tokenizer_on_texts(options(600, 1), docs);
  const Tokenizer four = train_tokenizer_on_texts(options(600, 4), docs);
  EXPECT_EQ(one.hash(), four.hash());
  EXPECT_EQ(one.vocab_size(), 600u);
  // The same corpus as files in a directory (each file one text).
  const std::string dir = test::temp_dir("train_files");
  for (size_t i = 0; i < docs.size(); ++i)
    test::write_all(dir + "/doc" + std::to_string(1000 + i) + ".txt", docs[i]);
  EXPECT_EQ(train_tokenizer(options(600, 3), {dir}).hash(), one.hash());
  // One big file cut into blocks on 3 threads: cuts fall only where no piece spans.
  std::string all;
  for (const auto& d : docs) all += d;
  test::write_all(dir + "/all.txt", all);
  const std::string whole = train_tokenizer_on_texts(options(600, 1), {all}).hash();
  EXPECT_EQ(train_tokenizer(options(600, 3), {dir + "/all.txt"}).hash(), whole);
  TokenizerTrainOptions small_blocks = options(600, 2);
  small_blocks.read_block_bytes = 4096;  // blocks end at safe cuts, the rest carries over
  EXPECT_EQ(train_tokenizer(small_blocks, {dir + "/all.txt"}).hash(), whole);
  fs::remove_all(dir);
}

TEST(TokenizerTrain, SavedLoadedAndExportedGiveIdenticalIds) {
  TokenizerTrainOptions o = options(700, 2);
  o.special_tokens = {"<|user|>"};
  o.pattern = "cl100k";
  const auto docs = corpus();
  const Tokenizer t = train_tokenizer_on_texts(o, docs);
  const std::string dir = test::temp_dir("train_formats");
  t.save(dir + "/tok.json");
  t.save_hf(dir + "/tokenizer.json");
  const Tokenizer loaded = Tokenizer::load(dir + "/tok.json");
  const Tokenizer hf = Tokenizer::load(dir + "/tokenizer.json");
  EXPECT_EQ(loaded.hash(), t.hash());
  EXPECT_EQ(hf.hash(), t.hash());  // same vocabulary, merges, pattern, specials and roles
  EXPECT_EQ(hf.pattern_name(), "cl100k");
  std::mt19937 rng(9);
  std::vector<std::string> texts = docs;
  for (int i = 0; i < 100; ++i) texts.push_back(test::random_bytes(rng, 200));
  texts.push_back("<|user|>hello<|endoftext|>");
  for (const auto& x : texts) {
    const auto ids = t.encode(x, true);
    ASSERT_EQ(loaded.encode(x, true), ids);
    ASSERT_EQ(hf.encode(x, true), ids);
    ASSERT_EQ(t.decode_bytes(ids), x);
  }
  EXPECT_EQ(hf.special_id("<|user|>"), t.special_id("<|user|>"));
  fs::remove_all(dir);
}

TEST(TokenizerTrain, SpecialTokensAreAtomicOnlyWhenAllowed) {
  const Tokenizer t = train_tokenizer_on_texts(options(400), corpus());
  const std::string text = "the<|endoftext|>token";
  const auto allowed = t.encode(text, true);
  const auto plain = t.encode(text, false);
  EXPECT_EQ(std::count(allowed.begin(), allowed.end(), *t.eos_id()), 1);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), *t.eos_id()), 0);
  EXPECT_EQ(t.decode(allowed), text);
  EXPECT_EQ(t.decode(plain), text);
  // The longest special token wins where two start at the same place.
  TokenizerTrainOptions o = options(400);
  o.special_tokens = {"<|end", "<|endoftext|>x"};
  const Tokenizer u = train_tokenizer_on_texts(o, corpus());
  EXPECT_EQ(u.encode("<|endoftext|>x", true),
            (std::vector<uint32_t>{*u.special_id("<|endoftext|>x")}));
  EXPECT_EQ(u.encode("<|endoftext|>", true), (std::vector<uint32_t>{*u.eos_id()}));
}

TEST(TokenizerTrain, RoundTripAndBatchOnRandomBytes) {
  const Tokenizer t = train_tokenizer_on_texts(options(800), corpus());
  std::mt19937 rng(1);
  std::vector<std::string> texts;
  for (int i = 0; i < 400; ++i) texts.push_back(test::random_bytes(rng, static_cast<size_t>(i)));
  const auto batch = t.encode_batch(texts, 3);
  for (size_t i = 0; i < texts.size(); ++i) {
    ASSERT_EQ(batch[i], t.encode(texts[i]));
    ASSERT_EQ(t.decode_bytes(batch[i]), texts[i]);
    ASSERT_EQ(t.decode(batch[i]), utf8_sanitize(texts[i]));
  }
}

TEST(TokenizerTrain, DamagedFilesGiveDataErrorsNamingTheFile) {
  // Random bytes of a saved tokenizer changed, in each format: loading either
  // succeeds (a harmless change) or throws a DataError naming the file.
  TokenizerTrainOptions o = options(300);
  const Tokenizer t = train_tokenizer_on_texts(o, corpus());
  const std::string dir = test::temp_dir("damaged");
  t.save(dir + "/own.json");
  t.save_hf(dir + "/tokenizer.json");
  std::mt19937 rng(23);
  const char* junk[] = {"\"", "{", "]", "1", "-", "x", "\xff", " ", "\n", "null", "\"id\""};
  std::uniform_int_distribution<size_t> pick(0, std::size(junk) - 1);
  int loaded = 0, refused = 0;
  for (const char* name : {"own.json", "tokenizer.json"}) {
    const std::string good = test::read_all(dir + "/" + name);
    std::uniform_int_distribution<size_t> at(0, good.size() - 1);
    for (int i = 0; i < 150; ++i) {
      std::string bad = good;
      for (int k = 0; k < 1 + i % 3; ++k) bad.replace(at(rng), 1 + i % 4, junk[pick(rng)]);
      const std::string path = dir + "/bad_" + name;
      test::write_all(path, bad);
      try {
        Tokenizer::load(path);
        ++loaded;
      } catch (const core::DataError& e) {
        ++refused;
        ASSERT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      }
    }
  }
  EXPECT_GT(refused, 200);
  fs::remove_all(dir);
}

TEST(TokenizerTrain, BadOptionsAndInputsAreNamed) {
  try {
    train_tokenizer_on_texts(options(100), {"x"});
    FAIL() << "expected ConfigError";
  } catch (const core::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.vocab_size"), std::string::npos) << e.what();
  }
  TokenizerTrainOptions o = options(300);
  o.special_tokens = {"<|pad|>"};  // already the pad token
  EXPECT_THROW(train_tokenizer_on_texts(o, {"x"}), core::ConfigError);
  o = options(300);
  o.pattern = "(unclosed";
  EXPECT_THROW(train_tokenizer_on_texts(o, {"x"}), core::DataError);
  EXPECT_THROW(train_tokenizer(options(300), {"/nonexistent/corpus.txt"}), core::DataError);
}

}  // namespace
}  // namespace shardlm::data
