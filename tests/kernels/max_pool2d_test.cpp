// max_pool2d forward and backward against the double reference, finite differences and
// PyTorch's goldens; ties, NaN, windows that miss the input, i32/i64/absent argmax, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "strata/core/stream.h"
#include "strata/kernels/pool2d.h"
#include "tests/kernels/pool2d_test_support.h"
#include "tests/reference/pool2d_reference.h"
#include "tests/support/compare.h"
#include "tests/support/gradcheck.h"

namespace strata::kernels {
namespace {

using namespace pool2d_testing;
using testing::all_close;
using testing::all_equal;
using testing::Tolerance;

constexpr Tolerance kGradientTolerance{1e-6, 1e-6};

struct MaxPoolCase {
  const char* name;
  Shape x_shape;
  Pool2dParams params;
};

// Odd sizes: batch 1, channels not a multiple of 32, 1x1 planes, non-square planes and
// windows, ceil_mode with partial last windows, dilation, overlapping windows.
const MaxPoolCase kCases[] = {
    {"k2_default_stride", Shape{2, 3, 8, 6}, Pool2dParams{.kernel = {2, 2}}},
    {"k3_s2_p1_stem", Shape{1, 5, 9, 7}, Pool2dParams{.kernel = {3, 3}, .stride = Size2d{2, 2}, .padding = {1, 1}}},
    {"k3x2_s2x1_p1x0_d2x1_ceil", Shape{2, 3, 10, 7},
     Pool2dParams{.kernel = {3, 2}, .stride = Size2d{2, 1}, .padding = {1, 0}, .dilation = {2, 1},
                  .ceil_mode = true}},
    {"k2_s2_p1_ceil_drops_window_in_padding", Shape{1, 2, 5, 4},
     Pool2dParams{.kernel = {2, 2}, .stride = Size2d{2, 2}, .padding = {1, 1}, .ceil_mode = true}},
    {"k3_s3_ceil_partial", Shape{1, 37, 3, 11}, Pool2dParams{.kernel = {3, 3}, .ceil_mode = true}},
    {"k2_floor_leaves_a_row_and_column", Shape{2, 3, 7, 5}, Pool2dParams{.kernel = {2, 2}}},
    {"k2x3_floor_leaves_rows_and_columns", Shape{1, 4, 9, 8}, Pool2dParams{.kernel = {2, 3}}},
    {"overlapping_k3_s1_p1", Shape{2, 2, 6, 5},
     Pool2dParams{.kernel = {3, 3}, .stride = Size2d{1, 1}, .padding = {1, 1}}},
    {"global_5x4", Shape{1, 2, 5, 4}, Pool2dParams{.kernel = {5, 4}}},
    {"one_by_one", Shape{1, 33, 1, 1}, Pool2dParams{.kernel = {1, 1}}},
    {"dilation3_p1", Shape{2, 1, 11, 9}, Pool2dParams{.kernel = {3, 2}, .stride = Size2d{2, 3}, .padding = {1, 1},
                                                      .dilation = {3, 2}}},
};

std::string describe(const MaxPoolCase& test_case, std::uint64_t seed) {
  return std::string(test_case.name) + " x " + test_case.x_shape.to_string() + " seed " + std::to_string(seed);
}

// Forward (y, argmax) and backward against the reference on fresh random inputs, with
// poisoned outputs.
template <typename Index>
void check_against_reference(const MaxPoolCase& test_case, std::uint64_t seed) {
  SCOPED_TRACE(describe(test_case, seed));
  const cudaStream_t stream = current_stream();
  const std::vector<float> x_values =
      testing::random_uniform(seed, static_cast<size_t>(test_case.x_shape.numel()), -2.0f, 2.0f);
  const reference::MaxPoolResult expected =
      reference::max_pool2d_forward(to_double(x_values), test_case.x_shape, test_case.params);
  const Shape y_shape = reference::max_pool2d_output_shape(test_case.x_shape, test_case.params);
  ASSERT_EQ(max_pool2d_output_shape(test_case.x_shape, test_case.params), y_shape);

  const Tensor x = device_tensor(x_values, test_case.x_shape, stream);
  Tensor y = poisoned(y_shape, stream);
  Tensor argmax = poisoned_indices<Index>(y_shape, stream);
  max_pool2d_forward(x, y, argmax, test_case.params, stream);
  EXPECT_TRUE(all_close(host_values<float>(y, stream), expected.y, Tolerance{}));
  const std::vector<Index> argmax_values = host_values<Index>(argmax, stream);
  std::vector<std::int64_t> argmax_wide(argmax_values.begin(), argmax_values.end());
  EXPECT_EQ(argmax_wide, expected.argmax);

  const std::vector<float> dL_dy_values = testing::random_uniform(seed + 1, static_cast<size_t>(y_shape.numel()));
  const Tensor dL_dy = device_tensor(dL_dy_values, y_shape, stream);
  Tensor dL_dx = poisoned(test_case.x_shape, stream);
  max_pool2d_backward(dL_dy, argmax, dL_dx, test_case.params, stream);
  EXPECT_TRUE(all_close(host_values<float>(dL_dx, stream),
                        reference::max_pool_backward(to_double(dL_dy_values), expected.argmax, test_case.x_shape),
                        kGradientTolerance));
}

TEST(MaxPool2d, MatchesReferenceWithInt64Argmax) {
  std::uint64_t seed = 1000;
  for (const MaxPoolCase& test_case : kCases) check_against_reference<std::int64_t>(test_case, seed++);
}

TEST(MaxPool2d, MatchesReferenceWithInt32Argmax) {
  check_against_reference<std::int32_t>(kCases[1], 2000);
  check_against_reference<std::int32_t>(kCases[2], 2001);
}

TEST(MaxPool2d, ConvenienceOverloadsAndUnsavedArgmax) {
  const cudaStream_t stream = current_stream();
  const MaxPoolCase& test_case = kCases[1];
  const std::vector<float> x_values = testing::random_uniform(3000, static_cast<size_t>(test_case.x_shape.numel()));
  const reference::MaxPoolResult expected =
      reference::max_pool2d_forward(to_double(x_values), test_case.x_shape, test_case.params);
  const Tensor x = device_tensor(x_values, test_case.x_shape, stream);
  const MaxPool2dResult pooled = max_pool2d_forward(x, test_case.params, stream);
  EXPECT_EQ(pooled.argmax.dtype(), DType::i64);
  EXPECT_TRUE(all_close(host_values<float>(pooled.y, stream), expected.y, Tolerance{}));
  EXPECT_EQ(host_values<std::int64_t>(pooled.argmax, stream), expected.argmax);

  // Inference: no argmax saved, the same y.
  Tensor y = poisoned(pooled.y.shape(), stream);
  Tensor no_argmax;
  max_pool2d_forward(x, y, no_argmax, test_case.params, stream);
  EXPECT_TRUE(all_close(host_values<float>(y, stream), expected.y, Tolerance{}));

  const std::vector<float> dL_dy_values = testing::random_uniform(3001, static_cast<size_t>(pooled.y.numel()));
  const Tensor dL_dx = max_pool2d_backward(device_tensor(dL_dy_values, pooled.y.shape(), stream), pooled.argmax,
                                           test_case.x_shape, test_case.params, stream);
  EXPECT_TRUE(all_close(host_values<float>(dL_dx, stream),
                        reference::max_pool_backward(to_double(dL_dy_values), expected.argmax, test_case.x_shape),
                        kGradientTolerance));
}

// The case of kCases named name.
const MaxPoolCase& case_named(std::string_view name) {
  for (const MaxPoolCase& test_case : kCases) {
    if (test_case.name == name) return test_case;
  }
  throw std::invalid_argument("no max pool case named " + std::string(name));
}

// Central differences of the reference forward (in double) against the kernel's backward,
// on inputs without near ties so that no difference step changes an argmax: both backward
// kernels, the gather (dilated, overlapping, padded windows) and the tiled one.
TEST(MaxPool2d, BackwardMatchesFiniteDifferences) {
  const cudaStream_t stream = current_stream();
  const MaxPoolCase cases[] = {case_named("k3x2_s2x1_p1x0_d2x1_ceil"), case_named("overlapping_k3_s1_p1"),
                               case_named("k2_s2_p1_ceil_drops_window_in_padding"),
                               case_named("k2_floor_leaves_a_row_and_column")};
  std::uint64_t seed = 4000;
  for (const MaxPoolCase& test_case : cases) {
    SCOPED_TRACE(describe(test_case, seed));
    const Shape x_shape{1, 2, test_case.x_shape[2], test_case.x_shape[3]};
    const std::vector<float> x_values = distinct_values(seed, static_cast<size_t>(x_shape.numel()));
    const Shape y_shape = max_pool2d_output_shape(x_shape, test_case.params);
    const std::vector<float> weights = testing::random_uniform(seed + 1, static_cast<size_t>(y_shape.numel()));
    const std::vector<double> weights_double = to_double(weights);
    const std::vector<double> numerical = testing::numerical_gradient(
        [&](std::span<const double> point) {
          return testing::weighted_sum(reference::max_pool2d_forward(point, x_shape, test_case.params).y,
                                       weights_double);
        },
        to_double(x_values));
    const MaxPool2dResult pooled =
        max_pool2d_forward(device_tensor(x_values, x_shape, stream), test_case.params, stream);
    Tensor dL_dx = poisoned(x_shape, stream);
    max_pool2d_backward(device_tensor(weights, y_shape, stream), pooled.argmax, dL_dx, test_case.params, stream);
    EXPECT_TRUE(all_close(host_values<float>(dL_dx, stream), numerical, Tolerance{1e-5, 1e-5}));
    ++seed;
  }
}

TEST(MaxPool2d, ExactOnSmallIntegers) {
  const cudaStream_t stream = current_stream();
  // A 4x4 plane of distinct integers, 2x2 windows.
  const std::vector<float> x_values = {3, 9, 1, 4,    //
                                       7, 2, 12, 0,   //
                                       5, 15, 6, 8,   //
                                       11, 10, 13, 14};
  const Tensor x = device_tensor(x_values, Shape{1, 1, 4, 4}, stream);
  const Pool2dParams params{.kernel = {2, 2}};
  const MaxPool2dResult pooled = max_pool2d_forward(x, params, stream);
  EXPECT_TRUE(all_equal(host_values<float>(pooled.y, stream), std::vector<float>{9, 12, 15, 14}));
  EXPECT_EQ(host_values<std::int64_t>(pooled.argmax, stream), (std::vector<std::int64_t>{1, 6, 9, 15}));
  const Tensor dL_dx = max_pool2d_backward(device_tensor(std::vector<float>{1, 2, 3, 4}, Shape{1, 1, 2, 2}, stream),
                                           pooled.argmax, Shape{1, 1, 4, 4}, params, stream);
  EXPECT_TRUE(all_equal(host_values<float>(dL_dx, stream),
                        std::vector<float>{0, 1, 0, 0, 0, 0, 2, 0, 0, 3, 0, 0, 0, 0, 0, 4}));

  // Overlapping 3x3 windows, stride 1, padding 1: the 15 is the maximum of nine windows, and
  // its gradient is the sum of theirs.
  const Pool2dParams overlapping{.kernel = {3, 3}, .stride = Size2d{1, 1}, .padding = {1, 1}};
  const MaxPool2dResult pooled_overlapping = max_pool2d_forward(x, overlapping, stream);
  EXPECT_TRUE(all_equal(host_values<float>(pooled_overlapping.y, stream),
                        std::vector<float>{9, 12, 12, 12, 15, 15, 15, 12, 15, 15, 15, 14, 15, 15, 15, 14}));
  const Tensor ones = device_tensor(std::vector<float>(16, 1.0f), Shape{1, 1, 4, 4}, stream);
  const Tensor dL_dx_overlapping =
      max_pool2d_backward(ones, pooled_overlapping.argmax, Shape{1, 1, 4, 4}, overlapping, stream);
  EXPECT_TRUE(all_equal(host_values<float>(dL_dx_overlapping, stream),
                        std::vector<float>{0, 1, 0, 0, 0, 0, 4, 0, 0, 9, 0, 0, 0, 0, 0, 2}));
}

// Windows that tile the input (kernel == stride, no padding or dilation) take the backward
// that writes each window's inputs from its output: every input written once (poisoned
// before), those past the last window in floor mode zero, and a -0 gradient +0 as the gather
// (and PyTorch's scatter into zeros) gives it.
TEST(MaxPool2d, TilingWindowsWriteEveryInputOnce) {
  const cudaStream_t stream = current_stream();
  const Shape x_shape{1, 2, 5, 5};  // 2x2 windows: row 4 and column 4 in none
  const std::vector<float> x_values = testing::random_uniform(31, static_cast<size_t>(x_shape.numel()));
  const Pool2dParams params{.kernel = {2, 2}};
  const MaxPool2dResult pooled = max_pool2d_forward(device_tensor(x_values, x_shape, stream), params, stream);
  const std::vector<float> dL_dy_values{-0.0f, 2.0f, 3.0f, -4.0f, 5.0f, -0.0f, 7.0f, 8.0f};  // (1, 2, 2, 2)
  Tensor dL_dx = poisoned(x_shape, stream);
  max_pool2d_backward(device_tensor(dL_dy_values, pooled.y.shape(), stream), pooled.argmax, dL_dx, params, stream);
  const std::vector<float> gradient = host_values<float>(dL_dx, stream);
  const std::vector<std::int64_t> argmax = host_values<std::int64_t>(pooled.argmax, stream);
  for (std::size_t i = 0; i < gradient.size(); ++i) {
    const std::int64_t plane = static_cast<std::int64_t>(i) / 25, within = static_cast<std::int64_t>(i) % 25;
    float expected = 0.0f;
    for (std::int64_t o = 0; o < 4; ++o) {
      if (argmax[static_cast<std::size_t>(plane * 4 + o)] == within) {
        expected = dL_dy_values[static_cast<std::size_t>(plane * 4 + o)];
      }
    }
    EXPECT_EQ(gradient[i], expected) << "input " << i;
    if (gradient[i] == 0.0f) {
      EXPECT_FALSE(std::signbit(gradient[i])) << "input " << i << ": +0, as the gather gives";
    }
  }
}

// Ties: the first maximum in row-major window order wins, as in PyTorch, also through
// padding and dilation; the backward sends the whole gradient there.
TEST(MaxPool2d, TiesPickTheFirstMaximum) {
  const cudaStream_t stream = current_stream();
  const Tensor x = device_tensor(std::vector<float>(12, 1.0f), Shape{1, 1, 3, 4}, stream);
  const Pool2dParams params{.kernel = {2, 2}, .stride = Size2d{1, 1}};
  const MaxPool2dResult pooled = max_pool2d_forward(x, params, stream);
  EXPECT_EQ(host_values<std::int64_t>(pooled.argmax, stream), (std::vector<std::int64_t>{0, 1, 2, 4, 5, 6}));
  const Tensor dL_dx = max_pool2d_backward(device_tensor(std::vector<float>(6, 1.0f), Shape{1, 1, 2, 3}, stream),
                                           pooled.argmax, Shape{1, 1, 3, 4}, params, stream);
  EXPECT_TRUE(all_equal(host_values<float>(dL_dx, stream), std::vector<float>{1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0}));

  // Padded windows start at their first tap inside the input.
  const Pool2dParams padded{.kernel = {3, 3}, .stride = Size2d{2, 2}, .padding = {1, 1}, .dilation = {1, 2}};
  const MaxPool2dResult pooled_padded = max_pool2d_forward(x, padded, stream);
  const reference::MaxPoolResult expected =
      reference::max_pool2d_forward(std::vector<double>(12, 1.0), Shape{1, 1, 3, 4}, padded);
  EXPECT_EQ(host_values<std::int64_t>(pooled_padded.argmax, stream), expected.argmax);

  // A window of -inf only reports its first tap, as PyTorch does.
  const Tensor minus_inf =
      device_tensor(std::vector<float>(4, -std::numeric_limits<float>::infinity()), Shape{1, 1, 2, 2}, stream);
  const MaxPool2dResult pooled_inf =
      max_pool2d_forward(minus_inf, Pool2dParams{.kernel = {2, 2}, .padding = {1, 1}}, stream);
  EXPECT_EQ(host_values<std::int64_t>(pooled_inf.argmax, stream), (std::vector<std::int64_t>{0, 1, 2, 3}));
}

// A NaN in a window wins over every number; of several NaNs the last in scan order is the
// argmax (PyTorch's `val > max || isnan(val)`), and it receives the gradient.
TEST(MaxPool2d, NanPropagates) {
  const cudaStream_t stream = current_stream();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> x_values = {nan, 1, nan, 0, 5, 2, 3, 4};
  const Tensor x = device_tensor(x_values, Shape{1, 1, 2, 4}, stream);
  const Pool2dParams params{.kernel = {1, 4}};
  const MaxPool2dResult pooled = max_pool2d_forward(x, params, stream);
  const std::vector<float> y = host_values<float>(pooled.y, stream);
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_EQ(y[1], 5.0f);
  EXPECT_EQ(host_values<std::int64_t>(pooled.argmax, stream), (std::vector<std::int64_t>{2, 4}));
  const Tensor dL_dx = max_pool2d_backward(device_tensor(std::vector<float>{1.5f, -2.0f}, Shape{1, 1, 2, 1}, stream),
                                           pooled.argmax, Shape{1, 1, 2, 4}, params, stream);
  EXPECT_TRUE(all_equal(host_values<float>(dL_dx, stream), std::vector<float>{0, 0, 1.5f, 0, -2.0f, 0, 0, 0}));

  // On random data with scattered NaNs, against the reference.
  std::vector<float> random = testing::random_uniform(5000, 2 * 3 * 7 * 6);
  for (size_t i = 0; i < random.size(); i += 7) random[i] = nan;
  const Shape x_shape{2, 3, 7, 6};
  const Pool2dParams overlapping{.kernel = {3, 2}, .stride = Size2d{2, 1}, .padding = {1, 1}};
  const reference::MaxPoolResult expected = reference::max_pool2d_forward(to_double(random), x_shape, overlapping);
  const MaxPool2dResult pooled_random = max_pool2d_forward(device_tensor(random, x_shape, stream), overlapping, stream);
  EXPECT_TRUE(all_close(host_values<float>(pooled_random.y, stream), expected.y, Tolerance{}));
  EXPECT_EQ(host_values<std::int64_t>(pooled_random.argmax, stream), expected.argmax);
}

// With dilation a window's taps can all fall in the padding: y is -inf (as PyTorch), argmax
// is -1 (PyTorch reports a position outside the plane) and no gradient flows from it.
TEST(MaxPool2d, WindowsThatMissTheInputGiveMinusInfinity) {
  const cudaStream_t stream = current_stream();
  const Shape x_shape{1, 1, 2, 5};
  const Tensor x = device_tensor(std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, x_shape, stream);
  // Rows: the one window's taps are -1 and 2, both outside 2 rows. Columns: taps -1, 2.
  const Pool2dParams params{.kernel = {2, 2}, .stride = Size2d{1, 1}, .padding = {1, 1}, .dilation = {3, 3}};
  const Shape y_shape = max_pool2d_output_shape(x_shape, params);
  ASSERT_EQ(y_shape, (Shape{1, 1, 1, 4}));
  Tensor y = poisoned(y_shape, stream);
  Tensor argmax = poisoned_indices<std::int64_t>(y_shape, stream);
  max_pool2d_forward(x, y, argmax, params, stream);
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(all_equal(host_values<float>(y, stream), std::vector<float>{-inf, -inf, -inf, -inf}));
  EXPECT_EQ(host_values<std::int64_t>(argmax, stream), (std::vector<std::int64_t>{-1, -1, -1, -1}));
  Tensor dL_dx = poisoned(x_shape, stream);
  max_pool2d_backward(device_tensor(std::vector<float>{1, 2, 3, 4}, y_shape, stream), argmax, dL_dx, params, stream);
  EXPECT_TRUE(all_equal(host_values<float>(dL_dx, stream), std::vector<float>(10, 0.0f)));

  // (Along one axis either every window misses the input or none does, on all small sizes
  // tried; several planes against the reference.)
  const Shape batch_shape{2, 3, 2, 5};
  const std::vector<float> values = testing::random_uniform(6000, static_cast<size_t>(batch_shape.numel()));
  const reference::MaxPoolResult expected = reference::max_pool2d_forward(to_double(values), batch_shape, params);
  const MaxPool2dResult pooled = max_pool2d_forward(device_tensor(values, batch_shape, stream), params, stream);
  EXPECT_TRUE(all_close(host_values<float>(pooled.y, stream), expected.y, Tolerance{}));
  EXPECT_EQ(host_values<std::int64_t>(pooled.argmax, stream), expected.argmax);
}

TEST(MaxPool2d, EmptyBatchLaunchesNothing) {
  const cudaStream_t stream = current_stream();
  const Tensor x = Tensor::empty(Shape{0, 3, 4, 4}, DType::f32, stream);
  const MaxPool2dResult pooled = max_pool2d_forward(x, Pool2dParams{.kernel = {2, 2}}, stream);
  EXPECT_EQ(pooled.y.shape(), (Shape{0, 3, 2, 2}));
  const Tensor dL_dx = max_pool2d_backward(pooled.y, pooled.argmax, x.shape(), Pool2dParams{.kernel = {2, 2}}, stream);
  EXPECT_EQ(dL_dx.shape(), x.shape());
}

TEST(MaxPool2d, MatchesPyTorchGoldens) {
  const cudaStream_t stream = current_stream();
  const std::vector<testing::GoldenCase> cases = golden_cases("max_pool2d");
  ASSERT_GE(cases.size(), 10u);
  for (const testing::GoldenCase& golden : cases) {
    SCOPED_TRACE(golden.name);
    const Pool2dParams params{.kernel = golden_pair(golden, "kernel"), .stride = golden_pair(golden, "stride"),
                              .padding = golden_pair(golden, "padding"), .dilation = golden_pair(golden, "dilation"),
                              .ceil_mode = golden.int_of("ceil_mode") != 0};
    const testing::GoldenTensor& x_golden = golden.tensor_of("x");
    const testing::GoldenTensor& y_golden = golden.tensor_of("y");
    const Shape x_shape = golden_shape(x_golden);
    ASSERT_EQ(max_pool2d_output_shape(x_shape, params), golden_shape(y_golden));
    const MaxPool2dResult pooled = max_pool2d_forward(device_tensor(x_golden.values, x_shape, stream), params, stream);
    EXPECT_TRUE(all_equal(host_values<float>(pooled.y, stream), y_golden.values));
    if (!golden.has_tensor("indices")) continue;  // windows that miss the input: see above
    EXPECT_EQ(host_values<std::int64_t>(pooled.argmax, stream), golden_indices(golden.tensor_of("indices")));
    const testing::GoldenTensor& dL_dy = golden.tensor_of("dL_dy");
    const Tensor dL_dx = max_pool2d_backward(device_tensor(dL_dy.values, golden_shape(dL_dy), stream), pooled.argmax,
                                             x_shape, params, stream);
    EXPECT_TRUE(all_close(host_values<float>(dL_dx, stream), to_double(golden.tensor_of("dL_dx").values),
                          Tolerance{1e-6, 1e-6}));
  }
}

TEST(MaxPool2d, BadArgumentsNameTheOpAndShapes) {
  const cudaStream_t stream = current_stream();
  const Tensor x = Tensor::zeros(Shape{2, 3, 6, 6}, DType::f32, stream);
  const Pool2dParams params{.kernel = {2, 2}};
  Tensor y = Tensor::empty(Shape{2, 3, 3, 3}, DType::f32, stream);
  Tensor argmax = Tensor::empty(Shape{2, 3, 3, 3}, DType::i64, stream);
  expect_invalid([&] { max_pool2d_forward(x, y, argmax, Pool2dParams{.kernel = {0, 2}}, stream); },
                 {"max_pool2d_forward: kernel size must be positive", "x (2, 3, 6, 6)"});
  const Pool2dParams zero_stride{.kernel = {2, 2}, .stride = Size2d{0, 1}};
  expect_invalid([&] { max_pool2d_forward(x, y, argmax, zero_stride, stream); },
                 {"max_pool2d_forward: stride must be positive"});
  expect_invalid([&] { max_pool2d_forward(x, y, argmax, Pool2dParams{.kernel = {2, 2}, .padding = {-1, 0}}, stream); },
                 {"max_pool2d_forward: padding must be non-negative"});
  expect_invalid([&] { max_pool2d_forward(x, y, argmax, Pool2dParams{.kernel = {2, 2}, .padding = {2, 0}}, stream); },
                 {"max_pool2d_forward: padding should be at most half of the kernel size"});
  expect_invalid([&] { max_pool2d_forward(x, y, argmax, Pool2dParams{.kernel = {7, 7}}, stream); },
                 {"max_pool2d_forward: output size (0, 0) is too small", "x (2, 3, 6, 6)"});
  expect_invalid([&] { max_pool2d_forward(x.reshape(Shape{6, 6, 6}), y, argmax, params, stream); },
                 {"max_pool2d_forward: x must have 4 dimensions (N, C, H, W), got shape (6, 6, 6)"});
  Tensor wrong_y = Tensor::empty(Shape{2, 3, 3, 2}, DType::f32, stream);
  expect_invalid([&] { max_pool2d_forward(x, wrong_y, argmax, params, stream); },
                 {"max_pool2d_forward: y must have shape (2, 3, 3, 3), got (2, 3, 3, 2)"});
  Tensor float_argmax = Tensor::empty(Shape{2, 3, 3, 3}, DType::f32, stream);
  expect_invalid([&] { max_pool2d_forward(x, y, float_argmax, params, stream); },
                 {"max_pool2d_forward: argmax must have dtype i64 or i32"});
  Tensor host_x = Tensor::empty_host(Shape{2, 3, 6, 6}, DType::f32);
  expect_invalid([&] { max_pool2d_forward(host_x, y, argmax, params, stream); },
                 {"max_pool2d_forward: x must be a device tensor"});
  Tensor y_over_x = x.flatten().narrow(0, 0, 54).reshape(Shape{2, 3, 3, 3});
  expect_invalid([&] { max_pool2d_forward(x, y_over_x, argmax, params, stream); },
                 {"max_pool2d_forward: y (2, 3, 3, 3) overlaps x (2, 3, 6, 6)"});

  const Tensor dL_dy = Tensor::zeros(Shape{2, 3, 3, 3}, DType::f32, stream);
  Tensor dL_dx = Tensor::empty(Shape{2, 3, 6, 6}, DType::f32, stream);
  expect_invalid([&] { max_pool2d_backward(dL_dy, Tensor(), dL_dx, params, stream); },
                 {"max_pool2d_backward: argmax is an undefined tensor"});
  Tensor short_argmax = Tensor::empty(Shape{2, 3, 3, 2}, DType::i64, stream);
  expect_invalid([&] { max_pool2d_backward(dL_dy, short_argmax, dL_dx, params, stream); },
                 {"max_pool2d_backward: argmax must have shape (2, 3, 3, 3), got (2, 3, 3, 2)"});
  Tensor wrong_dL_dx = Tensor::empty(Shape{2, 3, 8, 6}, DType::f32, stream);
  expect_invalid([&] { max_pool2d_backward(dL_dy, argmax, wrong_dL_dx, params, stream); },
                 {"max_pool2d_backward: dL_dy must have shape (2, 3, 4, 3), got (2, 3, 3, 3)"});
  Tensor i32_dL_dx = Tensor::empty(Shape{2, 3, 6, 6}, DType::i32, stream);
  expect_invalid([&] { max_pool2d_backward(dL_dy, argmax, i32_dL_dx, params, stream); },
                 {"max_pool2d_backward: dL_dx must have dtype f32"});
}

// ---- f16 and bf16 ------------------------------------------------------------------------

class ReducedMaxPool2d : public ::testing::TestWithParam<DType> {};

// Exact in any dtype: y bit for bit and argmax as the f32 run on the same rounded values
// (ties included, which rounding makes common); dL_dx is the f32 gather rounded once.
TEST_P(ReducedMaxPool2d, IsTheF32RunOnTheRoundedValues) {
  std::uint64_t seed = 5000;
  for (const MaxPoolCase& test_case : kCases) {
    SCOPED_TRACE(describe(test_case, seed));
    const Pool2dParams params = test_case.params;
    const PoolLaunchers launchers{
        .forward = [&](const Tensor& x, Tensor& y, Tensor& argmax) {
          max_pool2d_forward(x, y, argmax, params, current_stream());
        },
        .backward = [&](const Tensor& dL_dy, const Tensor& argmax, Tensor& dL_dx) {
          max_pool2d_backward(dL_dy, argmax, dL_dx, params, current_stream());
        },
        .with_argmax = true};
    expect_reduced_pool_is_rounded_f32(GetParam(), test_case.x_shape,
                                       max_pool2d_output_shape(test_case.x_shape, params), launchers, seed++);
  }
}

TEST_P(ReducedMaxPool2d, AllocatingFormsKeepTheDtypeAndMismatchesAreErrors) {
  const DType dtype = GetParam();
  const cudaStream_t stream = current_stream();
  const Pool2dParams params{.kernel = {2, 2}};
  const Tensor x = Tensor::zeros(Shape{1, 2, 4, 4}, dtype, stream);
  const MaxPool2dResult pooled = max_pool2d_forward(x, params, stream);
  EXPECT_EQ(pooled.y.dtype(), dtype);
  EXPECT_EQ(max_pool2d_backward(pooled.y, pooled.argmax, x.shape(), params, stream).dtype(), dtype);
  Tensor f32_y = Tensor::empty(pooled.y.shape(), DType::f32, stream);
  Tensor argmax = Tensor::empty(pooled.y.shape(), DType::i64, stream);
  expect_invalid([&] { max_pool2d_forward(x, f32_y, argmax, params, stream); },
                 {"max_pool2d_forward: y has dtype f32 but x has dtype " + std::string(dtype_name(dtype)),
                  "F::to_dtype"});
  Tensor f32_dL_dx = Tensor::empty(x.shape(), DType::f32, stream);
  expect_invalid(
      [&] { max_pool2d_backward(pooled.y, pooled.argmax, f32_dL_dx, params, stream); },
      {"max_pool2d_backward: dL_dy has dtype " + std::string(dtype_name(dtype)) + " but dL_dx has dtype f32"});
}

INSTANTIATE_TEST_SUITE_P(F16AndBf16, ReducedMaxPool2d, ::testing::ValuesIn(testing::kReducedDtypes),
                         testing::dtype_param_name);

}  // namespace
}  // namespace strata::kernels
