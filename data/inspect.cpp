// Reading a prepared dataset back for people (see inspect.h).
#include "data/inspect.h"

#include <filesystem>

#include "core/error.h"
#include "data/shard.h"
#include "data/tokenizer.h"

namespace fs = std::filesystem;

namespace shardlm::data {

std::vector<StoredDocument> read_documents(const Manifest& m, const std::string& split,
                                           uint64_t first, uint64_t count) {
  std::vector<StoredDocument> out;
  uint64_t start = 0;  // split index of the current shard's first document
  for (const auto& info : m.split(split).shards) {
    if (out.size() == count) break;
    if (start + info.docs <= first) {  // wholly before the range: not opened
      start += info.docs;
      continue;
    }
    const std::string path = (fs::path(m.dir) / info.file).string();
    verify_shard(path, info, /*full=*/false);
    ShardReader r(path);
    const auto off = r.doc_offsets();
    for (uint64_t d = first > start ? first - start : 0; d + 1 < off.size() && out.size() < count;
         ++d) {
      StoredDocument doc;
      doc.index = start + d;
      doc.shard = info.file;
      doc.index_in_shard = d;
      doc.tokens = r.read(off[d], off[d + 1] - off[d]);
      out.push_back(std::move(doc));
    }
    start += info.docs;
  }
  return out;
}

std::string find_dataset_tokenizer(const Manifest& m) {
  fs::path dir = fs::absolute(m.dir).lexically_normal();
  if (!dir.has_filename()) dir = dir.parent_path();  // "data/prepared/"
  for (const fs::path& p : {dir / "tokenizer.json", dir.parent_path() / "tokenizer.json"}) {
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) continue;
    try {
      if (Tokenizer::load(p.string()).hash() == m.tokenizer_hash) return p.string();
    } catch (const core::Error&) {
      // not a tokenizer: look further
    }
  }
  return {};
}

}  // namespace shardlm::data
