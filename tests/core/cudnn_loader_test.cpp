// cuDNN loaded at run time (core/cudnn_loader.h), cuda flavour only: what the loader says
// about a missing file, a library that is not cuDNN, one of another major version and one
// that lacks functions Strata calls; STRATA_CUDNN_LIBRARY end to end (in fresh processes:
// death tests of the threadsafe style re-run the test binary). None of this needs a GPU:
// loading cuDNN and asking its version do not touch the device.
//
// Where the environment has STRATA_TEST_EXPECT_CUDNN=1 (the GPU check sets it when it found
// cuDNN), the process's cuDNN must load: a skipped cuDNN test there would hide a broken load.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <cudnn.h>

#include "core/cudnn.h"
#include "core/cudnn_loader.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"

namespace strata {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// "9.19.0": the version of the headers Strata was built with, as the loader writes it.
std::string header_version() {
  return std::to_string(CUDNN_MAJOR) + "." + std::to_string(CUDNN_MINOR) + "." + std::to_string(CUDNN_PATCHLEVEL);
}

TEST(CudnnLoader, TheProcessLibraryLoadsOrSaysWhy) {
  const detail::CudnnLoadResult& library = detail::cudnn_library();
  EXPECT_EQ(cudnn_available(), library.failure.empty());
  EXPECT_EQ(cudnn_unavailable_reason(), library.failure);
  const char* expected = std::getenv("STRATA_TEST_EXPECT_CUDNN");
  if (expected != nullptr && std::string_view(expected) == "1") {
    EXPECT_TRUE(cudnn_available()) << cudnn_unavailable_reason();
  }
  if (cudnn_available()) {
    EXPECT_EQ(library.version / 10000, static_cast<std::size_t>(CUDNN_MAJOR)) << library.library_path;
    EXPECT_THAT(library.library_path, HasSubstr("libcudnn"));
  }
}

TEST(CudnnLoader, AMissingFileIsNamedWithDlopensErrorAndTheRemedy) {
  const detail::CudnnLoadResult result = detail::try_cudnn_library_for_testing("/nonexistent/libcudnn.so.9");
  EXPECT_THAT(result.failure, AllOf(HasSubstr("dlopen(\"/nonexistent/libcudnn.so.9\") failed"),
                                    HasSubstr("No such file or directory")));
  EXPECT_EQ(result.version, 0u);
}

TEST(CudnnLoader, ALibraryWithoutCudnnGetVersionIsNotCuDnn) {
  const detail::CudnnLoadResult result = detail::try_cudnn_library_for_testing("libm.so.6");
  EXPECT_THAT(result.failure, AllOf(HasSubstr("libm.so.6 is not a cuDNN library"), HasSubstr("cudnnGetVersion"),
                                    HasSubstr("LD_LIBRARY_PATH"), HasSubstr("STRATA_CUDNN_LIBRARY")));
}

TEST(CudnnLoader, AnotherMajorVersionIsRefusedWithBothVersions) {
  const detail::CudnnLoadResult result = detail::try_cudnn_library_for_testing(STRATA_FAKE_CUDNN_OLD);
  EXPECT_EQ(result.version, 8907u);
  EXPECT_THAT(result.failure,
              AllOf(HasSubstr("is version 8.9.7"), HasSubstr("built with the cuDNN " + header_version() + " headers"),
                    HasSubstr("strata_fake_cudnn_old")));
}

TEST(CudnnLoader, AMissingFunctionIsNamed) {
  const detail::CudnnLoadResult result = detail::try_cudnn_library_for_testing(STRATA_FAKE_CUDNN_INCOMPLETE);
  // The first function of core/cudnn_symbols.inc after cudnnGetVersion.
  EXPECT_THAT(result.failure, AllOf(HasSubstr("version " + std::to_string(CUDNN_MAJOR) + ".99.99"), HasSubstr("has no function cudnnGetErrorString"),
                                    HasSubstr("which Strata calls")));
}

// Runs in a fresh process: points STRATA_CUDNN_LIBRARY at path, then prints what an op on
// Engine::cudnn would be told, and exits with 0 when cuDNN is available, 1 when not.
[[noreturn]] void exit_with_availability(const char* path) {
  ::setenv("STRATA_CUDNN_LIBRARY", path, 1);
  try {
    detail::require_cudnn("conv2d on cuDNN");
    std::exit(0);
  } catch (const NotSupported& error) {
    std::fprintf(stderr, "%s\n", error.what());
    std::exit(cudnn_available() ? 2 : 1);
  }
}

class CudnnLoaderEnvironment : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(CudnnLoaderEnvironment, AnUnloadableOverrideMakesCudnnUnavailableWithTheReason) {
  EXPECT_EXIT(exit_with_availability("/nonexistent/libcudnn.so.9"), ::testing::ExitedWithCode(1),
              "conv2d on cuDNN: cuDNN could not be loaded: STRATA_CUDNN_LIBRARY=/nonexistent/libcudnn.so.9 names a "
              "file dlopen cannot load .*No such file or directory.*unset it to search LD_LIBRARY_PATH");
}

TEST_F(CudnnLoaderEnvironment, AnOverrideOfAnotherVersionIsRefused) {
  EXPECT_EXIT(exit_with_availability(STRATA_FAKE_CUDNN_OLD), ::testing::ExitedWithCode(1), "is version 8\\.9\\.7");
}

TEST_F(CudnnLoaderEnvironment, AnOverrideNamingTheRealLibraryLoadsIt) {
  if (!cudnn_available()) GTEST_SKIP() << cudnn_unavailable_reason();
  const std::string path = detail::cudnn_library().library_path;
  EXPECT_EXIT(exit_with_availability(path.c_str()), ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace strata
