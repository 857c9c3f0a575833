// Fuzz target safetensors: model.safetensors then, after
// fuzz::kFileSeparator, its config.json. read_safetensors (the 8-byte length,
// the JSON header, dtypes, shapes, offsets, the data) on the first; what
// reads must write back (write_safetensors) and read again to the same bytes.
// With a config: import_config, then load_safetensors of the directory as
// `shardlm generate`/`serve` load a model (for models of up to 4M parameters:
// the allocation a config asks for is not what this target measures). Only
// core::Error may escape, naming the file.
#include <cstring>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "fuzz/fuzz_target.h"
#include "model/safetensors.h"

using namespace shardlm;

namespace {

bool same_bytes(const torch::Tensor& a, const torch::Tensor& b) {
  return a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes() &&
         (a.nbytes() == 0 || std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()) == 0);
}

}  // namespace

SHARDLM_FUZZ_TARGET(safetensors) {
  static const bool init = [] {
    fuzz::quiet_logs();
    torch::set_num_threads(1);
    return true;
  }();
  (void)init;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto parts = fuzz::split_files(input, 2);
  const std::string dir = fuzz::scratch_subdir("model");
  const std::string weights = fuzz::scratch_file("model/model.safetensors", parts[0]);

  model::SafetensorsFile file;
  if (fuzz::expect_errors([&] { file = model::read_safetensors(weights); }, weights)) {
    const std::string copy = fuzz::scratch_file("copy.safetensors", "");
    model::write_safetensors(copy, file.tensors, file.metadata);
    const model::SafetensorsFile again = model::read_safetensors(copy);
    SHARDLM_FUZZ_CHECK(
        again.tensors.size() == file.tensors.size() && again.metadata == file.metadata,
        "write/read changed the tensor list or the metadata");
    for (size_t i = 0; i < file.tensors.size(); ++i)
      SHARDLM_FUZZ_CHECK(again.tensors[i].first == file.tensors[i].first &&
                             same_bytes(again.tensors[i].second, file.tensors[i].second),
                         "write/read changed tensor " + file.tensors[i].first);
  }
  if (parts.size() < 2) return 0;
  const std::string cfg_path = fuzz::scratch_file("model/config.json", parts[1]);
  model::ModelConfig cfg;
  bool small = false;
  fuzz::expect_errors([&] {
    const nlohmann::json j = nlohmann::json::parse(parts[1], nullptr, false);
    if (j.is_discarded()) return;
    cfg = model::import_config(j, cfg_path);
    cfg.validate();
    small = cfg.num_parameters() <= (4 << 20) && cfg.context_length <= 4096;
  });
  if (small) fuzz::expect_errors([&] { model::load_safetensors(dir); }, dir);
  return 0;
}
