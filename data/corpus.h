// Reading raw corpora: which files an input list names (files, directories,
// globs), and the documents in each file (.txt, .jsonl, and both gzip-compressed).
//
// A .txt file holds documents separated by empty lines ("paragraph", default),
// one per line ("line") or one per file ("file"). A .jsonl file holds one JSON
// object per line; the document is its string field `text_field`. A record that
// cannot be used (malformed JSON, missing or non-string field) is an error naming
// the file and line, or is skipped and counted (bad_records = "skip").
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.h"

namespace shardlm::data {

struct ReaderConfig {
  std::string text_field = "text";          // .jsonl: the field holding the document
  std::string txt_documents = "paragraph";  // .txt: paragraph | line | file
  std::string bad_records = "error";        // error | skip

  static ReaderConfig from(const core::ConfigSection& s);
  void validate() const;
  nlohmann::json to_json() const;
};

enum class InputFormat { kTxt, kJsonl };

struct InputFile {
  std::string path;  // as found (absolute when the spec was absolute)
  InputFormat format = InputFormat::kTxt;
  bool gzip = false;
  uint64_t size = 0;     // bytes on disk
  int64_t mtime_ns = 0;  // modification time
};

// Expands files, directories (searched recursively for *.txt, *.jsonl, *.txt.gz,
// *.jsonl.gz; hidden entries skipped) and glob patterns (expand_input_paths), in
// the order given, each one's files sorted, without repeats. Throws DataError
// naming the spec when it matches nothing or names an unsupported file.
std::vector<InputFile> expand_inputs(const std::vector<std::string>& specs);
// The format of one path from its name; throws DataError for other extensions.
InputFile describe_input(const std::string& path);

// Streams the documents of one input file. Not thread-safe; one per file.
class DocumentReader {
 public:
  DocumentReader(const InputFile& file, const ReaderConfig& cfg);
  ~DocumentReader();
  DocumentReader(const DocumentReader&) = delete;
  DocumentReader& operator=(const DocumentReader&) = delete;

  // The next document into `doc`; false at the end of the file.
  bool next(std::string& doc);
  // Invalid UTF-8 runs replaced in the last document before it could be parsed
  // (.jsonl only; pass to clean_text as known_invalid).
  int64_t last_invalid() const { return last_invalid_; }
  // Bytes of the file consumed so far (compressed bytes for .gz); for progress.
  uint64_t bytes_consumed() const;
  int64_t line() const { return line_; }
  int64_t skipped_records() const { return skipped_; }

 private:
  bool read_line(std::string& line);
  bool next_jsonl(std::string& doc);

  InputFile file_;
  ReaderConfig cfg_;
  void* gz_ = nullptr;  // gzFile
  std::vector<char> buf_;
  size_t pos_ = 0, end_ = 0;
  bool eof_ = false;
  int64_t line_ = 0;
  int64_t last_invalid_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace shardlm::data
