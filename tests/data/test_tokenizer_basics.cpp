// Tokenizer building blocks: UTF-8 repair, GPT-2's byte-level characters, the
// pre-tokenizer, the bytes-only tokenizer, decode errors, input path expansion.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "data/input_paths.h"
#include "data/pretokenizer.h"
#include "data/tokenizer.h"
#include "data/utf8.h"
#include "tokenizer_test_util.h"

namespace shardlm::data {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

// ---- UTF-8 ---------------------------------------------------------------------------------
TEST(TokenizerUtf8, ValidTextIsUnchanged) {
  const std::string s = "plain ASCII, é, 世界, 🌍";
  EXPECT_EQ(utf8_valid_prefix(s), s.size());
  EXPECT_EQ(utf8_sanitize(s), s);
}

TEST(TokenizerUtf8, MaximalSubpartsBecomeOneReplacementEach) {
  // The cases of Unicode 15 section 3.9 (and Python's errors="replace").
  EXPECT_EQ(utf8_sanitize("a\xff"
                          "b"),
            "a" + kFffd + "b");
  EXPECT_EQ(utf8_sanitize("\xe2\x82"), kFffd);  // truncated 3-byte: one
  EXPECT_EQ(utf8_sanitize("\xe2\x82"
                          "A"),
            kFffd + "A");
  EXPECT_EQ(utf8_sanitize("\xed\xa0\x80"), kFffd + kFffd + kFffd);              // surrogate: three
  EXPECT_EQ(utf8_sanitize("\xc0\xaf"), kFffd + kFffd);                          // overlong: two
  EXPECT_EQ(utf8_sanitize("\xf4\x90\x80\x80"), kFffd + kFffd + kFffd + kFffd);  // > U+10FFFF
  EXPECT_EQ(utf8_sanitize("\xf0\x9f\x8c"), kFffd);                              // truncated emoji
  EXPECT_EQ(utf8_valid_prefix("abc\x80"), 3u);
}

TEST(TokenizerUtf8, ByteLevelCharactersMatchGpt2) {
  const auto& c = byte_level_chars();
  EXPECT_EQ(c[' '], "\xC4\xA0");   // U+0120 'Ġ'
  EXPECT_EQ(c['\n'], "\xC4\x8A");  // U+010A 'Ċ'
  EXPECT_EQ(c['A'], "A");
  EXPECT_EQ(c[0xAD], "\xC5\x83");  // soft hyphen is not printable: U+0143
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  std::string back;
  ASSERT_TRUE(byte_level_to_bytes(bytes_to_byte_level(all), &back));
  EXPECT_EQ(back, all);
  EXPECT_FALSE(byte_level_to_bytes("\xE4\xB8\x96", &back));  // '世' is no byte's character
}

// ---- pre-tokenizer ---------------------------------------------------------------------------
std::vector<std::string> pieces(const Pretokenizer& p, std::string_view text) {
  std::vector<std::string> out;
  for (auto v : p.split(text)) out.emplace_back(v);
  return out;
}

TEST(TokenizerPretokenizer, Gpt2SplitsWordsContractionsAndSpaces) {
  Pretokenizer p("gpt2");
  EXPECT_TRUE(p.jit());
  EXPECT_EQ(p.name(), "gpt2");
  using V = std::vector<std::string>;
  EXPECT_EQ(pieces(p, "Hello world's 42x!?"), (V{"Hello", " world", "'s", " 42", "x", "!?"}));
  // Whitespace before a word: all but the last space form a piece of their own.
  EXPECT_EQ(pieces(p, "a   b\n\nc  "), (V{"a", "  ", " b", "\n", "\n", "c", "  "}));
  EXPECT_EQ(pieces(p, "世界 🌍🌍"), (V{"世界", " 🌍🌍"}));
  // U+3000 and U+0085 are White_Space; U+180E is not (PCRE2's own \s differs).
  EXPECT_EQ(pieces(p, "a\u3000\u3000b"), (V{"a", "\u3000", "\u3000", "b"}));
  EXPECT_EQ(pieces(p, "a!\u0085"), (V{"a", "!", "\u0085"}));
  EXPECT_EQ(pieces(p, "a!\u180e"), (V{"a", "!\u180e"}));
}

TEST(TokenizerPretokenizer, Cl100kGroupsDigitsByThreeAndKeepsNewlines) {
  Pretokenizer p("cl100k");
  using V = std::vector<std::string>;
  EXPECT_EQ(pieces(p, "12345 HELLO'S\n\n  x"), (V{"123", "45", " HELLO", "'S", "\n\n", " ", " x"}));
}

TEST(TokenizerPretokenizer, PiecesCoverAnyBytesExactly) {
  std::mt19937 rng(7);
  for (const char* pat : {"gpt2", "cl100k", "o200k", "[a-z]+"}) {
    Pretokenizer p(pat);
    for (int round = 0; round < 200; ++round) {
      const std::string s = test::random_bytes(rng, 1 + round);
      std::string joined;
      for (auto v : p.split(s)) {
        EXPECT_FALSE(v.empty());
        joined += v;
      }
      ASSERT_EQ(joined, s) << "pattern " << pat;
    }
  }
}

TEST(TokenizerPretokenizer, SafeCutsOnlyBetweenPlainCharactersAndOnlyForNamedPatterns) {
  Pretokenizer p("gpt2");
  // Newlines at 2, 4, 7, 9, 10 and 12; only 7 ("c\nd") and 12 ("e\nf") stand
  // between plain characters.
  const std::string text = "a \nb\n c\nd\n\ne\nf";
  EXPECT_EQ(p.next_safe_cut(text, 0), 8u);
  EXPECT_EQ(p.last_safe_cut(text), 13u);
  EXPECT_EQ(p.safe_parts(text, 1).size(), 3u);
  Pretokenizer custom("[a-z]+");
  EXPECT_FALSE(custom.has_safe_cuts());
  EXPECT_EQ(custom.next_safe_cut(text, 0), std::string_view::npos);
  EXPECT_EQ(custom.safe_parts(text, 1).size(), 1u);
}

TEST(TokenizerPretokenizer, AsciiFastPathsGiveThePiecesOfPcre2) {
  // Random text over every class of ASCII byte, contractions in both cases,
  // and non-ASCII letters, digits, spaces and symbols next to them.
  const char* atoms[] = {"a", "Z",  "7",      "123",    " ",  "  ", "\t",   "\n",    "\r\n", "\x0b",
                         "'", "'s", "'re",    "'LL",    "'S", "'v", "!",    "#",     "\x01", "\x7f",
                         "é", "²",  "\u00a0", "\u3000", "🌍",  "世", "\xff", "\u017f"};
  const std::string docs =
      test::read_all("/usr/share/doc/python3.11/html/_sources/tutorial/classes.rst.txt");
  EXPECT_GT(docs.size(), 10000u);
  for (const char* pattern : {"gpt2", "cl100k"}) {
    const Pretokenizer fast(pattern), pcre(pattern, /*fast_paths=*/false);
    std::mt19937 rng(17);
    std::uniform_int_distribution<size_t> pick(0, std::size(atoms) - 1);
    for (int round = 0; round < 4000; ++round) {
      std::string s;
      for (int k = round % 24; k >= 0; --k) s += atoms[pick(rng)];
      ASSERT_EQ(pieces(fast, s), pieces(pcre, s)) << pattern << " text: " << s;
    }
    EXPECT_EQ(pieces(fast, docs), pieces(pcre, docs)) << pattern;
  }
}

TEST(TokenizerPretokenizer, InvalidUtf8IsAPieceOfItsOwn) {
  Pretokenizer p("gpt2");
  using V = std::vector<std::string>;
  EXPECT_EQ(pieces(p, "ab\xff\xfe cd"), (V{"ab", "\xff\xfe", " cd"}));
}

TEST(TokenizerPretokenizer, BadPatternNamesTheOffset) {
  try {
    Pretokenizer p("abc(def");
    FAIL() << "expected DataError";
  } catch (const core::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("offset 7"), std::string::npos) << e.what();
  }
}

// ---- the bytes-only tokenizer, decoding ----------------------------------------------------
TEST(TokenizerBytes, DefaultTokenizerIsOneTokenPerByte) {
  Tokenizer t;
  EXPECT_EQ(t.vocab_size(), 256u);
  EXPECT_EQ(t.encode("Az\n"), (std::vector<uint32_t>{'A', 'z', '\n'}));
  EXPECT_EQ(t.decode({'h', 'i'}), "hi");
  EXPECT_FALSE(t.eos_id().has_value());
}

TEST(TokenizerBytes, DecodeReplacesInvalidUtf8AndRejectsUnknownIds) {
  Tokenizer t;
  EXPECT_EQ(t.decode({'a', 0xff, 'b'}), "a" + kFffd + "b");
  EXPECT_EQ(t.decode_bytes({'a', 0xff}), "a\xff");
  try {
    t.decode({'a', 300});
    FAIL() << "expected DataError";
  } catch (const core::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("token id 300"), std::string::npos) << e.what();
  }
}

// A model's vocabulary may be padded past the tokenizer's: those ids have no text.
TEST(TokenizerBytes, ModelIdsPastTheVocabularyDecodeToNothing) {
  Tokenizer t;
  EXPECT_EQ(t.decode_model_ids({'o', 300, 'k', -1, 1LL << 40}), "ok");
  EXPECT_EQ(t.decode_model_ids({}), "");
}

// ---- input paths -----------------------------------------------------------------------------
TEST(TokenizerInputs, FilesDirectoriesAndGlobs) {
  const std::string dir = test::temp_dir("inputs");
  std::filesystem::create_directories(dir + "/sub");
  for (const char* f : {"/b.txt", "/a.txt", "/sub/c.txt", "/.hidden", "/d.md"})
    test::write_all(dir + f, "x");
  const auto all = expand_input_paths({dir});
  ASSERT_EQ(all.size(), 4u);  // not .hidden
  EXPECT_EQ(all[0], dir + "/a.txt");
  EXPECT_EQ(all[3], dir + "/sub/c.txt");
  const auto txt = expand_input_paths({dir + "/*.txt", dir + "/a.txt"});
  EXPECT_EQ(txt, (std::vector<std::string>{dir + "/a.txt", dir + "/b.txt"}));  // no repeats
  EXPECT_THROW(expand_input_paths({dir + "/missing.txt"}), core::DataError);
  EXPECT_THROW(expand_input_paths({dir + "/*.none"}), core::DataError);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace shardlm::data
