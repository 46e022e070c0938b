// conv2d forward, backward-data, backward-filter and backward-bias kernels against the
// double CPU reference (many shapes and parameters), exact small-integer cases, central
// finite differences, bit-identical deterministic reductions, PyTorch goldens and errors; and
// in f16 and bf16 storage (the CUDA-core kernels) within one rounding of the reference, small
// integers as the f32 kernels, and mixed dtypes refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "kernels/conv2d_plan.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/kernels/conv2d.h"
#include "tests/reference/conv2d_reference.h"
#include "tests/reference/reference_common.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"
#include "tests/support/golden.h"
#include "tests/support/gradcheck.h"
#include "tests/support/storage_dtypes.h"
#include "tests/support/schedule_seed.h"

namespace strata::kernels {
namespace {

using reference::Conv2dProblem;
using reference::to_double;
using testing::all_close;
using testing::all_equal;
using testing::poison_value;
using testing::random_uniform;
using testing::Tolerance;

// fp32 sums of at most a few hundred products of values in [-1, 1].
constexpr Tolerance kTolerance{.abs_tol = 2e-5, .rel_tol = 2e-5};

Shape input_shape(const Conv2dProblem& p) { return {p.batch, p.in_channels, p.in_height, p.in_width}; }
Shape weight_shape(const Conv2dProblem& p) {
  return {p.out_channels, p.in_channels / p.params.groups, p.kernel_height, p.kernel_width};
}
Shape output_shape(const Conv2dProblem& p) { return {p.batch, p.out_channels, p.out_height(), p.out_width()}; }

Tensor device_tensor(const std::vector<float>& values, const Shape& shape, cudaStream_t stream) {
  return Tensor::from_vector(values, shape).to_device(stream);
}

// A device tensor whose every element is the poison value, so an unwritten output fails.
Tensor poisoned(const Shape& shape, cudaStream_t stream) {
  return device_tensor(std::vector<float>(static_cast<std::size_t>(shape.numel()), poison_value()), shape, stream);
}

std::vector<float> small_integers(std::uint64_t seed, std::size_t count, int low, int high) {
  std::vector<float> values = random_uniform(seed, count, static_cast<float>(low), static_cast<float>(high) + 1.0f);
  for (float& v : values) v = std::floor(v);
  return values;
}

std::vector<float> rounded(const std::vector<double>& values) { return reference::to_float(values); }

// Inputs of one convolution, on the host and on the device.
struct Conv2dData {
  std::vector<float> x, weight, bias, dL_dy;
  Tensor x_device, weight_device, bias_device, dL_dy_device;
};

Conv2dData make_data(const Conv2dProblem& problem, bool with_bias, std::uint64_t seed, cudaStream_t stream,
                     bool integers = false) {
  const auto values = [&](std::uint64_t salt, std::int64_t count, int magnitude) {
    const auto n = static_cast<std::size_t>(count);
    return integers ? small_integers(seed + salt, n, -magnitude, magnitude) : random_uniform(seed + salt, n);
  };
  Conv2dData data;
  data.x = values(1, problem.input_count(), 3);
  data.weight = values(2, problem.weight_count(), 2);
  data.dL_dy = values(3, problem.output_count(), 2);
  data.x_device = device_tensor(data.x, input_shape(problem), stream);
  data.weight_device = device_tensor(data.weight, weight_shape(problem), stream);
  data.dL_dy_device = device_tensor(data.dL_dy, output_shape(problem), stream);
  if (with_bias) {
    data.bias = values(4, problem.out_channels, 3);
    data.bias_device = device_tensor(data.bias, Shape{problem.out_channels}, stream);
  }
  return data;
}

// The four passes of the kernels, each into a poisoned output.
struct Conv2dResults {
  std::vector<float> y, dL_dx, dL_dweight, dL_dbias;
};

Conv2dResults run_kernels(const Conv2dProblem& problem, const Conv2dData& data, cudaStream_t stream) {
  Tensor y = poisoned(output_shape(problem), stream);
  conv2d_forward(data.x_device, data.weight_device, data.bias_device, y, problem.params, stream);
  Tensor dL_dx = poisoned(input_shape(problem), stream);
  conv2d_backward_data(data.dL_dy_device, data.weight_device, dL_dx, problem.params, stream);
  Tensor dL_dweight = poisoned(weight_shape(problem), stream);
  conv2d_backward_filter(data.x_device, data.dL_dy_device, dL_dweight, problem.params, stream);
  Tensor dL_dbias = poisoned(Shape{problem.out_channels}, stream);
  conv2d_backward_bias(data.dL_dy_device, dL_dbias, stream);
  return {y.to_vector<float>(stream), dL_dx.to_vector<float>(stream), dL_dweight.to_vector<float>(stream),
          dL_dbias.to_vector<float>(stream)};
}

struct Conv2dReferenceResults {
  std::vector<double> y, dL_dx, dL_dweight, dL_dbias;
};

Conv2dReferenceResults run_reference(const Conv2dProblem& problem, const Conv2dData& data) {
  const std::vector<double> x = to_double(data.x), weight = to_double(data.weight), bias = to_double(data.bias),
                            dL_dy = to_double(data.dL_dy);
  return {reference::conv2d_forward(problem, x, weight, bias), reference::conv2d_backward_data(problem, dL_dy, weight),
          reference::conv2d_backward_filter(problem, x, dL_dy), reference::conv2d_backward_bias(problem, dL_dy)};
}

// ---- Against the reference, over many shapes and parameters -------------------------------

struct Conv2dCase {
  std::string name;
  Conv2dProblem problem;
  bool bias = true;
};

// A table row: name, then N, C, H, W (input), K, R, S (weight), parameters, bias or not.
Conv2dCase make_case(std::string name, std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w,
                     std::int64_t k, std::int64_t r, std::int64_t s, Conv2dParams params, bool bias = true) {
  return {std::move(name),
          Conv2dProblem{.batch = n, .in_channels = c, .in_height = h, .in_width = w, .out_channels = k,
                        .kernel_height = r, .kernel_width = s, .params = params},
          bias};
}

std::vector<Conv2dCase> reference_cases() {
  return {
      make_case("Basic3x3", 2, 3, 7, 6, 4, 3, 3, {}),
      make_case("Same3x3NoBias", 2, 5, 8, 8, 6, 3, 3, {.padding = {1, 1}}, false),
      make_case("Stride2Pad1", 2, 3, 9, 7, 5, 3, 3, {.stride = {2, 2}, .padding = {1, 1}}),
      make_case("Stride3Pad2", 1, 4, 10, 11, 3, 3, 3, {.stride = {3, 3}, .padding = {2, 2}}),
      make_case("PaddingBeyondKernel", 1, 2, 4, 3, 3, 2, 2, {.padding = {3, 2}}),
      make_case("StrideBeyondKernel", 1, 2, 9, 10, 3, 2, 2, {.stride = {3, 3}}, false),
      make_case("Dilation2", 2, 3, 9, 8, 4, 3, 3, {.padding = {2, 2}, .dilation = {2, 2}}),
      make_case("MixedStrideDilation", 1, 3, 8, 9, 2, 3, 3, {.stride = {1, 2}, .padding = {0, 1}, .dilation = {2, 1}}),
      make_case("Kernel2x3", 2, 3, 6, 7, 5, 2, 3, {.stride = {2, 1}, .padding = {1, 0}}),
      make_case("EverythingAsymmetric", 2, 5, 9, 7, 3, 3, 2,
                {.stride = {2, 3}, .padding = {2, 1}, .dilation = {1, 2}}),
      make_case("Pointwise17To33", 2, 17, 5, 4, 33, 1, 1, {}),
      make_case("PointwiseStride2", 1, 5, 7, 6, 3, 1, 1, {.stride = {2, 2}}, false),
      make_case("Groups2", 2, 4, 6, 5, 6, 3, 3, {.padding = {1, 1}, .groups = 2}),
      make_case("Groups2FewerOutputs", 1, 6, 5, 5, 4, 3, 3, {.padding = {1, 1}, .groups = 2}),
      make_case("Groups3Kernel3x2", 1, 9, 5, 4, 6, 3, 2, {.padding = {1, 1}, .groups = 3}),
      make_case("Depthwise", 2, 5, 6, 6, 5, 3, 3, {.padding = {1, 1}, .groups = 5}),
      make_case("DepthwiseMultiplier2Stride2", 1, 3, 7, 7, 6, 3, 3, {.stride = {2, 2}, .padding = {1, 1}, .groups = 3},
                false),
      make_case("DepthwiseDilated", 1, 4, 7, 6, 4, 3, 3, {.padding = {2, 1}, .dilation = {2, 1}, .groups = 4}),
      make_case("OneByOneOutput", 2, 3, 3, 3, 4, 3, 3, {}),
      make_case("OneByOneInput", 1, 5, 1, 1, 3, 1, 1, {}),
      make_case("OneByOneInputPadded", 1, 3, 1, 1, 2, 3, 3, {.padding = {1, 1}}),
      // Large tile in forward (M = 72, N = 65) and backward-filter (M = 65, N = 72).
      make_case("LargeTileForward", 1, 8, 9, 8, 65, 3, 3, {.padding = {1, 1}}),
      // Large tile in backward-data (M = 72, N = 64); few-rows tile in backward-filter.
      make_case("LargeTileBackwardData", 1, 64, 8, 9, 3, 3, 3, {.padding = {1, 1}}, false),
      // N*P*Q = 288 and 588: backward-filter splits its reduction into several chunks.
      make_case("SplitReduction", 2, 3, 12, 12, 4, 3, 3, {.padding = {1, 1}}),
      make_case("SplitReductionDepthwise", 3, 2, 16, 16, 2, 3, 3, {.groups = 2}),
      // Several tiles in both GEMM dimensions, with partial tiles at both edges.
      make_case("ManyLargeTiles", 2, 19, 13, 11, 130, 3, 3, {.padding = {1, 1}}),
      make_case("ManyTilesBackwardData", 2, 70, 9, 10, 5, 3, 3, {.stride = {2, 2}, .padding = {1, 1}}),
      make_case("ManyGroupsDepthwise", 2, 40, 9, 9, 40, 3, 3, {.padding = {1, 1}, .groups = 40}),
      make_case("Groups4Wide", 1, 64, 8, 8, 128, 3, 3, {.padding = {1, 1}, .groups = 4}, false),
      // Few-rows tile in forward (M = 1, N = 20) and backward-data (M = 4, N = 12); few-columns
      // tile in backward-filter (M = 16, N = 8).
      make_case("OnePixelManyChannels", 1, 6, 3, 3, 20, 3, 3, {}),
      make_case("TinyImageManyInputs", 1, 12, 2, 2, 3, 1, 1, {}),
      make_case("FewTapsManyOutputs", 2, 2, 6, 5, 16, 2, 2, {.stride = {1, 2}}),
  };
}

class Conv2dReference : public testing::DeviceTest, public ::testing::WithParamInterface<Conv2dCase> {};

TEST_P(Conv2dReference, AllPassesMatch) {
  const Conv2dCase& test_case = GetParam();
  const Conv2dProblem& problem = test_case.problem;
  SCOPED_TRACE(to_string(problem.params));
  const cudaStream_t stream = current_stream();
  const Conv2dData data = make_data(problem, test_case.bias, 1000, stream);
  const Conv2dResults actual = run_kernels(problem, data, stream);
  const Conv2dReferenceResults expected = run_reference(problem, data);
  EXPECT_TRUE(all_close(actual.y, expected.y, kTolerance)) << "forward";
  EXPECT_TRUE(all_close(actual.dL_dx, expected.dL_dx, kTolerance)) << "backward_data";
  EXPECT_TRUE(all_close(actual.dL_dweight, expected.dL_dweight, kTolerance)) << "backward_filter";
  EXPECT_TRUE(all_close(actual.dL_dbias, expected.dL_dbias, kTolerance)) << "backward_bias";

  // The non-deterministic backward-filter (atomics across chunks) gives the same values.
  Conv2dParams atomic_params = problem.params;
  atomic_params.deterministic = false;
  Tensor dL_dweight = poisoned(weight_shape(problem), stream);
  conv2d_backward_filter(data.x_device, data.dL_dy_device, dL_dweight, atomic_params, stream);
  EXPECT_TRUE(all_close(dL_dweight.to_vector<float>(stream), expected.dL_dweight, kTolerance))
      << "backward_filter, non-deterministic";
}

INSTANTIATE_TEST_SUITE_P(Conv2d, Conv2dReference, ::testing::ValuesIn(reference_cases()),
                         [](const ::testing::TestParamInfo<Conv2dCase>& case_info) { return case_info.param.name; });

// ---- Exact results with small integers ---------------------------------------------------

using Conv2d = testing::DeviceTest;

TEST_F(Conv2d, SmallIntegersGiveExactResults) {
  // Every product and partial sum is an integer far below 2^24: exact in fp32 in any order.
  const cudaStream_t stream = current_stream();
  const std::vector<Conv2dCase> cases = {
      make_case("Stride2", 2, 3, 7, 6, 4, 3, 3, {.stride = {2, 2}, .padding = {1, 1}}),
      make_case("Groups", 1, 6, 6, 5, 4, 3, 2, {.padding = {1, 2}, .dilation = {2, 1}, .groups = 2}),
      make_case("Depthwise", 2, 3, 5, 5, 3, 3, 3, {.padding = {1, 1}, .groups = 3}),
      make_case("SplitReduction", 2, 2, 12, 12, 3, 3, 3, {.padding = {1, 1}}),
  };
  for (const Conv2dCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    const Conv2dData data = make_data(test_case.problem, true, 77, stream, /*integers=*/true);
    const Conv2dResults actual = run_kernels(test_case.problem, data, stream);
    const Conv2dReferenceResults expected = run_reference(test_case.problem, data);
    EXPECT_TRUE(all_equal(actual.y, rounded(expected.y))) << "forward";
    EXPECT_TRUE(all_equal(actual.dL_dx, rounded(expected.dL_dx))) << "backward_data";
    EXPECT_TRUE(all_equal(actual.dL_dweight, rounded(expected.dL_dweight))) << "backward_filter";
    EXPECT_TRUE(all_equal(actual.dL_dbias, rounded(expected.dL_dbias))) << "backward_bias";
  }
}

TEST_F(Conv2d, HandComputedExample) {
  // x = 1..16 in a 4x4 image, weight [[1, 0], [0, -1]], stride 2: y[p][q] = x[2p][2q] - x[2p+1][2q+1].
  const cudaStream_t stream = current_stream();
  std::vector<float> x(16);
  for (int i = 0; i < 16; ++i) x[static_cast<std::size_t>(i)] = static_cast<float>(i + 1);
  const Tensor x_device = device_tensor(x, Shape{1, 1, 4, 4}, stream);
  const Tensor weight = device_tensor({1, 0, 0, -1}, Shape{1, 1, 2, 2}, stream);
  const Tensor bias = device_tensor({10}, Shape{1}, stream);
  const Tensor y = conv2d_forward(x_device, weight, bias, Conv2dParams{.stride = {2, 2}}, stream);
  EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_TRUE(all_equal(y.to_vector<float>(stream), std::vector<float>{5, 5, 5, 5}));

  // dL/dx scatters each dL/dy through the kernel taps; stride 2 leaves no overlap.
  const Tensor dL_dy = device_tensor({1, 2, 3, 4}, Shape{1, 1, 2, 2}, stream);
  const Tensor dL_dx = conv2d_backward_data(dL_dy, weight, Shape{1, 1, 4, 4}, Conv2dParams{.stride = {2, 2}}, stream);
  EXPECT_TRUE(all_equal(dL_dx.to_vector<float>(stream),
                        std::vector<float>{1, 0, 2, 0, 0, -1, 0, -2, 3, 0, 4, 0, 0, -3, 0, -4}));
  // dL/dw[r][s] = sum over p, q of dL/dy[p][q] * x[2p+r][2q+s].
  const Tensor dL_dweight =
      conv2d_backward_filter(x_device, dL_dy, Shape{1, 1, 2, 2}, Conv2dParams{.stride = {2, 2}}, stream);
  EXPECT_TRUE(all_equal(dL_dweight.to_vector<float>(stream), std::vector<float>{1 * 1 + 2 * 3 + 3 * 9 + 4 * 11,
                                                                                  1 * 2 + 2 * 4 + 3 * 10 + 4 * 12,
                                                                                  1 * 5 + 2 * 7 + 3 * 13 + 4 * 15,
                                                                                  1 * 6 + 2 * 8 + 3 * 14 + 4 * 16}));
  EXPECT_TRUE(all_equal(conv2d_backward_bias(dL_dy, stream).to_vector<float>(stream), std::vector<float>{10}));
}

// ---- Central finite differences of the double reference forward -------------------------

// The kernels' gradients of L = sum(y * dL_dy) against numerical derivatives of the same L.
void check_gradients(const Conv2dProblem& problem) {
  SCOPED_TRACE(to_string(problem.params));
  const cudaStream_t stream = current_stream();
  const Conv2dData data = make_data(problem, true, 4242, stream);
  const Conv2dResults actual = run_kernels(problem, data, stream);
  const std::vector<double> x = to_double(data.x), weight = to_double(data.weight), bias = to_double(data.bias),
                            dL_dy = to_double(data.dL_dy);
  const auto loss = [&](std::span<const double> x_values, std::span<const double> weight_values,
                        std::span<const double> bias_values) {
    return testing::weighted_sum(reference::conv2d_forward(problem, x_values, weight_values, bias_values), dL_dy);
  };
  constexpr Tolerance kGradientTolerance{.abs_tol = 1e-5, .rel_tol = 1e-4};
  EXPECT_TRUE(all_close(actual.dL_dx,
                        testing::numerical_gradient([&](std::span<const double> v) { return loss(v, weight, bias); }, x),
                        kGradientTolerance))
      << "dL/dx";
  EXPECT_TRUE(all_close(actual.dL_dweight,
                        testing::numerical_gradient([&](std::span<const double> v) { return loss(x, v, bias); }, weight),
                        kGradientTolerance))
      << "dL/dweight";
  EXPECT_TRUE(all_close(actual.dL_dbias,
                        testing::numerical_gradient([&](std::span<const double> v) { return loss(x, weight, v); }, bias),
                        kGradientTolerance))
      << "dL/dbias";
}

TEST_F(Conv2d, GradientsMatchFiniteDifferences) {
  check_gradients({.batch = 1, .in_channels = 2, .in_height = 5, .in_width = 4, .out_channels = 3, .kernel_height = 3,
                   .kernel_width = 3, .params = {.stride = {2, 2}, .padding = {1, 1}}});
  check_gradients({.batch = 2, .in_channels = 4, .in_height = 5, .in_width = 5, .out_channels = 4, .kernel_height = 3,
                   .kernel_width = 2, .params = {.padding = {1, 2}, .dilation = {2, 1}, .groups = 2}});
  check_gradients({.batch = 1, .in_channels = 3, .in_height = 4, .in_width = 5, .out_channels = 3, .kernel_height = 2,
                   .kernel_width = 2, .params = {.stride = {1, 2}, .padding = {1, 1}, .groups = 3}});
}

// ---- Determinism ------------------------------------------------------------------------

// Runs backward-filter (deterministic) and backward-bias under the simulator's thread and
// block order of `seed` (nullopt: in order); in the CUDA build, under whatever the GPU does.
std::vector<float> reductions_under_schedule(const Conv2dProblem& problem, const Conv2dData& data,
                                             std::optional<std::uint64_t> seed, cudaStream_t stream) {
  const testing::ScheduleSeedGuard order(seed);
  Tensor dL_dweight = poisoned(weight_shape(problem), stream);
  conv2d_backward_filter(data.x_device, data.dL_dy_device, dL_dweight, problem.params, stream);
  Tensor dL_dbias = poisoned(Shape{problem.out_channels}, stream);
  conv2d_backward_bias(data.dL_dy_device, dL_dbias, stream);
  std::vector<float> result = dL_dweight.to_vector<float>(stream);
  const std::vector<float> bias = dL_dbias.to_vector<float>(stream);
  result.insert(result.end(), bias.begin(), bias.end());
  return result;
}

TEST_F(Conv2d, DeterministicReductionsAreBitIdentical) {
  const cudaStream_t stream = current_stream();
  // N*P*Q = 3*15*15 = 675: several chunks of the filter reduction, several blocks per chunk.
  const Conv2dProblem problem{.batch = 3, .in_channels = 5, .in_height = 15, .in_width = 15, .out_channels = 6,
                              .kernel_height = 3, .kernel_width = 3, .params = {.padding = {1, 1}}};
  ASSERT_GT(split_conv2d_reduction(3 * 15 * 15, /*output_blocks=*/1, kConv2dFewRowsTile.block_k).splits, 1);
  const Conv2dData data = make_data(problem, false, 31337, stream);
  const std::vector<float> first = reductions_under_schedule(problem, data, std::nullopt, stream);
  EXPECT_TRUE(all_equal(reductions_under_schedule(problem, data, std::nullopt, stream), first)) << "second run";
  for (const std::uint64_t seed : {1u, 7u, 12345u}) {
    EXPECT_TRUE(all_equal(reductions_under_schedule(problem, data, seed, stream), first)) << "STRATA_SIM_SEED " << seed;
  }
  const Conv2dReferenceResults expected = run_reference(problem, data);
  EXPECT_TRUE(all_close(std::span(first).first(expected.dL_dweight.size()), expected.dL_dweight, kTolerance));
}

// ---- PyTorch goldens ----------------------------------------------------------------------

TEST_F(Conv2d, MatchesPyTorchGoldens) {
  const cudaStream_t stream = current_stream();
  const std::vector<testing::GoldenCase> cases = testing::read_golden("conv2d.txt");
  ASSERT_GE(cases.size(), 8u);
  const auto to_shape = [](const testing::GoldenTensor& t) { return Shape(std::span<const std::int64_t>(t.shape)); };
  const auto upload = [&](const testing::GoldenTensor& t) { return device_tensor(t.values, to_shape(t), stream); };
  const auto expected = [](const testing::GoldenTensor& t) { return std::vector<double>(t.values.begin(), t.values.end()); };
  for (const testing::GoldenCase& golden : cases) {
    SCOPED_TRACE(golden.name);
    const Conv2dParams params{.stride = {golden.ints_of("stride").at(0), golden.ints_of("stride").at(1)},
                              .padding = {golden.ints_of("padding").at(0), golden.ints_of("padding").at(1)},
                              .dilation = {golden.ints_of("dilation").at(0), golden.ints_of("dilation").at(1)},
                              .groups = golden.int_of("groups")};
    const Tensor x = upload(golden.tensor_of("x"));
    const Tensor weight = upload(golden.tensor_of("weight"));
    const Tensor dL_dy = upload(golden.tensor_of("dL_dy"));
    const bool with_bias = golden.has_tensor("bias");
    const Tensor bias = with_bias ? upload(golden.tensor_of("bias")) : Tensor();

    Tensor y = poisoned(to_shape(golden.tensor_of("y")), stream);
    conv2d_forward(x, weight, bias, y, params, stream);
    EXPECT_TRUE(all_close(y.to_vector<float>(stream), expected(golden.tensor_of("y")), kTolerance)) << "forward";
    Tensor dL_dx = poisoned(x.shape(), stream);
    conv2d_backward_data(dL_dy, weight, dL_dx, params, stream);
    EXPECT_TRUE(all_close(dL_dx.to_vector<float>(stream), expected(golden.tensor_of("dL_dx")), kTolerance))
        << "backward_data";
    Tensor dL_dweight = poisoned(weight.shape(), stream);
    conv2d_backward_filter(x, dL_dy, dL_dweight, params, stream);
    EXPECT_TRUE(all_close(dL_dweight.to_vector<float>(stream), expected(golden.tensor_of("dL_dweight")), kTolerance))
        << "backward_filter";
    if (with_bias) {
      EXPECT_TRUE(all_close(conv2d_backward_bias(dL_dy, stream).to_vector<float>(stream),
                            expected(golden.tensor_of("dL_dbias")), kTolerance))
          << "backward_bias";
    }
  }
}

// ---- f16 and bf16 storage (the CUDA-core kernels: math fp32) ------------------------------

// The inputs of make_data rounded to dtype: the f32 vectors hold the rounded values.
Conv2dData make_reduced_data(const Conv2dProblem& problem, bool with_bias, std::uint64_t seed, DType dtype,
                             cudaStream_t stream, bool integers = false) {
  const Conv2dData f32 = make_data(problem, with_bias, seed, stream, integers);
  Conv2dData data;
  testing::RoundedTensor x = testing::rounded_device(f32.x, input_shape(problem), dtype, stream);
  testing::RoundedTensor weight = testing::rounded_device(f32.weight, weight_shape(problem), dtype, stream);
  testing::RoundedTensor dL_dy = testing::rounded_device(f32.dL_dy, output_shape(problem), dtype, stream);
  data.x = x.values;
  data.x_device = x.tensor;
  data.weight = weight.values;
  data.weight_device = weight.tensor;
  data.dL_dy = dL_dy.values;
  data.dL_dy_device = dL_dy.tensor;
  if (with_bias) {
    testing::RoundedTensor bias = testing::rounded_device(f32.bias, Shape{problem.out_channels}, dtype, stream);
    data.bias = bias.values;
    data.bias_device = bias.tensor;
  }
  return data;
}

// The four passes in dtype, each into a poisoned output of dtype, read back as f32.
Conv2dResults run_reduced_kernels(const Conv2dProblem& problem, const Conv2dData& data, DType dtype,
                                  cudaStream_t stream) {
  Tensor y = testing::poisoned_storage(output_shape(problem), dtype, stream);
  conv2d_forward(data.x_device, data.weight_device, data.bias_device, y, problem.params, stream);
  Tensor dL_dx = testing::poisoned_storage(input_shape(problem), dtype, stream);
  conv2d_backward_data(data.dL_dy_device, data.weight_device, dL_dx, problem.params, stream);
  Tensor dL_dweight = testing::poisoned_storage(weight_shape(problem), dtype, stream);
  conv2d_backward_filter(data.x_device, data.dL_dy_device, dL_dweight, problem.params, stream);
  Tensor dL_dbias = testing::poisoned_storage(Shape{problem.out_channels}, dtype, stream);
  conv2d_backward_bias(data.dL_dy_device, dL_dbias, stream);
  return {testing::storage_values(y, stream), testing::storage_values(dL_dx, stream),
          testing::storage_values(dL_dweight, stream), testing::storage_values(dL_dbias, stream)};
}

std::vector<Conv2dCase> reduced_cases() {
  return {
      make_case("OddSizes", 2, 3, 7, 6, 5, 3, 3, {}),
      make_case("Stride2Pad1NoBias", 2, 5, 9, 7, 6, 3, 3, {.stride = {2, 2}, .padding = {1, 1}}, false),
      make_case("EverythingAsymmetric", 2, 5, 9, 7, 3, 3, 2,
                {.stride = {2, 3}, .padding = {2, 1}, .dilation = {1, 2}}),
      make_case("Groups3Kernel3x2", 1, 9, 5, 4, 6, 3, 2, {.padding = {1, 1}, .groups = 3}),
      make_case("Depthwise", 2, 5, 6, 6, 5, 3, 3, {.padding = {1, 1}, .groups = 5}),
      // N*P*Q = 288: the filter reduction in several chunks, added in f32 before the rounding.
      make_case("SplitReduction", 2, 3, 12, 12, 4, 3, 3, {.padding = {1, 1}}),
  };
}

class Conv2dReduced : public testing::DeviceTest,
                      public ::testing::WithParamInterface<std::pair<Conv2dCase, DType>> {};

TEST_P(Conv2dReduced, AllPassesMatchWithinOneRounding) {
  const auto& [test_case, dtype] = GetParam();
  const Conv2dProblem& problem = test_case.problem;
  SCOPED_TRACE(to_string(problem.params));
  const cudaStream_t stream = current_stream();
  const Conv2dData data = make_reduced_data(problem, test_case.bias, 1000, dtype, stream);
  const Conv2dResults actual = run_reduced_kernels(problem, data, dtype, stream);
  const Conv2dReferenceResults expected = run_reference(problem, data);
  // The f32 sums' bound plus the one rounding of each result to dtype.
  const Tolerance tolerance{.abs_tol = kTolerance.abs_tol,
                            .rel_tol = kTolerance.rel_tol + testing::storage_rel_tol(dtype)};
  EXPECT_TRUE(all_close(actual.y, expected.y, tolerance)) << "forward";
  EXPECT_TRUE(all_close(actual.dL_dx, expected.dL_dx, tolerance)) << "backward_data";
  EXPECT_TRUE(all_close(actual.dL_dweight, expected.dL_dweight, tolerance)) << "backward_filter";
  EXPECT_TRUE(all_close(actual.dL_dbias, expected.dL_dbias, tolerance)) << "backward_bias";

  // A request for atomics changes nothing: f16 and bf16 always add the chunks' f32 partial
  // sums in order before they round.
  Conv2dParams atomic_params = problem.params;
  atomic_params.deterministic = false;
  Tensor dL_dweight = testing::poisoned_storage(weight_shape(problem), dtype, stream);
  conv2d_backward_filter(data.x_device, data.dL_dy_device, dL_dweight, atomic_params, stream);
  EXPECT_TRUE(all_equal(testing::storage_values(dL_dweight, stream), actual.dL_dweight))
      << "backward_filter, non-deterministic";
}

std::vector<std::pair<Conv2dCase, DType>> with_reduced_dtypes(const std::vector<Conv2dCase>& cases) {
  std::vector<std::pair<Conv2dCase, DType>> result;
  for (const Conv2dCase& test_case : cases) {
    for (const DType dtype : testing::kReducedDtypes) result.emplace_back(test_case, dtype);
  }
  return result;
}

INSTANTIATE_TEST_SUITE_P(Conv2d, Conv2dReduced, ::testing::ValuesIn(with_reduced_dtypes(reduced_cases())),
                         [](const ::testing::TestParamInfo<std::pair<Conv2dCase, DType>>& case_info) {
                           return case_info.param.first.name + "_" + std::string(dtype_name(case_info.param.second));
                         });

TEST_F(Conv2d, ReducedSmallIntegersGiveTheF32KernelsResults) {
  // Integers in [-3, 3] are exact in f16 and bf16, and every sum here is an integer below 256
  // (exact in both): each pass stores exactly the f32 kernels' values.
  const cudaStream_t stream = current_stream();
  const Conv2dProblem problem =
      make_case("Groups", 1, 6, 6, 5, 4, 3, 2, {.padding = {1, 2}, .dilation = {2, 1}, .groups = 2}).problem;
  const Conv2dResults f32 = run_kernels(problem, make_data(problem, true, 77, stream, /*integers=*/true), stream);
  for (const DType dtype : testing::kReducedDtypes) {
    SCOPED_TRACE(dtype_name(dtype));
    const Conv2dData data = make_reduced_data(problem, true, 77, dtype, stream, /*integers=*/true);
    const Conv2dResults actual = run_reduced_kernels(problem, data, dtype, stream);
    EXPECT_TRUE(all_equal(actual.y, f32.y)) << "forward";
    EXPECT_TRUE(all_equal(actual.dL_dx, f32.dL_dx)) << "backward_data";
    EXPECT_TRUE(all_equal(actual.dL_dweight, f32.dL_dweight)) << "backward_filter";
    EXPECT_TRUE(all_equal(actual.dL_dbias, f32.dL_dbias)) << "backward_bias";
  }
}

TEST_F(Conv2d, ReducedDtypesRouteByMathAndAllocateInTheirDtype) {
  const cudaStream_t stream = current_stream();
  const Conv2dProblem problem = make_case("Basic", 1, 8, 5, 5, 8, 3, 3, {.padding = {1, 1}}).problem;
  const Conv2dShape shape = conv2d_shape(input_shape(problem), weight_shape(problem), problem.params);
  EXPECT_FALSE(conv2d_forward_uses_tensor_cores(shape));  // math fp32: the CUDA-core kernels
  for (const DType dtype : testing::kReducedDtypes) {
    SCOPED_TRACE(dtype_name(dtype));
    const Conv2dData data = make_reduced_data(problem, true, 5, dtype, stream);
    EXPECT_EQ(conv2d_forward(data.x_device, data.weight_device, data.bias_device, problem.params, stream).dtype(),
              dtype);
    EXPECT_EQ(conv2d_backward_data(data.dL_dy_device, data.weight_device, input_shape(problem), problem.params, stream)
                  .dtype(),
              dtype);
    EXPECT_EQ(conv2d_backward_filter(data.x_device, data.dL_dy_device, weight_shape(problem), problem.params, stream)
                  .dtype(),
              dtype);
    EXPECT_EQ(conv2d_backward_bias(data.dL_dy_device, stream).dtype(), dtype);
  }
}

// ---- Errors -----------------------------------------------------------------------------

std::string message_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const InvalidArgument& error) {
    return error.what();
  }
  return "(no exception)";
}

#define EXPECT_MESSAGE(call, text)                                          \
  do {                                                                      \
    const std::string message_ = message_of([&] { call; });                 \
    EXPECT_NE(message_.find(text), std::string::npos) << "message: " << message_; \
  } while (0)

TEST_F(Conv2d, ForwardRejectsBadArguments) {
  const cudaStream_t stream = current_stream();
  const Tensor x = Tensor::zeros({2, 4, 6, 6}, DType::f32, stream);
  const Tensor weight = Tensor::zeros({6, 2, 3, 3}, DType::f32, stream);
  const Conv2dParams groups2{.groups = 2};
  Tensor y = Tensor::empty({2, 6, 4, 4}, DType::f32, stream);
  EXPECT_NO_THROW(conv2d_forward(x, weight, Tensor(), y, groups2, stream));

  EXPECT_MESSAGE(conv2d_forward(x, weight, Tensor(), y, Conv2dParams{}, stream),
                 "conv2d_forward: input (2, 4, 6, 6) and weight (6, 2, 3, 3) with stride (1, 1), padding (0, 0), "
                 "dilation (1, 1), groups 1: weight has 2 input channels per group, expected 4");
  EXPECT_MESSAGE(conv2d_forward(x, weight, Tensor(), y, Conv2dParams{.groups = 4}, stream),
                 "6 output channels are not divisible by 4 groups");
  EXPECT_MESSAGE(conv2d_forward(x, weight, Tensor(), y, Conv2dParams{.dilation = {3, 3}, .groups = 2}, stream),
                 "output size would be 0x0");
  EXPECT_MESSAGE(conv2d_forward(x, weight, Tensor(), y, Conv2dParams{.stride = {0, 1}, .groups = 2}, stream),
                 "stride must be at least 1");
  Tensor wrong_y = Tensor::empty({2, 6, 4, 5}, DType::f32, stream);
  EXPECT_MESSAGE(conv2d_forward(x, weight, Tensor(), wrong_y, groups2, stream),
                 "conv2d_forward: y must have shape (2, 6, 4, 4), got (2, 6, 4, 5)");
  const Tensor wrong_bias = Tensor::zeros({4}, DType::f32, stream);
  EXPECT_MESSAGE(conv2d_forward(x, weight, wrong_bias, y, groups2, stream),
                 "conv2d_forward: bias must have shape (6), got (4)");
  const Tensor host_x = Tensor::empty_host({2, 4, 6, 6}, DType::f32);
  EXPECT_MESSAGE(conv2d_forward(host_x, weight, Tensor(), y, groups2, stream), "conv2d_forward: x must be a device tensor");
  const Tensor int_weight = Tensor::zeros({6, 2, 3, 3}, DType::i32, stream);
  EXPECT_MESSAGE(conv2d_forward(x, int_weight, Tensor(), y, groups2, stream),
                 "weight must have dtype f32, f16 or bf16");
  EXPECT_MESSAGE(conv2d_forward(Tensor(), weight, Tensor(), y, groups2, stream), "conv2d_forward: x is an undefined tensor");
  const Tensor x3 = Tensor::zeros({4, 6, 6}, DType::f32, stream);
  EXPECT_MESSAGE(conv2d_forward(x3, weight, Tensor(), y, groups2, stream), "input must have 4 dimensions");
  // y may not alias an input: here the output would overwrite x while it is read.
  Tensor big = Tensor::zeros({2, 6, 6, 6}, DType::f32, stream);
  Tensor x_view = big.narrow(0, 0, 1);  // (1, 6, 6, 6)
  Tensor y_view = big.narrow(0, 1, 1);
  const Tensor same_weight = Tensor::zeros({6, 6, 1, 1}, DType::f32, stream);
  EXPECT_NO_THROW(conv2d_forward(x_view, same_weight, Tensor(), y_view, Conv2dParams{}, stream));
  EXPECT_MESSAGE(conv2d_forward(x_view, same_weight, Tensor(), x_view, Conv2dParams{}, stream),
                 "conv2d_forward: y (1, 6, 6, 6) overlaps x (1, 6, 6, 6)");
}

TEST_F(Conv2d, MixedDtypesAreRejectedNamingBoth) {
  const cudaStream_t stream = current_stream();
  const Tensor x = Tensor::zeros({1, 2, 4, 4}, DType::bf16, stream);
  const Tensor weight = Tensor::zeros({3, 2, 3, 3}, DType::bf16, stream);
  const Tensor bias = Tensor::zeros({3}, DType::bf16, stream);
  const Tensor dL_dy = Tensor::zeros({1, 3, 2, 2}, DType::bf16, stream);
  Tensor y = Tensor::empty({1, 3, 2, 2}, DType::bf16, stream);
  EXPECT_NO_THROW(conv2d_forward(x, weight, bias, y, {}, stream));
  const auto f32 = [&](const Tensor& like) { return Tensor::zeros(like.shape(), DType::f32, stream); };
  const auto f16 = [&](const Tensor& like) { return Tensor::zeros(like.shape(), DType::f16, stream); };

  EXPECT_MESSAGE(conv2d_forward(x, f32(weight), bias, y, {}, stream),
                 "conv2d_forward: weight has dtype f32 but x has dtype bf16");
  EXPECT_MESSAGE(conv2d_forward(x, weight, f16(bias), y, {}, stream),
                 "conv2d_forward: bias has dtype f16 but x has dtype bf16");
  Tensor y_f32 = f32(y);
  EXPECT_MESSAGE(conv2d_forward(x, weight, bias, y_f32, {}, stream),
                 "conv2d_forward: y has dtype f32 but x has dtype bf16");
  Tensor dL_dx = f32(x);
  EXPECT_MESSAGE(conv2d_backward_data(dL_dy, weight, dL_dx, {}, stream),
                 "conv2d_backward_data: dL_dx has dtype f32 but dL_dy has dtype bf16");
  Tensor dL_dweight = f16(weight);
  EXPECT_MESSAGE(conv2d_backward_filter(x, dL_dy, dL_dweight, {}, stream),
                 "conv2d_backward_filter: dL_dweight has dtype f16 but x has dtype bf16");
  Tensor dL_dbias = f16(bias);
  EXPECT_MESSAGE(conv2d_backward_bias(dL_dy, dL_dbias, stream),
                 "conv2d_backward_bias: dL_dbias has dtype f16 but dL_dy has dtype bf16");
  // f32 parameter gradients of reduced operands are autocast's (the values widened).
  Tensor dL_dweight_f32 = f32(weight);
  EXPECT_NO_THROW(conv2d_backward_filter(x, dL_dy, dL_dweight_f32, {}, stream));
  Tensor dL_dbias_f32 = f32(bias);
  EXPECT_NO_THROW(conv2d_backward_bias(dL_dy, dL_dbias_f32, stream));
  const Tensor int_x = Tensor::zeros(x.shape(), DType::i32, stream);
  EXPECT_MESSAGE(conv2d_forward(int_x, weight, bias, y, {}, stream),
                 "conv2d_forward: x must have dtype f32, f16 or bf16");
}

TEST_F(Conv2d, BackwardPassesRejectBadArguments) {
  const cudaStream_t stream = current_stream();
  const Tensor x = Tensor::zeros({2, 3, 7, 7}, DType::f32, stream);
  const Tensor weight = Tensor::zeros({5, 3, 3, 3}, DType::f32, stream);
  const Conv2dParams params{.stride = {2, 2}};
  const Tensor dL_dy = Tensor::zeros({2, 5, 3, 3}, DType::f32, stream);
  Tensor dL_dx = Tensor::empty({2, 3, 7, 7}, DType::f32, stream);
  Tensor dL_dweight = Tensor::empty({5, 3, 3, 3}, DType::f32, stream);
  Tensor dL_dbias = Tensor::empty({5}, DType::f32, stream);
  EXPECT_NO_THROW(conv2d_backward_data(dL_dy, weight, dL_dx, params, stream));
  EXPECT_NO_THROW(conv2d_backward_filter(x, dL_dy, dL_dweight, params, stream));
  EXPECT_NO_THROW(conv2d_backward_bias(dL_dy, dL_dbias, stream));

  const Tensor wrong_dL_dy = Tensor::zeros({2, 5, 4, 3}, DType::f32, stream);
  EXPECT_MESSAGE(conv2d_backward_data(wrong_dL_dy, weight, dL_dx, params, stream),
                 "conv2d_backward_data: dL_dy must have shape (2, 5, 3, 3), got (2, 5, 4, 3)");
  EXPECT_MESSAGE(conv2d_backward_filter(x, wrong_dL_dy, dL_dweight, params, stream),
                 "conv2d_backward_filter: dL_dy must have shape (2, 5, 3, 3), got (2, 5, 4, 3)");
  Tensor wrong_dL_dx = Tensor::empty({2, 4, 7, 7}, DType::f32, stream);
  EXPECT_MESSAGE(conv2d_backward_data(dL_dy, weight, wrong_dL_dx, params, stream),
                 "conv2d_backward_data: input (2, 4, 7, 7) and weight (5, 3, 3, 3)");
  Tensor wrong_dL_dweight = Tensor::empty({5, 3, 9, 3}, DType::f32, stream);
  EXPECT_MESSAGE(conv2d_backward_filter(x, dL_dy, wrong_dL_dweight, params, stream),
                 "conv2d_backward_filter: input (2, 3, 7, 7) and weight (5, 3, 9, 3) with stride (2, 2)");
  EXPECT_MESSAGE(conv2d_backward_filter(x, dL_dy, dL_dweight, Conv2dParams{.groups = 3}, stream),
                 "5 output channels are not divisible by 3 groups");
  Tensor wrong_dL_dbias = Tensor::empty({3}, DType::f32, stream);
  EXPECT_MESSAGE(conv2d_backward_bias(dL_dy, wrong_dL_dbias, stream),
                 "conv2d_backward_bias: dL_dbias must have shape (5), got (3)");
  EXPECT_MESSAGE(conv2d_backward_bias(Tensor::zeros({2, 5, 9}, DType::f32, stream), dL_dbias, stream),
                 "conv2d_backward_bias: dL_dy must have 4 dimensions");
  EXPECT_MESSAGE(conv2d_backward_bias(Tensor::zeros({0, 5, 3, 3}, DType::f32, stream), dL_dbias, stream),
                 "conv2d_backward_bias: dL_dy (0, 5, 3, 3) must not be empty");

  // Outputs may not alias inputs: a 1x1 convolution whose dL_dx is the memory of dL_dy.
  Tensor both = Tensor::zeros({2, 4, 3, 3}, DType::f32, stream);
  Tensor first = both.narrow(0, 0, 1);  // (1, 4, 3, 3)
  const Tensor pointwise = Tensor::zeros({4, 4, 1, 1}, DType::f32, stream);
  EXPECT_MESSAGE(conv2d_backward_data(first, pointwise, first, Conv2dParams{}, stream),
                 "conv2d_backward_data: dL_dx (1, 4, 3, 3) overlaps dL_dy (1, 4, 3, 3)");
  Tensor bias_in_dL_dy = first.flatten().narrow(0, 0, 4);
  EXPECT_MESSAGE(conv2d_backward_bias(first, bias_in_dL_dy, stream),
                 "conv2d_backward_bias: dL_dbias (4) overlaps dL_dy (1, 4, 3, 3)");
}

}  // namespace
}  // namespace strata::kernels
