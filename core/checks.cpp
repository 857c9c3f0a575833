// Error strings for the MPI and HDF5 check macros.
#include <hdf5.h>
#include <mpi.h>

#include "h5_check.h"
#include "mpi_check.h"

namespace shardlm::core {

std::string mpi_error_string(int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) return fmt::format("MPI error {}", code);
  return std::string(buf, static_cast<size_t>(len));
}

namespace {
herr_t innermost(unsigned n, const H5E_error2_t* err, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (n == 0 && err->desc) *out = err->desc;  // n = 0 is where the error arose
  if (n == 0 && err->func_name) *out += fmt::format(" (in {})", err->func_name);
  return 0;
}
}  // namespace

std::string h5_error_string() {
  std::string out;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, &out);
  return out.empty() ? std::string("no HDF5 error message") : out;
}

void h5_silence_errors() {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

}  // namespace shardlm::core
