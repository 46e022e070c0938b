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

template <typename Index>
constexpr Index kMaxIndex = std::numeric_limits<Index>::max();

// Numerators that probe a divisor's rounding: small ones, both sides of multiples of it near
// the bottom, the middle and the top of the range, and the largest index itself.
template <typename Index>
std::vector<Index> probing_numerators(Index divisor, std::mt19937_64& random) {
  constexpr Index kMax = kMaxIndex<Index>;
  std::vector<Index> numerators = {0, 1, 2, kMax, kMax - 1};
  const Index top_multiple = kMax / divisor;
  std::uniform_int_distribution<Index> any_multiple(0, top_multiple);
  for (const Index multiple :
       {Index{1}, Index{2}, Index(top_multiple / 2), Index(top_multiple - 1), top_multiple, any_multiple(random),
        any_multiple(random)}) {
    if (multiple < 1 || multiple > top_multiple) continue;
    const Index base = multiple * divisor;  // no overflow: multiple <= max / divisor
    for (const Index offset : {Index{-1}, Index{0}, Index{1}, Index(divisor - 1)}) {
      if (offset < 0 || base <= kMax - offset) numerators.push_back(base + offset);
    }
  }
  std::uniform_int_distribution<Index> any_index(0, kMax);
  for (int i = 0; i < 8; ++i) numerators.push_back(any_index(random));
  return numerators;
}

// Divisors at the edges of every bit width (2^k - 1, 2^k, 2^k + 1) and random ones of each.
template <typename Index>
std::vector<Index> edge_divisors(std::mt19937_64& random) {
  constexpr Index kMax = kMaxIndex<Index>;
  std::vector<Index> divisors = {kMax, kMax - 1, 3, 5, 7, 9, 10, 12, 25, 49, 641, 6700417};
  for (int bits = 1; bits < static_cast<int>(8 * sizeof(Index)) - 1; ++bits) {
    const Index power = Index{1} << bits;
    divisors.insert(divisors.end(), {Index(power - 1), power, Index(power + 1)});
    divisors.push_back(std::uniform_int_distribution<Index>(power / 2 + 1, power)(random));
  }
  return divisors;
}

template <typename Index>
void expect_every_small_division_exact() {
  for (Index divisor = 1; divisor <= 600; ++divisor) {
    const BasicIndexDivider<Index> divider(divisor);
    for (Index n = 0; n < 5000; ++n) {
      const QuotientRemainderOf<Index> result = divider.divide_with_remainder(n);
      ASSERT_EQ(result.quotient, n / divisor) << n << " / " << divisor;
      ASSERT_EQ(result.remainder, n % divisor) << n << " % " << divisor;
    }
  }
}

template <typename Index>
void expect_edge_divisions_exact(std::uint64_t seed) {
  std::mt19937_64 random(seed);
  for (const Index divisor : edge_divisors<Index>(random)) {
    const BasicIndexDivider<Index> divider(divisor);
    EXPECT_EQ(divider.divisor(), divisor);
    for (const Index n : probing_numerators(divisor, random)) {
      const QuotientRemainderOf<Index> result = divider.divide_with_remainder(n);
      ASSERT_EQ(result.quotient, n / divisor) << n << " / " << divisor;
      ASSERT_EQ(result.remainder, n % divisor) << n << " % " << divisor;
    }
  }
}

TEST(IndexDivider, EqualsDivisionForEverySmallDivisorAndNumerator) {
  expect_every_small_division_exact<std::int64_t>();
  expect_every_small_division_exact<std::int32_t>();
}

TEST(IndexDivider, EqualsDivisionAtTheEdgesOfTheRange) {
  expect_edge_divisions_exact<std::int64_t>(20261201);
  expect_edge_divisions_exact<std::int32_t>(20261203);
}

TEST(IndexDivider, DefaultDividesByOne) {
  const IndexDivider divider;
  EXPECT_EQ(divider.divisor(), 1);
  EXPECT_EQ(divider.divide(0), 0);
  EXPECT_EQ(divider.divide(kMaxIndex<std::int64_t>), kMaxIndex<std::int64_t>);
  EXPECT_EQ(IndexDivider32().divide(kMaxIndex<std::int32_t>), kMaxIndex<std::int32_t>);
}

TEST(IndexDivider, RejectsDivisorsBelowOne) {
  for (const std::int64_t divisor : {std::int64_t{0}, std::int64_t{-1}, std::numeric_limits<std::int64_t>::min()}) {
    const std::string message =
        testing::invalid_argument_message([&] { [[maybe_unused]] const IndexDivider divider(divisor); });
    EXPECT_NE(message.find("divisor " + std::to_string(divisor) + " is not positive"), std::string::npos) << message;
  }
  const std::string message =
      testing::invalid_argument_message([] { [[maybe_unused]] const IndexDivider32 divider(0); });
  EXPECT_NE(message.find("divisor 0 is not positive"), std::string::npos) << message;
}

// quotients[i], remainders[i] = numerators[i] / d, % d, by the device's form of the divider.
template <typename Index>
__global__ void divide_kernel(const Index* numerators /* (count) */, std::int64_t count,
                              BasicIndexDivider<Index> divider, Index* quotients /* (count) */,
                              Index* remainders /* (count) */) {
  for (std::int64_t i = global_thread_index(); i < count; i += global_thread_count()) {
    const QuotientRemainderOf<Index> result = divider.divide_with_remainder(numerators[i]);
    quotients[i] = result.quotient;
    remainders[i] = result.remainder;
  }
}

template <typename Index>
void expect_device_divisions_exact(std::uint64_t seed) {
  const cudaStream_t stream = current_stream();
  std::mt19937_64 random(seed);
  std::vector<Index> divisors = edge_divisors<Index>(random);
  for (Index divisor = 1; divisor <= 40; ++divisor) divisors.push_back(divisor);
  for (const Index divisor : divisors) {
    std::vector<Index> numerators = probing_numerators(divisor, random);
    for (Index n = 0; n < 200; ++n) numerators.push_back(n);
    const auto count = static_cast<std::int64_t>(numerators.size());
    const Tensor device_numerators = Tensor::from_vector(numerators, Shape{count}).to_device(stream);
    Tensor quotients = Tensor::empty(Shape{count}, dtype_of<Index>, stream);
    Tensor remainders = Tensor::empty(Shape{count}, dtype_of<Index>, stream);
    launch(divide_kernel<Index>, LaunchConfig{.grid = 2, .block = 64, .stream = stream, .name = "divide_kernel"},
           memory_elements<Index>(device_numerators), count, BasicIndexDivider<Index>(divisor),
           memory_elements<Index>(quotients), memory_elements<Index>(remainders));
    const std::vector<Index> device_quotients = quotients.to_vector<Index>(stream);
    const std::vector<Index> device_remainders = remainders.to_vector<Index>(stream);
    for (std::size_t i = 0; i < numerators.size(); ++i) {
      ASSERT_EQ(device_quotients[i], numerators[i] / divisor) << numerators[i] << " / " << divisor;
      ASSERT_EQ(device_remainders[i], numerators[i] % divisor) << numerators[i] << " % " << divisor;
    }
  }
}

using IndexDividerDeviceTest = testing::DeviceTest;

TEST_F(IndexDividerDeviceTest, EqualsDivisionInAKernel) {
  expect_device_divisions_exact<std::int64_t>(20261202);
  expect_device_divisions_exact<std::int32_t>(20261204);
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
