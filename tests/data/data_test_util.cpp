// Helpers for the data/ tests (see data_test_util.h).
#include "data_test_util.h"

#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace fs = std::filesystem;

namespace shardlm::data::test_util {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const core::DataError& e) {
    return e.what();
  }
  return "";
}

std::string fresh_dir(const std::string& name) {
  int rank = 0, world = 1, init = 0;
  MPI_Initialized(&init);
  if (init) {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
  }
  long id = static_cast<long>(getpid());
  if (world > 1) MPI_Bcast(&id, 1, MPI_LONG, 0, MPI_COMM_WORLD);
  std::string dir = ::testing::TempDir() + "shardlm_data_" + name + "_" + std::to_string(id);
  if (rank == 0) {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  if (world > 1) MPI_Barrier(MPI_COMM_WORLD);
  return dir;
}

void write_file(const std::string& path, const std::string& content) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out << content;
}

void write_gz(const std::string& path, const std::string& content) {
  fs::create_directories(fs::path(path).parent_path());
  gzFile gz = gzopen(path.c_str(), "wb");
  gzwrite(gz, content.data(), static_cast<unsigned>(content.size()));
  gzclose(gz);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void flip_byte(const std::string& path, int64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  auto size = static_cast<int64_t>(fs::file_size(path));
  int64_t at = offset < 0 ? size + offset : offset;
  f.seekg(at);
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(~c);
  f.seekp(at);
  f.write(&c, 1);
}

void truncate_file(const std::string& path, uint64_t size) {
  fs::resize_file(path, size);
}

Encoder byte_encoder(uint32_t offset) {
  Encoder e;
  e.hash = "bytes+" + std::to_string(offset);
  e.vocab_size = 257 + offset;
  e.eos_id = 256 + offset;
  e.encode_batch = [offset](const std::vector<std::string>& texts, int) {
    std::vector<std::vector<uint32_t>> out;
    for (const auto& t : texts) {
      std::vector<uint32_t> ids;
      for (unsigned char c : t) ids.push_back(c + offset);
      out.push_back(std::move(ids));
    }
    return out;
  };
  return e;
}

std::string byte_decode(const std::vector<uint32_t>& ids, uint32_t offset) {
  std::string s;
  for (uint32_t id : ids)
    if (id != 256 + offset) s.push_back(static_cast<char>(id - offset));
  return s;
}

Manifest write_dataset(const std::string& dir, const std::vector<std::vector<uint32_t>>& docs,
                       uint64_t shard_tokens, uint64_t vocab_size, const std::string& split,
                       const std::string& tokenizer_hash) {
  fs::create_directories(dir);
  Manifest m;
  m.dir = dir;
  m.tokenizer_hash = tokenizer_hash;
  m.vocab_size = vocab_size;
  m.eos_id = static_cast<uint32_t>(vocab_size - 1);
  m.dtype = dtype_for_vocab(vocab_size);
  for (const char* s : {"train", "val", "test"}) m.splits[s] = SplitInfo{};
  ShardWriterOptions opts;
  opts.dtype = m.dtype;
  opts.chunk_tokens = 1024;
  opts.vocab_size = vocab_size;
  opts.tokenizer_hash = tokenizer_hash;
  opts.split = split;
  SplitInfo& info = m.splits[split];
  std::unique_ptr<ShardWriter> w;
  std::string name;
  auto close = [&] {
    ShardInfo sh = w->close(name);
    info.tokens += sh.tokens;
    info.docs += sh.docs;
    info.shards.push_back(sh);
    w.reset();
  };
  for (const auto& d : docs) {
    if (!w) {
      name = fmt::format("{}-{:05}.h5", split, info.shards.size());
      w = std::make_unique<ShardWriter>((fs::path(dir) / name).string(), opts);
    }
    w->add(d);
    if (w->tokens() >= shard_tokens) close();
  }
  if (w) close();
  m.save(dir);
  return m;
}

std::vector<std::vector<uint32_t>> stream_docs(const std::vector<uint64_t>& lengths, uint32_t mod) {
  std::vector<std::vector<uint32_t>> docs;
  uint64_t k = 0;
  for (uint64_t n : lengths) {
    std::vector<uint32_t> d(n);
    for (auto& t : d) t = static_cast<uint32_t>(k++ % mod);
    docs.push_back(std::move(d));
  }
  return docs;
}

}  // namespace shardlm::data::test_util

namespace shardlm::data::test_util {

int64_t find_bytes(const std::string& path, const std::string& bytes) {
  auto content = read_file(path);
  auto pos = content.find(bytes);
  return pos == std::string::npos ? -1 : static_cast<int64_t>(pos);
}

std::string u16_run(uint32_t first, uint32_t count, uint32_t step) {
  std::string s;
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t v = first + i * step;
    s.push_back(static_cast<char>(v & 0xFF));
    s.push_back(static_cast<char>((v >> 8) & 0xFF));
  }
  return s;
}

}  // namespace shardlm::data::test_util
