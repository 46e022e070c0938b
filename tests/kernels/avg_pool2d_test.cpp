// avg_pool2d forward and backward against the double reference, finite differences and
// PyTorch's goldens; count_include_pad both ways, ceil_mode windows clipped at the padded
// input, divisor_override, windows that are mostly padding, errors.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
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

constexpr Tolerance kTolerance{1e-6, 1e-5};

struct AvgPoolCase {
  const char* name;
  Shape x_shape;
  AvgPool2dParams params;
};

AvgPool2dParams window(Size2d kernel, Size2d stride, Size2d padding, bool ceil_mode,
                       bool count_include_pad) {
  return AvgPool2dParams{.window = {.kernel = kernel, .stride = stride, .padding = padding, .ceil_mode = ceil_mode},
                         .count_include_pad = count_include_pad};
}

// Odd sizes: batch 1, channels not a multiple of 32, 1x1 planes, non-square planes and
// windows, ceil_mode windows that hang past the padded input, overlapping windows.
const AvgPoolCase kCases[] = {
    {"k2_default_stride", Shape{2, 3, 8, 6}, AvgPool2dParams{.window = {.kernel = {2, 2}}}},
    {"k3_s2_p1_include_pad", Shape{1, 5, 9, 7}, window({3, 3}, {2, 2}, {1, 1}, false, true)},
    {"k3_s2_p1_exclude_pad", Shape{1, 5, 9, 7}, window({3, 3}, {2, 2}, {1, 1}, false, false)},
    {"k3_s2_p1_ceil_include_pad", Shape{2, 2, 4, 5}, window({3, 3}, {2, 2}, {1, 1}, true, true)},
    {"k3_s2_p1_ceil_exclude_pad", Shape{2, 2, 4, 5}, window({3, 3}, {2, 2}, {1, 1}, true, false)},
    {"k2_s2_p1_ceil", Shape{1, 37, 5, 3}, window({2, 2}, {2, 2}, {1, 1}, true, true)},
    {"k3x2_s1x2_p1x1_exclude_pad", Shape{2, 2, 6, 7}, window({3, 2}, {1, 2}, {1, 1}, false, false)},
    {"divisor_override", Shape{1, 3, 5, 5},
     AvgPool2dParams{.window = {.kernel = {3, 3}, .stride = Size2d{2, 2}, .padding = {1, 1}, .ceil_mode = true},
                     .divisor_override = 3}},
    {"negative_divisor_override", Shape{1, 2, 4, 3},
     AvgPool2dParams{.window = {.kernel = {2, 2}, .stride = Size2d{1, 1}}, .divisor_override = -2}},
    {"global_5x4", Shape{1, 2, 5, 4}, AvgPool2dParams{.window = {.kernel = {5, 4}}}},
    {"one_by_one", Shape{1, 33, 1, 1}, AvgPool2dParams{.window = {.kernel = {1, 1}}}},
};

std::string describe(const AvgPoolCase& test_case, std::uint64_t seed) {
  return std::string(test_case.name) + " x " + test_case.x_shape.to_string() + " seed " + std::to_string(seed);
}

TEST(AvgPool2d, MatchesReference) {
  const cudaStream_t stream = current_stream();
  std::uint64_t seed = 7000;
  for (const AvgPoolCase& test_case : kCases) {
    SCOPED_TRACE(describe(test_case, seed));
    const std::vector<float> x_values =
        testing::random_uniform(seed, static_cast<size_t>(test_case.x_shape.numel()), -2.0f, 2.0f);
    const Shape y_shape = reference::avg_pool2d_output_shape(test_case.x_shape, test_case.params);
    ASSERT_EQ(avg_pool2d_output_shape(test_case.x_shape, test_case.params), y_shape);
    Tensor y = poisoned(y_shape, stream);
    avg_pool2d_forward(device_tensor(x_values, test_case.x_shape, stream), y, test_case.params, stream);
    EXPECT_TRUE(all_close(host_values<float>(y, stream),
                          reference::avg_pool2d_forward(to_double(x_values), test_case.x_shape, test_case.params),
                          kTolerance));

    const std::vector<float> dL_dy_values = testing::random_uniform(seed + 1, static_cast<size_t>(y_shape.numel()));
    Tensor dL_dx = poisoned(test_case.x_shape, stream);
    avg_pool2d_backward(device_tensor(dL_dy_values, y_shape, stream), dL_dx, test_case.params, stream);
    EXPECT_TRUE(all_close(host_values<float>(dL_dx, stream),
                          reference::avg_pool2d_backward(to_double(dL_dy_values), test_case.x_shape, test_case.params),
                          kTolerance));
    seed += 2;
  }
}

TEST(AvgPool2d, BackwardMatchesFiniteDifferences) {
  const cudaStream_t stream = current_stream();
  const AvgPoolCase cases[] = {kCases[3], kCases[4], kCases[6], kCases[7]};
  std::uint64_t seed = 8000;
  for (const AvgPoolCase& test_case : cases) {
    SCOPED_TRACE(describe(test_case, seed));
    const Shape x_shape{1, 2, test_case.x_shape[2], test_case.x_shape[3]};
    const std::vector<float> x_values = testing::random_uniform(seed, static_cast<size_t>(x_shape.numel()));
    const Shape y_shape = avg_pool2d_output_shape(x_shape, test_case.params);
    const std::vector<float> weights = testing::random_uniform(seed + 1, static_cast<size_t>(y_shape.numel()));
    const std::vector<double> weights_double = to_double(weights);
    const std::vector<double> numerical = testing::numerical_gradient(
        [&](std::span<const double> point) {
          return testing::weighted_sum(reference::avg_pool2d_forward(point, x_shape, test_case.params),
                                       weights_double);
        },
        to_double(x_values));
    const Tensor dL_dx =
        avg_pool2d_backward(device_tensor(weights, y_shape, stream), x_shape, test_case.params, stream);
    EXPECT_TRUE(all_close(host_values<float>(dL_dx, stream), numerical, Tolerance{1e-5, 1e-5}));
    ++seed;
  }
}

TEST(AvgPool2d, ExactOnSmallIntegers) {
  const cudaStream_t stream = current_stream();
  const std::vector<float> x_values = {3, 9, 1, 4,    //
                                       7, 2, 12, 0,   //
                                       5, 15, 6, 8,   //
                                       11, 10, 13, 14};
  const AvgPool2dParams params{.window = {.kernel = {2, 2}}};
  const Tensor y = avg_pool2d_forward(device_tensor(x_values, Shape{1, 1, 4, 4}, stream), params, stream);
  EXPECT_TRUE(all_equal(host_values<float>(y, stream), std::vector<float>{21 / 4.0f, 17 / 4.0f, 41 / 4.0f, 41 / 4.0f}));
  const Tensor dL_dx = avg_pool2d_backward(device_tensor(std::vector<float>{4, 8, -4, 2}, Shape{1, 1, 2, 2}, stream),
                                           Shape{1, 1, 4, 4}, params, stream);
  EXPECT_TRUE(all_equal(host_values<float>(dL_dx, stream),
                        std::vector<float>{1, 1, 2, 2, 1, 1, 2, 2, -1, -1, 0.5f, 0.5f, -1, -1, 0.5f, 0.5f}));
}

// H = W = 4, k = 3, s = 2, p = 1, ceil_mode: windows [-1, 2), [1, 4), [3, 6) per axis. The
// last one is clipped to the padded input [-1, 5) before counting (extent 2, not 3) and
// holds a single input row. With count_include_pad the divisors are the products of the
// extents (3, 3, 2); without it, of the input counts (2, 3, 1).
TEST(AvgPool2d, DivisorsOfPaddedAndClippedWindows) {
  const cudaStream_t stream = current_stream();
  const Tensor x = device_tensor(std::vector<float>(16, 36.0f), Shape{1, 1, 4, 4}, stream);
  const AvgPool2dParams include_pad = window({3, 3}, {2, 2}, {1, 1}, true, true);
  const Tensor y_include = avg_pool2d_forward(x, include_pad, stream);
  ASSERT_EQ(y_include.shape(), (Shape{1, 1, 3, 3}));
  EXPECT_TRUE(all_equal(host_values<float>(y_include, stream), std::vector<float>{16, 24, 12, 24, 36, 18, 12, 18, 9}));
  const Tensor y_exclude = avg_pool2d_forward(x, window({3, 3}, {2, 2}, {1, 1}, true, false), stream);
  EXPECT_TRUE(all_equal(host_values<float>(y_exclude, stream), std::vector<float>(9, 36.0f)));
  // Backward of include_pad with dL/dy = 36 everywhere: element (3, 3) lies in windows
  // (1..2, 1..2) with divisors 9, 6, 6, 4: 4 + 6 + 6 + 9 = 25.
  const Tensor dL_dx = avg_pool2d_backward(device_tensor(std::vector<float>(9, 36.0f), Shape{1, 1, 3, 3}, stream),
                                           Shape{1, 1, 4, 4}, include_pad, stream);
  EXPECT_EQ(host_values<float>(dL_dx, stream)[15], 25.0f);

  // A 1x1 input under a 3x3 window with padding 1: 8 of the 9 taps are padding.
  const Tensor one = device_tensor(std::vector<float>{18.0f}, Shape{1, 1, 1, 1}, stream);
  const Tensor mostly_padding = avg_pool2d_forward(one, window({3, 3}, {1, 1}, {1, 1}, false, true), stream);
  EXPECT_TRUE(all_equal(host_values<float>(mostly_padding, stream), std::vector<float>{2.0f}));
  const Tensor only_input = avg_pool2d_forward(one, window({3, 3}, {1, 1}, {1, 1}, false, false), stream);
  EXPECT_TRUE(all_equal(host_values<float>(only_input, stream), std::vector<float>{18.0f}));
}

TEST(AvgPool2d, MatchesPyTorchGoldens) {
  const cudaStream_t stream = current_stream();
  const std::vector<testing::GoldenCase> cases = golden_cases("avg_pool2d");
  ASSERT_GE(cases.size(), 9u);
  for (const testing::GoldenCase& golden : cases) {
    SCOPED_TRACE(golden.name);
    AvgPool2dParams params{.window = {.kernel = golden_pair(golden, "kernel"), .stride = golden_pair(golden, "stride"),
                                      .padding = golden_pair(golden, "padding"),
                                      .ceil_mode = golden.int_of("ceil_mode") != 0},
                           .count_include_pad = golden.int_of("count_include_pad") != 0};
    if (golden.int_of("divisor_override") != 0) params.divisor_override = golden.int_of("divisor_override");
    const testing::GoldenTensor& x_golden = golden.tensor_of("x");
    const Shape x_shape = golden_shape(x_golden);
    ASSERT_EQ(avg_pool2d_output_shape(x_shape, params), golden_shape(golden.tensor_of("y")));
    const Tensor y = avg_pool2d_forward(device_tensor(x_golden.values, x_shape, stream), params, stream);
    EXPECT_TRUE(
        all_close(host_values<float>(y, stream), to_double(golden.tensor_of("y").values), Tolerance{1e-6, 1e-6}));
    const testing::GoldenTensor& dL_dy = golden.tensor_of("dL_dy");
    const Tensor dL_dx =
        avg_pool2d_backward(device_tensor(dL_dy.values, golden_shape(dL_dy), stream), x_shape, params, stream);
    EXPECT_TRUE(all_close(host_values<float>(dL_dx, stream), to_double(golden.tensor_of("dL_dx").values),
                          Tolerance{1e-6, 1e-6}));
  }
}

TEST(AvgPool2d, BadArgumentsNameTheOpAndShapes) {
  const cudaStream_t stream = current_stream();
  const Tensor x = Tensor::zeros(Shape{2, 3, 6, 6}, DType::f32, stream);
  Tensor y = Tensor::empty(Shape{2, 3, 3, 3}, DType::f32, stream);
  const AvgPool2dParams params{.window = {.kernel = {2, 2}}};
  expect_invalid([&] { avg_pool2d_forward(x, y, AvgPool2dParams{.window = {.kernel = {2, 0}}}, stream); },
                 {"avg_pool2d_forward: kernel size must be positive", "x (2, 3, 6, 6)", "kernel (2, 0)"});
  const AvgPool2dParams zero_stride{.window = {.kernel = {2, 2}, .stride = Size2d{0, 0}}};
  expect_invalid([&] { avg_pool2d_forward(x, y, zero_stride, stream); },
                 {"avg_pool2d_forward: stride must be positive"});
  expect_invalid([&] { avg_pool2d_forward(x, y, window({3, 3}, {1, 1}, {-1, 1}, false, true), stream); },
                 {"avg_pool2d_forward: padding must be non-negative", "padding (-1, 1)"});
  expect_invalid([&] { avg_pool2d_forward(x, y, window({3, 3}, {1, 1}, {1, 2}, false, true), stream); },
                 {"avg_pool2d_forward: padding should be at most half of the kernel size"});
  const AvgPool2dParams dilated{.window = {.kernel = {2, 2}, .dilation = {1, 2}}};
  expect_invalid([&] { avg_pool2d_forward(x, y, dilated, stream); },
                 {"avg_pool2d_forward: avg_pool2d has no dilation"});
  const AvgPool2dParams zero_divisor{.window = {.kernel = {2, 2}}, .divisor_override = 0};
  expect_invalid([&] { avg_pool2d_forward(x, y, zero_divisor, stream); },
                 {"avg_pool2d_forward: divisor_override must not be 0"});
  expect_invalid([&] { avg_pool2d_forward(x, y, AvgPool2dParams{.window = {.kernel = {8, 2}}}, stream); },
                 {"avg_pool2d_forward: output size (0, 3) is too small", "x (2, 3, 6, 6)"});
  expect_invalid([&] { avg_pool2d_forward(x.flatten(2), y, params, stream); },
                 {"avg_pool2d_forward: x must have 4 dimensions (N, C, H, W), got shape (2, 3, 36)"});
  Tensor wrong_y = Tensor::empty(Shape{2, 3, 3, 4}, DType::f32, stream);
  expect_invalid([&] { avg_pool2d_forward(x, wrong_y, params, stream); },
                 {"avg_pool2d_forward: y must have shape (2, 3, 3, 3), got (2, 3, 3, 4)"});
  Tensor dL_dx = Tensor::empty(Shape{2, 3, 6, 6}, DType::f32, stream);
  expect_invalid([&] { avg_pool2d_backward(wrong_y, dL_dx, params, stream); },
                 {"avg_pool2d_backward: dL_dy must have shape (2, 3, 3, 3), got (2, 3, 3, 4)"});
  Tensor dL_dx_over_dL_dy = y.flatten().reshape(Shape{2, 3, 3, 3});
  const AvgPool2dParams identity{.window = {.kernel = {1, 1}}};
  expect_invalid([&] { avg_pool2d_backward(y, dL_dx_over_dL_dy, identity, stream); },
                 {"avg_pool2d_backward: dL_dx (2, 3, 3, 3) overlaps dL_dy (2, 3, 3, 3)"});
}

// ---- f16 and bf16 ------------------------------------------------------------------------

class ReducedAvgPool2d : public ::testing::TestWithParam<DType> {};

// Sums and divisions in f32, one rounding at the store: the f32 run on the rounded values,
// rounded once, bit for bit.
TEST_P(ReducedAvgPool2d, IsTheF32RunOnTheRoundedValuesRoundedOnce) {
  std::uint64_t seed = 6000;
  for (const AvgPoolCase& test_case : kCases) {
    SCOPED_TRACE(describe(test_case, seed));
    const AvgPool2dParams params = test_case.params;
    const PoolLaunchers launchers{
        .forward = [&](const Tensor& x, Tensor& y, Tensor&) { avg_pool2d_forward(x, y, params, current_stream()); },
        .backward = [&](const Tensor& dL_dy, const Tensor&, Tensor& dL_dx) {
          avg_pool2d_backward(dL_dy, dL_dx, params, current_stream());
        }};
    expect_reduced_pool_is_rounded_f32(GetParam(), test_case.x_shape,
                                       avg_pool2d_output_shape(test_case.x_shape, params), launchers, seed++);
  }
}

// Against the double reference: the f32 bound plus one rounding.
TEST_P(ReducedAvgPool2d, WithinOneRoundingOfTheReference) {
  const DType dtype = GetParam();
  const cudaStream_t stream = current_stream();
  const AvgPoolCase& test_case = kCases[4];
  const testing::RoundedTensor x = testing::rounded_device(
      testing::random_uniform(6100, static_cast<size_t>(test_case.x_shape.numel())), test_case.x_shape, dtype,
      stream);
  const Tensor y = avg_pool2d_forward(x.tensor, test_case.params, stream);
  EXPECT_EQ(y.dtype(), dtype);
  EXPECT_TRUE(all_close(testing::storage_values(y, stream),
                        reference::avg_pool2d_forward(to_double(x.values), test_case.x_shape, test_case.params),
                        testing::storage_tolerance(dtype, kTolerance)));
  Tensor f32_dL_dx = Tensor::empty(test_case.x_shape, DType::f32, stream);
  expect_invalid([&] { avg_pool2d_backward(y, f32_dL_dx, test_case.params, stream); },
                 {"avg_pool2d_backward: dL_dy has dtype " + std::string(dtype_name(dtype)) + " but dL_dx has dtype f32",
                  "strata::AutocastGuard"});
}

INSTANTIATE_TEST_SUITE_P(F16AndBf16, ReducedAvgPool2d, ::testing::ValuesIn(testing::kReducedDtypes),
                         testing::dtype_param_name);

}  // namespace
}  // namespace strata::kernels
