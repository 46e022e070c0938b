// Devices: enumeration, selection, properties and their description.
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "strata/core/device.h"
#include "strata/core/errors.h"
#include "tests/support/device_test.h"

namespace strata {
namespace {

using ::testing::HasSubstr;
using DeviceTest = testing::DeviceTest;

TEST(Device, CountIsNeverNegative) { EXPECT_GE(device_count(), 0); }

TEST_F(DeviceTest, PropertiesDescribeAUsableGpu) {
  const DeviceProperties& properties = device_properties(current_device());
  EXPECT_EQ(properties.index, current_device());
  EXPECT_FALSE(properties.name.empty());
  EXPECT_GE(properties.compute_capability_major, 7);
  EXPECT_GT(properties.multiprocessor_count, 0);
  EXPECT_EQ(properties.warp_size, 32);
  EXPECT_GE(properties.max_threads_per_block, 1024);
  EXPECT_GT(properties.total_memory_bytes, 0u);
  EXPECT_GT(properties.l2_cache_bytes, 0u);
  EXPECT_GE(properties.shared_memory_per_block_optin_bytes, properties.shared_memory_per_block_bytes);
  EXPECT_GE(properties.shared_memory_per_multiprocessor_bytes, properties.shared_memory_per_block_optin_bytes);
  // Cached: the same object every time.
  EXPECT_EQ(&device_properties(current_device()), &properties);
}

TEST_F(DeviceTest, DescriptionNamesTheDeviceAndItsLimits) {
  const DeviceProperties& properties = device_properties();
  const std::string text = describe(properties);
  EXPECT_THAT(text, HasSubstr("cuda:" + std::to_string(properties.index) + " " + properties.name));
  EXPECT_THAT(text, HasSubstr("compute capability " + std::to_string(properties.compute_capability_major) + "."));
  EXPECT_THAT(text, HasSubstr(std::to_string(properties.multiprocessor_count) + " SMs"));
  EXPECT_THAT(text, HasSubstr("warp 32"));
}

TEST_F(DeviceTest, SelectingADeviceThatDoesNotExistThrows) {
  const int count = device_count();
  EXPECT_THAT([&] { set_device(count); },
              ::testing::ThrowsMessage<InvalidArgument>(
                  HasSubstr("set_device(" + std::to_string(count) + "): this machine has " + std::to_string(count))));
  EXPECT_THROW(set_device(-1), InvalidArgument);
  EXPECT_THROW(device_properties(count), InvalidArgument);
}

TEST_F(DeviceTest, GuardRestoresTheDevice) {
  const int before = current_device();
  {
    DeviceGuard guard(device_count() - 1);
    EXPECT_EQ(current_device(), device_count() - 1);
  }
  EXPECT_EQ(current_device(), before);
}

TEST_F(DeviceTest, SelectionIsPerThread) {
  set_device(0);
  int seen_by_other_thread = -1;
  std::thread([&] { seen_by_other_thread = current_device(); }).join();
  EXPECT_EQ(seen_by_other_thread, 0);
  EXPECT_EQ(current_device(), 0);
}

}  // namespace
}  // namespace strata
