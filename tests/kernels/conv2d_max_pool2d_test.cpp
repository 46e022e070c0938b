// conv2d_max_pool2d_forward (strata/kernels/conv2d_max_pool2d.h): the window order of the
// fused GEMM on the host; the fused kernel against conv2d_forward then max_pool2d_forward bit
// for bit (y and argmax, i64, i32 or none) in f32, bf16 and f16 storage with tf32 and bf16
// math, over odd P and Q, batch 1, channel counts no multiple of a tile, several m and n
// tiles, groups, stride and padding; small integers against the double references of both
// ops (exact, ties included); NaN propagation and ties written out; the statistics (counts
// exact, moments within 2^-36 of the spread of y's double statistics, a poisoned workspace
// overwritten); the shapes that fall back to the composition (and its statistics, bit for
// bit); argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <gmock/gmock.h>

#include "kernels/conv2d_max_pool2d_tensor_core.cuh"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/kernels/conv2d.h"
#include "strata/kernels/conv2d_max_pool2d.h"
#include "strata/kernels/pool2d.h"
#include "tests/kernels/device_values.h"
#include "tests/reference/conv2d_reference.h"
#include "tests/reference/pool2d_reference.h"
#include "tests/reference/reference_common.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"
#include "tests/support/storage_dtypes.h"

namespace strata::kernels {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using reference::Conv2dProblem;
using testing::bit_patterns;
using testing::poisoned_storage;
using testing::random_uniform;
using testing::storage_tensor;
using testing::storage_values;

Shape input_shape(const Conv2dProblem& p) { return {p.batch, p.in_channels, p.in_height, p.in_width}; }
Shape weight_shape(const Conv2dProblem& p) {
  return {p.out_channels, p.in_channels / p.params.groups, p.kernel_height, p.kernel_width};
}
Shape output_shape(const Conv2dProblem& p) { return {p.batch, p.out_channels, p.out_height(), p.out_width()}; }

constexpr Pool2dParams kPool2x2{.kernel = {2, 2}};

// ---- The window order, on the host -----------------------------------------------------------

// Every pixel of every window once, windows in y's order, positions in row-major window order;
// the dropped last row and column of odd sizes in none.
TEST(Conv2dMaxPool2dWindowOrder, CoversEachWindowedPixelOnceInScanOrder) {
  for (const auto& [batch, height, width] : {std::tuple{2, 5, 7}, std::tuple{1, 4, 4}, std::tuple{3, 3, 2}, std::tuple{2, 37, 50}}) {
    const conv2d_max_pool2d::PooledPlane plane = conv2d_max_pool2d::pooled_plane(height, width);
    EXPECT_EQ(plane.height, height / 2);
    EXPECT_EQ(plane.width, width / 2);
    std::set<std::tuple<int, int, int>> seen;
    for (int m = 0; m < batch * plane.area * conv2d_max_pool2d::kWindowPixels; ++m) {
      const conv2d_max_pool2d::WindowPixel at = conv2d_max_pool2d::window_pixel(m, plane);
      const int window = m / 4, position = m % 4;
      EXPECT_EQ(at.window, window);
      const int oh = window % plane.area / plane.width, ow = window % plane.area % plane.width;
      EXPECT_EQ(at.image, window / plane.area);
      EXPECT_EQ(at.p, 2 * oh + position / 2) << "m " << m;
      EXPECT_EQ(at.q, 2 * ow + position % 2) << "m " << m;
      EXPECT_LT(at.p, plane.height * 2);
      EXPECT_LT(at.q, plane.width * 2);
      EXPECT_TRUE(seen.insert({at.image, at.p, at.q}).second) << "pixel twice at m " << m;
      const conv2d_max_pool2d::WindowPixel divided = conv2d_max_pool2d::window_pixel</*kDividers=*/false>(m, plane);
      EXPECT_EQ(std::tuple(divided.image, divided.p, divided.q, divided.window),
                std::tuple(at.image, at.p, at.q, at.window)) << "m " << m;
    }
    EXPECT_EQ(static_cast<int>(seen.size()), batch * plane.area * 4);
  }
}

// ---- Cases ---------------------------------------------------------------------------------------

struct FusedCase {
  std::string name;
  Conv2dProblem problem;
  bool bias = true;
};

void PrintTo(const FusedCase& test_case, std::ostream* out) {
  *out << test_case.name << " (" << to_string(test_case.problem.params) << (test_case.bias ? ", bias)" : ")");
}

FusedCase make_case(std::string name, std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w, std::int64_t k,
                    std::int64_t r, Conv2dParams params, bool bias = true) {
  return {std::move(name),
          Conv2dProblem{.batch = n, .in_channels = c, .in_height = h, .in_width = w, .out_channels = k,
                        .kernel_height = r, .kernel_width = r, .params = params},
          bias};
}

// Small: the simulator spends about 25 us per mma_sync.
std::vector<FusedCase> fused_cases() {
  return {
      // P = 7, Q = 5: the last row and column dropped; 2*3*2 = 12 windows, one partial m tile.
      make_case("OddSizes", 2, 3, 7, 5, 10, 3, {.padding = {1, 1}}),
      // Batch 1, no bias, K = 8: the fewest channels the tensor cores take.
      make_case("Batch1NoBias", 1, 4, 6, 6, 8, 3, {.padding = {1, 1}}, false),
      // 2*5*5 = 50 windows (four m tiles, the last partial), K = 70 (two n tiles).
      make_case("ManyTiles", 2, 5, 10, 11, 70, 3, {.padding = {1, 1}}),
      make_case("Groups2", 1, 6, 6, 8, 20, 3, {.padding = {1, 1}, .groups = 2}),
      // P = 5, Q = 4 from a strided conv with a 2x2 kernel (airbench's whitening shape).
      make_case("Stride2Pad1", 2, 3, 9, 7, 12, 2, {.stride = {2, 2}, .padding = {1, 1}}),
  };
}

struct Inputs {
  Tensor x, weight, bias;  // (N, C, H, W), (K, C/groups, R, S), (K) or undefined
};

Inputs make_inputs(const FusedCase& test_case, DType dtype, std::uint64_t seed) {
  const Conv2dProblem& p = test_case.problem;
  const cudaStream_t stream = current_stream();
  Inputs in;
  in.x = storage_tensor(random_uniform(seed, static_cast<std::size_t>(p.input_count())), input_shape(p), dtype,
                        stream);
  in.weight = storage_tensor(random_uniform(seed + 1, static_cast<std::size_t>(p.weight_count())), weight_shape(p),
                             dtype, stream);
  if (test_case.bias) {
    in.bias = storage_tensor(random_uniform(seed + 2, static_cast<std::size_t>(p.out_channels)),
                             Shape{p.out_channels}, dtype, stream);
  }
  return in;
}

// y (as float) and argmax (as i64) of one run.
struct Pooled {
  std::vector<float> y;
  std::vector<std::int64_t> argmax;
};

std::vector<std::int64_t> argmax_values(const Tensor& argmax) {
  if (argmax.dtype() == DType::i64) return argmax.to_vector<std::int64_t>(current_stream());
  const std::vector<std::int32_t> narrow = argmax.to_vector<std::int32_t>(current_stream());
  return {narrow.begin(), narrow.end()};
}

// The fused op into poisoned outputs (argmax of argmax_dtype, or none when undefined).
Pooled fused(const Inputs& in, const Conv2dParams& conv, const Pool2dParams& pool, std::optional<DType> argmax_dtype,
             ChannelStatistics* statistics = nullptr) {
  const cudaStream_t stream = current_stream();
  const Shape y_shape = conv2d_max_pool2d_output_shape(conv2d_shape(in.x.shape(), in.weight.shape(), conv), pool);
  Tensor y = poisoned_storage(y_shape, in.x.dtype(), stream);
  Tensor argmax;
  const auto poison = static_cast<std::size_t>(y_shape.numel());  // -7: no index
  if (argmax_dtype == DType::i64) {
    argmax = Tensor::from_vector(std::vector<std::int64_t>(poison, -7), y_shape).to_device(stream);
  } else if (argmax_dtype == DType::i32) {
    argmax = Tensor::from_vector(std::vector<std::int32_t>(poison, -7), y_shape).to_device(stream);
  }
  conv2d_max_pool2d_forward(in.x, in.weight, in.bias, y, argmax, conv, pool, stream, statistics);
  return {storage_values(y, stream), argmax_dtype ? argmax_values(argmax) : std::vector<std::int64_t>{}};
}

// conv2d_forward then max_pool2d_forward.
Pooled composed(const Inputs& in, const Conv2dParams& conv, const Pool2dParams& pool,
                ChannelStatistics* statistics = nullptr) {
  const cudaStream_t stream = current_stream();
  const Tensor convolved = conv2d_forward(in.x, in.weight, in.bias, conv, stream);  // (N, K, P, Q)
  const MaxPool2dResult pooled = max_pool2d_forward(convolved, pool, stream, statistics);
  return {storage_values(pooled.y, stream), argmax_values(pooled.argmax)};
}

// Per channel: count, mean and biased variance.
struct Moments {
  std::vector<double> count, mean, variance;
};

// The double statistics of y (N, C, Ho, Wo) per channel, two passes.
Moments reference_moments(const std::vector<float>& y, const Shape& shape) {
  const std::int64_t channels = shape[1], plane = shape[2] * shape[3];
  Moments out;
  for (std::int64_t c = 0; c < channels; ++c) {
    std::vector<double> values;
    for (std::int64_t n = 0; n < shape[0]; ++n) {
      for (std::int64_t k = 0; k < plane; ++k) {
        values.push_back(y[static_cast<std::size_t>((n * channels + c) * plane + k)]);
      }
    }
    double sum = 0.0;
    for (const double value : values) sum += value;
    const double mean = sum / static_cast<double>(values.size());
    double m2 = 0.0;
    for (const double value : values) m2 += (value - mean) * (value - mean);
    out.count.push_back(static_cast<double>(values.size()));
    out.mean.push_back(mean);
    out.variance.push_back(m2 / static_cast<double>(values.size()));
  }
  return out;
}

// The partials (6, slots, C) combined per channel in double about the first slot's shift, as
// the consumers do (channel_stats.cuh).
Moments combined_partials(const Tensor& partials) {
  const std::vector<float> values = partials.to_vector<float>(current_stream());
  const std::int64_t slots = partials.size(1), channels = partials.size(2);
  const auto at = [&](std::int64_t row, std::int64_t slot, std::int64_t c) {
    return static_cast<double>(values[static_cast<std::size_t>((row * slots + slot) * channels + c)]);
  };
  Moments out;
  for (std::int64_t c = 0; c < channels; ++c) {
    double count = 0.0, sum = 0.0, sum_of_squares = 0.0;
    const double shift = at(1, 0, c);
    for (std::int64_t slot = 0; slot < slots; ++slot) {
      const double n = at(0, slot, c), d = at(1, slot, c) - shift, slot_sum = at(2, slot, c) + at(3, slot, c);
      count += n;
      sum += slot_sum + n * d;
      sum_of_squares += at(4, slot, c) + at(5, slot, c) + d * (2.0 * slot_sum + n * d);
    }
    out.count.push_back(count);
    out.mean.push_back(shift + sum / count);
    out.variance.push_back(sum_of_squares / count - (sum / count) * (sum / count));
  }
  return out;
}

// Counts exact; mean and variance within 2^-36 of the spread (each slot keeps about 48 bits).
void expect_statistics_of(const std::vector<float>& y, const Shape& y_shape, const ChannelStatistics& statistics) {
  ASSERT_TRUE(statistics.partials.defined());
  const Moments expected = reference_moments(y, y_shape);
  const Moments actual = combined_partials(statistics.partials);
  for (std::size_t c = 0; c < expected.count.size(); ++c) {
    EXPECT_EQ(actual.count[c], expected.count[c]) << "channel " << c;
    const double spread = std::sqrt(expected.variance[c]) + std::fabs(expected.mean[c]) + 1e-30;
    EXPECT_NEAR(actual.mean[c], expected.mean[c], std::ldexp(spread, -36)) << "channel " << c;
    EXPECT_NEAR(actual.variance[c], expected.variance[c], std::ldexp(spread * spread, -36)) << "channel " << c;
  }
}

// ---- Fused against the composition, bit for bit -------------------------------------------------

struct FusedParam {
  FusedCase test_case;
  DType dtype;
  ConvMath math;
};

void PrintTo(const FusedParam& param, std::ostream* out) {
  PrintTo(param.test_case, out);
  *out << ", " << dtype_name(param.dtype) << ", math " << to_string(param.math);
}

std::vector<FusedParam> fused_params() {
  std::vector<FusedParam> params;
  for (const FusedCase& test_case : fused_cases()) {
    for (const DType dtype : {DType::f32, DType::bf16, DType::f16}) {
      for (const ConvMath math : {ConvMath::tf32, ConvMath::bf16}) params.push_back({test_case, dtype, math});
    }
  }
  return params;
}

class Conv2dMaxPool2dFusedTest : public testing::DeviceTest, public ::testing::WithParamInterface<FusedParam> {};

TEST_P(Conv2dMaxPool2dFusedTest, MatchesConvThenPoolBitForBit) {
  const FusedParam& param = GetParam();
  Conv2dParams conv = param.test_case.problem.params;
  conv.math = param.math;
  const Inputs in = make_inputs(param.test_case, param.dtype, 11);
  const Conv2dShape shape = conv2d_shape(in.x.shape(), in.weight.shape(), conv);
  ASSERT_TRUE(conv2d_max_pool2d_fuses(shape, kPool2x2));
  const Pooled expected = composed(in, conv, kPool2x2);
  const Pooled actual = fused(in, conv, kPool2x2, DType::i64);
  EXPECT_EQ(bit_patterns(actual.y), bit_patterns(expected.y));
  EXPECT_EQ(actual.argmax, expected.argmax);
}

INSTANTIATE_TEST_SUITE_P(Cases, Conv2dMaxPool2dFusedTest, ::testing::ValuesIn(fused_params()),
                         [](const ::testing::TestParamInfo<FusedParam>& param_info) {
                           return param_info.param.test_case.name + "_" +
                                  std::string(dtype_name(param_info.param.dtype)) + "_" +
                                  std::string(to_string(param_info.param.math));
                         });

using Conv2dMaxPool2dTest = testing::DeviceTest;

// An i32 argmax holds the same indices; without one, y is unchanged.
TEST_F(Conv2dMaxPool2dTest, ArgmaxI32OrNoneGiveTheSameY) {
  const FusedCase test_case = make_case("OddSizes", 2, 3, 7, 5, 10, 3, {.padding = {1, 1}, .math = ConvMath::tf32});
  const Inputs in = make_inputs(test_case, DType::f32, 21);
  const Conv2dParams& conv = test_case.problem.params;
  const Pooled with_i64 = fused(in, conv, kPool2x2, DType::i64);
  const Pooled with_i32 = fused(in, conv, kPool2x2, DType::i32);
  const Pooled without = fused(in, conv, kPool2x2, std::nullopt);
  EXPECT_EQ(with_i32.argmax, with_i64.argmax);
  EXPECT_EQ(bit_patterns(with_i32.y), bit_patterns(with_i64.y));
  EXPECT_EQ(bit_patterns(without.y), bit_patterns(with_i64.y));
  // The returning form: an i64 argmax.
  const MaxPool2dResult result = conv2d_max_pool2d_forward(in.x, in.weight, in.bias, conv, kPool2x2, current_stream());
  EXPECT_EQ(result.argmax.dtype(), DType::i64);
  EXPECT_EQ(argmax_values(result.argmax), with_i64.argmax);
}

// Small integers: every conv value exact in f32 (and in bf16 storage below 2^8), so y and
// argmax equal the double references of conv2d and max_pool2d exactly, with many ties.
TEST_F(Conv2dMaxPool2dTest, SmallIntegersEqualTheReferencesIncludingTies) {
  for (const DType dtype : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const FusedCase test_case = make_case("Integers", 2, 3, 7, 9, 12, 3, {.padding = {1, 1}, .math = ConvMath::bf16});
    const Conv2dProblem& p = test_case.problem;
    std::vector<float> x = random_uniform(31, static_cast<std::size_t>(p.input_count()), -1.0f, 2.0f);
    std::vector<float> weight = random_uniform(32, static_cast<std::size_t>(p.weight_count()), -1.0f, 2.0f);
    std::vector<float> bias = random_uniform(33, static_cast<std::size_t>(p.out_channels), -2.0f, 3.0f);
    for (std::vector<float>* values : {&x, &weight, &bias}) {
      for (float& value : *values) value = std::floor(value);
    }
    const cudaStream_t stream = current_stream();
    const Inputs in{storage_tensor(x, input_shape(p), dtype, stream),
                    storage_tensor(weight, weight_shape(p), dtype, stream),
                    storage_tensor(bias, Shape{p.out_channels}, dtype, stream)};
    const std::vector<double> convolved =
        reference::conv2d_forward(p, reference::to_double(x), reference::to_double(weight), reference::to_double(bias));
    const reference::MaxPoolResult expected =
        reference::max_pool2d_forward(convolved, output_shape(p), kPool2x2);
    const Pooled actual = fused(in, p.params, kPool2x2, DType::i64);
    EXPECT_TRUE(testing::all_close(actual.y, expected.y, {}));
    EXPECT_EQ(actual.argmax, expected.argmax);
  }
}

// A 1x1 conv of one input channel scales x (channel k by k + 1, exact), so the windows are
// chosen exactly: a NaN wins wherever it is in the window, a tie keeps the first position, an
// all -inf window reports its first tap.
TEST_F(Conv2dMaxPool2dTest, NaNWinsTiesKeepTheFirstAllMinusInfinityReportsTheFirstTap) {
  constexpr std::int64_t kChannels = 8;
  const float nan = std::nanf(""), inf = INFINITY;
  // One (4, 6) plane: windows (0, 0) NaN at position 3; (0, 1) ties of 5 at positions 1 and 2;
  // (0, 2) NaN at position 0 and a larger number after it; (1, 0) all -inf; (1, 1) -inf and 2;
  // (1, 2) ascending.
  const std::vector<float> x = {1,    2,    4,    5,    nan, 9,  //
                                0,    nan,  5,    3,    1,   1,  //
                                -inf, -inf, 2,    -inf, 1,   2,  //
                                -inf, -inf, -inf, -inf, 3,   4};
  std::vector<float> weight;
  for (std::int64_t k = 0; k < kChannels; ++k) weight.push_back(static_cast<float>(k + 1));
  const cudaStream_t stream = current_stream();
  const Inputs in{testing::device_tensor(x, Shape{1, 1, 4, 6}, stream),
                  testing::device_tensor(weight, Shape{kChannels, 1, 1, 1}, stream), Tensor()};
  const Conv2dParams conv{.math = ConvMath::tf32};
  const Pooled actual = fused(in, conv, kPool2x2, DType::i64);
  const Pooled expected = composed(in, conv, kPool2x2);
  EXPECT_EQ(bit_patterns(actual.y), bit_patterns(expected.y));
  EXPECT_EQ(actual.argmax, expected.argmax);
  // Channel 0 written out: plane indices p * 6 + q.
  const std::vector<std::int64_t> argmax0(actual.argmax.begin(), actual.argmax.begin() + 6);
  EXPECT_EQ(argmax0, (std::vector<std::int64_t>{7, 3, 4, 12, 14, 23}));
  EXPECT_TRUE(std::isnan(actual.y[0]));
  EXPECT_EQ(actual.y[1], 5.0f);
  EXPECT_TRUE(std::isnan(actual.y[2]));
  EXPECT_EQ(actual.y[3], -inf);
  EXPECT_EQ(actual.y[4], 2.0f);
  EXPECT_EQ(actual.y[5], 4.0f);
}

// ---- Statistics ----------------------------------------------------------------------------------

// y and argmax the same bits with and without statistics; the partials of y as stored, one slot
// per 16 windows, overwriting a poisoned workspace.
TEST_F(Conv2dMaxPool2dTest, StatisticsAreThoseOfTheStoredY) {
  for (const DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const FusedCase test_case =
        make_case("ManyTiles", 2, 5, 10, 11, 70, 3, {.padding = {1, 1}, .math = ConvMath::tf32});
    const Inputs in = make_inputs(test_case, dtype, 41);
    const Conv2dParams& conv = test_case.problem.params;
    const Conv2dShape shape = conv2d_shape(in.x.shape(), in.weight.shape(), conv);
    const std::int64_t slots = conv2d_max_pool2d_forward_statistics_slots(shape, kPool2x2);
    EXPECT_EQ(slots, 4);  // 2*5*5 = 50 windows, 16 a slot
    ChannelStatistics statistics{testing::poisoned_tensor(channel_statistics_shape(slots, 70), current_stream())};
    const Pooled with = fused(in, conv, kPool2x2, DType::i64, &statistics);
    const Pooled without = fused(in, conv, kPool2x2, DType::i64);
    EXPECT_EQ(bit_patterns(with.y), bit_patterns(without.y));
    EXPECT_EQ(with.argmax, without.argmax);
    expect_statistics_of(with.y, conv2d_max_pool2d_output_shape(shape, kPool2x2), statistics);
    // A fresh workspace gets the same bits: every element was written.
    ChannelStatistics fresh;
    fused(in, conv, kPool2x2, std::nullopt, &fresh);
    EXPECT_EQ(bit_patterns(fresh.partials.to_vector<float>(current_stream())),
              bit_patterns(statistics.partials.to_vector<float>(current_stream())));
  }
}

// ---- Fallback ------------------------------------------------------------------------------------

// Shapes the kernel does not take run conv2d_forward then max_pool2d_forward: the same bits,
// statistics included.
TEST_F(Conv2dMaxPool2dTest, OtherShapesFallBackToTheComposition) {
  struct Fallback {
    std::string name;
    FusedCase test_case;
    Pool2dParams pool;
  };
  const Conv2dParams tf32{.padding = {1, 1}, .math = ConvMath::tf32};
  const std::vector<Fallback> fallbacks = {
      {"Fp32Math", make_case("c", 1, 3, 6, 7, 10, 3, {.padding = {1, 1}}), kPool2x2},
      {"FewChannels", make_case("c", 1, 3, 6, 7, 4, 3, tf32), kPool2x2},
      {"Depthwise", make_case("c", 1, 8, 6, 7, 8, 3, {.padding = {1, 1}, .groups = 8, .math = ConvMath::tf32}),
       kPool2x2},
      {"Kernel3", make_case("c", 1, 3, 6, 7, 10, 3, tf32), Pool2dParams{.kernel = {3, 3}}},
      {"Stride1", make_case("c", 1, 3, 6, 7, 10, 3, tf32), Pool2dParams{.kernel = {2, 2}, .stride = Size2d{1, 1}}},
      {"Padding", make_case("c", 1, 3, 6, 7, 10, 3, tf32), Pool2dParams{.kernel = {2, 2}, .padding = {1, 1}}},
      {"CeilMode", make_case("c", 1, 3, 6, 7, 10, 3, tf32), Pool2dParams{.kernel = {2, 2}, .ceil_mode = true}},
      {"Dilation", make_case("c", 1, 3, 6, 7, 10, 3, tf32), Pool2dParams{.kernel = {2, 2}, .dilation = {2, 2}}},
  };
  for (const Fallback& fallback : fallbacks) {
    SCOPED_TRACE(fallback.name);
    const Inputs in = make_inputs(fallback.test_case, DType::f32, 51);
    const Conv2dParams& conv = fallback.test_case.problem.params;
    const Conv2dShape shape = conv2d_shape(in.x.shape(), in.weight.shape(), conv);
    EXPECT_FALSE(conv2d_max_pool2d_fuses(shape, fallback.pool));
    const Shape y_shape = conv2d_max_pool2d_output_shape(shape, fallback.pool);
    EXPECT_EQ(conv2d_max_pool2d_forward_statistics_slots(shape, fallback.pool),
              max_pool2d_forward_statistics_slots(y_shape));
    ChannelStatistics fused_statistics, composed_statistics;
    const Pooled actual = fused(in, conv, fallback.pool, DType::i64, &fused_statistics);
    const Pooled expected = composed(in, conv, fallback.pool, &composed_statistics);
    EXPECT_EQ(bit_patterns(actual.y), bit_patterns(expected.y));
    EXPECT_EQ(actual.argmax, expected.argmax);
    EXPECT_EQ(bit_patterns(fused_statistics.partials.to_vector<float>(current_stream())),
              bit_patterns(composed_statistics.partials.to_vector<float>(current_stream())));
  }
}

// ---- Argument errors -----------------------------------------------------------------------------

TEST_F(Conv2dMaxPool2dTest, BadArgumentsAreClearErrors) {
  const cudaStream_t stream = current_stream();
  const FusedCase test_case = make_case("c", 1, 3, 6, 6, 8, 3, {.padding = {1, 1}, .math = ConvMath::tf32});
  const Inputs in = make_inputs(test_case, DType::f32, 61);
  const Conv2dParams& conv = test_case.problem.params;
  const Shape y_shape{1, 8, 3, 3};
  const auto empty = [&](const Shape& shape, DType dtype) { return Tensor::empty(shape, dtype, stream); };
  // The message of the in-place forward with these operands (the others the valid ones).
  const auto message = [&](const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor y, Tensor argmax) {
    return testing::invalid_argument_message(
        [&] { conv2d_max_pool2d_forward(x, weight, bias, y, argmax, conv, kPool2x2, stream); });
  };
  const Tensor y = empty(y_shape, DType::f32), argmax = empty(y_shape, DType::i64);
  EXPECT_EQ(message(in.x, in.weight, in.bias, y, argmax), "(no exception)");
  const auto op_and = [](const char* what) { return AllOf(HasSubstr("conv2d_max_pool2d_forward"), HasSubstr(what)); };
  EXPECT_THAT(message(in.x, in.weight, in.bias, empty({1, 8, 6, 6}, DType::f32), argmax), op_and("y"));
  EXPECT_THAT(message(in.x, in.weight, in.bias, empty(y_shape, DType::bf16), argmax), op_and("y"));
  EXPECT_THAT(message(in.x, in.weight, in.bias, y, empty(y_shape, DType::f32)), op_and("argmax"));
  EXPECT_THAT(message(in.x, in.weight, in.bias, y, empty({1, 8, 3, 2}, DType::i64)), op_and("argmax"));
  EXPECT_THAT(message(in.x, in.weight.to_dtype(DType::bf16, stream), in.bias, y, argmax), op_and("weight"));
  EXPECT_THAT(message(in.x, empty({8, 4, 3, 3}, DType::f32), in.bias, y, argmax), op_and("weight"));
  EXPECT_THAT(message(in.x, in.weight, empty({7}, DType::f32), y, argmax), op_and("bias"));
  // A pool that does not fit the (1, 1) conv output of a 1x1 image.
  EXPECT_THAT(testing::invalid_argument_message([&] {
                conv2d_max_pool2d_forward(empty({1, 3, 1, 1}, DType::f32), in.weight, in.bias, conv, kPool2x2, stream);
              }),
              HasSubstr("conv2d_max_pool2d_forward"));
}

// The same bits under shuffled simulator schedules (and run to run on a GPU), statistics included.
TEST_F(Conv2dMaxPool2dTest, DeterministicUnderShuffledSchedules) {
  const FusedCase test_case = make_case("ManyTiles", 2, 5, 10, 11, 70, 3, {.padding = {1, 1}, .math = ConvMath::bf16});
  const Inputs in = make_inputs(test_case, DType::f32, 71);
  const auto results = testing::run_with_schedule_seeds<std::vector<std::uint32_t>>([&] {
    ChannelStatistics statistics;
    const Pooled pooled = fused(in, test_case.problem.params, kPool2x2, DType::i32, &statistics);
    std::vector<std::uint32_t> bits = bit_patterns(pooled.y);
    for (const std::int64_t index : pooled.argmax) bits.push_back(static_cast<std::uint32_t>(index));
    for (const std::uint32_t word : bit_patterns(statistics.partials.to_vector<float>(current_stream()))) {
      bits.push_back(word);
    }
    return bits;
  });
  for (std::size_t i = 1; i < results.size(); ++i) EXPECT_EQ(results[i], results[0]) << "schedule " << i;
}

}  // namespace
}  // namespace strata::kernels
