// manifest.json read/write (see manifest.h).
#include "data/manifest.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/fs.h"
#include "core/json_int.h"
#include "data/hash.h"

namespace fs = std::filesystem;

namespace shardlm::data {

namespace {
constexpr const char* kManifestFormat = "shardlm-dataset";
}

std::string Manifest::path() const {
  return (fs::path(dir) / kFileName).string();
}

bool Manifest::exists(const std::string& dir) {
  return fs::exists(fs::path(dir) / kFileName);
}

nlohmann::json Manifest::to_json() const {
  nlohmann::json j;
  j["format"] = kManifestFormat;
  j["version"] = kVersion;
  j["tokenizer"] = {{"hash", tokenizer_hash}, {"vocab_size", vocab_size}};
  j["tokenizer"]["eos_id"] = eos_id ? nlohmann::json(*eos_id) : nlohmann::json(nullptr);
  j["token_dtype"] = dtype_name(dtype);
  j["cache_key"] = cache_key;
  j["config"] = config;
  j["inputs"] = inputs;
  j["report"] = report;
  nlohmann::json s = nlohmann::json::object();
  for (const auto& [name, split] : splits) {
    nlohmann::json shards = nlohmann::json::array();
    for (const auto& sh : split.shards) shards.push_back(sh.to_json());
    s[name] = {{"tokens", split.tokens}, {"documents", split.docs}, {"shards", shards}};
  }
  j["splits"] = s;
  return j;
}

Manifest Manifest::load(const std::string& dir) {
  Manifest m;
  m.dir = dir;
  std::string path = m.path();
  SHARDLM_CHECK(fs::exists(path), core::DataError,
                "no {} in {}: not a prepared dataset (run `shardlm prepare` first)", kFileName,
                dir);
  std::ifstream in(path);
  SHARDLM_CHECK(in.good(), core::DataError, "cannot read {}", path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    SHARDLM_FAIL(core::DataError, "{}: malformed JSON ({})", path, e.what());
  }
  try {
    SHARDLM_CHECK(j.value("format", "") == kManifestFormat, core::DataError,
                  "{}: \"format\" is not \"{}\"", path, kManifestFormat);
    int version = core::json_int<int>(j.at("version"), path + ": version");
    SHARDLM_CHECK(version == kVersion, core::DataError,
                  "{}: version {} (this build reads version {}); prepare the data again", path,
                  version, kVersion);
    const auto& t = j.at("tokenizer");
    m.tokenizer_hash = t.at("hash").get<std::string>();
    m.vocab_size = core::json_int<uint64_t>(t.at("vocab_size"), path + ": tokenizer.vocab_size");
    if (t.contains("eos_id") && !t["eos_id"].is_null())
      m.eos_id = core::json_int<uint32_t>(t["eos_id"], path + ": tokenizer.eos_id");
    const std::string dtype = j.at("token_dtype").get<std::string>();
    SHARDLM_CHECK(dtype == "uint16" || dtype == "uint32", core::DataError,
                  "{}: unknown token_dtype '{}' (expected uint16 or uint32)", path, dtype);
    m.dtype = dtype_from_name(dtype);
    m.cache_key = j.value("cache_key", "");
    m.config = j.value("config", nlohmann::json::object());
    m.inputs = j.value("inputs", nlohmann::json::array());
    m.report = j.value("report", nlohmann::json::object());
    for (const auto& [name, s] : j.at("splits").items()) {
      SplitInfo split;
      split.tokens = core::json_int<uint64_t>(s.at("tokens"), path + ": " + name + ".tokens");
      split.docs = core::json_int<uint64_t>(s.at("documents"), path + ": " + name + ".documents");
      for (const auto& sh : s.at("shards"))
        split.shards.push_back(ShardInfo::from_json(sh, path + " split " + name));
      m.splits[name] = std::move(split);
    }
  } catch (const nlohmann::json::exception& e) {
    SHARDLM_FAIL(core::DataError, "{}: missing or mistyped field ({})", path, e.what());
  }
  return m;
}

void Manifest::save(const std::string& out_dir) const {
  fs::path final_path = fs::path(out_dir) / kFileName;
  core::write_file_atomic<core::DataError>(final_path.string(), to_json().dump(2) + "\n");
}

const SplitInfo& Manifest::split(const std::string& name) const {
  auto it = splits.find(name);
  if (it == splits.end()) {
    std::string have;
    for (const auto& [n, s] : splits) have += (have.empty() ? "" : ", ") + n;
    SHARDLM_FAIL(core::DataError, "{}: no split '{}' (it has: {})", path(), name, have);
  }
  return it->second;
}

std::string Manifest::fingerprint(const std::string& split_name) const {
  std::string all = tokenizer_hash + "|" + split_name;
  for (const auto& sh : split(split_name).shards) all += "|" + sh.file + ":" + sh.checksum;
  return hex64(hash64(all));
}

void check_tokenizer(const Manifest& m, const std::string& tokenizer_hash) {
  SHARDLM_CHECK(
      tokenizer_hash == m.tokenizer_hash, core::DataError,
      "{}: the dataset was prepared with tokenizer {} but the tokenizer given has hash {}; "
      "use the same tokenizer or prepare the data again",
      m.path(), m.tokenizer_hash, tokenizer_hash);
}

}  // namespace shardlm::data
