// Input files named on a command line or in a config: plain files,
// directories (read recursively) and glob patterns ("corpus/*.txt").
#pragma once

#include <string>
#include <vector>

namespace shardlm::data {

// The regular files that `inputs` name, each input's files in sorted order and
// without repeats. Hidden files (".name") inside directories are skipped.
// Throws DataError naming an input that does not exist or matches no file.
std::vector<std::string> expand_input_paths(const std::vector<std::string>& inputs);

}  // namespace shardlm::data
