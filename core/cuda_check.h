/// @file
/// SHARDLM_CUDA_CHECK / SHARDLM_NCCL_CHECK: compiled only with SHARDLM_WITH_CUDA.
/// A failure throws core::CudaError / core::NcclError with the expression, file,
/// line and the library's own error string.
#pragma once

#include "error.h"

#ifdef SHARDLM_WITH_CUDA
#include <cuda_runtime.h>

/// Runs `expr` (a CUDA runtime call); throws core::CudaError naming it on failure.
#define SHARDLM_CUDA_CHECK(expr)                                                            \
  do {                                                                                      \
    cudaError_t shardlm_err_ = (expr);                                                      \
    if (shardlm_err_ != cudaSuccess)                                                        \
      throw ::shardlm::core::CudaError(                                                     \
          fmt::format("CUDA call failed: {}: {}", #expr, cudaGetErrorString(shardlm_err_)), \
          __FILE__, __LINE__);                                                              \
  } while (0)

#ifdef SHARDLM_WITH_NCCL
#include <nccl.h>
/// Runs `expr` (an NCCL call); throws core::NcclError naming it on failure.
#define SHARDLM_NCCL_CHECK(expr)                                                            \
  do {                                                                                      \
    ncclResult_t shardlm_res_ = (expr);                                                     \
    if (shardlm_res_ != ncclSuccess)                                                        \
      throw ::shardlm::core::NcclError(                                                     \
          fmt::format("NCCL call failed: {}: {}", #expr, ncclGetErrorString(shardlm_res_)), \
          __FILE__, __LINE__);                                                              \
  } while (0)
#endif
#endif
