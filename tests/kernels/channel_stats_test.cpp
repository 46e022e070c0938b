// Per-channel statistics computed by the producers of batch norm's input (conv2d_forward on
// the CUDA-core tiles and the tensor cores, max_pool2d_forward) and consumed by the training
// forwards of batch_norm2d and batch_norm2d_activation (strata/kernels/channel_stats.h).
// Producers, in f32, bf16 and f16 storage, odd sizes and channel counts that are no multiple
// of a tile: y the same bits with and without statistics; the partials, combined on the host
// in double, within a tight bound of the double statistics of y as stored (count exact); a
// poisoned workspace fully overwritten, with the bits of a fresh one; bit-identical partials
// under shuffled simulator schedules (and run to run on a GPU). Consumers: saved and running
// statistics and y from precomputed statistics within a few float roundings of the usual path
// (the summation order differs, so not the same bits), a mean far from zero, deterministic;
// argument errors of both sides.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>

#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/kernels/batch_norm2d.h"
#include "strata/kernels/batch_norm2d_activation.h"
#include "strata/kernels/channel_stats.h"
#include "strata/kernels/conv2d.h"
#include "strata/kernels/pool2d.h"
#include "tests/kernels/device_values.h"
#include "tests/support/compare.h"

namespace strata::kernels {
namespace {

using ::testing::HasSubstr;
using testing::bit_patterns;
using testing::device_tensor;
using testing::random_uniform;

constexpr DType kDtypes[] = {DType::f32, DType::bf16, DType::f16};

// A device tensor of dtype holding values rounded to it (the conversion kernel's rounding).
Tensor stored_tensor(const std::vector<float>& values, const Shape& shape, DType dtype, cudaStream_t stream) {
  const Tensor f32 = device_tensor(values, shape, stream);
  return dtype == DType::f32 ? f32 : f32.to_dtype(dtype, stream);
}

// The elements of a floating device tensor as float (exact).
std::vector<float> values_of(const Tensor& tensor, cudaStream_t stream) {
  return tensor.dtype() == DType::f32 ? tensor.to_vector<float>(stream)
                                      : tensor.to_dtype(DType::f32, stream).to_vector<float>(stream);
}

Tensor poisoned(const Shape& shape, DType dtype, cudaStream_t stream) {
  return stored_tensor(std::vector<float>(static_cast<std::size_t>(shape.numel()), testing::poison_value()), shape,
                       dtype, stream);
}

// Per channel: count, mean and biased variance.
struct Moments {
  std::vector<double> count;
  std::vector<double> mean;
  std::vector<double> variance;
};

// The double statistics of y (N, C, H, W) per channel, two passes.
Moments reference_moments(const std::vector<float>& y, const Shape& shape) {
  const std::int64_t channels = shape[1];
  const std::int64_t plane = shape[2] * shape[3];
  Moments out{std::vector<double>(channels), std::vector<double>(channels), std::vector<double>(channels)};
  for (std::int64_t c = 0; c < channels; ++c) {
    double sum = 0.0;
    for (std::int64_t n = 0; n < shape[0]; ++n) {
      for (std::int64_t k = 0; k < plane; ++k) sum += y[static_cast<std::size_t>((n * channels + c) * plane + k)];
    }
    const double count = static_cast<double>(shape[0] * plane);
    const double mean = sum / count;
    double m2 = 0.0;
    for (std::int64_t n = 0; n < shape[0]; ++n) {
      for (std::int64_t k = 0; k < plane; ++k) {
        const double d = y[static_cast<std::size_t>((n * channels + c) * plane + k)] - mean;
        m2 += d * d;
      }
    }
    out.count[c] = count;
    out.mean[c] = mean;
    out.variance[c] = m2 / count;
  }
  return out;
}

// The partials (6, slots, C) combined per channel in double about the first slot's shift.
Moments combined_partials(const std::vector<float>& partials, std::int64_t slots, std::int64_t channels) {
  Moments out{std::vector<double>(channels), std::vector<double>(channels), std::vector<double>(channels)};
  const auto at = [&](std::int64_t row, std::int64_t slot, std::int64_t c) {
    return static_cast<double>(partials[static_cast<std::size_t>((row * slots + slot) * channels + c)]);
  };
  for (std::int64_t c = 0; c < channels; ++c) {
    double count = 0.0, sum = 0.0, sum_of_squares = 0.0;
    const double shift = at(1, 0, c);
    for (std::int64_t slot = 0; slot < slots; ++slot) {
      const double n = at(0, slot, c);
      const double d = at(1, slot, c) - shift;
      const double slot_sum = at(2, slot, c) + at(3, slot, c);
      count += n;
      sum += slot_sum + n * d;
      sum_of_squares += at(4, slot, c) + at(5, slot, c) + d * (2.0 * slot_sum + n * d);
    }
    out.count[c] = count;
    out.mean[c] = shift + sum / count;
    out.variance[c] = sum_of_squares / count - (sum / count) * (sum / count);
  }
  return out;
}

// The producer's statistics against the double statistics of its stored output: counts exact,
// mean and variance within 2^-36 of the spread (each slot's sums, in double about one of its
// values, keep about 48 bits as hi + lo floats).
void expect_statistics_of(const Tensor& y, const ChannelStatistics& statistics, cudaStream_t stream) {
  ASSERT_TRUE(statistics.partials.defined());
  ASSERT_EQ(statistics.partials.shape().rank(), 3);
  ASSERT_EQ(statistics.partials.size(0), kChannelStatisticsRows);
  ASSERT_EQ(statistics.partials.size(2), y.size(1));
  const Moments expected = reference_moments(values_of(y, stream), y.shape());
  const Moments actual = combined_partials(statistics.partials.to_vector<float>(stream), statistics.partials.size(1),
                                           y.size(1));
  for (std::int64_t c = 0; c < y.size(1); ++c) {
    const std::size_t i = static_cast<std::size_t>(c);
    EXPECT_EQ(actual.count[i], expected.count[i]) << "channel " << c;
    const double spread = std::sqrt(expected.variance[i]);
    EXPECT_NEAR(actual.mean[i], expected.mean[i], std::ldexp(spread, -36) + std::ldexp(std::abs(expected.mean[i]), -50))
        << "channel " << c;
    EXPECT_NEAR(actual.variance[i], expected.variance[i], std::ldexp(expected.variance[i], -36)) << "channel " << c;
  }
}

// ---- conv2d_forward --------------------------------------------------------------------

struct ConvCase {
  std::string name;
  Shape x;       // (N, C, H, W)
  Shape weight;  // (K, C/groups, R, S)
  Conv2dParams params;
};

std::vector<ConvCase> conv_cases() {
  std::vector<ConvCase> cases = {
      // 32x32 tiles, K = 11 not a multiple of the tile, a partial last row of tiles
      {"small_tile", {3, 5, 7, 9}, {11, 5, 3, 3}, {.padding = {1, 1}}},
      // 64x64 tiles over two column tiles (K = 67) and strided
      {"large_tile", {2, 3, 9, 11}, {67, 3, 3, 3}, {.stride = {2, 1}, .padding = {1, 1}}},
      // depthwise: 128x8 tiles, 32 threads a channel column
      {"depthwise", {2, 4, 6, 5}, {4, 1, 3, 3}, {.padding = {1, 1}, .groups = 4}},
      // M <= 8 < N: 8x128 tiles, 4 values per channel
      {"few_rows", {1, 3, 2, 2}, {130, 3, 1, 1}, {}},
      // tensor cores: K = 70 over two 64-column tiles, the last row tile partial
      {"tensor_core", {2, 6, 7, 9}, {70, 6, 3, 3}, {.padding = {1, 1}, .math = ConvMath::bf16}},
      // tensor cores, grouped (8 channels a group)
      {"tensor_core_grouped", {2, 8, 5, 5}, {16, 4, 3, 3}, {.padding = {1, 1}, .groups = 2, .math = ConvMath::tf32}},
  };
  return cases;
}

struct ConvStatisticsCase {
  ConvCase conv;
  DType dtype;
};

class ConvStatistics : public ::testing::TestWithParam<ConvStatisticsCase> {};

struct ConvInputs {
  Tensor x, weight, bias;
};

ConvInputs conv_inputs(const ConvCase& conv, DType dtype, std::uint64_t seed, cudaStream_t stream) {
  const auto count = [](const Shape& shape) { return static_cast<std::size_t>(shape.numel()); };
  const Shape bias_shape{conv.weight[0]};
  return {stored_tensor(random_uniform(seed, count(conv.x)), conv.x, dtype, stream),
          stored_tensor(random_uniform(seed + 1, count(conv.weight), -0.5f, 0.5f), conv.weight, dtype, stream),
          stored_tensor(random_uniform(seed + 2, count(bias_shape), 0.0f, 2.0f), bias_shape, dtype, stream)};
}

TEST_P(ConvStatistics, AreThoseOfTheStoredOutput) {
  const ConvStatisticsCase& p = GetParam();
  cudaStream_t stream = current_stream();
  const ConvInputs in = conv_inputs(p.conv, p.dtype, 41, stream);
  const Conv2dShape shape = conv2d_shape(p.conv.x, p.conv.weight, p.conv.params);
  EXPECT_EQ(conv2d_forward_uses_tensor_cores(shape), p.conv.params.math != ConvMath::fp32);

  const Tensor plain = conv2d_forward(in.x, in.weight, in.bias, p.conv.params, stream);
  ChannelStatistics statistics;
  Tensor y = poisoned(shape.output(), p.dtype, stream);
  conv2d_forward(in.x, in.weight, in.bias, y, p.conv.params, stream, &statistics);
  EXPECT_EQ(bit_patterns(values_of(y, stream)), bit_patterns(values_of(plain, stream))) << "y";
  expect_statistics_of(y, statistics, stream);

  // A poisoned workspace of the right shape: every element written, the same bits.
  ChannelStatistics reused{.partials = device_tensor(
                               std::vector<float>(static_cast<std::size_t>(statistics.partials.numel()),
                                                  testing::poison_value()),
                               statistics.partials.shape(), stream)};
  conv2d_forward(in.x, in.weight, in.bias, y, p.conv.params, stream, &reused);
  EXPECT_EQ(bit_patterns(reused.partials.to_vector<float>(stream)),
            bit_patterns(statistics.partials.to_vector<float>(stream)));
}

TEST_P(ConvStatistics, AreBitIdenticalUnderEverySchedule) {
  const ConvStatisticsCase& p = GetParam();
  cudaStream_t stream = current_stream();
  const ConvInputs in = conv_inputs(p.conv, p.dtype, 43, stream);
  const auto runs = testing::run_with_schedule_seeds<std::vector<std::uint32_t>>([&] {
    ChannelStatistics statistics;
    conv2d_forward(in.x, in.weight, in.bias, p.conv.params, stream, &statistics);
    return bit_patterns(statistics.partials.to_vector<float>(stream));
  });
  for (std::size_t run = 1; run < runs.size(); ++run) EXPECT_EQ(runs[run], runs[0]) << "schedule " << run;
}

std::vector<ConvStatisticsCase> conv_statistics_cases() {
  std::vector<ConvStatisticsCase> cases;
  for (const ConvCase& conv : conv_cases()) {
    for (const DType dtype : kDtypes) cases.push_back({conv, dtype});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(ChannelStats, ConvStatistics, ::testing::ValuesIn(conv_statistics_cases()),
                         [](const ::testing::TestParamInfo<ConvStatisticsCase>& param_info) {
                           return param_info.param.conv.name + "_" + std::string(dtype_name(param_info.param.dtype));
                         });

// ---- max_pool2d_forward ----------------------------------------------------------------

struct PoolCase {
  std::string name;
  Shape x;
  Pool2dParams params;
  float low = -1.0f;
  float high = 1.0f;
};

std::vector<PoolCase> pool_cases() {
  return {
      {"odd", {2, 3, 9, 11}, {.kernel = {2, 2}}},
      // 2 400 outputs a channel: two slots, the second partial
      {"two_slots", {6, 2, 40, 40}, {.kernel = {2, 2}}},
      {"padded_strided", {3, 5, 8, 7}, {.kernel = {3, 3}, .stride = Size2d{2, 2}, .padding = {1, 1}}},
      // a mean far from zero: the variance keeps its digits
      {"mean_far_from_zero", {2, 3, 8, 8}, {.kernel = {2, 2}}, 1000.0f, 1002.0f},
  };
}

struct PoolStatisticsCase {
  PoolCase pool;
  DType dtype;
};

class PoolStatistics : public ::testing::TestWithParam<PoolStatisticsCase> {};

TEST_P(PoolStatistics, AreThoseOfTheStoredOutput) {
  const PoolStatisticsCase& p = GetParam();
  cudaStream_t stream = current_stream();
  const Tensor x = stored_tensor(random_uniform(51, static_cast<std::size_t>(p.pool.x.numel()), p.pool.low,
                                                p.pool.high),
                                 p.pool.x, p.dtype, stream);
  const MaxPool2dResult plain = max_pool2d_forward(x, p.pool.params, stream);
  ChannelStatistics statistics;
  const MaxPool2dResult pooled = max_pool2d_forward(x, p.pool.params, stream, &statistics);
  EXPECT_EQ(bit_patterns(values_of(pooled.y, stream)), bit_patterns(values_of(plain.y, stream))) << "y";
  EXPECT_EQ(pooled.argmax.to_vector<std::int64_t>(stream), plain.argmax.to_vector<std::int64_t>(stream));
  EXPECT_EQ(statistics.partials.size(1), (pooled.y.numel() / pooled.y.size(1) + 2047) / 2048) << "slots";
  expect_statistics_of(pooled.y, statistics, stream);

  ChannelStatistics reused{.partials = device_tensor(
                               std::vector<float>(static_cast<std::size_t>(statistics.partials.numel()),
                                                  testing::poison_value()),
                               statistics.partials.shape(), stream)};
  Tensor y = poisoned(pooled.y.shape(), p.dtype, stream);
  Tensor argmax;
  max_pool2d_forward(x, y, argmax, p.pool.params, stream, &reused);
  EXPECT_EQ(bit_patterns(values_of(y, stream)), bit_patterns(values_of(plain.y, stream))) << "y, no argmax";
  EXPECT_EQ(bit_patterns(reused.partials.to_vector<float>(stream)),
            bit_patterns(statistics.partials.to_vector<float>(stream)));

  const auto runs = testing::run_with_schedule_seeds<std::vector<std::uint32_t>>([&] {
    ChannelStatistics again;
    max_pool2d_forward(x, p.pool.params, stream, &again);
    return bit_patterns(again.partials.to_vector<float>(stream));
  });
  for (std::size_t run = 1; run < runs.size(); ++run) EXPECT_EQ(runs[run], runs[0]) << "schedule " << run;
}

std::vector<PoolStatisticsCase> pool_statistics_cases() {
  std::vector<PoolStatisticsCase> cases;
  for (const PoolCase& pool : pool_cases()) {
    for (const DType dtype : kDtypes) cases.push_back({pool, dtype});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(ChannelStats, PoolStatistics, ::testing::ValuesIn(pool_statistics_cases()),
                         [](const ::testing::TestParamInfo<PoolStatisticsCase>& param_info) {
                           return param_info.param.pool.name + "_" + std::string(dtype_name(param_info.param.dtype));
                         });

// ---- batch norm from precomputed statistics ----------------------------------------------

// What a training forward wrote.
struct NormOutputs {
  std::vector<float> y, saved_mean, saved_invstd, running_mean, running_var;
};

enum class Consumer { batch_norm2d, batch_norm2d_gelu };

NormOutputs run_consumer(Consumer consumer, const Tensor& x, const ChannelStatistics* statistics,
                         cudaStream_t stream) {
  const Shape channels{x.size(1)};
  const auto per_channel = [&](std::uint64_t seed, float low, float high) {
    return device_tensor(random_uniform(seed, static_cast<std::size_t>(x.size(1)), low, high), channels, stream);
  };
  const Tensor weight = per_channel(61, 0.5f, 1.5f);
  const Tensor bias = per_channel(62, -1.0f, 1.0f);
  BatchNormRunningStats running{.mean = per_channel(63, -1.0f, 1.0f), .var = per_channel(64, 0.5f, 1.5f)};
  Tensor y = poisoned(x.shape(), x.dtype(), stream);
  BatchNormSaved saved{.mean = poisoned(channels, DType::f32, stream), .invstd = poisoned(channels, DType::f32, stream)};
  const BatchNormParams params{.eps = 1e-5f, .momentum = 0.1f};
  if (consumer == Consumer::batch_norm2d) {
    batch_norm2d_forward_training(x, weight, bias, running, y, saved, params, stream, statistics);
  } else {
    batch_norm2d_activation_forward_training(x, weight, bias, running, y, saved,
                                             {.norm = params, .activation = FusedActivation::gelu}, stream,
                                             statistics);
  }
  return {values_of(y, stream), saved.mean.to_vector<float>(stream), saved.invstd.to_vector<float>(stream),
          running.mean.to_vector<float>(stream), running.var.to_vector<float>(stream)};
}

// Per-channel values from precomputed statistics against the pass over x: both are double
// statistics rounded once to float, so within a float rounding or two (2^-20 relative); y then
// within that times its magnitude plus, in f16/bf16, one unit in the last place of its dtype
// (a rounding may go the other way).
void expect_close_to_the_usual_path(const NormOutputs& actual, const NormOutputs& usual, DType dtype) {
  constexpr testing::Tolerance kChannel{.abs_tol = 1e-7, .rel_tol = 0x1p-20};
  const auto doubles = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
  EXPECT_TRUE(testing::all_close(actual.saved_mean, doubles(usual.saved_mean), kChannel)) << "saved mean";
  EXPECT_TRUE(testing::all_close(actual.saved_invstd, doubles(usual.saved_invstd), kChannel)) << "saved invstd";
  EXPECT_TRUE(testing::all_close(actual.running_mean, doubles(usual.running_mean), kChannel)) << "running mean";
  EXPECT_TRUE(testing::all_close(actual.running_var, doubles(usual.running_var), kChannel)) << "running var";
  const double storage = dtype == DType::bf16 ? 0x1p-8 : (dtype == DType::f16 ? 0x1p-11 : 0.0);
  const testing::Tolerance y_tolerance{.abs_tol = 1e-5 + storage * 1e-2, .rel_tol = 1e-5 + 2 * storage};
  EXPECT_TRUE(testing::all_close(actual.y, doubles(usual.y), y_tolerance)) << "y";
}

struct ConsumerCase {
  Consumer consumer;
  DType dtype;
};

class PrecomputedStatistics : public ::testing::TestWithParam<ConsumerCase> {};

TEST_P(PrecomputedStatistics, FromConvMatchTheUsualPath) {
  const ConsumerCase& p = GetParam();
  cudaStream_t stream = current_stream();
  for (const ConvCase& conv : {conv_cases()[1], conv_cases()[4]}) {  // CUDA cores and tensor cores
    SCOPED_TRACE(conv.name);
    const ConvInputs in = conv_inputs(conv, p.dtype, 71, stream);
    ChannelStatistics statistics;
    const Tensor x = conv2d_forward(in.x, in.weight, in.bias, conv.params, stream, &statistics);
    expect_close_to_the_usual_path(run_consumer(p.consumer, x, &statistics, stream),
                                   run_consumer(p.consumer, x, nullptr, stream), p.dtype);
    const auto runs = testing::run_with_schedule_seeds<std::vector<std::uint32_t>>([&] {
      const NormOutputs out = run_consumer(p.consumer, x, &statistics, stream);
      std::vector<std::uint32_t> bits = bit_patterns(out.y);
      for (const auto* part : {&out.saved_mean, &out.saved_invstd, &out.running_mean, &out.running_var}) {
        const std::vector<std::uint32_t> more = bit_patterns(*part);
        bits.insert(bits.end(), more.begin(), more.end());
      }
      return bits;
    });
    for (std::size_t run = 1; run < runs.size(); ++run) EXPECT_EQ(runs[run], runs[0]) << "schedule " << run;
  }
}

TEST_P(PrecomputedStatistics, FromPoolingMatchTheUsualPathFarFromZero) {
  const ConsumerCase& p = GetParam();
  cudaStream_t stream = current_stream();
  for (const PoolCase& pool : {pool_cases()[1], pool_cases()[3]}) {
    SCOPED_TRACE(pool.name);
    const Tensor input =
        stored_tensor(random_uniform(73, static_cast<std::size_t>(pool.x.numel()), pool.low, pool.high), pool.x,
                      p.dtype, stream);
    ChannelStatistics statistics;
    const MaxPool2dResult pooled = max_pool2d_forward(input, pool.params, stream, &statistics);
    expect_close_to_the_usual_path(run_consumer(p.consumer, pooled.y, &statistics, stream),
                                   run_consumer(p.consumer, pooled.y, nullptr, stream), p.dtype);
  }
}

std::vector<ConsumerCase> consumer_cases() {
  std::vector<ConsumerCase> cases;
  for (const Consumer consumer : {Consumer::batch_norm2d, Consumer::batch_norm2d_gelu}) {
    for (const DType dtype : kDtypes) cases.push_back({consumer, dtype});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(ChannelStats, PrecomputedStatistics, ::testing::ValuesIn(consumer_cases()),
                         [](const ::testing::TestParamInfo<ConsumerCase>& param_info) {
                           return std::string(param_info.param.consumer == Consumer::batch_norm2d ? "batch_norm2d"
                                                                                            : "batch_norm2d_gelu") +
                                  "_" + std::string(dtype_name(param_info.param.dtype));
                         });

// ---- argument errors ---------------------------------------------------------------------

TEST(ChannelStats, AWorkspaceOfAnotherShapeIsRefused) {
  cudaStream_t stream = current_stream();
  const ConvCase conv = conv_cases()[0];
  const ConvInputs in = conv_inputs(conv, DType::f32, 81, stream);
  ChannelStatistics wrong{.partials = Tensor::empty(channel_statistics_shape(1, conv.weight[0]), DType::f32, stream)};
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { conv2d_forward(in.x, in.weight, in.bias, conv.params, stream, &wrong); }),
              HasSubstr("conv2d_forward: statistics partials"));
  const Tensor x = stored_tensor(random_uniform(82, 2 * 3 * 8 * 8), {2, 3, 8, 8}, DType::f32, stream);
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { max_pool2d_forward(x, {.kernel = {2, 2}}, stream, &wrong); }),
              HasSubstr("max_pool2d_forward: statistics partials"));
}

TEST(ChannelStats, BatchNormRefusesStatisticsOfAnotherShape) {
  cudaStream_t stream = current_stream();
  const Shape shape{2, 3, 4, 4};
  const Tensor x = stored_tensor(random_uniform(83, 96), shape, DType::f32, stream);
  const auto refusal = [&](const ChannelStatistics& statistics) {
    return testing::invalid_argument_message([&] {
      Tensor y = Tensor::empty(shape, DType::f32, stream);
      BatchNormRunningStats running;
      BatchNormSaved saved{.mean = Tensor::empty({3}, DType::f32, stream),
                           .invstd = Tensor::empty({3}, DType::f32, stream)};
      batch_norm2d_forward_training(x, Tensor(), Tensor(), running, y, saved, {.affine = BatchNormAffine::none},
                                    stream, &statistics);
    });
  };
  EXPECT_THAT(refusal(ChannelStatistics{}), HasSubstr("batch_norm2d: the precomputed statistics have no partials"));
  EXPECT_THAT(refusal({.partials = Tensor::empty(channel_statistics_shape(2, 4), DType::f32, stream)}),
              HasSubstr("batch_norm2d: statistics partials must be (6, slots >= 1, C = 3)"));
  EXPECT_THAT(refusal({.partials = Tensor::empty(channel_statistics_shape(2, 3), DType::bf16, stream)}),
              HasSubstr("statistics partials"));
}

}  // namespace
}  // namespace strata::kernels
