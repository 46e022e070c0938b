// The per-channel sums of kernels/channel_reduction.cuh (batch norm's statistics and backward
// sums, conv2d's bias gradient): the number of chains per channel growing with the work and
// bounded both ways, and, at shapes where the chains step across images and planes in every
// way (more chains than a plane holds, fewer, a plane that is a multiple of them, more
// channels than a channels-last tile), sums within a float rounding of the double sums of the
// values, and the same bits from a channels-last input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/channel_reduction.h"
#include "strata/core/memory_format.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/kernels/batch_norm2d.h"
#include "strata/kernels/conv2d.h"
#include "tests/kernels/device_values.h"
#include "tests/kernels/layout_bits.h"
#include "tests/support/device_test.h"
#include "tests/support/storage_dtypes.h"

namespace strata::kernels {
namespace {

using channel_reduction::chains_for;
using channel_reduction::kMaxChains;
using channel_reduction::kMinChains;
using testing::poisoned_in;
using testing::same_bits;

constexpr MemoryFormat kContiguous = MemoryFormat::contiguous;
constexpr MemoryFormat kChannelsLast = MemoryFormat::channels_last;

TEST(ChannelReductionChains, GrowWithTheWorkUpToTheTargetThreads) {
  // 64 channels of 512 x 32 x 32 (airbench94's first block): 4096 chains, 2^18 threads.
  EXPECT_EQ(chains_for(64, 512 * 32 * 32), 4096);
  EXPECT_EQ(chains_for(256, 512 * 16 * 16), 1024);
  EXPECT_EQ(chains_for(256, 512 * 8 * 8), 1024);
  // Many channels fill the GPU with the fewest chains; few values per channel need no more.
  EXPECT_EQ(chains_for(4096, 1 << 20), kMinChains);
  EXPECT_EQ(chains_for(3, 100), kMinChains);
  EXPECT_EQ(chains_for(3, 16383), kMinChains);
  EXPECT_EQ(chains_for(3, 16384), 2 * kMinChains) << "2P chains of 32 values each";
  EXPECT_EQ(chains_for(1, std::int64_t{1} << 40), kMaxChains);
  for (const std::int64_t channels : {1, 3, 64, 100, 1000, 5000}) {
    for (const std::int64_t count : {1, 255, 4096, 100000, 1 << 22}) {
      const std::int64_t chains = chains_for(channels, count);
      EXPECT_EQ(chains & (chains - 1), 0) << "a power of two";
      EXPECT_GE(chains, kMinChains);
      EXPECT_LE(chains, kMaxChains);
      if (chains > kMinChains) {
        EXPECT_LE(channels * chains, channel_reduction::kTargetThreads);
        EXPECT_GE(count, chains * channel_reduction::kMinValuesPerChain);
      }
    }
  }
}

struct ReductionCase {
  Shape shape;
  std::int64_t chains;  // chains_for's, checked, so that the case covers what it says
  const char* covers;
};

const ReductionCase kCases[] = {
    {{5, 3, 67, 61}, 512, "a plane of 4087 values, no multiple of the 512 chains"},
    {{300, 2, 3, 5}, 256, "planes of 15: a step crosses 17 images"},
    {{8, 3, 64, 64}, 1024, "planes of 4096, a multiple of the 1024 chains"},
    {{64, 37, 4, 4}, 256, "37 channels: two channels-last tiles, the second partial"},
};

// Per channel of a (N, C, H, W) tensor's values in logical order: the sum in double.
std::vector<double> channel_sums(const std::vector<double>& values, const Shape& shape) {
  const std::int64_t channels = shape[1], plane = shape[2] * shape[3];
  std::vector<double> sums(static_cast<std::size_t>(channels), 0.0);
  for (std::size_t i = 0; i < values.size(); ++i) {
    sums[static_cast<std::size_t>((static_cast<std::int64_t>(i) / plane) % channels)] += values[i];
  }
  return sums;
}

// |actual - expected| within about a float rounding of expected's magnitude (the kernel's sum
// is a double sum in another order, rounded once).
void expect_within_a_rounding(const std::vector<float>& actual, const std::vector<double>& expected,
                              const char* what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (std::size_t c = 0; c < expected.size(); ++c) {
    EXPECT_NEAR(actual[c], expected[c], 1e-7 * (std::abs(expected[c]) + 1.0)) << what << " of channel " << c;
  }
}

class ChannelReductionTest : public testing::DeviceTest, public ::testing::WithParamInterface<ReductionCase> {};

TEST_P(ChannelReductionTest, BiasGradientIsTheDoubleSumInEitherLayout) {
  const ReductionCase& c = GetParam();
  ASSERT_EQ(chains_for(c.shape[1], c.shape[0] * c.shape[2] * c.shape[3]), c.chains);
  const cudaStream_t stream = current_stream();
  const Shape bias{c.shape[1]};
  const Tensor dL_dy = testing::random_in(81, c.shape, DType::f32, kContiguous, stream);
  Tensor contiguous = poisoned_in(bias, DType::f32, kContiguous, stream);
  conv2d_backward_bias(dL_dy, contiguous, stream);
  expect_within_a_rounding(contiguous.to_vector<float>(stream),
                           channel_sums(testing::storage_doubles(dL_dy, stream), c.shape), "dL_dbias");
  for (const DType dtype : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const Tensor stored = dL_dy.to_dtype(dtype, stream);
    Tensor expected = poisoned_in(bias, dtype, kContiguous, stream);
    conv2d_backward_bias(stored, expected, stream);
    Tensor actual = poisoned_in(bias, dtype, kContiguous, stream);
    conv2d_backward_bias(stored.to_memory_format(kChannelsLast, stream), actual, stream);
    EXPECT_TRUE(same_bits(actual, expected, stream));
  }
}

struct BatchNormRun {
  BatchNormSaved saved;
  BatchNormGradients gradients;
};

// batch_norm2d's training forward and backward on the case's seeded x (values in [-1, 3), a
// mean away from zero) and dL/dy, both in format.
BatchNormRun run_batch_norm(const Shape& shape, MemoryFormat format, cudaStream_t stream) {
  const Shape channels{shape[1]};
  std::vector<float> x_values = testing::random_uniform(82, static_cast<std::size_t>(shape.numel()));
  for (float& value : x_values) value = 2.0f * value + 1.0f;
  const Tensor x = testing::device_tensor(x_values, shape, stream).to_memory_format(format, stream);
  const Tensor dL_dy = testing::random_in(83, shape, DType::f32, format, stream);
  const Tensor weight = testing::random_device(84, channels, 0.5f, 1.5f);
  const Tensor bias = testing::random_device(85, channels);
  BatchNormRunningStats running{};
  const BatchNormParams params{};
  BatchNormRun run{.saved = {poisoned_in(channels, DType::f32, kContiguous, stream),
                             poisoned_in(channels, DType::f32, kContiguous, stream)},
                   .gradients = {.dL_dx = poisoned_in(shape, DType::f32, format, stream),
                                 .dL_dweight = poisoned_in(channels, DType::f32, kContiguous, stream),
                                 .dL_dbias = poisoned_in(channels, DType::f32, kContiguous, stream)}};
  Tensor y = poisoned_in(shape, DType::f32, format, stream);
  batch_norm2d_forward_training(x, weight, bias, running, y, run.saved, params, stream);
  batch_norm2d_backward(dL_dy, x, weight, run.saved, run.gradients, params, stream);
  return run;
}

TEST_P(ChannelReductionTest, BatchNormSumsAreTheDoubleSumsInEitherLayout) {
  const ReductionCase& c = GetParam();
  const cudaStream_t stream = current_stream();
  const BatchNormRun contiguous = run_batch_norm(c.shape, kContiguous, stream);
  const BatchNormRun channels_last = run_batch_norm(c.shape, kChannelsLast, stream);
  EXPECT_TRUE(same_bits(channels_last.saved.mean, contiguous.saved.mean, stream)) << "saved mean";
  EXPECT_TRUE(same_bits(channels_last.saved.invstd, contiguous.saved.invstd, stream)) << "saved invstd";
  EXPECT_TRUE(same_bits(channels_last.gradients.dL_dweight, contiguous.gradients.dL_dweight, stream)) << "dL_dweight";
  EXPECT_TRUE(same_bits(channels_last.gradients.dL_dbias, contiguous.gradients.dL_dbias, stream)) << "dL_dbias";
  EXPECT_TRUE(same_bits(channels_last.gradients.dL_dx, contiguous.gradients.dL_dx, stream)) << "dL_dx";

  // The statistics and parameter gradients against double sums of the same values.
  const std::int64_t count = c.shape[0] * c.shape[2] * c.shape[3];
  std::vector<float> x_values = testing::random_uniform(82, static_cast<std::size_t>(c.shape.numel()));
  std::vector<double> x(x_values.size());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<double>(2.0f * x_values[i] + 1.0f);
  const std::vector<double> dy = testing::to_doubles(testing::random_uniform(83, x.size()));
  const std::vector<double> x_sums = channel_sums(x, c.shape);
  std::vector<double> mean(x_sums.size()), squared_deviations(x.size()), dy_x_hat(x.size());
  for (std::size_t channel = 0; channel < mean.size(); ++channel) {
    mean[channel] = x_sums[channel] / static_cast<double>(count);
  }
  const std::int64_t plane = c.shape[2] * c.shape[3];
  const auto channel_of = [&](std::size_t i) {
    return static_cast<std::size_t>((static_cast<std::int64_t>(i) / plane) % c.shape[1]);
  };
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double deviation = x[i] - mean[channel_of(i)];
    squared_deviations[i] = deviation * deviation;
  }
  const std::vector<double> variance_sums = channel_sums(squared_deviations, c.shape);
  std::vector<double> invstd(mean.size());
  for (std::size_t channel = 0; channel < mean.size(); ++channel) {
    invstd[channel] = 1.0 / std::sqrt(variance_sums[channel] / static_cast<double>(count) + 1e-5);
  }
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::size_t channel = channel_of(i);
    dy_x_hat[i] = dy[i] * (x[i] - mean[channel]) * invstd[channel];
  }
  expect_within_a_rounding(contiguous.saved.mean.to_vector<float>(stream), mean, "saved mean");
  expect_within_a_rounding(contiguous.saved.invstd.to_vector<float>(stream), invstd, "saved invstd");
  expect_within_a_rounding(contiguous.gradients.dL_dbias.to_vector<float>(stream), channel_sums(dy, c.shape),
                           "dL_dbias");
  // x_hat from the float mean and invstd the forward saved: a few float roundings per value.
  const std::vector<double> weight_gradient = channel_sums(dy_x_hat, c.shape);
  const std::vector<float> dL_dweight = contiguous.gradients.dL_dweight.to_vector<float>(stream);
  for (std::size_t channel = 0; channel < weight_gradient.size(); ++channel) {
    EXPECT_NEAR(dL_dweight[channel], weight_gradient[channel], 1e-5 * std::sqrt(static_cast<double>(count)))
        << "dL_dweight of channel " << channel;
  }
}

std::string case_name(const ::testing::TestParamInfo<ReductionCase>& param_info) {
  const Shape& s = param_info.param.shape;
  return "N" + std::to_string(s[0]) + "C" + std::to_string(s[1]) + "H" + std::to_string(s[2]) + "W" +
         std::to_string(s[3]);
}

INSTANTIATE_TEST_SUITE_P(Shapes, ChannelReductionTest, ::testing::ValuesIn(kCases), case_name);

}  // namespace
}  // namespace strata::kernels
