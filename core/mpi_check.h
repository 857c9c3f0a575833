/// @file
/// SHARDLM_MPI_CHECK: every MPI call goes through it; a failure throws
/// core::MpiError with the expression, file, line and MPI's own error string.
#pragma once

#include <mpi.h>

#include <string>

#include "error.h"

namespace shardlm::core {
/// MPI's own text for an error code.
std::string mpi_error_string(int code);
}  // namespace shardlm::core

/// Runs `expr` (an MPI call); throws core::MpiError naming it unless it returns MPI_SUCCESS.
#define SHARDLM_MPI_CHECK(expr)                                                                    \
  do {                                                                                             \
    int shardlm_rc_ = (expr);                                                                      \
    if (shardlm_rc_ != MPI_SUCCESS)                                                                \
      throw ::shardlm::core::MpiError(fmt::format("MPI call failed: {}: {}", #expr,                \
                                                  ::shardlm::core::mpi_error_string(shardlm_rc_)), \
                                      __FILE__, __LINE__);                                         \
  } while (0)
