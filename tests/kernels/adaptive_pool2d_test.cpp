// adaptive_avg_pool2d and adaptive_max_pool2d forward and backward against the double
// reference, finite differences and PyTorch's goldens: overlapping bins (5 -> 3, 7 -> 3),
// repeated rows (3 -> 5), global pooling, ties, NaN, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "strata/core/stream.h"
#include "strata/kernels/adaptive_pool2d.h"
#include "tests/kernels/pool2d_test_support.h"
#include "tests/reference/pool2d_reference.h"
#include "tests/reference/reference_common.h"
#include "tests/support/compare.h"
#include "tests/support/gradcheck.h"

namespace strata::kernels {
namespace {

using namespace pool2d_testing;
using testing::all_close;
using testing::all_equal;
using testing::Tolerance;

constexpr Tolerance kTolerance{1e-6, 1e-5};

struct AdaptiveCase {
  const char* name;
  Shape x_shape;
  Size2d output_size;
};

// Bins that overlap, repeat, cover the whole plane or a single element; batch 1, channels
// not a multiple of 32, non-square planes.
const AdaptiveCase kCases[] = {
    {"5to3", Shape{2, 3, 5, 5}, {3, 3}},
    {"7to3", Shape{1, 5, 7, 7}, {3, 3}},
    {"3to5", Shape{2, 2, 3, 3}, {5, 5}},
    {"9x7_to_4x3", Shape{1, 37, 9, 7}, {4, 3}},
    {"6x4_to_4x6", Shape{2, 3, 6, 4}, {4, 6}},
    {"global_7x5", Shape{3, 33, 7, 5}, {1, 1}},
    {"1x1_to_2x3", Shape{1, 2, 1, 1}, {2, 3}},
    {"identity_4x3", Shape{1, 2, 4, 3}, {4, 3}},
};

std::string describe(const AdaptiveCase& test_case, std::uint64_t seed) {
  return std::string(test_case.name) + " x " + test_case.x_shape.to_string() + " seed " + std::to_string(seed);
}

TEST(AdaptiveAvgPool2d, MatchesReference) {
  const cudaStream_t stream = current_stream();
  std::uint64_t seed = 9000;
  for (const AdaptiveCase& test_case : kCases) {
    SCOPED_TRACE(describe(test_case, seed));
    const AdaptivePool2dParams params{.output_size = test_case.output_size};
    const std::vector<float> x_values =
        testing::random_uniform(seed, static_cast<size_t>(test_case.x_shape.numel()), -2.0f, 2.0f);
    const Shape y_shape = reference::adaptive_pool2d_output_shape(test_case.x_shape, params);
    ASSERT_EQ(adaptive_avg_pool2d_output_shape(test_case.x_shape, params), y_shape);
    Tensor y = poisoned(y_shape, stream);
    adaptive_avg_pool2d_forward(device_tensor(x_values, test_case.x_shape, stream), y, params, stream);
    EXPECT_TRUE(all_close(host_values<float>(y, stream),
                          reference::adaptive_avg_pool2d_forward(to_double(x_values), test_case.x_shape, params),
                          kTolerance));

    const std::vector<float> dL_dy_values = testing::random_uniform(seed + 1, static_cast<size_t>(y_shape.numel()));
    Tensor dL_dx = poisoned(test_case.x_shape, stream);
    adaptive_avg_pool2d_backward(device_tensor(dL_dy_values, y_shape, stream), dL_dx, params, stream);
    EXPECT_TRUE(all_close(host_values<float>(dL_dx, stream),
                          reference::adaptive_avg_pool2d_backward(to_double(dL_dy_values), test_case.x_shape, params),
                          kTolerance));
    seed += 2;
  }
}

template <typename Index>
void check_max_against_reference(const AdaptiveCase& test_case, std::uint64_t seed) {
  SCOPED_TRACE(describe(test_case, seed));
  const cudaStream_t stream = current_stream();
  const AdaptivePool2dParams params{.output_size = test_case.output_size};
  const std::vector<float> x_values =
      testing::random_uniform(seed, static_cast<size_t>(test_case.x_shape.numel()), -2.0f, 2.0f);
  const reference::MaxPoolResult expected =
      reference::adaptive_max_pool2d_forward(to_double(x_values), test_case.x_shape, params);
  const Shape y_shape = reference::adaptive_pool2d_output_shape(test_case.x_shape, params);
  ASSERT_EQ(adaptive_max_pool2d_output_shape(test_case.x_shape, params), y_shape);
  Tensor y = poisoned(y_shape, stream);
  Tensor argmax = poisoned_indices<Index>(y_shape, stream);
  adaptive_max_pool2d_forward(device_tensor(x_values, test_case.x_shape, stream), y, argmax, params, stream);
  EXPECT_TRUE(all_close(host_values<float>(y, stream), expected.y, Tolerance{}));
  const std::vector<Index> argmax_values = host_values<Index>(argmax, stream);
  EXPECT_EQ(std::vector<std::int64_t>(argmax_values.begin(), argmax_values.end()), expected.argmax);

  const std::vector<float> dL_dy_values = testing::random_uniform(seed + 1, static_cast<size_t>(y_shape.numel()));
  Tensor dL_dx = poisoned(test_case.x_shape, stream);
  adaptive_max_pool2d_backward(device_tensor(dL_dy_values, y_shape, stream), argmax, dL_dx, params, stream);
  EXPECT_TRUE(all_close(host_values<float>(dL_dx, stream),
                        reference::max_pool_backward(to_double(dL_dy_values), expected.argmax, test_case.x_shape),
                        kTolerance));
}

TEST(AdaptiveMaxPool2d, MatchesReference) {
  std::uint64_t seed = 10000;
  for (const AdaptiveCase& test_case : kCases) check_max_against_reference<std::int64_t>(test_case, seed += 2);
  check_max_against_reference<std::int32_t>(kCases[0], 10100);
  check_max_against_reference<std::int32_t>(kCases[2], 10102);
}

TEST(AdaptiveAvgPool2d, BackwardMatchesFiniteDifferences) {
  const cudaStream_t stream = current_stream();
  std::uint64_t seed = 11000;
  for (const AdaptiveCase& test_case : {kCases[0], kCases[2], kCases[4]}) {
    SCOPED_TRACE(describe(test_case, seed));
    const AdaptivePool2dParams params{.output_size = test_case.output_size};
    const Shape x_shape{1, 2, test_case.x_shape[2], test_case.x_shape[3]};
    const Shape y_shape = adaptive_avg_pool2d_output_shape(x_shape, params);
    const std::vector<float> x_values = testing::random_uniform(seed, static_cast<size_t>(x_shape.numel()));
    const std::vector<float> weights = testing::random_uniform(seed + 1, static_cast<size_t>(y_shape.numel()));
    const std::vector<double> weights_double = to_double(weights);
    const std::vector<double> numerical = testing::numerical_gradient(
        [&](std::span<const double> point) {
          return testing::weighted_sum(reference::adaptive_avg_pool2d_forward(point, x_shape, params), weights_double);
        },
        to_double(x_values));
    const Tensor dL_dx = adaptive_avg_pool2d_backward(device_tensor(weights, y_shape, stream), x_shape, params, stream);
    EXPECT_TRUE(all_close(host_values<float>(dL_dx, stream), numerical, Tolerance{1e-5, 1e-5}));
    seed += 2;
  }
}

// On inputs without near ties, so that no difference step changes an argmax.
TEST(AdaptiveMaxPool2d, BackwardMatchesFiniteDifferences) {
  const cudaStream_t stream = current_stream();
  std::uint64_t seed = 12000;
  for (const AdaptiveCase& test_case : {kCases[0], kCases[2], kCases[4]}) {
    SCOPED_TRACE(describe(test_case, seed));
    const AdaptivePool2dParams params{.output_size = test_case.output_size};
    const Shape x_shape{1, 2, test_case.x_shape[2], test_case.x_shape[3]};
    const Shape y_shape = adaptive_max_pool2d_output_shape(x_shape, params);
    const std::vector<float> x_values = distinct_values(seed, static_cast<size_t>(x_shape.numel()));
    const std::vector<float> weights = testing::random_uniform(seed + 1, static_cast<size_t>(y_shape.numel()));
    const std::vector<double> weights_double = to_double(weights);
    const std::vector<double> numerical = testing::numerical_gradient(
        [&](std::span<const double> point) {
          return testing::weighted_sum(reference::adaptive_max_pool2d_forward(point, x_shape, params).y,
                                       weights_double);
        },
        to_double(x_values));
    const MaxPool2dResult pooled =
        adaptive_max_pool2d_forward(device_tensor(x_values, x_shape, stream), params, stream);
    const Tensor dL_dx =
        adaptive_max_pool2d_backward(device_tensor(weights, y_shape, stream), pooled.argmax, x_shape, params, stream);
    EXPECT_TRUE(all_close(host_values<float>(dL_dx, stream), numerical, Tolerance{1e-5, 1e-5}));
    seed += 2;
  }
}

// 5 -> 3 bins per axis: [0, 2), [1, 4), [3, 5); rows 1 and 3 belong to two bins each.
TEST(AdaptivePool2d, ExactOnSmallIntegers) {
  const cudaStream_t stream = current_stream();
  std::vector<float> x_values(25);
  for (int i = 0; i < 25; ++i) x_values[static_cast<size_t>(i)] = static_cast<float>((i * 7) % 25);  // 0..24 permuted
  const Tensor x = device_tensor(x_values, Shape{1, 1, 5, 5}, stream);
  const AdaptivePool2dParams params{.output_size = {3, 3}};

  const MaxPool2dResult pooled = adaptive_max_pool2d_forward(x, params, stream);
  const reference::MaxPoolResult expected =
      reference::adaptive_max_pool2d_forward(to_double(x_values), Shape{1, 1, 5, 5}, params);
  EXPECT_TRUE(all_equal(host_values<float>(pooled.y, stream), reference::to_float(expected.y)));
  EXPECT_EQ(host_values<std::int64_t>(pooled.argmax, stream), expected.argmax);
  // The top-left bin is rows 0-1, columns 0-1: {0, 7, 10, 17} -> 17 at (1, 1).
  EXPECT_EQ(host_values<float>(pooled.y, stream)[0], 17.0f);
  EXPECT_EQ(host_values<std::int64_t>(pooled.argmax, stream)[0], 6);

  // Integer inputs whose bin sums divide exactly: all 12 -> every bin averages to 12.
  const Tensor twelves = device_tensor(std::vector<float>(25, 12.0f), Shape{1, 1, 5, 5}, stream);
  EXPECT_TRUE(all_equal(host_values<float>(adaptive_avg_pool2d_forward(twelves, params, stream), stream),
                        std::vector<float>(9, 12.0f)));
  // Backward of dL/dy = 12: element (1, 1) is in bins (0..1, 0..1) of areas 4, 6, 6, 9:
  // 3 + 2 + 2 + 4/3; element (0, 0) only in bin (0, 0): 12 / 4 = 3.
  const std::vector<float> dL_dx = host_values<float>(
      adaptive_avg_pool2d_backward(device_tensor(std::vector<float>(9, 12.0f), Shape{1, 1, 3, 3}, stream),
                                   Shape{1, 1, 5, 5}, params, stream),
      stream);
  EXPECT_EQ(dL_dx[0], 3.0f);
  EXPECT_NEAR(dL_dx[6], 3.0 + 2.0 + 2.0 + 4.0 / 3.0, 2e-6);

  // 3 -> 5: rows repeat, bins [0,1) [0,2) [1,2) [1,3) [2,3); a global 1x1 average.
  const std::vector<float> small = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const Tensor x3 = device_tensor(small, Shape{1, 1, 3, 3}, stream);
  const std::vector<float> up = host_values<float>(
      adaptive_avg_pool2d_forward(x3, AdaptivePool2dParams{.output_size = {5, 1}}, stream), stream);
  EXPECT_TRUE(all_equal(up, std::vector<float>{2, 3.5f, 5, 6.5f, 8}));
  EXPECT_TRUE(all_equal(
      host_values<float>(adaptive_avg_pool2d_forward(x3, AdaptivePool2dParams{.output_size = {1, 1}}, stream), stream),
      std::vector<float>{5}));
}

TEST(AdaptiveMaxPool2d, TiesPickTheFirstMaximumAndNanPropagates) {
  const cudaStream_t stream = current_stream();
  const AdaptivePool2dParams params{.output_size = {3, 3}};
  const Tensor ones = device_tensor(std::vector<float>(25, 1.0f), Shape{1, 1, 5, 5}, stream);
  const MaxPool2dResult pooled = adaptive_max_pool2d_forward(ones, params, stream);
  // The first element of each bin: rows {0, 1, 3} x columns {0, 1, 3}.
  EXPECT_EQ(host_values<std::int64_t>(pooled.argmax, stream),
            (std::vector<std::int64_t>{0, 1, 3, 5, 6, 8, 15, 16, 18}));
  const Tensor dL_dy = device_tensor(std::vector<float>(9, 1.0f), Shape{1, 1, 3, 3}, stream);
  const Tensor dL_dx = adaptive_max_pool2d_backward(dL_dy, pooled.argmax, Shape{1, 1, 5, 5}, params, stream);
  std::vector<float> expected_dL_dx(25, 0.0f);
  for (const int i : {0, 1, 3, 5, 6, 8, 15, 16, 18}) expected_dL_dx[static_cast<size_t>(i)] = 1.0f;
  EXPECT_TRUE(all_equal(host_values<float>(dL_dx, stream), expected_dL_dx));

  // NaN wins; of two NaNs in a bin, the later is the argmax.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> x_values = testing::random_uniform(13000, 25);
  x_values[1] = nan;
  x_values[2] = nan;
  x_values[23] = nan;
  const Tensor x = device_tensor(x_values, Shape{1, 1, 5, 5}, stream);
  const MaxPool2dResult pooled_nan =
      adaptive_max_pool2d_forward(x, AdaptivePool2dParams{.output_size = {3, 2}}, stream);
  const reference::MaxPoolResult expected =
      reference::adaptive_max_pool2d_forward(to_double(x_values), Shape{1, 1, 5, 5}, AdaptivePool2dParams{{3, 2}});
  const std::vector<float> y = host_values<float>(pooled_nan.y, stream);
  EXPECT_TRUE(std::isnan(y[0]) && std::isnan(y[1]) && std::isnan(y[5]));
  EXPECT_TRUE(all_close(y, expected.y, Tolerance{}));
  EXPECT_EQ(host_values<std::int64_t>(pooled_nan.argmax, stream), expected.argmax);
  EXPECT_EQ(host_values<std::int64_t>(pooled_nan.argmax, stream)[0], 2);
}

TEST(AdaptivePool2d, MatchesPyTorchGoldens) {
  const cudaStream_t stream = current_stream();
  const std::vector<testing::GoldenCase> avg_cases = golden_cases("adaptive_avg_pool2d");
  ASSERT_GE(avg_cases.size(), 8u);
  for (const testing::GoldenCase& golden : avg_cases) {
    SCOPED_TRACE(golden.name);
    const AdaptivePool2dParams params{.output_size = golden_pair(golden, "output_size")};
    const testing::GoldenTensor& x_golden = golden.tensor_of("x");
    const Shape x_shape = golden_shape(x_golden);
    const Tensor y = adaptive_avg_pool2d_forward(device_tensor(x_golden.values, x_shape, stream), params, stream);
    ASSERT_EQ(y.shape(), golden_shape(golden.tensor_of("y")));
    EXPECT_TRUE(
        all_close(host_values<float>(y, stream), to_double(golden.tensor_of("y").values), Tolerance{1e-6, 1e-6}));
    const testing::GoldenTensor& dL_dy = golden.tensor_of("dL_dy");
    const Tensor dL_dx =
        adaptive_avg_pool2d_backward(device_tensor(dL_dy.values, golden_shape(dL_dy), stream), x_shape, params, stream);
    EXPECT_TRUE(all_close(host_values<float>(dL_dx, stream), to_double(golden.tensor_of("dL_dx").values),
                          Tolerance{1e-6, 1e-6}));
  }
  const std::vector<testing::GoldenCase> max_cases = golden_cases("adaptive_max_pool2d");
  ASSERT_GE(max_cases.size(), 10u);
  for (const testing::GoldenCase& golden : max_cases) {
    SCOPED_TRACE(golden.name);
    const AdaptivePool2dParams params{.output_size = golden_pair(golden, "output_size")};
    const testing::GoldenTensor& x_golden = golden.tensor_of("x");
    const Shape x_shape = golden_shape(x_golden);
    const MaxPool2dResult pooled =
        adaptive_max_pool2d_forward(device_tensor(x_golden.values, x_shape, stream), params, stream);
    ASSERT_EQ(pooled.y.shape(), golden_shape(golden.tensor_of("y")));
    EXPECT_TRUE(all_equal(host_values<float>(pooled.y, stream), golden.tensor_of("y").values));
    EXPECT_EQ(host_values<std::int64_t>(pooled.argmax, stream), golden_indices(golden.tensor_of("indices")));
    const testing::GoldenTensor& dL_dy = golden.tensor_of("dL_dy");
    const Tensor dL_dx = adaptive_max_pool2d_backward(device_tensor(dL_dy.values, golden_shape(dL_dy), stream),
                                                      pooled.argmax, x_shape, params, stream);
    EXPECT_TRUE(all_close(host_values<float>(dL_dx, stream), to_double(golden.tensor_of("dL_dx").values),
                          Tolerance{1e-6, 1e-6}));
  }
}

TEST(AdaptivePool2d, BadArgumentsNameTheOpAndShapes) {
  const cudaStream_t stream = current_stream();
  const Tensor x = Tensor::zeros(Shape{2, 3, 5, 5}, DType::f32, stream);
  Tensor y = Tensor::empty(Shape{2, 3, 3, 3}, DType::f32, stream);
  Tensor argmax = Tensor::empty(Shape{2, 3, 3, 3}, DType::i64, stream);
  const AdaptivePool2dParams params{.output_size = {3, 3}};
  expect_invalid([&] { adaptive_avg_pool2d_forward(x, y, AdaptivePool2dParams{.output_size = {0, 3}}, stream); },
                 {"adaptive_avg_pool2d_forward: output_size must be at least (1, 1), got (0, 3) for x (2, 3, 5, 5)"});
  const AdaptivePool2dParams negative{.output_size = {3, -1}};
  expect_invalid([&] { adaptive_max_pool2d_forward(x, y, argmax, negative, stream); },
                 {"adaptive_max_pool2d_forward: output_size must be at least (1, 1), got (3, -1)"});
  expect_invalid([&] { adaptive_avg_pool2d_forward(x.flatten(1), y, params, stream); },
                 {"adaptive_avg_pool2d_forward: x must have 4 dimensions (N, C, H, W), got shape (2, 75)"});
  Tensor wrong_y = Tensor::empty(Shape{2, 3, 3, 2}, DType::f32, stream);
  expect_invalid([&] { adaptive_avg_pool2d_forward(x, wrong_y, params, stream); },
                 {"adaptive_avg_pool2d_forward: y must have shape (2, 3, 3, 3), got (2, 3, 3, 2)"});
  expect_invalid([&] { adaptive_max_pool2d_forward(x, wrong_y, argmax, params, stream); },
                 {"adaptive_max_pool2d_forward: y must have shape (2, 3, 3, 3), got (2, 3, 3, 2)"});
  Tensor u8_argmax = Tensor::empty(Shape{2, 3, 3, 3}, DType::u8, stream);
  expect_invalid([&] { adaptive_max_pool2d_forward(x, y, u8_argmax, params, stream); },
                 {"adaptive_max_pool2d_forward: argmax must have dtype i64 or i32"});
  Tensor dL_dx = Tensor::empty(Shape{2, 3, 5, 5}, DType::f32, stream);
  expect_invalid([&] { adaptive_avg_pool2d_backward(wrong_y, dL_dx, params, stream); },
                 {"adaptive_avg_pool2d_backward: dL_dy must have shape (2, 3, 3, 3), got (2, 3, 3, 2)"});
  Tensor short_argmax = Tensor::empty(Shape{2, 3, 3, 2}, DType::i64, stream);
  expect_invalid([&] { adaptive_max_pool2d_backward(y, short_argmax, dL_dx, params, stream); },
                 {"adaptive_max_pool2d_backward: argmax must have shape (2, 3, 3, 3), got (2, 3, 3, 2)"});
  Tensor host_dL_dx = Tensor::empty_host(Shape{2, 3, 5, 5}, DType::f32);
  expect_invalid([&] { adaptive_max_pool2d_backward(y, argmax, host_dL_dx, params, stream); },
                 {"adaptive_max_pool2d_backward: dL_dx must be a device tensor"});
}

// ---- f16 and bf16 ------------------------------------------------------------------------

class ReducedAdaptivePool2d : public ::testing::TestWithParam<DType> {};

// Max: exact (y and argmax the f32 run's on the rounded values); average: the f32 run
// rounded once; both backwards the f32 gathers rounded once.
TEST_P(ReducedAdaptivePool2d, IsTheF32RunOnTheRoundedValues) {
  std::uint64_t seed = 7000;
  for (const AdaptiveCase& test_case : kCases) {
    SCOPED_TRACE(describe(test_case, seed));
    const AdaptivePool2dParams params{.output_size = test_case.output_size};
    const Shape y_shape = adaptive_avg_pool2d_output_shape(test_case.x_shape, params);
    const PoolLaunchers average{
        .forward = [&](const Tensor& x, Tensor& y, Tensor&) {
          adaptive_avg_pool2d_forward(x, y, params, current_stream());
        },
        .backward = [&](const Tensor& dL_dy, const Tensor&, Tensor& dL_dx) {
          adaptive_avg_pool2d_backward(dL_dy, dL_dx, params, current_stream());
        }};
    expect_reduced_pool_is_rounded_f32(GetParam(), test_case.x_shape, y_shape, average, seed++);
    const PoolLaunchers maximum{
        .forward = [&](const Tensor& x, Tensor& y, Tensor& argmax) {
          adaptive_max_pool2d_forward(x, y, argmax, params, current_stream());
        },
        .backward = [&](const Tensor& dL_dy, const Tensor& argmax, Tensor& dL_dx) {
          adaptive_max_pool2d_backward(dL_dy, argmax, dL_dx, params, current_stream());
        },
        .with_argmax = true};
    expect_reduced_pool_is_rounded_f32(GetParam(), test_case.x_shape, y_shape, maximum, seed++);
  }
}

TEST_P(ReducedAdaptivePool2d, MismatchedDtypesAreErrors) {
  const DType dtype = GetParam();
  const cudaStream_t stream = current_stream();
  const Tensor x = Tensor::zeros(Shape{1, 2, 5, 5}, dtype, stream);
  Tensor f32_y = Tensor::empty(Shape{1, 2, 3, 3}, DType::f32, stream);
  expect_invalid([&] { adaptive_avg_pool2d_forward(x, f32_y, {.output_size = {3, 3}}, stream); },
                 {"adaptive_avg_pool2d_forward: y has dtype f32 but x has dtype " + std::string(dtype_name(dtype))});
  const Tensor ints = Tensor::zeros(Shape{1, 2, 5, 5}, DType::i32, stream);
  expect_invalid([&] { adaptive_max_pool2d_forward(ints, {.output_size = {3, 3}}, stream); },
                 {"adaptive_max_pool2d_forward: x must have dtype f32, f16 or bf16"});
}

INSTANTIATE_TEST_SUITE_P(F16AndBf16, ReducedAdaptivePool2d, ::testing::ValuesIn(testing::kReducedDtypes),
                         testing::dtype_param_name);

}  // namespace
}  // namespace strata::kernels
