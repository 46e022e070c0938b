// The kernels' index arithmetic. IndexDivider (kernels/index_divider.h), their division by a
// divisor fixed at launch: every quotient and remainder equal to n / d and n % d, on the host
// over all small divisors and numerators and at the edges of the 63-bit range (divisors around
// every power of two, numerators around multiples of them, up to INT64_MAX), and on the device
// through a kernel (there __umul64hi, on the host 128-bit arithmetic). ChannelIndexer and
// PlaneIndexer (kernels/channel_indexer.h, plane_indexer.h), which divide with it, against the
// layouts' strides.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "core/launch.cuh"
#include "kernels/channel_indexer.h"
#include "kernels/common.cuh"
#include "kernels/index_divider.h"
#include "kernels/memory_elements.h"
#include "kernels/plane_indexer.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "tests/kernels/device_values.h"
#include "tests/support/device_test.h"

namespace strata::kernels {
namespace {

constexpr std::int64_t kMaxIndex = std::numeric_limits<std::int64_t>::max();

// Numerators that probe a divisor's rounding: small ones, both sides of multiples of it near
// the bottom, the middle and the top of the range, and INT64_MAX itself.
std::vector<std::int64_t> probing_numerators(std::int64_t divisor, std::mt19937_64& random) {
  std::vector<std::int64_t> numerators = {0, 1, 2, kMaxIndex, kMaxIndex - 1};
  const std::int64_t top_multiple = kMaxIndex / divisor;
  std::uniform_int_distribution<std::int64_t> any_multiple(0, top_multiple);
  for (const std::int64_t multiple : {std::int64_t{1}, std::int64_t{2}, top_multiple / 2, top_multiple - 1,
                                      top_multiple, any_multiple(random), any_multiple(random)}) {
    if (multiple < 1 || multiple > top_multiple) continue;
    const std::int64_t base = multiple * divisor;  // no overflow: multiple <= INT64_MAX / divisor
    for (const std::int64_t offset : {std::int64_t{-1}, std::int64_t{0}, std::int64_t{1}, divisor - 1}) {
      if (offset < 0 || base <= kMaxIndex - offset) numerators.push_back(base + offset);
    }
  }
  std::uniform_int_distribution<std::int64_t> any_index(0, kMaxIndex);
  for (int i = 0; i < 8; ++i) numerators.push_back(any_index(random));
  return numerators;
}

// Divisors at the edges of every bit width (2^k - 1, 2^k, 2^k + 1) and random ones of each.
std::vector<std::int64_t> edge_divisors(std::mt19937_64& random) {
  std::vector<std::int64_t> divisors = {kMaxIndex, kMaxIndex - 1, 3, 5, 7, 9, 10, 12, 25, 49, 641, 6700417};
  for (int bits = 1; bits <= 62; ++bits) {
    const std::int64_t power = std::int64_t{1} << bits;
    divisors.insert(divisors.end(), {power - 1, power, power + 1});
    divisors.push_back(std::uniform_int_distribution<std::int64_t>(power / 2 + 1, power)(random));
  }
  return divisors;
}

TEST(IndexDivider, EqualsDivisionForEverySmallDivisorAndNumerator) {
  for (std::int64_t divisor = 1; divisor <= 600; ++divisor) {
    const IndexDivider divider(divisor);
    for (std::int64_t n = 0; n < 5000; ++n) {
      const QuotientRemainder result = divider.divide_with_remainder(n);
      ASSERT_EQ(result.quotient, n / divisor) << n << " / " << divisor;
      ASSERT_EQ(result.remainder, n % divisor) << n << " % " << divisor;
    }
  }
}

TEST(IndexDivider, EqualsDivisionAtTheEdgesOfTheRange) {
  std::mt19937_64 random(20261201);
  for (const std::int64_t divisor : edge_divisors(random)) {
    const IndexDivider divider(divisor);
    EXPECT_EQ(divider.divisor(), divisor);
    for (const std::int64_t n : probing_numerators(divisor, random)) {
      const QuotientRemainder result = divider.divide_with_remainder(n);
      ASSERT_EQ(result.quotient, n / divisor) << n << " / " << divisor;
      ASSERT_EQ(result.remainder, n % divisor) << n << " % " << divisor;
    }
  }
}

TEST(IndexDivider, DefaultDividesByOne) {
  const IndexDivider divider;
  EXPECT_EQ(divider.divisor(), 1);
  EXPECT_EQ(divider.divide(0), 0);
  EXPECT_EQ(divider.divide(kMaxIndex), kMaxIndex);
}

TEST(IndexDivider, RejectsDivisorsBelowOne) {
  for (const std::int64_t divisor : {std::int64_t{0}, std::int64_t{-1}, std::numeric_limits<std::int64_t>::min()}) {
    const std::string message = testing::invalid_argument_message([&] { [[maybe_unused]] const IndexDivider divider(divisor); });
    EXPECT_NE(message.find("divisor " + std::to_string(divisor) + " is not positive"), std::string::npos) << message;
  }
}

// quotients[i], remainders[i] = numerators[i] / d, % d, by the device's form of the divider.
__global__ void divide_kernel(const std::int64_t* numerators /* (count) */, std::int64_t count, IndexDivider divider,
                              std::int64_t* quotients /* (count) */, std::int64_t* remainders /* (count) */) {
  for (std::int64_t i = global_thread_index(); i < count; i += global_thread_count()) {
    const QuotientRemainder result = divider.divide_with_remainder(numerators[i]);
    quotients[i] = result.quotient;
    remainders[i] = result.remainder;
  }
}

using IndexDividerDeviceTest = testing::DeviceTest;

TEST_F(IndexDividerDeviceTest, EqualsDivisionInAKernel) {
  const cudaStream_t stream = current_stream();
  std::mt19937_64 random(20261202);
  std::vector<std::int64_t> divisors = edge_divisors(random);
  for (std::int64_t divisor = 1; divisor <= 40; ++divisor) divisors.push_back(divisor);
  for (const std::int64_t divisor : divisors) {
    std::vector<std::int64_t> numerators = probing_numerators(divisor, random);
    for (std::int64_t n = 0; n < 200; ++n) numerators.push_back(n);
    const auto count = static_cast<std::int64_t>(numerators.size());
    const Tensor device_numerators = Tensor::from_vector(numerators, Shape{count}).to_device(stream);
    Tensor quotients = Tensor::empty(Shape{count}, DType::i64, stream);
    Tensor remainders = Tensor::empty(Shape{count}, DType::i64, stream);
    launch(divide_kernel, LaunchConfig{.grid = 2, .block = 64, .stream = stream, .name = "divide_kernel"},
           memory_elements<std::int64_t>(device_numerators), count, IndexDivider(divisor),
           memory_elements<std::int64_t>(quotients), memory_elements<std::int64_t>(remainders));
    const std::vector<std::int64_t> device_quotients = quotients.to_vector<std::int64_t>(stream);
    const std::vector<std::int64_t> device_remainders = remainders.to_vector<std::int64_t>(stream);
    for (std::size_t i = 0; i < numerators.size(); ++i) {
      ASSERT_EQ(device_quotients[i], numerators[i] / divisor) << numerators[i] << " / " << divisor;
      ASSERT_EQ(device_remainders[i], numerators[i] % divisor) << numerators[i] << " % " << divisor;
    }
  }
}

// Every memory index of odd-sized (N, C, H, W) tensors in both layouts, against the channel
// read off the strides; an empty tensor's indexer constructs (and maps nothing).
TEST(ChannelIndexer, GivesEachIndexTheChannelOfItsLayout) {
  struct Dims {
    std::int64_t n, c, h, w;
  };
  for (const Dims dims : {Dims{2, 3, 5, 7}, Dims{1, 1, 3, 3}, Dims{3, 8, 1, 1}, Dims{2, 5, 2, 1}}) {
    const std::int64_t plane = dims.h * dims.w;
    const ChannelIndexer contiguous(dims.c, plane, false);
    const ChannelIndexer channels_last(dims.c, plane, true);
    for (std::int64_t n = 0; n < dims.n; ++n) {
      for (std::int64_t c = 0; c < dims.c; ++c) {
        for (std::int64_t pixel = 0; pixel < plane; ++pixel) {
          ASSERT_EQ(contiguous.channel_of((n * dims.c + c) * plane + pixel), c) << n << ", " << c << ", " << pixel;
          ASSERT_EQ(channels_last.channel_of((n * plane + pixel) * dims.c + c), c) << n << ", " << c << ", " << pixel;
        }
      }
    }
  }
  EXPECT_NO_THROW(ChannelIndexer(0, 0, false));
  EXPECT_NO_THROW(ChannelIndexer(3, 0, true));
}

// Every memory index of odd-sized (N, C, H, W) tensors in both layouts maps to the pixel whose
// element lies there: the index is plane_start(plane, H * W) + (row * W + column) * step, the
// coordinates in range, and channel_pixel(k, c) the same pixel for k = n * H * W + row * W +
// column. Brute force over the strides of each layout.
TEST(PlaneIndexer, InvertsBothLayouts) {
  struct Dims {
    std::int64_t n, c, h, w;
  };
  for (const Dims dims : {Dims{1, 1, 1, 1}, Dims{2, 3, 5, 7}, Dims{3, 5, 1, 4}, Dims{2, 1, 6, 3}, Dims{1, 7, 3, 1}}) {
    for (const bool channels_last : {false, true}) {
      const PlaneLayout layout{.channels = dims.c, .channels_last = channels_last};
      const PlaneIndexer indexer(layout, dims.h, dims.w);
      const std::int64_t plane_size = dims.h * dims.w;
      for (std::int64_t index = 0; index < dims.n * dims.c * plane_size; ++index) {
        const PlanePixel at = indexer.pixel(index);
        const std::int64_t n = at.plane / dims.c;
        const std::int64_t c = at.plane % dims.c;
        const std::int64_t expected_index =
            channels_last ? ((n * dims.h + at.row) * dims.w + at.column) * dims.c + c
                          : ((n * dims.c + c) * dims.h + at.row) * dims.w + at.column;
        ASSERT_EQ(expected_index, index) << "channels_last " << channels_last << ", index " << index;
        ASSERT_TRUE(at.plane < dims.n * dims.c && at.row < dims.h && at.column < dims.w);
        ASSERT_EQ(indexer.plane_start(at.plane, plane_size) + (at.row * dims.w + at.column) * indexer.element_step(),
                  index);
        const PlanePixel same = indexer.channel_pixel(n * plane_size + at.row * dims.w + at.column, c);
        ASSERT_TRUE(same.plane == at.plane && same.row == at.row && same.column == at.column) << index;
        const QuotientRemainder n_c = indexer.image_and_channel(at.plane);
        ASSERT_TRUE(n_c.quotient == n && n_c.remainder == c) << index;
      }
      // Another tensor of the op, of 2 x 2 planes, starts its planes by the same rule:
      // plane (1, C - 1) at 4 * (2C - 1) contiguous, at 4C + C - 1 channels-last.
      const std::int64_t last_of_image_one = 2 * dims.c - 1;
      EXPECT_EQ(indexer.plane_start(last_of_image_one, 4), channels_last ? 5 * dims.c - 1 : 4 * last_of_image_one);
    }
  }
}

}  // namespace
}  // namespace strata::kernels
