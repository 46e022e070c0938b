// Tensor copies between host, pinned and device memory, all queued on one stream and
// synchronised only at the end; dtype conversion; and the errors for mismatched copies.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "strata/core/errors.h"
#include "strata/core/tensor.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"

namespace strata {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
using TensorCopyTest = testing::DeviceTest;

constexpr std::uint64_t kSeed = 20240601;

TEST_F(TensorCopyTest, RoundTripsThroughTheDeviceAsynchronously) {
  Stream stream;
  const std::vector<float> values = testing::random_uniform(kSeed, 3 * 5 * 7);
  Tensor device = Tensor::empty({3, 5, 7}, DType::f32, stream);  // (3, 5, 7)
  device.copy_from_host_async(std::span<const float>(values), stream);
  std::vector<float> back(values.size(), testing::poison_value());
  device.copy_to_host_async(std::span<float>(back), stream);
  stream.synchronize();
  EXPECT_TRUE(testing::all_equal(back, values));
}

TEST_F(TensorCopyTest, CopiesBetweenEveryMemoryKind) {
  Stream stream;
  const std::vector<float> values = testing::random_uniform(kSeed + 1, 64 * 3);
  const Tensor host = Tensor::from_vector(values, {64, 3});
  Tensor pinned = Tensor::empty_pinned({64, 3}, DType::f32);
  pinned.copy_from(host, stream);                   // host -> pinned
  Tensor device = pinned.to_device(stream);         // pinned -> device
  Tensor device_copy = Tensor::empty({64, 3}, DType::f32, stream);
  device_copy.copy_from(device, stream);            // device -> device
  Tensor pinned_back = Tensor::empty_pinned({64, 3}, DType::f32);
  std::ranges::fill(std::span(pinned_back.data<float>(), values.size()), testing::poison_value());
  pinned_back.copy_from(device_copy, stream);       // device -> pinned
  EXPECT_TRUE(testing::all_equal(pinned_back.to_vector<float>(stream), values));
  EXPECT_TRUE(testing::all_equal(device_copy.to_host(stream).to_vector<float>(), values));
}

TEST_F(TensorCopyTest, NarrowedDeviceViewsCopyTheirRowsOnly) {
  Stream stream;
  std::vector<std::int32_t> values(6 * 4);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<std::int32_t>(i);
  Tensor device = Tensor::from_vector(values, {6, 4}).to_device(stream);  // (6, 4)
  const Tensor rows = device.narrow(0, 2, 3);                             // (3, 4): rows 2..4
  EXPECT_THAT(rows.to_vector<std::int32_t>(stream), ElementsAre(8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19));

  Tensor replacement = Tensor::from_vector(std::vector<std::int32_t>(4, -1), {1, 4}).to_device(stream);
  device.narrow(0, 5, 1).copy_from(replacement, stream);
  const std::vector<std::int32_t> after = device.to_vector<std::int32_t>(stream);
  EXPECT_THAT(std::vector<std::int32_t>(after.begin() + 16, after.end()), ElementsAre(16, 17, 18, 19, -1, -1, -1, -1));
}

TEST_F(TensorCopyTest, MismatchedCopiesNameBothTensors) {
  Stream stream;
  Tensor device = Tensor::empty({4, 4}, DType::f32, stream);
  const std::vector<float> too_short(15);
  EXPECT_THAT([&] { device.copy_from_host_async(std::span<const float>(too_short), stream); },
              ThrowsMessage<InvalidArgument>(
                  HasSubstr("60 bytes given for a tensor of shape (4, 4), dtype f32, device memory (64 bytes)")));
  const std::vector<std::int32_t> wrong_type(16);
  EXPECT_THAT([&] { device.copy_from_host_async(std::span<const std::int32_t>(wrong_type), stream); },
              ThrowsMessage<InvalidArgument>(HasSubstr("requested element type i32 from a tensor of dtype f32")));
  const Tensor other = Tensor::empty_host({2, 8}, DType::f32);
  EXPECT_THAT([&] { device.copy_from(other, stream); },
              ThrowsMessage<InvalidArgument>(
                  HasSubstr("source has shape (2, 8) and dtype f32, destination shape (4, 4) and dtype f32")));
  EXPECT_THAT([&] { device.copy_from(Tensor::empty_host({4, 4}, DType::f32), nullptr); },
              ThrowsMessage<InvalidArgument>(HasSubstr("no stream given")));
}

TEST_F(TensorCopyTest, ConvertsBetweenFloatingPointTypes) {
  Stream stream;
  // Exactly representable in f16 and bf16.
  const std::vector<float> values = {0.0f, -1.0f, 0.5f, 3.0f, -0.125f, 64.0f, 1.0f / 1024.0f};
  const Tensor f32 = Tensor::from_vector(values, {7}).to_device(stream);
  for (DType reduced : {DType::f16, DType::bf16}) {
    const Tensor there_and_back = f32.to_dtype(reduced, stream).to_dtype(DType::f32, stream);
    EXPECT_THAT(there_and_back.to_vector<float>(stream), ElementsAreArray(values)) << reduced;
  }
  // Round to nearest even: 1 + 2^-11 is halfway between two f16 values.
  const Tensor halfway = Tensor::from_vector(std::vector<float>{1.0f + 1.0f / 2048.0f}, {1}).to_device(stream);
  EXPECT_THAT(halfway.to_dtype(DType::f16, stream).to_dtype(DType::f32, stream).to_vector<float>(stream),
              ElementsAre(1.0f));
}

TEST_F(TensorCopyTest, FloatToIntegerTruncatesAndSaturates) {
  Stream stream;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const Tensor floats = Tensor::from_vector(std::vector<float>{2.7f, -2.7f, 300.0f, -5.0f, nan, inf, -inf}, {7})
                            .to_device(stream);
  EXPECT_THAT(floats.to_dtype(DType::i32, stream).to_vector<std::int32_t>(stream),
              ElementsAre(2, -2, 300, -5, 0, std::numeric_limits<std::int32_t>::max(),
                          std::numeric_limits<std::int32_t>::min()));
  EXPECT_THAT(floats.to_dtype(DType::u8, stream).to_vector<std::uint8_t>(stream), ElementsAre(2, 0, 255, 0, 0, 255, 0));
  EXPECT_THAT(floats.to_dtype(DType::i64, stream).to_vector<std::int64_t>(stream),
              ElementsAre(2, -2, 300, -5, 0, std::numeric_limits<std::int64_t>::max(),
                          std::numeric_limits<std::int64_t>::min()));
}

TEST_F(TensorCopyTest, IntegersConvertToFloats) {
  Stream stream;
  const Tensor bytes = Tensor::from_vector(std::vector<std::uint8_t>{0, 1, 128, 255}, {4}).to_device(stream);
  EXPECT_THAT(bytes.to_dtype(DType::f32, stream).to_vector<float>(stream), ElementsAre(0.0f, 1.0f, 128.0f, 255.0f));
  const Tensor longs = Tensor::from_vector(std::vector<std::int64_t>{-3, 1 << 20}, {2}).to_device(stream);
  EXPECT_THAT(longs.to_dtype(DType::i32, stream).to_vector<std::int32_t>(stream), ElementsAre(-3, 1 << 20));
  EXPECT_THAT([&] { Tensor::empty_host({2}, DType::f32).to_dtype(DType::f16, stream); },
              ThrowsMessage<InvalidArgument>(HasSubstr("must be in device memory")));
}

}  // namespace
}  // namespace strata
