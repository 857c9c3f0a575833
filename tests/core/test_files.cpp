// core::write_file_atomic / commit_file (the one way files are saved) and
// core::ProgressBar (the one progress line).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"

using namespace shardlm;
namespace fs = std::filesystem;

namespace {
fs::path fresh_dir(const std::string& name) {
  fs::path d =
      fs::path(testing::TempDir()) / ("shardlm_core_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
}  // namespace

TEST(Files, WriteFileAtomicReplacesTheFileAndLeavesNoTemporary) {
  fs::path d = fresh_dir("atomic");
  const std::string p = (d / "a.json").string();
  core::write_file_atomic(p, "first\n");
  EXPECT_EQ(read(p), "first\n");
  core::write_file_atomic(p, std::string(1 << 20, 'x'));  // larger, replaces it whole
  EXPECT_EQ(read(p).size(), size_t{1} << 20);
  EXPECT_FALSE(fs::exists(p + ".tmp"));
}

// A write that fails half-way (a full disk: the stream goes bad) throws the
// caller's error type naming the temporary; the saved file keeps its bytes.
TEST(Files, AFailedWriteKeepsTheSavedFileAndRemovesTheTemporary) {
  fs::path d = fresh_dir("fail");
  const std::string p = (d / "model.bin").string();
  core::write_file_atomic(p, "saved");
  try {
    core::write_file_atomic<core::CheckpointError>(p, [](std::ostream& out) {
      out << "partial";
      out.setstate(std::ios::badbit);
    });
    FAIL() << "no error";
  } catch (const core::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("model.bin.tmp: write failed (disk full?)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(read(p), "saved");
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  // An exception from the writer itself propagates, with the same guarantees.
  EXPECT_THROW(core::write_file_atomic(p, [](std::ostream&) { throw std::runtime_error("x"); }),
               std::runtime_error);
  EXPECT_EQ(read(p), "saved");
  EXPECT_FALSE(fs::exists(p + ".tmp"));
}

TEST(Files, UnwritableFolderNamesThePath) {
  const std::string p = "/proc/shardlm-no-such-dir/x.json";
  try {
    core::write_file_atomic<core::DataError>(p, "x");
    FAIL() << "no error";
  } catch (const core::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("x.json.tmp: cannot open for writing"), std::string::npos)
        << e.what();
  }
}

TEST(Files, CommitFileMovesAnotherLibrarysFileIntoPlace) {
  fs::path d = fresh_dir("commit");
  std::ofstream(d / "shard.h5.tmp") << "hdf5 bytes";
  core::commit_file((d / "shard.h5.tmp").string(), (d / "shard.h5").string());
  EXPECT_EQ(read(d / "shard.h5"), "hdf5 bytes");
  EXPECT_FALSE(fs::exists(d / "shard.h5.tmp"));
  EXPECT_THROW(core::commit_file((d / "absent.tmp").string(), (d / "absent").string()),
               core::DataError);
}

TEST(Progress, OneLineFormatWithBarPercentFieldsAndEta) {
  core::ProgressBar::Options o;
  o.label = "tokenise";
  o.total = 200;
  o.enabled = false;
  core::ProgressBar bar(o);
  const std::string l = bar.line(50, "12.0 MB | 3.00 MB/s");
  EXPECT_EQ(l.rfind("[#####...............] tokenise 25.0% | 12.0 MB | 3.00 MB/s | ETA ", 0), 0u)
      << l;
  EXPECT_EQ(core::ProgressBar::format_duration(3725), "1:02:05");
  EXPECT_EQ(core::ProgressBar::format_duration(65), "1:05");
  EXPECT_EQ(core::ProgressBar::format_duration(-1), "?");
  EXPECT_EQ(core::ProgressBar::si(1234567), "1.23M");
}

// Off a terminal: plain lines (every update with plain_every_s = 0), messages
// on their own lines, and a final line with the elapsed time.
TEST(Progress, PlainLinesOffATerminal) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    core::ProgressBar::Options o;
    o.total = 3;
    o.out = f;
    o.tty = 0;
    o.plain_every_s = 0;
    core::ProgressBar bar(o);
    bar.update(1, "step 1/3");
    bar.message("validation at step 1");
    bar.update(2, "step 2/3");
    bar.finish("done");
  }
  std::rewind(f);
  std::string text;
  char buf[512];
  while (std::fgets(buf, sizeof buf, f)) text += buf;
  std::fclose(f);
  std::istringstream lines(text);
  std::string l1, l2, l3, l4;
  std::getline(lines, l1);
  std::getline(lines, l2);
  std::getline(lines, l3);
  std::getline(lines, l4);
  EXPECT_NE(l1.find("33.3% | step 1/3"), std::string::npos) << text;
  EXPECT_EQ(l2, "validation at step 1");
  EXPECT_NE(l3.find("66.7% | step 2/3"), std::string::npos) << text;
  EXPECT_NE(l4.find("100.0% | done | ETA 0:00 ("), std::string::npos) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos);  // no redraws in a log
}
