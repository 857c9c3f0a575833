/// @file
/// SHARDLM_H5_CHECK: every HDF5 call goes through it. HDF5 signals failure with a
/// negative return (herr_t or hid_t); the check throws core::H5Error with the
/// expression, file, line and the innermost message of HDF5's error stack.
#pragma once

#include <hdf5.h>

#include <string>

#include "error.h"

namespace shardlm::core {
/// The innermost message on HDF5's current error stack ("" when empty).
std::string h5_error_string();
/// Turns off HDF5's automatic printing of error stacks (we throw instead).
void h5_silence_errors();

/// Closes an HDF5 handle (dataset, dataspace, type, group, attribute, property
/// list) when it leaves scope, so that a read that throws leaks nothing.
///
///     H5Id ds(SHARDLM_H5_CHECK(H5Dopen2(file, "tokens", H5P_DEFAULT)), H5Dclose);
class H5Id {
 public:
  /// Takes `id`; `close` is the matching H5?close function.
  H5Id(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~H5Id() {
    if (id_ >= 0) close_(id_);
  }
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;
  /// The handle, for HDF5 calls.
  operator hid_t() const { return id_; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};
}  // namespace shardlm::core

/// Runs `expr` (an HDF5 call) and returns its value; throws core::H5Error naming
/// it when the value is negative.
#define SHARDLM_H5_CHECK(expr)                                                                \
  ([&]() {                                                                                    \
    auto shardlm_h5_rc_ = (expr);                                                             \
    if (shardlm_h5_rc_ < 0)                                                                   \
      throw ::shardlm::core::H5Error(                                                         \
          fmt::format("HDF5 call failed: {}: {}", #expr, ::shardlm::core::h5_error_string()), \
          __FILE__, __LINE__);                                                                \
    return shardlm_h5_rc_;                                                                    \
  }())
