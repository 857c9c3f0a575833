// HDF5 token shards (see shard.h for the layout).
#include "data/shard.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>

#include "core/error.h"
#include "core/h5_check.h"
#include "core/json_int.h"

namespace shardlm::data {

namespace {

constexpr int kShardFormatVersion = 1;
constexpr const char* kShardFormat = "shardlm-tokens";

using core::H5Id;

void write_attr_string(hid_t obj, const char* name, const std::string& value) {
  H5Id type(SHARDLM_H5_CHECK(H5Tcopy(H5T_C_S1)), H5Tclose);
  SHARDLM_H5_CHECK(H5Tset_size(type, std::max<size_t>(1, value.size())));
  H5Id space(SHARDLM_H5_CHECK(H5Screate(H5S_SCALAR)), H5Sclose);
  H5Id attr(SHARDLM_H5_CHECK(H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT)),
            H5Aclose);
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  SHARDLM_H5_CHECK(H5Awrite(attr, type, padded.data()));
}

void write_attr_u64(hid_t obj, const char* name, uint64_t value) {
  H5Id space(SHARDLM_H5_CHECK(H5Screate(H5S_SCALAR)), H5Sclose);
  H5Id attr(SHARDLM_H5_CHECK(H5Acreate2(obj, name, H5T_STD_U64LE, space, H5P_DEFAULT, H5P_DEFAULT)),
            H5Aclose);
  SHARDLM_H5_CHECK(H5Awrite(attr, H5T_NATIVE_UINT64, &value));
}

// A corrupted file can give an attribute any type and any number of elements;
// HDF5 reads all of them into the caller's buffer. The readers check both
// first: one element, of the class and size the writer used.
void check_scalar_attr(hid_t attr, hid_t type, const char* name, H5T_class_t cls, size_t max_size) {
  H5Id space(SHARDLM_H5_CHECK(H5Aget_space(attr)), H5Sclose);
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  const size_t size = H5Tget_size(type);
  SHARDLM_CHECK(n == 1 && H5Tget_class(type) == cls && size > 0 && size <= max_size &&
                    (cls != H5T_STRING || H5Tis_variable_str(type) == 0),
                core::H5Error,  // the reader's caller names the file
                "attribute '{}' is not a single {} of at most {} bytes ({} elements of {} bytes)",
                name, cls == H5T_STRING ? "fixed-length string" : "integer", max_size, n, size);
}

std::string read_attr_string(hid_t obj, const char* name) {
  H5Id attr(SHARDLM_H5_CHECK(H5Aopen(obj, name, H5P_DEFAULT)), H5Aclose);
  H5Id type(SHARDLM_H5_CHECK(H5Aget_type(attr)), H5Tclose);
  check_scalar_attr(attr, type, name, H5T_STRING, 1 << 16);
  size_t n = H5Tget_size(type);
  std::string s(n, '\0');
  H5Id mem(SHARDLM_H5_CHECK(H5Tcopy(H5T_C_S1)), H5Tclose);
  SHARDLM_H5_CHECK(H5Tset_size(mem, n));
  SHARDLM_H5_CHECK(H5Aread(attr, mem, s.data()));
  s.resize(std::strlen(s.c_str()));
  return s;
}

uint64_t read_attr_u64(hid_t obj, const char* name) {
  H5Id attr(SHARDLM_H5_CHECK(H5Aopen(obj, name, H5P_DEFAULT)), H5Aclose);
  H5Id type(SHARDLM_H5_CHECK(H5Aget_type(attr)), H5Tclose);
  check_scalar_attr(attr, type, name, H5T_INTEGER, 8);
  uint64_t v = 0;
  SHARDLM_H5_CHECK(H5Aread(attr, H5T_NATIVE_UINT64, &v));
  return v;
}

// A chunked 1-D or 2-D dataset of fixed content, with Fletcher-32.
void write_small_dataset(hid_t file, const char* name, hid_t file_type, hid_t mem_type,
                         const void* data, hsize_t rows, hsize_t cols) {
  int rank = cols > 0 ? 2 : 1;
  hsize_t dims[2] = {rows, cols}, maxdims[2] = {H5S_UNLIMITED, cols};
  hsize_t chunk[2] = {std::max<hsize_t>(1, std::min<hsize_t>(rows, 1 << 16)), cols};
  H5Id space(SHARDLM_H5_CHECK(H5Screate_simple(rank, dims, maxdims)), H5Sclose);
  H5Id dcpl(SHARDLM_H5_CHECK(H5Pcreate(H5P_DATASET_CREATE)), H5Pclose);
  SHARDLM_H5_CHECK(H5Pset_chunk(dcpl, rank, chunk));
  SHARDLM_H5_CHECK(H5Pset_fletcher32(dcpl));
  H5Id ds(
      SHARDLM_H5_CHECK(H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)),
      H5Dclose);
  if (rows > 0) SHARDLM_H5_CHECK(H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
}

uint64_t file_size(const std::string& path) {
  struct stat st {};
  SHARDLM_CHECK(::stat(path.c_str(), &st) == 0, core::DataError, "shard {} does not exist", path);
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace

// ---- dtype / info ----------------------------------------------------------------

TokenDtype dtype_for_vocab(uint64_t vocab_size) {
  return vocab_size <= 65536 ? TokenDtype::kUInt16 : TokenDtype::kUInt32;
}
const char* dtype_name(TokenDtype d) {
  return d == TokenDtype::kUInt16 ? "uint16" : "uint32";
}
TokenDtype dtype_from_name(const std::string& name) {
  if (name == "uint16") return TokenDtype::kUInt16;
  if (name == "uint32") return TokenDtype::kUInt32;
  SHARDLM_FAIL(core::DataError, "unknown token dtype '{}' (expected uint16 or uint32)", name);
}

nlohmann::json ShardInfo::to_json() const {
  return {{"file", file},
          {"tokens", tokens},
          {"documents", docs},
          {"bytes", bytes},
          {"checksum", checksum}};
}

ShardInfo ShardInfo::from_json(const nlohmann::json& j, const std::string& where) {
  ShardInfo s;
  try {
    s.file = j.at("file").get<std::string>();
    s.tokens = core::json_int<uint64_t>(j.at("tokens"), where + ": tokens");
    s.docs = core::json_int<uint64_t>(j.at("documents"), where + ": documents");
    s.bytes = core::json_int<uint64_t>(j.at("bytes"), where + ": bytes");
    s.checksum = j.at("checksum").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    SHARDLM_FAIL(core::DataError, "{}: bad shard entry {}: {}", where, j.dump(), e.what());
  }
  return s;
}

// ---- writer ---------------------------------------------------------------------

ShardWriter::ShardWriter(std::string path, ShardWriterOptions opts)
    : path_(std::move(path)), opts_(std::move(opts)) {
  core::h5_silence_errors();
  SHARDLM_CHECK(opts_.chunk_tokens > 0, core::DataError, "chunk_tokens must be > 0");
  H5Id fapl(SHARDLM_H5_CHECK(H5Pcreate(H5P_FILE_ACCESS)), H5Pclose);
  // The 1.8 object format: superblock and object headers carry checksums.
  SHARDLM_H5_CHECK(H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST));
  file_ = H5Fcreate(path_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  SHARDLM_CHECK(file_ >= 0, core::DataError, "cannot create shard {}: {}", path_,
                core::h5_error_string());
  hsize_t dims[1] = {0}, maxdims[1] = {H5S_UNLIMITED}, chunk[1] = {opts_.chunk_tokens};
  H5Id space(SHARDLM_H5_CHECK(H5Screate_simple(1, dims, maxdims)), H5Sclose);
  H5Id dcpl(SHARDLM_H5_CHECK(H5Pcreate(H5P_DATASET_CREATE)), H5Pclose);
  SHARDLM_H5_CHECK(H5Pset_chunk(dcpl, 1, chunk));
  if (opts_.compression > 0) {
    SHARDLM_H5_CHECK(H5Pset_shuffle(dcpl));
    SHARDLM_H5_CHECK(H5Pset_deflate(dcpl, static_cast<unsigned>(opts_.compression)));
  }
  SHARDLM_H5_CHECK(H5Pset_fletcher32(dcpl));
  hid_t ftype = opts_.dtype == TokenDtype::kUInt16 ? H5T_STD_U16LE : H5T_STD_U32LE;
  tokens_ =
      SHARDLM_H5_CHECK(H5Dcreate2(file_, "tokens", ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT));
  pending_.reserve(opts_.chunk_tokens * 2);
}

ShardWriter::~ShardWriter() {
  if (file_ < 0) return;  // closed
  if (tokens_ >= 0) H5Dclose(tokens_);
  H5Fclose(file_);
  std::remove(path_.c_str());  // an unfinished shard must not look like a finished one
}

void ShardWriter::add(const uint32_t* tokens, size_t n, const Hash128* key) {
  SHARDLM_CHECK(file_ >= 0, core::DataError, "shard {} is already closed", path_);
  if (opts_.dtype == TokenDtype::kUInt16) {
    for (size_t i = 0; i < n; ++i)
      SHARDLM_CHECK(tokens[i] <= 0xFFFF, core::DataError,
                    "shard {}: token id {} of document {} does not fit uint16 (vocab_size {})",
                    path_, tokens[i], docs(), opts_.vocab_size);
  }
  SHARDLM_CHECK(opts_.with_hashes == (key != nullptr), core::DataError,
                "shard {}: document keys given {} but the shard was opened {}", path_,
                key ? "" : "not", opts_.with_hashes ? "with them" : "without them");
  pending_.insert(pending_.end(), tokens, tokens + n);
  total_ += n;
  offsets_.push_back(total_);
  if (key) {
    hashes_.push_back(key->hi);
    hashes_.push_back(key->lo);
  }
  if (pending_.size() >= opts_.chunk_tokens * 4) flush(false);
}

// Appends whole chunks of pending tokens (all of them when `all`).
void ShardWriter::flush(bool all) {
  size_t n = all ? pending_.size() : pending_.size() / opts_.chunk_tokens * opts_.chunk_tokens;
  if (n == 0) return;
  hsize_t new_size[1] = {written_ + n}, start[1] = {written_}, count[1] = {n};
  SHARDLM_H5_CHECK(H5Dset_extent(tokens_, new_size));
  H5Id fspace(SHARDLM_H5_CHECK(H5Dget_space(tokens_)), H5Sclose);
  SHARDLM_H5_CHECK(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, nullptr, count, nullptr));
  H5Id mspace(SHARDLM_H5_CHECK(H5Screate_simple(1, count, nullptr)), H5Sclose);
  SHARDLM_H5_CHECK(
      H5Dwrite(tokens_, H5T_NATIVE_UINT32, mspace, fspace, H5P_DEFAULT, pending_.data()));
  written_ += n;
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
}

ShardInfo ShardWriter::close(const std::string& relative_name) {
  SHARDLM_CHECK(file_ >= 0, core::DataError, "shard {} is already closed", path_);
  flush(true);
  SHARDLM_H5_CHECK(H5Dclose(tokens_));
  tokens_ = -1;
  write_small_dataset(file_, "doc_offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, offsets_.data(),
                      offsets_.size(), 0);
  if (opts_.with_hashes)
    write_small_dataset(file_, "doc_hash", H5T_STD_U64LE, H5T_NATIVE_UINT64, hashes_.data(), docs(),
                        2);
  write_attr_string(file_, "format", kShardFormat);
  write_attr_u64(file_, "version", kShardFormatVersion);
  write_attr_u64(file_, "vocab_size", opts_.vocab_size);
  write_attr_string(file_, "tokenizer_hash", opts_.tokenizer_hash);
  write_attr_string(file_, "split", opts_.split);
  write_attr_u64(file_, "n_tokens", total_);
  write_attr_u64(file_, "n_docs", docs());
  SHARDLM_H5_CHECK(H5Fclose(file_));
  file_ = -1;
  ShardInfo info;
  info.file = relative_name;
  info.tokens = total_;
  info.docs = docs();
  info.bytes = file_size(path_);
  info.checksum = file_checksum(path_);
  return info;
}

// ---- reader ---------------------------------------------------------------------

ShardReader::ShardReader(std::string path) : path_(std::move(path)) {
  core::h5_silence_errors();
  file_size(path_);  // a clear "does not exist" before HDF5's message
  file_ = H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  SHARDLM_CHECK(file_ >= 0, core::DataError,
                "shard {}: not a readable HDF5 file ({}); truncated or corrupted?", path_,
                core::h5_error_string());
  try {
    SHARDLM_CHECK(read_attr_string(file_, "format") == kShardFormat, core::DataError,
                  "shard {}: attribute 'format' is not '{}'", path_, kShardFormat);
    auto version = read_attr_u64(file_, "version");
    SHARDLM_CHECK(version == kShardFormatVersion, core::DataError,
                  "shard {}: format version {} (this build reads {})", path_, version,
                  kShardFormatVersion);
    vocab_size_ = read_attr_u64(file_, "vocab_size");
    tokenizer_hash_ = read_attr_string(file_, "tokenizer_hash");
    split_ = read_attr_string(file_, "split");
    n_docs_ = read_attr_u64(file_, "n_docs");
    H5Id dapl(SHARDLM_H5_CHECK(H5Pcreate(H5P_DATASET_ACCESS)), H5Pclose);
    SHARDLM_H5_CHECK(H5Pset_chunk_cache(dapl, 521, 1 << 20, 0.75));
    tokens_ = SHARDLM_H5_CHECK(H5Dopen2(file_, "tokens", dapl));
    H5Id dcpl(SHARDLM_H5_CHECK(H5Dget_create_plist(tokens_)), H5Pclose);
    hsize_t chunk[1] = {0};
    SHARDLM_CHECK(H5Pget_chunk(dcpl, 1, chunk) == 1, core::DataError,
                  "shard {}: /tokens is not a chunked 1-D dataset", path_);
    chunk_tokens_ = chunk[0];
    // HDF5 allocates a whole chunk to read from it: a corrupted chunk size made
    // it allocate 2 GB (fuzz_data_manifest). prepare writes at most 2^24 tokens.
    SHARDLM_CHECK(chunk_tokens_ >= 1 && chunk_tokens_ <= (uint64_t{1} << 24), core::DataError,
                  "shard {}: /tokens has chunks of {} tokens (at most 16777216); corrupted?", path_,
                  chunk_tokens_);
    H5Id type(SHARDLM_H5_CHECK(H5Dget_type(tokens_)), H5Tclose);
    const size_t token_bytes = H5Tget_size(type);
    SHARDLM_CHECK(H5Tget_class(type) == H5T_INTEGER && (token_bytes == 2 || token_bytes == 4),
                  core::DataError, "shard {}: /tokens does not hold 16- or 32-bit integers", path_);
    dtype_ = token_bytes == 2 ? TokenDtype::kUInt16 : TokenDtype::kUInt32;
    H5Id space(SHARDLM_H5_CHECK(H5Dget_space(tokens_)), H5Sclose);
    SHARDLM_CHECK(SHARDLM_H5_CHECK(H5Sget_simple_extent_ndims(space)) == 1, core::DataError,
                  "shard {}: /tokens is not one-dimensional", path_);
    hsize_t dims[1] = {0};
    SHARDLM_H5_CHECK(H5Sget_simple_extent_dims(space, dims, nullptr));
    n_tokens_ = dims[0];
    auto attr_tokens = read_attr_u64(file_, "n_tokens");
    SHARDLM_CHECK(attr_tokens == n_tokens_, core::DataError,
                  "shard {}: /tokens holds {} tokens but the attribute n_tokens says {}", path_,
                  n_tokens_, attr_tokens);
    // n_docs sizes the document tables; no real shard comes near 2^48 documents
    SHARDLM_CHECK(n_docs_ < (uint64_t{1} << 48), core::DataError,
                  "shard {}: the attribute n_docs says {} documents; corrupted?", path_, n_docs_);
  } catch (const core::H5Error& e) {
    if (tokens_ >= 0) H5Dclose(tokens_);
    H5Fclose(file_);
    SHARDLM_FAIL(core::DataError, "shard {}: unreadable ({}); truncated or corrupted?", path_,
                 e.message());
  } catch (...) {
    if (tokens_ >= 0) H5Dclose(tokens_);
    H5Fclose(file_);
    throw;
  }
}

ShardReader::~ShardReader() {
  if (tokens_ >= 0) H5Dclose(tokens_);
  if (file_ >= 0) H5Fclose(file_);
}

namespace {
// Rows [first, first + rows) of a chunked dataset: every chunk they touch must
// be stored in no more bytes than the file holds. HDF5 allocates a buffer of a
// chunk's stored size (from the file's chunk index) before it reads and
// checksums it: a corrupted size made it allocate 4 GB (found by
// fuzz_data_shard).
void check_chunk_sizes(const std::string& path, hid_t ds, const char* name, hsize_t first,
                       hsize_t rows) {
  H5Id dcpl(SHARDLM_H5_CHECK(H5Dget_create_plist(ds)), H5Pclose);
  if (H5Pget_layout(dcpl) != H5D_CHUNKED || rows == 0) return;
  hsize_t chunk[2] = {0, 0};
  const int rank = SHARDLM_H5_CHECK(H5Pget_chunk(dcpl, 2, chunk));
  SHARDLM_CHECK(rank >= 1 && rank <= 2 && chunk[0] >= 1, core::DataError,
                "shard {}: /{} has no usable chunk shape; corrupted?", path, name);
  H5Id file(SHARDLM_H5_CHECK(H5Iget_file_id(ds)), H5Fclose);
  hsize_t file_bytes = 0;
  SHARDLM_H5_CHECK(H5Fget_filesize(file, &file_bytes));
  // What a stored chunk must measure. Without deflate (prepare.compression = 0,
  // and the document tables) exactly the raw chunk, plus 4 bytes when
  // Fletcher-32 is on; with deflate anything up to the file's size, but more
  // than the checksum (HDF5 subtracts 4 from the stored size unchecked: a chunk
  // of 3 bytes made it allocate 4 GB; fuzz_data_manifest).
  bool deflate = false, fletcher = false;
  const int n_filters = SHARDLM_H5_CHECK(H5Pget_nfilters(dcpl));
  for (int i = 0; i < n_filters; ++i) {
    unsigned flags = 0, config = 0;
    size_t n_values = 0;
    const H5Z_filter_t id =
        SHARDLM_H5_CHECK(H5Pget_filter2(dcpl, i, &flags, &n_values, nullptr, 0, nullptr, &config));
    deflate = deflate || id == H5Z_FILTER_DEFLATE;
    fletcher = fletcher || id == H5Z_FILTER_FLETCHER32;
  }
  H5Id type(SHARDLM_H5_CHECK(H5Dget_type(ds)), H5Tclose);
  const hsize_t raw = chunk[0] * (rank == 2 ? chunk[1] : 1) * H5Tget_size(type);
  for (hsize_t r = first / chunk[0] * chunk[0]; r < first + rows; r += chunk[0]) {
    hsize_t coord[2] = {r, 0};
    unsigned mask = 0;
    haddr_t addr = 0;
    hsize_t size = 0;
    SHARDLM_H5_CHECK(H5Dget_chunk_info_by_coord(ds, coord, &mask, &addr, &size));
    if (addr == HADDR_UNDEF) continue;  // never written: HDF5 returns the fill value
    // ... and lie after the superblock (at 0; a chunk "at" 0 made HDF5
    // allocate 4 GB, fuzz_data_manifest), within the file
    const bool ok =
        (deflate ? (!fletcher || size > 4) : size == raw || (fletcher && size == raw + 4)) &&
        addr > 0 && addr <= file_bytes && size <= file_bytes - addr;
    SHARDLM_CHECK(ok, core::DataError,
                  "shard {}: a chunk of /{} is stored in {} bytes at offset {} (raw chunk {} "
                  "bytes, file {} bytes); corrupted?",
                  path, name, size, addr, raw, file_bytes);
  }
}

// /doc_offsets and /doc_hash: unsigned integers of at most 8 bytes, exactly
// `entries` of them, in chunks the file can hold. Checked before the buffer is
// allocated and read (HDF5 reads every element into the buffer, and converts
// from whatever type the file claims).
void check_u64_table(const std::string& path, hid_t ds, const char* name, uint64_t entries) {
  H5Id type(SHARDLM_H5_CHECK(H5Dget_type(ds)), H5Tclose);
  const size_t bytes = H5Tget_size(type);
  SHARDLM_CHECK(H5Tget_class(type) == H5T_INTEGER && bytes >= 1 && bytes <= 8, core::DataError,
                "shard {}: /{} does not hold integers of at most 8 bytes; corrupted?", path, name);
  H5Id space(SHARDLM_H5_CHECK(H5Dget_space(ds)), H5Sclose);
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  SHARDLM_CHECK(n >= 0 && static_cast<uint64_t>(n) == entries, core::DataError,
                "shard {}: /{} has {} entries, expected {}", path, name, n, entries);
  const int rank = SHARDLM_H5_CHECK(H5Sget_simple_extent_ndims(space));
  SHARDLM_CHECK(rank == 1 || rank == 2, core::DataError,
                "shard {}: /{} has {} dimensions, expected 1 or 2", path, name, rank);
  hsize_t dims[2] = {0, 0};
  SHARDLM_H5_CHECK(H5Sget_simple_extent_dims(space, dims, nullptr));
  check_chunk_sizes(path, ds, name, 0, dims[0]);
}

void read_tokens(const std::string& path, hid_t ds, hid_t mem_type, uint64_t total, uint64_t start,
                 uint64_t n, void* out) {
  SHARDLM_CHECK(start + n <= total, core::DataError,
                "shard {}: tokens [{}, {}) requested but the shard holds {}", path, start,
                start + n, total);
  if (n == 0) return;
  core::h5_silence_errors();  // the error-printing setting is per thread
  hsize_t s[1] = {start}, c[1] = {n};
  try {
    check_chunk_sizes(path, ds, "tokens", start, n);
    H5Id fspace(SHARDLM_H5_CHECK(H5Dget_space(ds)), H5Sclose);
    SHARDLM_H5_CHECK(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, s, nullptr, c, nullptr));
    H5Id mspace(SHARDLM_H5_CHECK(H5Screate_simple(1, c, nullptr)), H5Sclose);
    SHARDLM_H5_CHECK(H5Dread(ds, mem_type, mspace, fspace, H5P_DEFAULT, out));
  } catch (const core::H5Error& e) {
    SHARDLM_FAIL(core::DataError,
                 "shard {}: cannot read tokens [{}, {}): {}; the file is corrupted (a chunk "
                 "failed its checksum?)",
                 path, start, start + n, e.message());
  }
}
}  // namespace

void ShardReader::read(uint64_t start, uint64_t n, uint32_t* out) const {
  read_tokens(path_, tokens_, H5T_NATIVE_UINT32, n_tokens_, start, n, out);
}

void ShardReader::read_native(uint64_t start, uint64_t n, void* out) const {
  read_tokens(path_, tokens_, dtype_ == TokenDtype::kUInt16 ? H5T_NATIVE_UINT16 : H5T_NATIVE_UINT32,
              n_tokens_, start, n, out);
}

std::vector<uint32_t> ShardReader::read(uint64_t start, uint64_t n) const {
  std::vector<uint32_t> v(n);
  read(start, n, v.data());
  return v;
}

std::vector<uint64_t> ShardReader::doc_offsets() const {
  core::h5_silence_errors();
  std::vector<uint64_t> off;
  try {
    H5Id ds(SHARDLM_H5_CHECK(H5Dopen2(file_, "doc_offsets", H5P_DEFAULT)), H5Dclose);
    check_u64_table(path_, ds, "doc_offsets", n_docs_ + 1);
    off.resize(n_docs_ + 1);
    SHARDLM_H5_CHECK(H5Dread(ds, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, off.data()));
  } catch (const core::H5Error& e) {
    SHARDLM_FAIL(core::DataError, "shard {}: cannot read /doc_offsets: {}; corrupted?", path_,
                 e.message());
  }
  bool ok = off.front() == 0 && off.back() == n_tokens_ && std::is_sorted(off.begin(), off.end());
  SHARDLM_CHECK(ok, core::DataError,
                "shard {}: /doc_offsets must start at 0, never decrease and end at {} tokens",
                path_, n_tokens_);
  return off;
}

std::vector<Hash128> ShardReader::doc_hashes() const {
  core::h5_silence_errors();
  std::vector<uint64_t> raw;
  try {
    SHARDLM_CHECK(H5Lexists(file_, "doc_hash", H5P_DEFAULT) > 0, core::DataError,
                  "shard {} has no /doc_hash dataset", path_);
    H5Id ds(SHARDLM_H5_CHECK(H5Dopen2(file_, "doc_hash", H5P_DEFAULT)), H5Dclose);
    check_u64_table(path_, ds, "doc_hash", n_docs_ * 2);
    raw.resize(n_docs_ * 2);
    if (n_docs_ > 0)
      SHARDLM_H5_CHECK(H5Dread(ds, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()));
  } catch (const core::H5Error& e) {
    SHARDLM_FAIL(core::DataError, "shard {}: cannot read /doc_hash: {}; corrupted?", path_,
                 e.message());
  }
  std::vector<Hash128> out(n_docs_);
  for (uint64_t i = 0; i < n_docs_; ++i) out[i] = Hash128{raw[2 * i], raw[2 * i + 1]};
  return out;
}

void verify_shard(const std::string& path, const ShardInfo& expected, bool full) {
  uint64_t size = file_size(path);
  SHARDLM_CHECK(size == expected.bytes, core::DataError,
                "shard {} is {} bytes but the manifest says {}: the file was truncated or replaced",
                path, size, expected.bytes);
  if (!full) return;
  std::string sum = file_checksum(path);
  SHARDLM_CHECK(
      sum == expected.checksum, core::DataError,
      "shard {}: checksum mismatch ({} on disk, {} in the manifest): the file is corrupted", path,
      sum, expected.checksum);
}

}  // namespace shardlm::data
