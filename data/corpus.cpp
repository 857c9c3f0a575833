// Input discovery and document streaming (see corpus.h).
#include "data/corpus.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "data/input_paths.h"
#include "data/text_clean.h"

namespace fs = std::filesystem;

namespace shardlm::data {

// ---- config ---------------------------------------------------------------------

ReaderConfig ReaderConfig::from(const core::ConfigSection& s) {
  ReaderConfig c;
  c.text_field = s.get("text_field", c.text_field);
  c.txt_documents = s.get("txt_documents", c.txt_documents);
  c.bad_records = s.get("bad_records", c.bad_records);
  return c;
}

void ReaderConfig::validate() const {
  core::config_require(!text_field.empty(), "text_field", text_field, "a JSON field name");
  core::config_require(
      txt_documents == "paragraph" || txt_documents == "line" || txt_documents == "file",
      "txt_documents", txt_documents, "one of paragraph, line, file");
  core::config_require(bad_records == "error" || bad_records == "skip", "bad_records", bad_records,
                       "one of error, skip");
}

nlohmann::json ReaderConfig::to_json() const {
  return {
      {"text_field", text_field}, {"txt_documents", txt_documents}, {"bad_records", bad_records}};
}

// ---- discovery ------------------------------------------------------------------

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool supported(const std::string& path) {
  for (const char* e : {".txt", ".jsonl", ".txt.gz", ".jsonl.gz"})
    if (ends_with(path, e)) return true;
  return false;
}

}  // namespace

InputFile describe_input(const std::string& path) {
  InputFile f;
  f.path = path;
  std::string base = path;
  if (ends_with(base, ".gz")) {
    f.gzip = true;
    base.resize(base.size() - 3);
  }
  if (ends_with(base, ".txt")) {
    f.format = InputFormat::kTxt;
  } else if (ends_with(base, ".jsonl")) {
    f.format = InputFormat::kJsonl;
  } else {
    SHARDLM_FAIL(core::DataError,
                 "input {}: unsupported file type (expected .txt, .jsonl, .txt.gz or .jsonl.gz)",
                 path);
  }
  struct stat st {};
  SHARDLM_CHECK(::stat(path.c_str(), &st) == 0, core::DataError, "input {}: {}", path,
                std::strerror(errno));
  f.size = static_cast<uint64_t>(st.st_size);
  f.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
  return f;
}

std::vector<InputFile> expand_inputs(const std::vector<std::string>& specs) {
  SHARDLM_CHECK(!specs.empty(), core::DataError, "no inputs given (prepare.inputs is empty)");
  std::vector<InputFile> out;
  std::set<std::string> seen;
  for (const auto& spec : specs) {
    // A file named as such must be of a supported type; directories and globs
    // contribute their supported files only.
    bool named = fs::is_regular_file(spec);
    size_t found = 0;
    for (auto& path : expand_input_paths({spec})) {
      if (!named && !supported(path)) continue;
      ++found;
      if (seen.insert(fs::weakly_canonical(path).string()).second)
        out.push_back(describe_input(path));
    }
    SHARDLM_CHECK(found > 0, core::DataError,
                  "input '{}' holds no .txt, .jsonl, .txt.gz or .jsonl.gz file", spec);
  }
  return out;
}

// ---- reading --------------------------------------------------------------------

DocumentReader::DocumentReader(const InputFile& file, const ReaderConfig& cfg)
    : file_(file), cfg_(cfg), buf_(1 << 20) {
  gzFile gz = gzopen(file.path.c_str(), "rb");  // reads plain files transparently
  SHARDLM_CHECK(gz != nullptr, core::DataError, "cannot open input {}: {}", file.path,
                std::strerror(errno));
  gzbuffer(gz, 1 << 18);
  gz_ = gz;
}

DocumentReader::~DocumentReader() {
  if (gz_) gzclose(static_cast<gzFile>(gz_));
}

uint64_t DocumentReader::bytes_consumed() const {
  auto off = gzoffset(static_cast<gzFile>(gz_));
  return off < 0 ? 0 : static_cast<uint64_t>(off);
}

// One line without its '\n'; false at the end of the file.
bool DocumentReader::read_line(std::string& line) {
  line.clear();
  bool any = false;
  for (;;) {
    if (pos_ == end_) {
      if (eof_) return any;
      int n = gzread(static_cast<gzFile>(gz_), buf_.data(), static_cast<unsigned>(buf_.size()));
      if (n < 0) {
        int err = 0;
        const char* msg = gzerror(static_cast<gzFile>(gz_), &err);
        SHARDLM_FAIL(core::DataError,
                     "{}: read error near line {}: {} (truncated or corrupt gzip?)", file_.path,
                     line_ + 1, msg);
      }
      if (n == 0) {
        eof_ = true;
        return any;
      }
      pos_ = 0;
      end_ = static_cast<size_t>(n);
    }
    any = true;
    const char* start = buf_.data() + pos_;
    const void* nl = std::memchr(start, '\n', end_ - pos_);
    if (nl) {
      size_t len = static_cast<size_t>(static_cast<const char*>(nl) - start);
      line.append(start, len);
      pos_ += len + 1;
      ++line_;
      return true;
    }
    line.append(start, end_ - pos_);
    pos_ = end_;
  }
}

namespace {
bool blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}
}  // namespace

bool DocumentReader::next(std::string& doc) {
  doc.clear();
  last_invalid_ = 0;
  if (file_.format == InputFormat::kJsonl) return next_jsonl(doc);
  std::string line;
  if (cfg_.txt_documents == "line") {
    while (read_line(line)) {
      if (blank(line)) continue;
      doc.swap(line);
      return true;
    }
    return false;
  }
  bool para = cfg_.txt_documents == "paragraph";
  while (read_line(line)) {
    if (para && blank(line)) {
      if (!doc.empty()) return true;
      continue;
    }
    if (!doc.empty() || !para) doc.push_back('\n');
    doc += line;
  }
  if (!para && !doc.empty()) doc.erase(0, 1);  // "file": no '\n' before the first line
  return !doc.empty();
}

bool DocumentReader::next_jsonl(std::string& doc) {
  std::string line;
  while (read_line(line)) {
    if (blank(line)) continue;
    int64_t invalid = repair_utf8(line);
    std::string problem;
    try {
      auto j = nlohmann::json::parse(line);
      if (!j.is_object()) {
        problem = "not a JSON object";
      } else if (auto it = j.find(cfg_.text_field); it == j.end()) {
        problem = fmt::format("no field \"{}\"", cfg_.text_field);
      } else if (!it->is_string()) {
        problem = fmt::format("field \"{}\" is not a string", cfg_.text_field);
      } else {
        doc = it->get<std::string>();
        last_invalid_ = invalid;
        return true;
      }
    } catch (const nlohmann::json::exception& e) {
      problem = fmt::format("malformed JSON ({})", e.what());
    }
    SHARDLM_CHECK(cfg_.bad_records == "skip", core::DataError,
                  "{}:{}: {} (set prepare.bad_records = \"skip\" to skip such lines)", file_.path,
                  line_, problem);
    ++skipped_;
  }
  return false;
}

}  // namespace shardlm::data
