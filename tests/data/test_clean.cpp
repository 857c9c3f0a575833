// Text cleaning (NFC, control characters, whitespace, invalid UTF-8, minimum
// length) and reading inputs (.txt/.jsonl, gzip, directories and globs).
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "core/error.h"
#include "data/corpus.h"
#include "data/text_clean.h"
#include "data/utf8.h"
#include "data_test_util.h"

using namespace shardlm::data;
namespace tu = shardlm::data::test_util;
using shardlm::core::DataError;
using tu::error_of;
namespace fs = std::filesystem;

namespace {

CleanConfig config(int64_t min_chars = 0) {
  CleanConfig c;
  c.min_chars = min_chars;
  return c;
}

std::string clean(std::string s, const CleanConfig& c, CleanStats* st = nullptr,
                  CleanOutcome* outcome = nullptr) {
  CleanStats local;
  auto o = clean_text(s, c, st ? *st : local);
  if (outcome) *outcome = o;
  return s;
}

std::vector<std::string> read_all(const InputFile& f, const ReaderConfig& rc) {
  DocumentReader r(f, rc);
  std::vector<std::string> docs;
  std::string d;
  while (r.next(d)) docs.push_back(d);
  return docs;
}

}  // namespace

TEST(Clean, NfcComposesAndCounts) {
  CleanStats st;
  // "e" + COMBINING ACUTE ACCENT -> U+00E9; ANGSTROM SIGN U+212B -> U+00C5.
  EXPECT_EQ(clean("caf\x65\xcc\x81 \xe2\x84\xab", config(), &st), "caf\xc3\xa9 \xc3\x85");
  EXPECT_EQ(st.docs_nfc_changed, 1);
  EXPECT_EQ(clean("caf\xc3\xa9", config(), &st), "caf\xc3\xa9");  // already NFC
  EXPECT_EQ(st.docs_nfc_changed, 1);
  auto off = config();
  off.nfc = false;
  EXPECT_EQ(clean("e\xcc\x81", off), "e\xcc\x81");
}

TEST(Clean, ControlCharactersRemovedTabsAndNewlinesKept) {
  CleanStats st;
  // NUL, BEL, DEL, C1 control U+0085 is a line break (-> \n), U+0090, BOM.
  std::string in =
      std::string("a\x01", 2) + std::string(1, '\0') + "b\x7f\tc\xc2\x90\xef\xbb\xbf" + "d\ne";
  EXPECT_EQ(clean(in, config(), &st), "ab\tcd\ne");
  EXPECT_EQ(st.control_removed, 5);
  auto keep = config();
  keep.strip_control = false;
  keep.whitespace = "keep";
  EXPECT_EQ(clean("a\x01z", keep), "a\x01z");
}

TEST(Clean, WhitespaceNormalised) {
  CleanStats st;
  EXPECT_EQ(clean("\n\n  line one  \r\nline\xc2\xa0two\t\r\n\n\n\n\nend \n\n", config(), &st),
            "  line one\nline two\n\nend");
  EXPECT_EQ(st.docs_whitespace_changed, 1);
  EXPECT_EQ(clean("a\rb\x0c"
                  "c\xe2\x80\xa8"
                  "d",
                  config()),
            "a\nb\nc\nd");
  // collapse squeezes runs inside a line but keeps the indentation.
  auto col = config();
  col.whitespace = "collapse";
  EXPECT_EQ(clean("def f():\n    return  1 +\t\t2", col), "def f():\n    return 1 + 2");
  auto keep = config();
  keep.whitespace = "keep";
  EXPECT_EQ(clean("a  \r\n\n\n\nb ", keep), "a  \r\n\n\n\nb ");
  CleanStats st2;
  clean("already\nclean", config(), &st2);
  EXPECT_EQ(st2.docs_whitespace_changed, 0);
}

TEST(Clean, WhitespaceFastPathAgreesWithTheFullPass) {
  // Random text of letters, blanks and newlines: a document counts as changed
  // exactly when its text changed, and cleaning twice changes nothing more.
  std::mt19937 rng(11);
  const char alphabet[] = {'a', 'b', ' ', '\t', '\n', '\n'};
  for (int k = 0; k < 3000; ++k) {
    std::string in;
    for (int n = static_cast<int>(rng() % 24); n > 0; --n) in.push_back(alphabet[rng() % 6]);
    CleanStats st;
    CleanOutcome o;
    std::string out = clean(in, config(), &st, &o);
    if (o != CleanOutcome::kKept) continue;
    EXPECT_EQ(st.docs_whitespace_changed, out != in ? 1 : 0) << "'" << in << "'";
    CleanStats again;
    EXPECT_EQ(clean(out, config(), &again), out) << "'" << in << "'";
    EXPECT_EQ(again.docs_whitespace_changed, 0) << "'" << out << "'";
    EXPECT_EQ(out.find("\n\n\n"), std::string::npos) << "'" << in << "'";
    EXPECT_EQ(out.find(" \n"), std::string::npos) << "'" << in << "'";
    EXPECT_EQ(out.find("\t\n"), std::string::npos) << "'" << in << "'";
    EXPECT_EQ(out.find("\n \n"), std::string::npos) << "'" << in << "'";
    EXPECT_NE(out.front(), '\n');
    EXPECT_TRUE(out.back() != ' ' && out.back() != '\t' && out.back() != '\n');
  }
}

TEST(Clean, InvalidUtf8ReplacedOrRejectedWithCounts) {
  CleanStats st;
  // ff, fe; c0 af (overlong '/'); ed a0 80 (a surrogate); a truncated c3: one U+FFFD
  // per maximal invalid subpart, as Python's bytes.decode(errors="replace").
  std::string in =
      "ab\xff\xfe"
      "cd\xc0\xaf"
      "e\xed\xa0\x80"
      "f\xc3";
  EXPECT_LT(utf8_valid_prefix(in), in.size());
  std::string out = clean(in, config(), &st);
  const std::string r = "\xef\xbf\xbd";
  EXPECT_EQ(out, "ab" + r + r + "cd" + r + r + "e" + r + r + r + "f" + r);
  EXPECT_EQ(utf8_valid_prefix(out), out.size());
  EXPECT_EQ(st.invalid_sequences, 8);
  EXPECT_EQ(st.docs_invalid_utf8, 1);
  EXPECT_EQ(st.docs_rejected_utf8, 0);
  auto rej = config();
  rej.invalid_utf8 = "reject";
  CleanOutcome o;
  CleanStats st2;
  clean(in, rej, &st2, &o);
  EXPECT_EQ(o, CleanOutcome::kRejectedUtf8);
  EXPECT_EQ(st2.docs_rejected_utf8, 1);
  EXPECT_EQ(st2.docs_out, 0);
  // Valid 4-byte sequences stay.
  std::string ok = "\xf0\x9f\x98\x80 \xe4\xb8\xad";
  EXPECT_EQ(clean(ok, config(), &st2), ok);
  EXPECT_EQ(st2.invalid_sequences, 8);
}

TEST(Clean, MinimumLengthInCodePoints) {
  CleanStats st;
  CleanOutcome o;
  clean("\xc3\xa9\xc3\xa9\xc3\xa9", config(3), &st, &o);  // 3 code points, 6 bytes
  EXPECT_EQ(o, CleanOutcome::kKept);
  clean("\xc3\xa9\xc3\xa9\xc3\xa9", config(4), &st, &o);
  EXPECT_EQ(o, CleanOutcome::kTooShort);
  clean(" \n\t\n ", config(0), &st, &o);  // whitespace only: empty after cleaning
  EXPECT_EQ(o, CleanOutcome::kTooShort);
  EXPECT_EQ(st.docs_in, 3);
  EXPECT_EQ(st.docs_out, 1);
  EXPECT_EQ(st.docs_too_short, 2);
}

TEST(Clean, StatsAddUpAndRoundTripJson) {
  CleanStats a, b;
  clean("x\x01y", config(), &a);
  clean("p\xffq", config(), &b);
  a += b;
  EXPECT_EQ(a.docs_in, 2);
  EXPECT_EQ(a.control_removed, 1);
  EXPECT_EQ(a.invalid_sequences, 1);
  auto back = CleanStats::from_json(a.to_json());
  EXPECT_EQ(back.to_json(), a.to_json());
}

TEST(Clean, ConfigValidateNamesTheKey) {
  auto c = config();
  c.whitespace = "squash";
  try {
    c.validate();
    FAIL() << "no error";
  } catch (const shardlm::core::ConfigError& e) {
    EXPECT_EQ(e.key(), "whitespace");
  }
}

TEST(Corpus, TxtDocumentModes) {
  auto dir = tu::fresh_dir("corpus_txt");
  std::string path = dir + "/a.txt";
  tu::write_file(path, "first para\nsame para\n\n\n second\n  \nthird\n");
  auto f = describe_input(path);
  ReaderConfig rc;
  EXPECT_EQ(read_all(f, rc),
            (std::vector<std::string>{"first para\nsame para", " second", "third"}));
  rc.txt_documents = "line";
  EXPECT_EQ(read_all(f, rc),
            (std::vector<std::string>{"first para", "same para", " second", "third"}));
  rc.txt_documents = "file";
  EXPECT_EQ(read_all(f, rc).size(), 1u);
  EXPECT_EQ(read_all(f, rc)[0], "first para\nsame para\n\n\n second\n  \nthird");
}

TEST(Corpus, JsonlAndGzip) {
  auto dir = tu::fresh_dir("corpus_jsonl");
  std::string body = "{\"text\": \"one\\nline\", \"id\": 1}\n\n{\"id\": 2, \"text\": \"two\"}\n";
  tu::write_gz(dir + "/b.jsonl.gz", body);
  tu::write_gz(dir + "/c.txt.gz", "alpha\n\nbeta\n");
  auto f = describe_input(dir + "/b.jsonl.gz");
  EXPECT_EQ(f.format, InputFormat::kJsonl);
  EXPECT_TRUE(f.gzip);
  EXPECT_EQ(read_all(f, ReaderConfig{}), (std::vector<std::string>{"one\nline", "two"}));
  EXPECT_EQ(read_all(describe_input(dir + "/c.txt.gz"), ReaderConfig{}),
            (std::vector<std::string>{"alpha", "beta"}));
  ReaderConfig other;
  other.text_field = "body";
  tu::write_file(dir + "/d.jsonl", "{\"body\": \"x\"}\n");
  EXPECT_EQ(read_all(describe_input(dir + "/d.jsonl"), other), (std::vector<std::string>{"x"}));
}

TEST(Corpus, BadJsonlRecordNamesFileAndLineOrIsSkipped) {
  auto dir = tu::fresh_dir("corpus_bad");
  std::string path = dir + "/e.jsonl";
  tu::write_file(
      path,
      "{\"text\": \"ok\"}\n{\"text\": 5}\n{broken\n{\"other\": \"x\"}\n{\"text\": \"end\"}\n");
  auto f = describe_input(path);
  std::string msg = error_of([&] { read_all(f, ReaderConfig{}); });
  EXPECT_NE(msg.find(path + ":2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a string"), std::string::npos) << msg;
  ReaderConfig skip;
  skip.bad_records = "skip";
  DocumentReader r(f, skip);
  std::vector<std::string> docs;
  std::string d;
  while (r.next(d)) docs.push_back(d);
  EXPECT_EQ(docs, (std::vector<std::string>{"ok", "end"}));
  EXPECT_EQ(r.skipped_records(), 3);
}

TEST(Corpus, JsonlInvalidUtf8IsRepairedAndCounted) {
  auto dir = tu::fresh_dir("corpus_utf8");
  std::string path = dir + "/u.jsonl";
  tu::write_file(path, "{\"text\": \"bad \xff\xfe byte\"}\n");
  DocumentReader r(describe_input(path), ReaderConfig{});
  std::string d;
  ASSERT_TRUE(r.next(d));
  EXPECT_EQ(d, "bad \xef\xbf\xbd\xef\xbf\xbd byte");
  EXPECT_EQ(r.last_invalid(), 2);
  CleanStats st;
  auto rej = config();
  rej.invalid_utf8 = "reject";
  EXPECT_EQ(clean_text(d, rej, st, r.last_invalid()), CleanOutcome::kRejectedUtf8);
}

TEST(Corpus, ExpandsDirectoriesAndGlobsSortedWithoutRepeats) {
  auto dir = tu::fresh_dir("corpus_expand");
  for (const char* p :
       {"/x/b.txt", "/x/a.jsonl", "/x/sub/c.txt.gz", "/x/skip.csv", "/x/.hidden/h.txt"})
    tu::write_file(dir + p, "text\n");
  auto files = expand_inputs({dir + "/x", dir + "/x/*.txt"});
  std::vector<std::string> names;
  for (auto& f : files) names.push_back(fs::path(f.path).filename().string());
  EXPECT_EQ(names, (std::vector<std::string>{"a.jsonl", "b.txt", "c.txt.gz"}));
  EXPECT_EQ(files[1].size, 5u);
  EXPECT_GT(files[1].mtime_ns, 0);
  std::string msg = error_of([&] { expand_inputs({dir + "/nope.txt"}); });
  EXPECT_NE(msg.find("nope.txt"), std::string::npos);
  msg = error_of([&] { expand_inputs({dir + "/x/skip.csv"}); });
  EXPECT_NE(msg.find("unsupported file type"), std::string::npos) << msg;
  msg = error_of([&] { expand_inputs({dir + "/x/*.parquet"}); });
  EXPECT_NE(msg.find("matches no file"), std::string::npos) << msg;
}
