// cuDNN's benchmark mode switch (strata/core/engine.h): set, guarded, and read from
// STRATA_CUDNN_BENCHMARK at first use (in fresh processes: death tests of the threadsafe
// style re-run the test binary). What the mode does to conv2d is tested on a GPU, in
// tests/kernels/conv2d_cudnn_test.cpp.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

#include "strata/core/engine.h"
#include "strata/core/errors.h"

namespace strata {
namespace {

TEST(CudnnBenchmark, SetAndGuardRestore) {
  const bool original = cudnn_benchmark();
  set_cudnn_benchmark(true);
  EXPECT_TRUE(cudnn_benchmark());
  {
    const CudnnBenchmarkGuard off(false);
    EXPECT_FALSE(cudnn_benchmark());
    {
      const CudnnBenchmarkGuard on;
      EXPECT_TRUE(cudnn_benchmark());
    }
    EXPECT_FALSE(cudnn_benchmark());
  }
  EXPECT_TRUE(cudnn_benchmark());
  set_cudnn_benchmark(original);
}

// Runs in a fresh process: sets STRATA_CUDNN_BENCHMARK, reads the mode, and exits with 1 (on)
// or 0 (off), or 100 after printing the InvalidArgument's message.
[[noreturn]] void exit_with_benchmark_mode(const char* value) {
  ::setenv("STRATA_CUDNN_BENCHMARK", value, 1);
  try {
    std::exit(cudnn_benchmark() ? 1 : 0);
  } catch (const InvalidArgument& error) {
    std::fprintf(stderr, "%s\n", error.what());
    std::exit(100);
  }
}

class CudnnBenchmarkEnvironment : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(CudnnBenchmarkEnvironment, ValidValuesSetTheMode) {
  EXPECT_EXIT(exit_with_benchmark_mode(""), ::testing::ExitedWithCode(0), "");
  EXPECT_EXIT(exit_with_benchmark_mode("0"), ::testing::ExitedWithCode(0), "");
  EXPECT_EXIT(exit_with_benchmark_mode("FALSE"), ::testing::ExitedWithCode(0), "");
  EXPECT_EXIT(exit_with_benchmark_mode("1"), ::testing::ExitedWithCode(1), "");
  EXPECT_EXIT(exit_with_benchmark_mode("True"), ::testing::ExitedWithCode(1), "");
}

TEST_F(CudnnBenchmarkEnvironment, AnInvalidValueThrowsNamingTheVariableUntilSet) {
  EXPECT_EXIT(exit_with_benchmark_mode("yes"), ::testing::ExitedWithCode(100),
              "STRATA_CUDNN_BENCHMARK='yes' is not a valid setting: use 1 or true");
  const auto set_after_invalid = [] {
    ::setenv("STRATA_CUDNN_BENCHMARK", "2", 1);
    try {
      static_cast<void>(cudnn_benchmark());
      std::exit(1);
    } catch (const InvalidArgument&) {
    }
    set_cudnn_benchmark(true);
    std::exit(cudnn_benchmark() ? 0 : 2);
  };
  EXPECT_EXIT(set_after_invalid(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace strata
