// Fixture for tests that need a CUDA device: skipped, with the reason, on a machine where
// cudaGetDeviceCount reports none (the simulator build always has one).
//   using AllocatorTest = strata::testing::DeviceTest;
//   TEST_F(AllocatorTest, ReusesOnTheSameStream) { ... }
#pragma once

#include <gtest/gtest.h>

#include "strata/core/device.h"

namespace strata::testing {

class DeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (device_count() == 0) GTEST_SKIP() << "no CUDA device on this machine (cudaGetDeviceCount reports none)";
  }
};

}  // namespace strata::testing
