// Check macros: a failing MPI or HDF5 call throws a typed error with file and line.
#include <gtest/gtest.h>

#include "core/h5_check.h"
#include "core/mpi_check.h"

using namespace shardlm::core;

TEST(Errors, FailingMpiCallThrowsMpiErrorWithLocation) {
  int line = 0;
  try {
    int x = 0;
    line = __LINE__ + 1;
    SHARDLM_MPI_CHECK(MPI_Bcast(&x, 1, MPI_INT, /*root=*/12345, MPI_COMM_WORLD));
    FAIL() << "no throw";
  } catch (const MpiError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("MPI_Bcast"), std::string::npos) << msg;
    EXPECT_NE(msg.find("test_errors.cpp:" + std::to_string(line)), std::string::npos) << msg;
    EXPECT_NE(msg.find("root"), std::string::npos) << msg;  // MPI's own error string
    EXPECT_EQ(e.line(), line);
  }
}

TEST(Errors, FailingHdf5CallThrowsH5ErrorWithLocation) {
  h5_silence_errors();
  try {
    SHARDLM_H5_CHECK(H5Fopen("/nonexistent/dir/file.h5", H5F_ACC_RDONLY, H5P_DEFAULT));
    FAIL() << "no throw";
  } catch (const H5Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("H5Fopen"), std::string::npos) << msg;
    EXPECT_NE(msg.find("test_errors.cpp:"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unable to"), std::string::npos) << msg;  // HDF5's own message
  }
}

TEST(Errors, Hdf5CheckReturnsTheValueOnSuccess) {
  hid_t space = SHARDLM_H5_CHECK(H5Screate(H5S_SCALAR));
  EXPECT_GE(space, 0);
  SHARDLM_H5_CHECK(H5Sclose(space));
}

TEST(Errors, CheckMacroFormatsAndIsTyped) {
  EXPECT_THROW(SHARDLM_CHECK(1 + 1 == 3, DataError, "bad {}", 7), DataError);
  try {
    SHARDLM_CHECK(false, CheckpointError, "shard {} of {}", 2, 4);
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), "shard 2 of 4");
    EXPECT_NE(std::string(e.what()).find("test_errors.cpp"), std::string::npos);
  }
}
