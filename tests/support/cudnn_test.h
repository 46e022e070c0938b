// Helpers of the tests that compare the cuDNN engine with Strata's custom kernels
// (tests/kernels/*_cudnn_test.cpp, tests/layers/engine_*_test.cpp): fixtures for the tests
// that need cuDNN and for those that check what happens without it, and the tolerance of
// two fp32 reductions that sum in different orders.
//   using Conv2dCudnnParityTest = strata::testing::CudnnTest;
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include <gtest/gtest.h>

#include "strata/core/engine.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"

namespace strata::testing {

// Runs where cuDNN does (a CUDA build on a GPU, with a cuDNN it accepts); skipped elsewhere,
// with the reason.
class CudnnTest : public DeviceTest {
 protected:
  void SetUp() override {
    DeviceTest::SetUp();
    if (IsSkipped()) return;
    if (!cudnn_available()) GTEST_SKIP() << cudnn_unavailable_reason();
  }
};

// Runs where cuDNN does not (the simulator build): refusals and fallbacks. Skipped where it
// does, since there the CudnnTest tests compare the engines.
class WithoutCudnnTest : public DeviceTest {
 protected:
  void SetUp() override {
    DeviceTest::SetUp();
    if (IsSkipped()) return;
    if (cudnn_available()) GTEST_SKIP() << "cuDNN is available here: the tests on cuDNN compare the engines";
  }
};

// Whether every element of custom is within 1e-5 * sqrt(reduction_length) * max |cudnn| of
// cudnn: the rounding of two fp32 sums of reduction_length terms in different orders. A
// wrong index or a missed term gives differences of order max |cudnn|.
inline ::testing::AssertionResult agree_to_rounding(std::span<const float> custom, std::span<const float> cudnn,
                                                    std::int64_t reduction_length) {
  double largest = 1e-30;
  for (const float value : cudnn) largest = std::max(largest, static_cast<double>(std::fabs(value)));
  const double tolerance = 1e-5 * std::sqrt(static_cast<double>(reduction_length)) * largest;
  return all_close(custom, std::vector<double>(cudnn.begin(), cudnn.end()), {.abs_tol = tolerance});
}

}  // namespace strata::testing
