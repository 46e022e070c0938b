// fill_uniform and fill_normal: the kernel writes exactly the numbers the host computes,
// offsets continue a stream, the statistics are right, and bad arguments are refused.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "strata/core/errors.h"
#include "strata/core/philox.h"
#include "strata/core/random.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"

namespace strata {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
using RandomTest = testing::DeviceTest;

std::vector<double> as_doubles(const std::vector<float>& values) { return {values.begin(), values.end()}; }

struct Moments {
  double mean;
  double stddev;
};

Moments moments(const std::vector<float>& values) {
  double sum = 0.0, sum_squares = 0.0;
  for (float v : values) sum += v;
  const double mean = sum / static_cast<double>(values.size());
  for (float v : values) sum_squares += (v - mean) * (v - mean);
  return {mean, std::sqrt(sum_squares / static_cast<double>(values.size() - 1))};
}

TEST_F(RandomTest, UniformKernelMatchesTheHostBitForBit) {
  Stream stream;
  for (std::uint64_t offset : {0ull, 1ull, 3ull, 6ull, 1000001ull}) {
    SCOPED_TRACE(::testing::Message() << "offset " << offset);
    const UniformParams params{.low = -0.5f, .high = 2.0f, .seed = 1234, .offset = offset};
    Tensor device = Tensor::empty({1001}, DType::f32, stream);
    fill_uniform(device, params, stream);
    Tensor host = Tensor::empty_host({1001}, DType::f32);
    fill_uniform(host, params, nullptr);
    EXPECT_TRUE(testing::all_equal(device.to_vector<float>(stream), host.to_vector<float>()));
    EXPECT_EQ(host.data<float>()[0], philox_uniform(1234, offset, -0.5f, 2.0f));
  }
}

TEST_F(RandomTest, NormalKernelMatchesTheHost) {
  Stream stream;
  const NormalParams params{.mean = 1.0f, .stddev = 0.5f, .seed = 77, .offset = 5};
  Tensor device = Tensor::empty({999}, DType::f32, stream);
  fill_normal(device, params, stream);
  Tensor host = Tensor::empty_host({999}, DType::f32);
  fill_normal(host, params, nullptr);
  // Box-Muller runs in double, so the GPU's libm differs from the host's far below float
  // precision; the simulator build is bit-exact.
  EXPECT_TRUE(testing::all_close(device.to_vector<float>(stream), as_doubles(host.to_vector<float>()),
                                 testing::Tolerance{.abs_tol = 1e-6, .rel_tol = 1e-6}));
}

TEST_F(RandomTest, ReducedPrecisionFillsRoundTheFloatValues) {
  Stream stream;
  for (DType dtype : {DType::f16, DType::bf16}) {
    SCOPED_TRACE(::testing::Message() << "dtype " << dtype);
    Tensor device = Tensor::empty({257}, dtype, stream);
    fill_uniform(device, {.low = -3.0f, .high = 3.0f, .seed = 5}, stream);
    Tensor host = Tensor::empty_host({257}, dtype);
    fill_uniform(host, {.low = -3.0f, .high = 3.0f, .seed = 5}, nullptr);
    const Tensor device_as_f32 = device.to_dtype(DType::f32, stream);
    const Tensor host_as_f32 = host.to_device(stream).to_dtype(DType::f32, stream);
    EXPECT_TRUE(testing::all_equal(device_as_f32.to_vector<float>(stream), host_as_f32.to_vector<float>(stream)));
  }
}

TEST_F(RandomTest, OffsetsContinueTheStream) {
  Stream stream;
  Tensor whole = Tensor::empty({300}, DType::f32, stream);
  fill_normal(whole, {.seed = 9}, stream);
  Tensor tail = Tensor::empty({123}, DType::f32, stream);
  fill_normal(tail, {.seed = 9, .offset = 177}, stream);
  const std::vector<float> all = whole.to_vector<float>(stream);
  EXPECT_TRUE(testing::all_equal(tail.to_vector<float>(stream), std::vector<float>(all.begin() + 177, all.end())));
}

TEST_F(RandomTest, UniformStatistics) {
  Stream stream;
  Tensor tensor = Tensor::empty({1 << 18}, DType::f32, stream);
  fill_uniform(tensor, {.low = -2.0f, .high = 3.0f, .seed = 2024}, stream);
  const std::vector<float> values = tensor.to_vector<float>(stream);
  const auto [low, high] = std::ranges::minmax(values);
  EXPECT_GE(low, -2.0f);
  EXPECT_LT(high, 3.0f);
  // Standard error of the mean: 5 / sqrt(12 * 2^18) = 0.0028; allow five of them.
  const Moments m = moments(values);
  EXPECT_NEAR(m.mean, 0.5, 0.015);
  EXPECT_NEAR(m.stddev, 5.0 / std::sqrt(12.0), 0.01);
}

TEST_F(RandomTest, NormalStatistics) {
  Stream stream;
  Tensor tensor = Tensor::empty({1 << 18}, DType::f32, stream);
  fill_normal(tensor, {.mean = 1.0f, .stddev = 2.0f, .seed = 31337}, stream);
  const std::vector<float> values = tensor.to_vector<float>(stream);
  // Standard errors: 2 / 512 = 0.0039 for the mean, 2 / sqrt(2 * 2^18) = 0.0028 for the
  // standard deviation; allow five of them.
  const Moments m = moments(values);
  EXPECT_NEAR(m.mean, 1.0, 0.02);
  EXPECT_NEAR(m.stddev, 2.0, 0.015);
  const auto within_one_sigma = std::ranges::count_if(values, [](float v) { return std::abs(v - 1.0f) < 2.0f; });
  EXPECT_NEAR(static_cast<double>(within_one_sigma) / static_cast<double>(values.size()), 0.6827, 0.005);
}

TEST(Random, RefusesIntegerTensorsAndBadParameters) {
  Tensor ints = Tensor::empty_host({4}, DType::i32);
  EXPECT_THAT([&] { fill_uniform(ints, {}, nullptr); },
              ThrowsMessage<InvalidArgument>(
                  HasSubstr("needs a floating-point tensor (f32, f16, bf16), got dtype i32")));
  Tensor floats = Tensor::empty_host({4}, DType::f32);
  EXPECT_THAT([&] { fill_uniform(floats, {.low = 1.0f, .high = 0.0f}, nullptr); },
              ThrowsMessage<InvalidArgument>(HasSubstr("needs finite low <= high, got low 1 and high 0")));
  EXPECT_THROW(fill_normal(floats, {.stddev = -1.0f}, nullptr), InvalidArgument);
  EXPECT_THROW(fill_normal(floats, {.offset = ~0ull}, nullptr), InvalidArgument);
}

TEST_F(RandomTest, RefusesTheDefaultStreamForDeviceTensors) {
  Stream stream;
  Tensor device = Tensor::empty({4}, DType::f32, stream);
  EXPECT_THAT([&] { fill_uniform(device, {}, nullptr); }, ThrowsMessage<InvalidArgument>(HasSubstr("no stream given")));
}

}  // namespace
}  // namespace strata
