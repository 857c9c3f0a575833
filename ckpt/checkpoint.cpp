// Sharded HDF5 checkpoints (see checkpoint.h): the rank files, the atomic
// commit, the background writer, reading ranges for any world size,
// verification, resolution of `latest`, and retention.
#include "ckpt/checkpoint.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include <fmt/format.h>

#include "core/comm.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/h5_check.h"
#include "core/log.h"

namespace shardlm::ckpt {

namespace fs = std::filesystem;
using core::CheckpointError;
using Clock = std::chrono::steady_clock;

// ---- small helpers ---------------------------------------------------------------

std::string step_dir_name(int64_t step) {
  return fmt::format("step-{:06d}", step);
}
std::string rank_file_name(int rank, int world) {
  return fmt::format("rank-{:05d}-of-{:05d}.h5", rank, world);
}

std::string file_checksum(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  SHARDLM_CHECK(f, CheckpointError, "{}: cannot open for reading", path);
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  std::vector<char> buf(1 << 22);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) XXH3_64bits_update(st, buf.data(), n);
  bool bad = std::ferror(f);
  std::fclose(f);
  uint64_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  SHARDLM_CHECK(!bad, CheckpointError, "{}: read error", path);
  return fmt::format("xxh3-64:{:016x}", h);
}

namespace {

using core::fsync_path;

// ---- tensors in HDF5 ----------------------------------------------------------------

hid_t h5_type(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat:
      return H5T_NATIVE_FLOAT;
    case torch::kDouble:
      return H5T_NATIVE_DOUBLE;
    case torch::kLong:
      return H5T_NATIVE_INT64;
    case torch::kInt:
      return H5T_NATIVE_INT32;
    case torch::kByte:
      return H5T_NATIVE_UINT8;
    case torch::kChar:
      return H5T_NATIVE_INT8;
    case torch::kShort:
      return H5T_NATIVE_INT16;
    case torch::kBool:
      return H5T_NATIVE_UINT8;
    default:
      SHARDLM_FAIL(CheckpointError, "cannot store tensors of type {}", c10::toString(t));
  }
}

torch::ScalarType torch_type(hid_t t) {
  H5T_class_t cls = H5Tget_class(t);
  size_t size = H5Tget_size(t);
  if (cls == H5T_FLOAT) return size == 4 ? torch::kFloat : torch::kDouble;
  if (cls == H5T_INTEGER) {
    bool is_signed = H5Tget_sign(t) == H5T_SGN_2;
    if (size == 8) return torch::kLong;
    if (size == 4) return torch::kInt;
    if (size == 2) return torch::kShort;
    return is_signed ? torch::kChar : torch::kByte;
  }
  SHARDLM_FAIL(CheckpointError, "unsupported HDF5 type class {}", static_cast<int>(cls));
}

// Group path "a/b/c": creates the intermediate groups.
hid_t ensure_group(hid_t file, const std::string& path) {
  hid_t lcpl = SHARDLM_H5_CHECK(H5Pcreate(H5P_LINK_CREATE));
  SHARDLM_H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1));
  hid_t g = H5Lexists(file, path.c_str(), H5P_DEFAULT) > 0
                ? SHARDLM_H5_CHECK(H5Gopen2(file, path.c_str(), H5P_DEFAULT))
                : SHARDLM_H5_CHECK(H5Gcreate2(file, path.c_str(), lcpl, H5P_DEFAULT, H5P_DEFAULT));
  H5Pclose(lcpl);
  return g;
}

void write_tensor(hid_t loc, const std::string& name, const torch::Tensor& t0) {
  torch::Tensor t = t0.to(torch::kCPU).contiguous();
  if (t.scalar_type() == torch::kBool) t = t.to(torch::kByte);
  std::vector<hsize_t> dims(t.sizes().begin(), t.sizes().end());
  bool scalar = dims.empty();
  if (scalar) dims.push_back(1);
  hid_t space =
      SHARDLM_H5_CHECK(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  hid_t ds = SHARDLM_H5_CHECK(H5Dcreate2(loc, name.c_str(), h5_type(t.scalar_type()), space,
                                         H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  if (t.numel() > 0)
    SHARDLM_H5_CHECK(
        H5Dwrite(ds, h5_type(t.scalar_type()), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()));
  if (scalar) {
    hid_t as = SHARDLM_H5_CHECK(H5Screate(H5S_SCALAR));
    hid_t a =
        SHARDLM_H5_CHECK(H5Acreate2(ds, "scalar", H5T_NATIVE_INT, as, H5P_DEFAULT, H5P_DEFAULT));
    int one = 1;
    SHARDLM_H5_CHECK(H5Awrite(a, H5T_NATIVE_INT, &one));
    H5Aclose(a);
    H5Sclose(as);
  }
  H5Dclose(ds);
  H5Sclose(space);
}

// Readers of a rank file check what a corrupted file could claim before
// anything is allocated or read: the element type, the rank and extent of a
// dataset against the bytes the file holds (HDF5 reads every element into the
// caller's buffer), and every HDF5 call's result. Handles close on every path
// (core::H5Id), also when a read throws.
using core::H5Id;

// A dataset with data must be stored as write_tensor stores it: contiguous, at
// an address inside its file, with all `elements` of `elem_bytes` there. HDF5 trusts the layout
// message of a corrupted file (a read from address 0 crashed inside H5Dread;
// found by fuzz_ckpt).
void check_stored(hid_t ds, const std::string& name, uint64_t elements, uint64_t elem_bytes) {
  H5Id dcpl(SHARDLM_H5_CHECK(H5Dget_create_plist(ds)), H5Pclose);
  SHARDLM_CHECK(H5Pget_layout(dcpl) == H5D_CONTIGUOUS && H5Pget_external_count(dcpl) == 0,
                core::H5Error, "dataset '{}' is not stored contiguously in its file", name);
  H5Id file(SHARDLM_H5_CHECK(H5Iget_file_id(ds)), H5Fclose);
  hsize_t file_bytes = 0;
  SHARDLM_H5_CHECK(H5Fget_filesize(file, &file_bytes));
  const haddr_t at = H5Dget_offset(ds);
  SHARDLM_CHECK(at != HADDR_UNDEF && at <= file_bytes && elem_bytes > 0 &&
                    elements <= (file_bytes - at) / elem_bytes,
                core::H5Error,
                "dataset '{}' ({} elements of {} bytes at offset {}) does not lie within its file "
                "({} bytes)",
                name, elements, elem_bytes, at, file_bytes);
}

torch::Tensor read_tensor(hid_t loc, const std::string& name) {
  H5Id ds(SHARDLM_H5_CHECK(H5Dopen2(loc, name.c_str(), H5P_DEFAULT)), H5Dclose);
  H5Id type(SHARDLM_H5_CHECK(H5Dget_type(ds)), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type);
  const size_t bytes = H5Tget_size(type);
  SHARDLM_CHECK((cls == H5T_FLOAT && (bytes == 4 || bytes == 8)) ||
                    (cls == H5T_INTEGER && (bytes == 1 || bytes == 2 || bytes == 4 || bytes == 8)),
                core::H5Error, "dataset '{}' holds neither floats nor integers of a known size",
                name);
  H5Id space(SHARDLM_H5_CHECK(H5Dget_space(ds)), H5Sclose);
  const int nd = SHARDLM_H5_CHECK(H5Sget_simple_extent_ndims(space));
  SHARDLM_CHECK(nd <= 8, core::H5Error, "dataset '{}' has {} dimensions", name, nd);
  std::vector<hsize_t> dims(nd);
  SHARDLM_H5_CHECK(H5Sget_simple_extent_dims(space, dims.data(), nullptr));
  torch::ScalarType st = torch_type(type);
  // numel * element size may not exceed what the file holds (no overflow:
  // every factor is checked against the file size first).
  H5Id file(SHARDLM_H5_CHECK(H5Iget_file_id(ds)), H5Fclose);
  hsize_t file_bytes = 0;
  SHARDLM_H5_CHECK(H5Fget_filesize(file, &file_bytes));
  uint64_t need = c10::elementSize(st);
  std::vector<int64_t> shape;
  for (hsize_t d : dims) {
    SHARDLM_CHECK(d <= file_bytes && (d == 0 || need <= file_bytes / d), core::H5Error,
                  "dataset '{}' claims more elements than its file ({} bytes) holds", name,
                  file_bytes);
    need *= d;
    shape.push_back(static_cast<int64_t>(d));
  }
  auto t = torch::empty(shape, torch::TensorOptions().dtype(st));
  if (t.numel() > 0) {
    check_stored(ds, name, static_cast<uint64_t>(t.numel()), bytes);
    SHARDLM_H5_CHECK(H5Dread(ds, h5_type(st), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()));
  }
  const bool scalar = SHARDLM_H5_CHECK(H5Aexists(ds, "scalar")) > 0;
  return scalar ? t.reshape({}) : t;
}

// Elements [offset, offset + count) of a 1-D fp32 dataset into `out`.
void read_slice(hid_t file, const std::string& path, int64_t offset, int64_t count, float* out) {
  H5Id ds(SHARDLM_H5_CHECK(H5Dopen2(file, path.c_str(), H5P_DEFAULT)), H5Dclose);
  H5Id type(SHARDLM_H5_CHECK(H5Dget_type(ds)), H5Tclose);
  SHARDLM_CHECK(H5Tget_class(type) == H5T_FLOAT && H5Tget_size(type) <= 8, core::H5Error,
                "dataset '{}' does not hold floats", path);
  H5Id space(SHARDLM_H5_CHECK(H5Dget_space(ds)), H5Sclose);
  hsize_t dims[1] = {0};
  SHARDLM_CHECK(SHARDLM_H5_CHECK(H5Sget_simple_extent_ndims(space)) == 1, core::H5Error,
                "dataset '{}' is not one-dimensional", path);
  SHARDLM_H5_CHECK(H5Sget_simple_extent_dims(space, dims, nullptr));
  SHARDLM_CHECK(offset >= 0 && count >= 0 && static_cast<hsize_t>(offset) <= dims[0] &&
                    static_cast<hsize_t>(count) <= dims[0] - static_cast<hsize_t>(offset),
                core::H5Error, "dataset '{}' has {} elements; [{}, {}) requested", path, dims[0],
                offset, offset + count);
  if (count == 0) return;
  check_stored(ds, path, dims[0], H5Tget_size(type));
  hsize_t start = static_cast<hsize_t>(offset), n = static_cast<hsize_t>(count);
  SHARDLM_H5_CHECK(H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nullptr, &n, nullptr));
  H5Id mem(SHARDLM_H5_CHECK(H5Screate_simple(1, &n, nullptr)), H5Sclose);
  SHARDLM_H5_CHECK(H5Dread(ds, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, out));
}

std::map<std::string, torch::Tensor> read_group(hid_t file, const std::string& path) {
  std::map<std::string, torch::Tensor> out;
  if (H5Lexists(file, path.c_str(), H5P_DEFAULT) <= 0) return out;  // < 0: a parent is missing
  H5Id g(SHARDLM_H5_CHECK(H5Gopen2(file, path.c_str(), H5P_DEFAULT)), H5Gclose);
  H5G_info_t info;
  SHARDLM_H5_CHECK(H5Gget_info(g, &info));
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    char name[256];
    const ssize_t len = SHARDLM_H5_CHECK(
        H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof(name), H5P_DEFAULT));
    SHARDLM_CHECK(static_cast<size_t>(len) < sizeof(name), core::H5Error,
                  "group '{}': a member name of {} bytes", path, len);
    // Checked: a failed call leaves `oinfo` unset (its type field was read
    // uninitialised; found by fuzz_ckpt under UBSan).
    H5O_info_t oinfo;
#if H5_VERSION_GE(1, 12, 0)
    SHARDLM_H5_CHECK(H5Oget_info_by_name3(g, name, &oinfo, H5O_INFO_BASIC, H5P_DEFAULT));
#else
    SHARDLM_H5_CHECK(H5Oget_info_by_name2(g, name, &oinfo, H5O_INFO_BASIC, H5P_DEFAULT));
#endif
    if (oinfo.type == H5O_TYPE_DATASET) out[name] = read_tensor(g, name);
  }
  return out;
}

// Writes this rank's snapshot into `path` and fsyncs it.
void write_rank_file(const std::string& path, const Snapshot& snap) {
  core::h5_silence_errors();
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  SHARDLM_CHECK(f >= 0, CheckpointError, "{}: cannot create (missing directory or disk full?): {}",
                path, core::h5_error_string());
  try {
    for (const auto& u : snap.units) {
      hid_t g = ensure_group(f, "units/" + u.name);
      write_tensor(g, "params", u.params);
      if (u.exp_avg.defined()) {
        write_tensor(g, "exp_avg", u.exp_avg);
        write_tensor(g, "exp_avg_sq", u.exp_avg_sq);
      }
      if (!u.raw.empty()) {
        hid_t rg = ensure_group(f, "units/" + u.name + "/raw");
        for (const auto& [k, v] : u.raw) write_tensor(rg, k, v);
        H5Gclose(rg);
      }
      H5Gclose(g);
    }
    hid_t g = ensure_group(f, "rank");
    for (const auto& [k, v] : snap.rank_tensors) write_tensor(g, k, v);
    H5Gclose(g);
    SHARDLM_H5_CHECK(H5Fflush(f, H5F_SCOPE_GLOBAL));
  } catch (const core::Error& e) {
    H5Fclose(f);
    throw CheckpointError(fmt::format("{}: writing failed (disk full?): {}", path, e.message()));
  }
  SHARDLM_CHECK(H5Fclose(f) >= 0, CheckpointError, "{}: closing failed (disk full?)", path);
}

// fsync (page cache to disk) and the checksum (read back from the page cache)
// of a written file, overlapped on two threads; returns the checksum.
std::string sync_and_checksum(const std::string& path) {
  std::exception_ptr sync_error;
  std::thread syncer([&] {
    try {
      fsync_path(path, false);
    } catch (...) {
      sync_error = std::current_exception();
    }
  });
  std::string sum;
  std::exception_ptr sum_error;
  try {
    sum = file_checksum(path);
  } catch (...) {
    sum_error = std::current_exception();
  }
  syncer.join();
  if (sync_error) std::rethrow_exception(sync_error);
  if (sum_error) std::rethrow_exception(sum_error);
  return sum;
}

}  // namespace

// ---- Checkpointer -------------------------------------------------------------------

Checkpointer::Checkpointer(CheckpointConfig cfg, std::string run_dir,
                           std::shared_ptr<core::Comm> comm)
    : cfg_(std::move(cfg)),
      run_dir_(std::move(run_dir)),
      comm_(std::move(comm)),
      rank_(comm_->rank()),
      world_(comm_->size()) {}

Checkpointer::~Checkpointer() {
  try {
    wait();
  } catch (const std::exception& e) {
    core::log::error("checkpoint: {}", e.what());
  }
}

std::string Checkpointer::checkpoints_dir() const {
  return (fs::path(run_dir_) / "checkpoints").string();
}

void Checkpointer::wait() {
  if (worker_.joinable()) worker_.join();
  if (error_) {
    auto e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

void Checkpointer::save(Snapshot snap, bool async) {
  auto t0 = Clock::now();
  wait();
  if (!async) {
    write_and_commit(snap);
    stall_s_ = std::chrono::duration<double>(Clock::now() - t0).count();
    return;
  }
  worker_ = std::thread([this, s = std::move(snap)]() {
    try {
      write_and_commit(s);
    } catch (...) {
      error_ = std::current_exception();
    }
  });
  stall_s_ = std::chrono::duration<double>(Clock::now() - t0).count();
}

void Checkpointer::write_and_commit(const Snapshot& snap) {
  auto t0 = Clock::now();
  const fs::path root = checkpoints_dir();
  const std::string name = step_dir_name(snap.step);
  const fs::path tmp = root / (name + ".tmp");
  const fs::path final_dir = root / name;
  // Rank 0 makes the folder; its verdict is the barrier every rank waits on
  // (a failure there must not leave the other ranks waiting).
  std::string made;
  if (rank_ == 0) {
    std::error_code ec;
    fs::remove_all(tmp, ec);  // a previous attempt that died half-way
    fs::create_directories(tmp, ec);
    if (ec) made = fmt::format("{}: cannot create: {}", tmp.string(), ec.message());
  }
  made = core::broadcast_string(*comm_, made);
  SHARDLM_CHECK(made.empty(), CheckpointError, "checkpoint of step {} failed: {}", snap.step, made);

  // Each rank: its file, then its description for the manifest.
  std::string file = rank_file_name(rank_, world_);
  std::string error;
  nlohmann::json mine;
  try {
    const std::string path = (tmp / file).string();
    auto tw = Clock::now();
    write_rank_file(path, snap);
    auto ts = Clock::now();
    std::string sum = sync_and_checksum(path);
    const auto bytes = static_cast<int64_t>(fs::file_size(tmp / file));
    core::log::debug("checkpoint {}: {} MB written in {:.3f} s, fsync + checksum {:.3f} s", file,
                     bytes >> 20, std::chrono::duration<double>(ts - tw).count(),
                     std::chrono::duration<double>(Clock::now() - ts).count());
    mine = {{"file", file}, {"rank", rank_}, {"bytes", bytes}, {"checksum", sum}};
    nlohmann::json units = nlohmann::json::object();
    for (const auto& u : snap.units)
      units[u.name] = {{"begin", u.begin}, {"end", u.end}, {"optimizer", u.exp_avg.defined()}};
    mine["units"] = units;
  } catch (const std::exception& e) {
    error = e.what();
  }
  nlohmann::json report = {{"error", error}, {"file", mine}};
  auto all = comm_->gather_bytes(report.dump(), 0);

  int ok = 1;
  std::string failure;
  if (rank_ == 0) {
    nlohmann::json files = nlohmann::json::array();
    for (const auto& s : all) {
      auto j = nlohmann::json::parse(s);
      if (!j["error"].get<std::string>().empty()) {
        ok = 0;
        failure = j["error"].get<std::string>();
      }
      files.push_back(j["file"]);
    }
    if (ok) {
      try {
        nlohmann::json units = nlohmann::json::object();
        for (const auto& u : snap.units) units[u.name] = {{"numel", u.numel}, {"layout", u.layout}};
        nlohmann::json manifest = {{"format", "shardlm-checkpoint"},
                                   {"version", kFormatVersion},
                                   {"shardlm", SHARDLM_VERSION},
                                   {"step", snap.step},
                                   {"world_size", world_},
                                   {"created", static_cast<int64_t>(std::time(nullptr))},
                                   {"units", units},
                                   {"files", files},
                                   {"state", snap.state}};
        if (snap.val_loss) manifest["val_loss"] = *snap.val_loss;
        core::write_file_atomic<CheckpointError>((tmp / "manifest.json").string(),
                                                 manifest.dump(1));
        fsync_path(tmp.string(), true);
        std::error_code ec;
        if (fs::exists(final_dir)) fs::remove_all(final_dir, ec);  // an older save of this step
        fs::rename(tmp, final_dir, ec);
        SHARDLM_CHECK(!ec, CheckpointError, "{}: cannot commit: {}", final_dir.string(),
                      ec.message());
        fsync_path(root.string(), true);
        core::write_file_atomic<CheckpointError>((root / "latest").string(), name + "\n");
        fsync_path(root.string(), true);
        for (const auto& gone : prune_checkpoints(run_dir_, cfg_))
          core::log::debug("checkpoint: removed {}", gone);
      } catch (const std::exception& e) {
        ok = 0;
        failure = e.what();
      }
    }
    if (!ok) {
      std::error_code ec;
      fs::remove_all(tmp, ec);
    }
  }
  ok = std::stoi(core::broadcast_string(*comm_, std::to_string(ok)));
  write_s_ = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!ok) {
    if (rank_ == 0)
      throw CheckpointError(fmt::format("checkpoint of step {} failed: {}", snap.step, failure));
    throw CheckpointError(fmt::format("checkpoint of step {} failed on another rank", snap.step));
  }
}

// ---- CheckpointReader -----------------------------------------------------------------

namespace {
bool is_int(const nlohmann::json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_number_integer();
}

// Every field the reader uses, with its type, so that a damaged manifest is a
// CheckpointError naming it here rather than a JSON exception later.
void check_manifest(const nlohmann::json& m, const std::string& where) {
  const auto need = [&where](bool ok, const std::string& what) {
    SHARDLM_CHECK(ok, CheckpointError, "{}: {}", where, what);
  };
  need(is_int(m, "step"), "\"step\" must be an integer");
  need(is_int(m, "world_size") && m["world_size"].get<int64_t>() >= 1 &&
           m["world_size"].get<int64_t>() <= (1 << 20),
       "\"world_size\" must be a positive integer");
  need(m.contains("files") && m["files"].is_array(), "\"files\" must be an array");
  need(m.contains("units") && m["units"].is_object(), "\"units\" must be an object");
  for (const auto& item : m["units"].items()) {
    const auto& u = item.value();
    need(is_int(u, "numel") && u.contains("layout") && u["layout"].is_array(),
         fmt::format("unit '{}' needs an integer \"numel\" and a \"layout\" array", item.key()));
    for (const auto& e : u["layout"]) {
      bool ok = e.is_object() && e.contains("name") && e["name"].is_string() &&
                is_int(e, "offset") && e.contains("shape") && e["shape"].is_array();
      if (ok)
        for (const auto& d : e["shape"]) ok = ok && d.is_number_integer();
      need(ok, fmt::format("unit '{}': a layout entry needs \"name\", \"offset\" and an "
                           "integer \"shape\"",
                           item.key()));
    }
  }
  for (const auto& f : m["files"]) {
    need(f.is_object() && f.contains("file") && f["file"].is_string() && is_int(f, "bytes") &&
             f.contains("checksum") && f["checksum"].is_string() && f.contains("units") &&
             f["units"].is_object(),
         "each of \"files\" needs \"file\", \"bytes\", \"checksum\" and \"units\"");
    for (const auto& item : m["units"].items()) {
      const auto it = f["units"].find(item.key());
      need(it != f["units"].end() && is_int(*it, "begin") && is_int(*it, "end") &&
               it->contains("optimizer") && (*it)["optimizer"].is_boolean(),
           fmt::format("{} has no valid piece of unit '{}'", f["file"].get<std::string>(),
                       item.key()));
    }
  }
}
}  // namespace

struct CheckpointReader::Files {
  std::vector<hid_t> handles;  // per rank, opened on first use
  ~Files() {
    for (hid_t h : handles)
      if (h >= 0) H5Fclose(h);
  }
};

CheckpointReader::CheckpointReader(std::string dir)
    : dir_(std::move(dir)), files_(std::make_unique<Files>()) {
  core::h5_silence_errors();
  fs::path mpath = fs::path(dir_) / "manifest.json";
  std::ifstream in(mpath);
  SHARDLM_CHECK(in, CheckpointError, "{}: no manifest.json (not a checkpoint, or not committed)",
                dir_);
  try {
    manifest_ = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    SHARDLM_FAIL(CheckpointError, "{}: malformed JSON: {}", mpath.string(), e.what());
  }
  SHARDLM_CHECK(manifest_.is_object(), CheckpointError, "{}: expected a JSON object",
                mpath.string());
  // compared as JSON: a field of another type is simply not equal
  SHARDLM_CHECK(manifest_.contains("format") && manifest_["format"] == "shardlm-checkpoint",
                CheckpointError, "{}: not a shardlm checkpoint manifest", mpath.string());
  SHARDLM_CHECK(manifest_.contains("version") && manifest_["version"] == kFormatVersion,
                CheckpointError, "{}: format version {} (this build reads {})", mpath.string(),
                manifest_.contains("version") ? manifest_["version"].dump() : "missing",
                kFormatVersion);
  check_manifest(manifest_, mpath.string());
  world_ = manifest_.at("world_size").get<int>();
  SHARDLM_CHECK(static_cast<int>(manifest_.at("files").size()) == world_, CheckpointError,
                "{}: lists {} files for a world of {}", mpath.string(),
                manifest_.at("files").size(), world_);
  files_->handles.assign(world_, -1);
}

CheckpointReader::~CheckpointReader() = default;

int64_t CheckpointReader::step() const {
  return manifest_.at("step").get<int64_t>();
}

void CheckpointReader::verify() const {
  for (const auto& f : manifest_.at("files")) {
    fs::path p = fs::path(dir_) / f.at("file").get<std::string>();
    SHARDLM_CHECK(fs::exists(p), CheckpointError, "{}: missing rank file", p.string());
    auto bytes = static_cast<int64_t>(fs::file_size(p));
    SHARDLM_CHECK(bytes == f.at("bytes").get<int64_t>(), CheckpointError,
                  "{}: {} bytes, the manifest says {} (truncated?)", p.string(), bytes,
                  f.at("bytes").get<int64_t>());
    std::string sum = file_checksum(p.string());
    SHARDLM_CHECK(sum == f.at("checksum").get<std::string>(), CheckpointError,
                  "{}: checksum {} does not match the manifest's {} (corrupted)", p.string(), sum,
                  f.at("checksum").get<std::string>());
  }
}

int64_t CheckpointReader::unit_numel(const std::string& unit) const {
  auto it = manifest_.at("units").find(unit);
  SHARDLM_CHECK(it != manifest_.at("units").end(), CheckpointError,
                "{}: no unit '{}' (a checkpoint of another model?)", dir_, unit);
  return it->at("numel").get<int64_t>();
}

bool CheckpointReader::has_optimizer_state(const std::string& unit) const {
  for (const auto& f : manifest_.at("files"))
    if (!f.at("units").at(unit).at("optimizer").get<bool>()) return false;
  return true;
}

torch::Tensor CheckpointReader::read_range(const std::string& unit, const std::string& what,
                                           int64_t begin, int64_t end) const {
  int64_t numel = unit_numel(unit);
  SHARDLM_CHECK(0 <= begin && begin <= end && end <= numel, CheckpointError,
                "{}: range [{}, {}) outside unit '{}' of {} elements", dir_, begin, end, unit,
                numel);
  auto out = torch::empty({end - begin}, torch::kFloat);
  for (int r = 0; r < world_; ++r) {
    const auto& f = manifest_.at("files").at(r);
    const auto& piece = f.at("units").at(unit);
    int64_t b = std::max(begin, piece.at("begin").get<int64_t>());
    int64_t e = std::min(end, piece.at("end").get<int64_t>());
    if (b >= e) continue;
    std::string path = (fs::path(dir_) / f.at("file").get<std::string>()).string();
    hid_t& h = files_->handles[r];
    if (h < 0) {
      h = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
      SHARDLM_CHECK(h >= 0, CheckpointError, "{}: cannot open (missing or truncated?): {}", path,
                    core::h5_error_string());
    }
    try {
      read_slice(h, "units/" + unit + "/" + what, b - piece.at("begin").get<int64_t>(), e - b,
                 out.data_ptr<float>() + (b - begin));
    } catch (const core::Error& e2) {
      SHARDLM_FAIL(CheckpointError, "{}: cannot read {}/{}: {}", path, unit, what, e2.message());
    }
  }
  return out;
}

std::map<std::string, torch::Tensor> CheckpointReader::rank_tensors(int rank) const {
  std::string path =
      (fs::path(dir_) / manifest_.at("files").at(rank).at("file").get<std::string>()).string();
  hid_t& h = files_->handles.at(rank);
  if (h < 0) h = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  SHARDLM_CHECK(h >= 0, CheckpointError, "{}: cannot open", path);
  try {
    return read_group(h, "rank");
  } catch (const core::Error& e) {
    SHARDLM_FAIL(CheckpointError, "{}: cannot read the rank's state: {}", path, e.message());
  }
}

std::map<std::string, torch::Tensor> CheckpointReader::unit_raw(int rank,
                                                                const std::string& unit) const {
  std::string path =
      (fs::path(dir_) / manifest_.at("files").at(rank).at("file").get<std::string>()).string();
  hid_t& h = files_->handles.at(rank);
  if (h < 0) h = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  SHARDLM_CHECK(h >= 0, CheckpointError, "{}: cannot open", path);
  try {
    return read_group(h, "units/" + unit + "/raw");
  } catch (const core::Error& e) {
    SHARDLM_FAIL(CheckpointError, "{}: cannot read {}/raw: {}", path, unit, e.message());
  }
}

std::map<std::string, torch::Tensor> read_parameters(const CheckpointReader& reader) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [unit, info] : reader.manifest().at("units").items()) {
    int64_t numel = info.at("numel").get<int64_t>();
    torch::Tensor flat = reader.read_range(unit, "params", 0, numel);
    for (const auto& e : info.at("layout")) {
      std::vector<int64_t> shape = e.at("shape").get<std::vector<int64_t>>();
      int64_t n = 1;
      for (int64_t d : shape) n *= d;
      int64_t off = e.at("offset").get<int64_t>();
      SHARDLM_CHECK(off + n <= numel, CheckpointError,
                    "{}: layout of unit '{}' exceeds its {} elements", reader.dir(), unit, numel);
      out[e.at("name").get<std::string>()] = flat.narrow(0, off, n).view(shape).clone();
    }
  }
  return out;
}

// ---- listing, resolving, retention ----------------------------------------------------

std::vector<std::string> list_checkpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  fs::path root = fs::path(run_dir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return {};
  for (const auto& e : fs::directory_iterator(root, ec)) {
    std::string n = e.path().filename().string();
    if (!e.is_directory() || n.rfind("step-", 0) != 0 || n.find('.') != std::string::npos) continue;
    if (!fs::exists(e.path() / "manifest.json")) continue;
    found.emplace_back(std::stoll(n.substr(5)), e.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

std::optional<std::string> resolve_checkpoint(const std::string& run_dir, const std::string& spec) {
  if (spec != "latest") {
    CheckpointReader r(spec);
    r.verify();
    return spec;
  }
  fs::path root = fs::path(run_dir) / "checkpoints";
  std::string named;
  std::ifstream in(root / "latest");
  if (in) std::getline(in, named);
  if (!named.empty()) {
    try {
      CheckpointReader r((root / named).string());
      r.verify();
      return (root / named).string();
    } catch (const CheckpointError& e) {
      core::log::warn0("checkpoint: 'latest' ({}) is damaged: {}; looking for an older intact one",
                       named, e.message());
    }
  }
  auto all = list_checkpoints(run_dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      CheckpointReader r(*it);
      r.verify();
      if (!named.empty()) core::log::warn0("checkpoint: resuming from {} instead", *it);
      return *it;
    } catch (const CheckpointError& e) {
      core::log::warn0("checkpoint: {} is damaged: {}", *it, e.message());
    }
  }
  return std::nullopt;
}

std::vector<std::string> prune_checkpoints(const std::string& run_dir,
                                           const CheckpointConfig& cfg) {
  auto all = list_checkpoints(run_dir);
  std::set<std::string> keep;
  for (size_t i = all.size() > static_cast<size_t>(cfg.keep_last) ? all.size() - cfg.keep_last : 0;
       i < all.size(); ++i)
    keep.insert(all[i]);
  // The one `latest` names (the save just committed) always stays, even when a
  // run resumed from an older step and newer ones of the abandoned timeline
  // outrank it by step number.
  {
    std::ifstream in(fs::path(run_dir) / "checkpoints" / "latest");
    std::string name;
    if (in >> name) {
      name = fs::path(name).filename().string();
      for (const auto& d : all)
        if (fs::path(d).filename().string() == name) keep.insert(d);
    }
  }
  std::vector<std::pair<double, std::string>> scored;
  for (const auto& d : all) {
    std::ifstream in(fs::path(d) / "manifest.json");
    auto m = nlohmann::json::parse(in, nullptr, false);
    if (m.is_discarded()) continue;
    int64_t step = m.value("step", int64_t{0});
    if (cfg.keep_every > 0 && step % cfg.keep_every == 0) keep.insert(d);
    if (m.contains("val_loss") && m["val_loss"].is_number())
      scored.emplace_back(m["val_loss"].get<double>(), d);
  }
  std::sort(scored.begin(), scored.end());
  for (size_t i = 0; i < scored.size() && i < static_cast<size_t>(cfg.keep_best); ++i)
    keep.insert(scored[i].second);
  // Renamed first, then deleted: a crash half-way through leaves either the
  // whole step-N/ or a step-N.deleting/ that nothing reads (removed next time),
  // never a step-N/ with some of its files gone.
  std::vector<std::string> removed;
  std::error_code ec;
  for (auto it = fs::directory_iterator(fs::path(run_dir) / "checkpoints", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string n = it->path().filename().string();
    if (n.size() > 9 && n.compare(n.size() - 9, 9, ".deleting") == 0) {
      std::error_code rm;
      fs::remove_all(it->path(), rm);
    }
  }
  for (const auto& d : all)
    if (!keep.count(d)) {
      const std::string trash = d + ".deleting";
      std::error_code rn, rm;
      fs::rename(d, trash, rn);
      if (rn) continue;
      fs::remove_all(trash, rm);
      removed.push_back(d);
    }
  return removed;
}

}  // namespace shardlm::ckpt
