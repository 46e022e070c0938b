// conv2d forward, backward data and backward filter on the tensor cores (Conv2dParams::math
// tf32 and bf16): against the double reference twice, once with the inputs rounded to the
// math type as the kernel rounds them (only the f32 summation may differ) and once with the
// exact inputs (the bound that the math type promises); small integers bit-identical to the
// fp32 kernels; which shapes go to the tensor cores and that the others give the fp32
// kernels' results; bit-identical results under shuffled simulator schedules and run to run
// (the filter gradient's split reduction included); and F::conv2d passing the option to the
// forward and to the data and filter gradients. f16 and bf16 storage on the tensor cores
// (fragments of the storage type): within one rounding of the reference in both memory
// formats (channels-last with whole-vector channels runs the asynchronous-copy passes), tf32
// and bf16 math the same bits, small integers as the CUDA-core kernels.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "strata/core/autograd.h"
#include "strata/core/errors.h"
#include "strata/core/memory_format.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/kernels/conv2d.h"
#include "kernels/conv2d_plan.h"
#include "kernels/conv2d_tensor_core.h"
#include "strata/layers/functional.h"
#include "tests/kernels/device_values.h"
#include "tests/reference/conv2d_reference.h"
#include "tests/reference/reference_common.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"
#include "tests/support/storage_dtypes.h"

namespace strata::kernels {
namespace {

using reference::Conv2dProblem;
using reference::to_double;
using testing::all_equal;
using testing::bit_patterns;
using testing::device_tensor;
using testing::poisoned_tensor;
using testing::random_uniform;

Shape input_shape(const Conv2dProblem& p) { return {p.batch, p.in_channels, p.in_height, p.in_width}; }
Shape weight_shape(const Conv2dProblem& p) {
  return {p.out_channels, p.in_channels / p.params.groups, p.kernel_height, p.kernel_width};
}
Shape output_shape(const Conv2dProblem& p) { return {p.batch, p.out_channels, p.out_height(), p.out_width()}; }

Conv2dShape shape_of(const Conv2dProblem& p) { return conv2d_shape(input_shape(p), weight_shape(p), p.params); }

// ---- The roundings, on the host -----------------------------------------------------------

// To tf32 (10 mantissa bits): to nearest, ties away from zero, as cvt.rna.tf32.f32. Finite
// values only (the tests have no others).
float round_to_tf32(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  return std::bit_cast<float>((bits + 0x1000u) & 0xffffe000u);
}

// To bf16 (7 mantissa bits): to nearest, ties to even, as __float2bfloat16.
float round_to_bf16(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  return std::bit_cast<float>((bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u);
}

std::vector<float> rounded_to(ConvMath math, std::vector<float> values) {
  for (float& value : values) value = math == ConvMath::tf32 ? round_to_tf32(value) : round_to_bf16(value);
  return values;
}

// Unit roundoff of one input conversion: half an ulp of the mantissa.
double input_roundoff(ConvMath math) { return math == ConvMath::tf32 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8); }

TEST(ConvMathRounding, HostRoundingsMatchTheirDefinitions) {
  EXPECT_EQ(round_to_tf32(1.0f + 0x1p-11f), 1.0f + 0x1p-10f);  // a tie: away from zero
  EXPECT_EQ(round_to_tf32(-(1.0f + 0x1p-11f)), -(1.0f + 0x1p-10f));
  EXPECT_EQ(round_to_tf32(1.0f + 0x1p-12f), 1.0f);
  EXPECT_EQ(round_to_bf16(1.0f + 0x1p-8f), 1.0f);  // a tie: to even
  EXPECT_EQ(round_to_bf16(1.0f + 0x1p-7f + 0x1p-8f), 1.0f + 0x1p-6f);
  EXPECT_EQ(round_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 1.0f + 0x1p-7f);
}

// ---- Problems and data ----------------------------------------------------------------------

struct TensorCoreCase {
  std::string name;
  Conv2dProblem problem;
  bool bias = true;
};

// gtest prints a failing case's parameters with this (else as bytes).
void PrintTo(const TensorCoreCase& test_case, std::ostream* out) {
  *out << test_case.name << " (" << to_string(test_case.problem.params) << (test_case.bias ? ", bias)" : ")");
}

// A table row: name, then N, C, H, W (input), K, R, S (weight), parameters, bias or not.
TensorCoreCase make_case(std::string name, std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w,
                         std::int64_t k, std::int64_t r, std::int64_t s, Conv2dParams params, bool bias = true) {
  return {std::move(name),
          Conv2dProblem{.batch = n, .in_channels = c, .in_height = h, .in_width = w, .out_channels = k,
                        .kernel_height = r, .kernel_width = s, .params = params},
          bias};
}

// The simulator spends about 25 us per mma_sync: small shapes, a few tiles at most.
std::vector<TensorCoreCase> tensor_core_cases() {
  return {
      // C = 3, K = 10: every GEMM dimension ragged (M = 2*5*4 = 40, N = 10, reduction 27).
      make_case("OddSizes", 2, 3, 7, 6, 10, 3, 3, {}),
      make_case("Stride2Pad1NoBias", 1, 5, 9, 7, 12, 3, 3, {.stride = {2, 2}, .padding = {1, 1}}, false),
      make_case("Dilation2", 1, 3, 9, 8, 9, 3, 3, {.padding = {2, 2}, .dilation = {2, 2}}),
      make_case("EverythingAsymmetric", 2, 5, 9, 7, 8, 3, 2,
                {.stride = {2, 3}, .padding = {2, 1}, .dilation = {1, 2}}),
      make_case("Groups2", 1, 6, 6, 5, 20, 3, 3, {.padding = {1, 1}, .groups = 2}),
      make_case("Groups3Pointwise", 2, 9, 5, 4, 24, 1, 1, {.groups = 3}),
      make_case("PaddingBeyondKernel", 1, 2, 4, 3, 8, 2, 2, {.padding = {3, 2}}),
      // M = 2*9*9 = 162 (three m tiles), N = 70 (two n tiles), reduction 99 (seven slices).
      make_case("ManyTiles", 2, 11, 9, 9, 70, 3, 3, {.padding = {1, 1}}),
      // Reduction 19*9 = 171: eleven slices through the two shared-memory buffers.
      make_case("LongReduction", 1, 19, 6, 6, 16, 3, 3, {.padding = {1, 1}}),
  };
}

struct Inputs {
  std::vector<float> x, weight, bias, dL_dy;  // (N, C, H, W), (K, C/groups, R, S), (K) or empty, (N, K, P, Q)
  Tensor x_device, weight_device, bias_device, dL_dy_device;
};

Inputs make_inputs(const TensorCoreCase& test_case, std::uint64_t seed, bool integers, cudaStream_t stream) {
  const Conv2dProblem& problem = test_case.problem;
  const auto values = [&](std::uint64_t salt, std::int64_t count, int magnitude) {
    std::vector<float> v = random_uniform(seed + salt, static_cast<std::size_t>(count),
                                          integers ? static_cast<float>(-magnitude) : -1.0f,
                                          integers ? static_cast<float>(magnitude) + 1.0f : 1.0f);
    if (integers) {
      for (float& value : v) value = std::floor(value);
    }
    return v;
  };
  Inputs in;
  in.x = values(1, problem.input_count(), 3);
  in.weight = values(2, problem.weight_count(), 2);
  in.x_device = device_tensor(in.x, input_shape(problem), stream);
  in.weight_device = device_tensor(in.weight, weight_shape(problem), stream);
  if (test_case.bias) {
    in.bias = values(3, problem.out_channels, 3);
    in.bias_device = device_tensor(in.bias, Shape{problem.out_channels}, stream);
  }
  in.dL_dy = values(4, problem.output_count(), 3);
  in.dL_dy_device = device_tensor(in.dL_dy, output_shape(problem), stream);
  return in;
}

// y of conv2d_forward with math, written into a poisoned output.
std::vector<float> forward(const Conv2dProblem& problem, const Inputs& in, ConvMath math, cudaStream_t stream) {
  Conv2dParams params = problem.params;
  params.math = math;
  Tensor y = poisoned_tensor(output_shape(problem), stream);  // (N, K, P, Q)
  conv2d_forward(in.x_device, in.weight_device, in.bias_device, y, params, stream);
  return y.to_vector<float>(stream);
}

// dL_dx of conv2d_backward_data with math, written into a poisoned output.
std::vector<float> backward_data(const Conv2dProblem& problem, const Inputs& in, ConvMath math, cudaStream_t stream) {
  Conv2dParams params = problem.params;
  params.math = math;
  Tensor dL_dx = poisoned_tensor(input_shape(problem), stream);  // (N, C, H, W)
  conv2d_backward_data(in.dL_dy_device, in.weight_device, dL_dx, params, stream);
  return dL_dx.to_vector<float>(stream);
}

// dL_dweight of conv2d_backward_filter with math, written into a poisoned output.
std::vector<float> backward_filter(const Conv2dProblem& problem, const Inputs& in, ConvMath math, cudaStream_t stream,
                                   bool deterministic = true) {
  Conv2dParams params = problem.params;
  params.math = math;
  params.deterministic = deterministic;
  Tensor dL_dweight = poisoned_tensor(weight_shape(problem), stream);  // (K, C/groups, R, S)
  conv2d_backward_filter(in.x_device, in.dL_dy_device, dL_dweight, params, stream);
  return dL_dweight.to_vector<float>(stream);
}

// The chunks of the filter gradient's N*P*Q reduction on the tensor cores (as the launcher splits it).
std::int64_t filter_splits(const Conv2dProblem& problem) {
  const Conv2dShape shape = shape_of(problem);
  const std::int64_t columns = shape.in_channels_per_group() * shape.kernel_height * shape.kernel_width;
  const auto tiles_of = [](std::int64_t size, std::int64_t tile) { return (size + tile - 1) / tile; };
  const std::int64_t tiles = tiles_of(shape.out_channels_per_group(), kConv2dTensorCoreBlockM) *
                             tiles_of(columns, kConv2dTensorCoreBlockN) * shape.params.groups;
  return split_conv2d_reduction(shape.batch * shape.out_height * shape.out_width, tiles, kConv2dTensorCoreStepK)
      .splits;
}

std::vector<double> absolute(const std::vector<float>& values) {
  std::vector<double> result;
  for (const float value : values) result.push_back(std::fabs(static_cast<double>(value)));
  return result;
}

// Success when |actual[i] - expected[i]| <= bound[i] for every i (a NaN, such as an unwritten
// poisoned element, fails), else the first few violations with their index.
::testing::AssertionResult within_bounds(const std::vector<float>& actual, const std::vector<double>& expected,
                                         const std::vector<double>& bound) {
  if (actual.size() != expected.size() || bound.size() != expected.size()) {
    return ::testing::AssertionFailure() << "sizes differ: " << actual.size() << " vs " << expected.size();
  }
  int failures = 0;
  std::string report;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const double error = std::fabs(static_cast<double>(actual[i]) - expected[i]);
    if (error <= bound[i]) continue;  // false for NaN
    if (++failures <= 8) {
      report += fmt::format("\n  [{}] actual {} expected {} error {:.3g} bound {:.3g}", i, actual[i], expected[i],
                            error, bound[i]);
    }
  }
  if (failures == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << failures << " of " << actual.size() << " elements out of bounds" << report;
}

// ---- Against the reference ------------------------------------------------------------------

// One pass's double reference of its two operands (and the bias, forward only; else empty).
using PassReference = std::function<std::vector<double>(const std::vector<double>&, const std::vector<double>&,
                                                        const std::vector<double>&)>;

// The result of a pass that rounds its operands a and b to math and sums `reduction` products
// (and the bias) in f32, against reference twice; and that the rounding happened, against the
// fp32 kernel's result.
void expect_within_the_math_types_bounds(const std::vector<float>& actual, const std::vector<float>& fp32,
                                         ConvMath math, std::int64_t reduction, const std::vector<float>& a,
                                         const std::vector<float>& b, const std::vector<float>& bias,
                                         const PassReference& reference) {
  // f32 sums of reduction products and the bias, in any order: gamma_(reduction + 1), doubled
  // for the hardware's unspecified order and internal rounding (and a split's partial sums).
  const double summation = 2.0 * static_cast<double>(reduction + 2) * std::ldexp(1.0, -24);

  // 1. The inputs rounded as the kernel rounds them: only the summation differs.
  const std::vector<float> a_rounded = rounded_to(math, a), b_rounded = rounded_to(math, b);
  const std::vector<double> expected_rounded = reference(to_double(a_rounded), to_double(b_rounded), to_double(bias));
  const std::vector<double> magnitude_rounded = reference(absolute(a_rounded), absolute(b_rounded), absolute(bias));
  std::vector<double> bound(actual.size());
  for (std::size_t i = 0; i < actual.size(); ++i) bound[i] = summation * magnitude_rounded[i] + 1e-30;
  EXPECT_TRUE(within_bounds(actual, expected_rounded, bound)) << "against the reference of the rounded inputs";

  // 2. The exact inputs: each product within (2u + u^2) |a b| (u: the input roundoff), plus the sums.
  const std::vector<double> expected = reference(to_double(a), to_double(b), to_double(bias));
  const std::vector<double> magnitude = reference(absolute(a), absolute(b), absolute(bias));
  const double u = input_roundoff(math);
  for (std::size_t i = 0; i < actual.size(); ++i) bound[i] = (2.0 * u + u * u + 2.0 * summation) * magnitude[i] + 1e-30;
  EXPECT_TRUE(within_bounds(actual, expected, bound)) << "against the reference of the exact inputs";

  // 3. The rounding happened: random inputs in [-1, 1) are not tf32 or bf16 values.
  int differing = 0;
  for (std::size_t i = 0; i < actual.size(); ++i) differing += actual[i] != fp32[i] ? 1 : 0;
  EXPECT_GT(differing, 0) << "no result differs from the fp32 kernel's";
}

class Conv2dTensorCore : public testing::DeviceTest,
                         public ::testing::WithParamInterface<std::pair<TensorCoreCase, ConvMath>> {};

TEST_P(Conv2dTensorCore, MatchesTheReferenceWithinTheMathTypesBound) {
  const auto& [test_case, math] = GetParam();
  Conv2dProblem problem = test_case.problem;
  problem.params.math = math;
  SCOPED_TRACE(to_string(problem.params));
  ASSERT_TRUE(conv2d_forward_uses_tensor_cores(shape_of(problem)));
  const cudaStream_t stream = current_stream();
  const Inputs in = make_inputs(test_case, 2024, /*integers=*/false, stream);
  expect_within_the_math_types_bounds(
      forward(problem, in, math, stream), forward(problem, in, ConvMath::fp32, stream), math,
      problem.weight_count() / problem.out_channels, in.x, in.weight, in.bias,
      [&](const auto& x, const auto& weight, const auto& bias) {
        return reference::conv2d_forward(problem, x, weight, bias);
      });
}

// "OddSizes_tf32".
std::string case_name(const ::testing::TestParamInfo<std::pair<TensorCoreCase, ConvMath>>& case_info) {
  return case_info.param.first.name + "_" + std::string(to_string(case_info.param.second));
}

// Every case with each of tf32 and bf16.
std::vector<std::pair<TensorCoreCase, ConvMath>> with_maths(const std::vector<TensorCoreCase>& test_cases) {
  std::vector<std::pair<TensorCoreCase, ConvMath>> cases;
  for (const TensorCoreCase& test_case : test_cases) {
    for (const ConvMath math : {ConvMath::tf32, ConvMath::bf16}) cases.emplace_back(test_case, math);
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Conv2d, Conv2dTensorCore, ::testing::ValuesIn(with_maths(tensor_core_cases())), case_name);

// ---- Backward data and backward filter against the reference --------------------------------

// Both backward passes take the tensor cores: at least 8 channels per group in C and in K.
std::vector<TensorCoreCase> backward_cases() {
  return {
      // M (data) = 2*7*6 = 84, N = 9, reduction 10*9 = 90; filter M = 10, N = 81, reduction 2*5*4 = 40.
      make_case("OddSizes", 2, 9, 7, 6, 10, 3, 3, {}, false),
      make_case("Stride2Pad1", 1, 8, 9, 7, 12, 3, 3, {.stride = {2, 2}, .padding = {1, 1}}, false),
      // Stride 3 with a 2x2 kernel: every third input row and column receives no gradient (zeros).
      make_case("Stride3Unreached", 1, 8, 8, 8, 8, 2, 2, {.stride = {3, 3}}, false),
      make_case("Dilation2", 1, 8, 9, 8, 9, 3, 3, {.padding = {2, 2}, .dilation = {2, 2}}, false),
      make_case("EverythingAsymmetric", 2, 10, 9, 7, 8, 3, 2,
                {.stride = {2, 3}, .padding = {2, 1}, .dilation = {1, 2}}, false),
      make_case("Groups2", 1, 16, 6, 5, 20, 3, 3, {.padding = {1, 1}, .groups = 2}, false),
      make_case("PaddingBeyondKernel", 1, 8, 4, 3, 8, 2, 2, {.padding = {3, 2}}, false),
      // Data: M = 2*9*9 = 162 (three m tiles), N = 70 (two n tiles); filter: N = 630 (ten n tiles).
      make_case("ManyTiles", 2, 70, 9, 9, 11, 3, 3, {.padding = {1, 1}}, false),
      // Filter: reduction 2*12*12 = 288 in several chunks, added in order from the workspace.
      make_case("SplitReduction", 2, 8, 12, 12, 8, 3, 3, {.padding = {1, 1}}, false),
  };
}

class Conv2dTensorCoreBackward : public Conv2dTensorCore {};

TEST_P(Conv2dTensorCoreBackward, DataGradientWithinTheMathTypesBound) {
  const auto& [test_case, math] = GetParam();
  Conv2dProblem problem = test_case.problem;
  problem.params.math = math;
  SCOPED_TRACE(to_string(problem.params));
  ASSERT_TRUE(conv2d_backward_data_uses_tensor_cores(shape_of(problem)));
  const cudaStream_t stream = current_stream();
  const Inputs in = make_inputs(test_case, 4048, /*integers=*/false, stream);
  const std::int64_t reduction = problem.out_channels / problem.params.groups * problem.kernel_height *
                                 problem.kernel_width;
  expect_within_the_math_types_bounds(
      backward_data(problem, in, math, stream), backward_data(problem, in, ConvMath::fp32, stream), math, reduction,
      in.dL_dy, in.weight, {}, [&](const auto& dL_dy, const auto& weight, const auto&) {
        return reference::conv2d_backward_data(problem, dL_dy, weight);
      });
}

TEST_P(Conv2dTensorCoreBackward, FilterGradientWithinTheMathTypesBound) {
  const auto& [test_case, math] = GetParam();
  Conv2dProblem problem = test_case.problem;
  problem.params.math = math;
  SCOPED_TRACE(to_string(problem.params));
  ASSERT_TRUE(conv2d_backward_filter_uses_tensor_cores(shape_of(problem)));
  const cudaStream_t stream = current_stream();
  const Inputs in = make_inputs(test_case, 8096, /*integers=*/false, stream);
  const std::int64_t reduction = problem.batch * problem.out_height() * problem.out_width();
  const PassReference reference = [&](const auto& x, const auto& dL_dy, const auto&) {
    return reference::conv2d_backward_filter(problem, x, dL_dy);
  };
  const std::vector<float> fp32 = backward_filter(problem, in, ConvMath::fp32, stream);
  expect_within_the_math_types_bounds(backward_filter(problem, in, math, stream), fp32, math, reduction, in.x,
                                      in.dL_dy, {}, reference);
  if (filter_splits(problem) > 1) {
    SCOPED_TRACE("atomics (deterministic = false)");
    expect_within_the_math_types_bounds(backward_filter(problem, in, math, stream, /*deterministic=*/false), fp32,
                                        math, reduction, in.x, in.dL_dy, {}, reference);
  }
}

INSTANTIATE_TEST_SUITE_P(Conv2d, Conv2dTensorCoreBackward, ::testing::ValuesIn(with_maths(backward_cases())),
                         case_name);

// ---- Exact results with small integers -----------------------------------------------------

using Conv2dTensorCoreExact = testing::DeviceTest;

TEST_F(Conv2dTensorCoreExact, SmallIntegersAreBitIdenticalToTheFp32Kernel) {
  // Integers in [-3, 3] are exact in bf16 and tf32, and every partial sum is an integer far
  // below 2^24: exact in f32 in any order, so both kernels give the reference's values.
  const cudaStream_t stream = current_stream();
  const std::vector<TensorCoreCase> cases = {
      make_case("OddSizes", 2, 3, 7, 6, 10, 3, 3, {.padding = {1, 1}}),
      make_case("Stride2NoBias", 1, 5, 9, 8, 12, 3, 3, {.stride = {2, 2}, .padding = {1, 1}}, false),
      make_case("GroupsDilation", 1, 6, 7, 6, 16, 3, 2, {.padding = {1, 2}, .dilation = {2, 1}, .groups = 2}),
      make_case("ManyTiles", 1, 13, 9, 9, 67, 3, 3, {.padding = {1, 1}}),
  };
  for (const TensorCoreCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    const Inputs in = make_inputs(test_case, 77, /*integers=*/true, stream);
    const std::vector<float> expected = reference::to_float(reference::conv2d_forward(
        test_case.problem, to_double(in.x), to_double(in.weight), to_double(in.bias)));
    const std::vector<float> y_fp32 = forward(test_case.problem, in, ConvMath::fp32, stream);
    EXPECT_TRUE(all_equal(y_fp32, expected)) << "fp32";
    for (const ConvMath math : {ConvMath::tf32, ConvMath::bf16}) {
      EXPECT_EQ(bit_patterns(forward(test_case.problem, in, math, stream)), bit_patterns(y_fp32)) << to_string(math);
    }
  }
}

TEST_F(Conv2dTensorCoreExact, SmallIntegerGradientsAreBitIdenticalToTheFp32Kernels) {
  // dL_dy in [-3, 3], weights in [-2, 2], x in [-3, 3]: every product and partial sum (of the
  // filter gradient's chunks too) is an integer far below 2^24.
  const cudaStream_t stream = current_stream();
  const std::vector<TensorCoreCase> cases = {
      make_case("OddSizes", 2, 9, 7, 6, 10, 3, 3, {.padding = {1, 1}}, false),
      make_case("Stride2", 1, 8, 9, 8, 12, 3, 3, {.stride = {2, 2}, .padding = {1, 1}}, false),
      make_case("GroupsDilation", 1, 16, 7, 6, 16, 3, 2, {.padding = {1, 2}, .dilation = {2, 1}, .groups = 2}, false),
      make_case("ManyTilesSplit", 2, 13, 11, 11, 67, 3, 3, {.padding = {1, 1}}, false),
  };
  for (const TensorCoreCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    const Conv2dProblem& problem = test_case.problem;
    const Inputs in = make_inputs(test_case, 78, /*integers=*/true, stream);
    const std::vector<float> dL_dx_fp32 = backward_data(problem, in, ConvMath::fp32, stream);
    const std::vector<float> dL_dweight_fp32 = backward_filter(problem, in, ConvMath::fp32, stream);
    EXPECT_TRUE(all_equal(dL_dx_fp32, reference::to_float(reference::conv2d_backward_data(
                                          problem, to_double(in.dL_dy), to_double(in.weight)))))
        << "fp32 data";
    EXPECT_TRUE(all_equal(dL_dweight_fp32, reference::to_float(reference::conv2d_backward_filter(
                                               problem, to_double(in.x), to_double(in.dL_dy)))))
        << "fp32 filter";
    for (const ConvMath math : {ConvMath::tf32, ConvMath::bf16}) {
      EXPECT_EQ(bit_patterns(backward_data(problem, in, math, stream)), bit_patterns(dL_dx_fp32)) << to_string(math);
      EXPECT_EQ(bit_patterns(backward_filter(problem, in, math, stream)), bit_patterns(dL_dweight_fp32))
          << to_string(math);
    }
  }
}

TEST_F(Conv2dTensorCoreExact, HandComputedExample) {
  // x = 1..16 in a 4x4 image; eight output channels, channel k the weight [[k, 0], [0, -1]]
  // with stride 2 and bias 10: y[k][p][q] = k x[2p][2q] - x[2p+1][2q+1] + 10.
  const cudaStream_t stream = current_stream();
  std::vector<float> x(16), weight, bias(8, 10.0f), expected;
  for (int i = 0; i < 16; ++i) x[static_cast<std::size_t>(i)] = static_cast<float>(i + 1);
  for (int k = 0; k < 8; ++k) {
    weight.insert(weight.end(), {static_cast<float>(k), 0.0f, 0.0f, -1.0f});
    for (const int p : {0, 1}) {
      for (const int q : {0, 1}) {
        expected.push_back(static_cast<float>(k) * x[static_cast<std::size_t>(8 * p + 2 * q)] -
                           x[static_cast<std::size_t>(8 * p + 4 + 2 * q + 1)] + 10.0f);
      }
    }
  }
  for (const ConvMath math : {ConvMath::tf32, ConvMath::bf16}) {
    const Tensor y = conv2d_forward(device_tensor(x, Shape{1, 1, 4, 4}, stream),
                                    device_tensor(weight, Shape{8, 1, 2, 2}, stream),
                                    device_tensor(bias, Shape{8}, stream),
                                    Conv2dParams{.stride = {2, 2}, .math = math}, stream);
    EXPECT_EQ(y.shape(), (Shape{1, 8, 2, 2}));
    EXPECT_TRUE(all_equal(y.to_vector<float>(stream), expected)) << to_string(math);
  }
}

// ---- Which shapes run on the tensor cores ---------------------------------------------------

TEST_F(Conv2dTensorCoreExact, NarrowGroupsAndFp32KeepTheFp32Kernel) {
  const Shape x{1, 16, 6, 6};
  const auto uses = [&](std::int64_t out_channels, std::int64_t groups, ConvMath math) {
    const Conv2dParams params{.padding = {1, 1}, .groups = groups, .math = math};
    return conv2d_forward_uses_tensor_cores(conv2d_shape(x, Shape{out_channels, 16 / groups, 3, 3}, params));
  };
  EXPECT_FALSE(uses(16, 1, ConvMath::fp32));
  EXPECT_TRUE(uses(16, 1, ConvMath::tf32));
  EXPECT_TRUE(uses(8, 1, ConvMath::bf16));
  EXPECT_FALSE(uses(7, 1, ConvMath::tf32));
  EXPECT_TRUE(uses(16, 2, ConvMath::tf32));    // 8 per group
  EXPECT_FALSE(uses(16, 4, ConvMath::tf32));   // 4 per group
  EXPECT_FALSE(uses(16, 16, ConvMath::bf16));  // depthwise

  // The data gradient produces C/groups channels, the filter gradient K/groups rows.
  const auto uses_backward = [&](std::int64_t out_channels, std::int64_t groups, ConvMath math) {
    const Conv2dParams params{.padding = {1, 1}, .groups = groups, .math = math};
    const Conv2dShape shape = conv2d_shape(x, Shape{out_channels, 16 / groups, 3, 3}, params);
    return std::pair{conv2d_backward_data_uses_tensor_cores(shape), conv2d_backward_filter_uses_tensor_cores(shape)};
  };
  EXPECT_EQ(uses_backward(16, 1, ConvMath::fp32), std::pair(false, false));
  EXPECT_EQ(uses_backward(16, 1, ConvMath::tf32), std::pair(true, true));
  EXPECT_EQ(uses_backward(4, 1, ConvMath::bf16), std::pair(true, false));   // C 16, K 4
  EXPECT_EQ(uses_backward(16, 2, ConvMath::tf32), std::pair(true, true));   // 8 per group
  EXPECT_EQ(uses_backward(32, 4, ConvMath::tf32), std::pair(false, true));  // C/groups 4, K/groups 8
  EXPECT_EQ(uses_backward(16, 16, ConvMath::bf16), std::pair(false, false));
  const Conv2dShape rgb = conv2d_shape(Shape{1, 3, 8, 8}, Shape{16, 3, 3, 3}, Conv2dParams{.math = ConvMath::tf32});
  EXPECT_FALSE(conv2d_backward_data_uses_tensor_cores(rgb));  // three input channels
  EXPECT_TRUE(conv2d_backward_filter_uses_tensor_cores(rgb));

  // A depthwise convolution asked for tf32 or bf16 gives the fp32 kernel's results, bit for
  // bit, although its random inputs are not tf32 or bf16 values.
  const cudaStream_t stream = current_stream();
  const TensorCoreCase depthwise = make_case("Depthwise", 2, 5, 6, 6, 10, 3, 3, {.padding = {1, 1}, .groups = 5});
  const Inputs in = make_inputs(depthwise, 5, /*integers=*/false, stream);
  const std::vector<float> y_fp32 = forward(depthwise.problem, in, ConvMath::fp32, stream);
  const std::vector<float> dL_dx_fp32 = backward_data(depthwise.problem, in, ConvMath::fp32, stream);
  const std::vector<float> dL_dweight_fp32 = backward_filter(depthwise.problem, in, ConvMath::fp32, stream);
  for (const ConvMath math : {ConvMath::tf32, ConvMath::bf16}) {
    EXPECT_EQ(bit_patterns(forward(depthwise.problem, in, math, stream)), bit_patterns(y_fp32)) << to_string(math);
    EXPECT_EQ(bit_patterns(backward_data(depthwise.problem, in, math, stream)), bit_patterns(dL_dx_fp32))
        << to_string(math);
    EXPECT_EQ(bit_patterns(backward_filter(depthwise.problem, in, math, stream)), bit_patterns(dL_dweight_fp32))
        << to_string(math);
  }
}

TEST(Conv2dTensorCoreParams, ToStringNamesTheMath) {
  EXPECT_EQ(to_string(Conv2dParams{}), "stride (1, 1), padding (0, 0), dilation (1, 1), groups 1");
  EXPECT_EQ(to_string(Conv2dParams{.math = ConvMath::bf16}),
            "stride (1, 1), padding (0, 0), dilation (1, 1), groups 1, math bf16");
  EXPECT_EQ(to_string(ConvMath::tf32), "tf32");
}

TEST_F(Conv2dTensorCoreExact, ArgumentsAreCheckedAsForFp32) {
  const cudaStream_t stream = current_stream();
  const Tensor x = testing::random_device(1, Shape{1, 3, 5, 5});
  const Tensor weight = testing::random_device(2, Shape{16, 3, 3, 3});
  Tensor y = Tensor::empty(Shape{1, 16, 4, 4}, DType::f32, stream);  // should be (1, 16, 3, 3)
  const std::string message = testing::invalid_argument_message(
      [&] { conv2d_forward(x, weight, Tensor(), y, Conv2dParams{.math = ConvMath::tf32}, stream); });
  EXPECT_NE(message.find("conv2d_forward"), std::string::npos) << message;
  EXPECT_NE(message.find("y"), std::string::npos) << message;
}

// ---- Schedules ------------------------------------------------------------------------------

TEST_F(Conv2dTensorCoreExact, BitIdenticalUnderShuffledSchedules) {
  // Each element's sum has one order, fixed by the code: no thread or block order changes it.
  const cudaStream_t stream = current_stream();
  const TensorCoreCase test_case = make_case("Ragged", 2, 5, 7, 6, 20, 3, 3, {.stride = {1, 2}, .padding = {1, 1}});
  const Inputs in = make_inputs(test_case, 9, /*integers=*/false, stream);
  for (const ConvMath math : {ConvMath::tf32, ConvMath::bf16}) {
    const auto results = testing::run_with_schedule_seeds<std::vector<std::uint32_t>>(
        [&] { return bit_patterns(forward(test_case.problem, in, math, stream)); });
    for (std::size_t i = 1; i < results.size(); ++i) EXPECT_EQ(results[i], results[0]) << to_string(math) << " " << i;
  }
}

TEST_F(Conv2dTensorCoreExact, GradientsBitIdenticalUnderShuffledSchedulesAndRunToRun) {
  // The filter gradient's chunks are fixed by the sizes and added in chunk order, so the split
  // reduction is as reproducible as the data gradient's single pass.
  const cudaStream_t stream = current_stream();
  const TensorCoreCase test_case =
      make_case("RaggedSplit", 2, 9, 12, 11, 10, 3, 3, {.stride = {1, 2}, .padding = {1, 1}}, false);
  ASSERT_GT(filter_splits(test_case.problem), 1);
  const Inputs in = make_inputs(test_case, 10, /*integers=*/false, stream);
  for (const ConvMath math : {ConvMath::tf32, ConvMath::bf16}) {
    const auto results = testing::run_with_schedule_seeds<std::vector<std::vector<std::uint32_t>>>([&] {
      return std::vector{bit_patterns(backward_data(test_case.problem, in, math, stream)),
                         bit_patterns(backward_filter(test_case.problem, in, math, stream))};
    });
    for (std::size_t i = 1; i < results.size(); ++i) {
      EXPECT_EQ(results[i][0], results[0][0]) << to_string(math) << " data, schedule " << i;
      EXPECT_EQ(results[i][1], results[0][1]) << to_string(math) << " filter, schedule " << i;
    }
    for (int run = 0; run < 2; ++run) {
      EXPECT_EQ(bit_patterns(backward_filter(test_case.problem, in, math, stream)), results[0][1])
          << to_string(math) << " filter, run " << run;
    }
  }
}

// ---- f16 and bf16 storage on the tensor cores -----------------------------------------------
// Fragments of the storage type (half or bf16 wmma): nothing is rounded on the way in, so the
// only roundings are the f32 sums and the one store to the dtype; math tf32 and bf16 run the
// same kernel.

// Inputs of make_inputs rounded to dtype on the device (to nearest even): the device tensors
// in dtype, the host vectors the values they hold (what the kernels read).
Inputs reduced_inputs(const TensorCoreCase& test_case, std::uint64_t seed, bool integers, DType dtype,
                      cudaStream_t stream) {
  Inputs in = make_inputs(test_case, seed, integers, stream);
  const auto round = [&](Tensor& device, std::vector<float>& values) {
    if (!device.defined()) return;
    device = device.to_dtype(dtype, stream);
    values = testing::storage_values(device, stream);
  };
  round(in.x_device, in.x);
  round(in.weight_device, in.weight);
  round(in.bias_device, in.bias);
  round(in.dL_dy_device, in.dL_dy);
  return in;
}

// The three passes with math on dtype inputs, each into a poisoned output of dtype, as f32.
struct ReducedResults {
  std::vector<float> y, dL_dx, dL_dweight;
};

// Activations (x, y, dL_dy, dL_dx) in format: channels-last ones whose channels fill 16-byte
// vectors take the asynchronous-copy passes (conv2d_tensor_core_async.cuh).
ReducedResults run_reduced(const Conv2dProblem& problem, const Inputs& in, ConvMath math, DType dtype,
                           cudaStream_t stream, MemoryFormat format = MemoryFormat::contiguous) {
  Conv2dParams params = problem.params;
  params.math = math;
  const Tensor x = in.x_device.to_memory_format(format, stream);
  const Tensor dL_dy = in.dL_dy_device.to_memory_format(format, stream);
  Tensor y = testing::poisoned_storage(output_shape(problem), dtype, stream).to_memory_format(format, stream);
  conv2d_forward(x, in.weight_device, in.bias_device, y, params, stream);
  Tensor dL_dx = testing::poisoned_storage(input_shape(problem), dtype, stream).to_memory_format(format, stream);
  conv2d_backward_data(dL_dy, in.weight_device, dL_dx, params, stream);
  Tensor dL_dweight = testing::poisoned_storage(weight_shape(problem), dtype, stream);
  conv2d_backward_filter(x, dL_dy, dL_dweight, params, stream);
  return {testing::storage_values(y, stream), testing::storage_values(dL_dx, stream),
          testing::storage_values(dL_dweight, stream)};
}

// |actual - reference| <= u |reference| + (1 + u) * summation * magnitude: the f32 sums of
// `reduction` exact products (and the bias), then one rounding to dtype (u its roundoff).
void expect_one_rounding(const std::vector<float>& actual, DType dtype, std::int64_t reduction,
                         const std::vector<double>& expected, const std::vector<double>& magnitude) {
  const double summation = 2.0 * static_cast<double>(reduction + 2) * std::ldexp(1.0, -24);
  const double u = testing::storage_rel_tol(dtype);
  std::vector<double> bound(expected.size());
  for (std::size_t i = 0; i < bound.size(); ++i) {
    bound[i] = u * std::fabs(expected[i]) + (1.0 + u) * summation * magnitude[i] + 1e-30;
  }
  EXPECT_TRUE(within_bounds(actual, expected, bound));
}

std::vector<double> absolute(const std::vector<double>& values) {
  std::vector<double> result;
  for (const double value : values) result.push_back(std::fabs(value));
  return result;
}

// Every pass of these takes the tensor cores: at least 8 channels per group in C and K.
std::vector<TensorCoreCase> reduced_storage_cases() {
  return {
      make_case("OddSizes", 2, 9, 7, 6, 10, 3, 3, {}),
      make_case("Stride2Pad1NoBias", 1, 8, 9, 7, 12, 3, 3, {.stride = {2, 2}, .padding = {1, 1}}, false),
      make_case("Dilation2Groups2", 1, 16, 9, 8, 18, 3, 3, {.padding = {2, 2}, .dilation = {2, 2}, .groups = 2}),
      // Filter: reduction 2*12*12 = 288 in several chunks, added in f32 before the rounding.
      make_case("SplitReduction", 2, 8, 12, 12, 8, 3, 3, {.padding = {1, 1}}),
      // Channels that fill 16-byte vectors in every pass (C/groups 16, K/groups 24).
      make_case("VectorChannels", 2, 16, 7, 6, 24, 3, 3, {.padding = {1, 1}}),
  };
}

class Conv2dTensorCoreStorage : public testing::DeviceTest,
                                public ::testing::WithParamInterface<std::pair<TensorCoreCase, DType>> {};

TEST_P(Conv2dTensorCoreStorage, EveryPassWithinOneRoundingOfTheReference) {
  const auto& [test_case, dtype] = GetParam();
  Conv2dProblem problem = test_case.problem;
  problem.params.math = ConvMath::tf32;
  SCOPED_TRACE(to_string(problem.params));
  const Conv2dShape shape = shape_of(problem);
  ASSERT_TRUE(conv2d_forward_uses_tensor_cores(shape));
  ASSERT_TRUE(conv2d_backward_data_uses_tensor_cores(shape));
  ASSERT_TRUE(conv2d_backward_filter_uses_tensor_cores(shape));
  const cudaStream_t stream = current_stream();
  const Inputs in = reduced_inputs(test_case, 2048, /*integers=*/false, dtype, stream);
  const std::vector<double> x = to_double(in.x), weight = to_double(in.weight), bias = to_double(in.bias),
                            dL_dy = to_double(in.dL_dy);
  const std::int64_t rs = problem.kernel_height * problem.kernel_width;
  for (const MemoryFormat format : {MemoryFormat::contiguous, MemoryFormat::channels_last}) {
    SCOPED_TRACE(memory_format_name(format));
    const ReducedResults tf32 = run_reduced(problem, in, ConvMath::tf32, dtype, stream, format);
    {
      SCOPED_TRACE("forward");
      expect_one_rounding(tf32.y, dtype, problem.in_channels / problem.params.groups * rs,
                          reference::conv2d_forward(problem, x, weight, bias),
                          reference::conv2d_forward(problem, absolute(x), absolute(weight), absolute(bias)));
    }
    {
      SCOPED_TRACE("backward_data");
      expect_one_rounding(tf32.dL_dx, dtype, problem.out_channels / problem.params.groups * rs,
                          reference::conv2d_backward_data(problem, dL_dy, weight),
                          reference::conv2d_backward_data(problem, absolute(dL_dy), absolute(weight)));
    }
    {
      SCOPED_TRACE("backward_filter");
      expect_one_rounding(tf32.dL_dweight, dtype, problem.batch * problem.out_height() * problem.out_width(),
                          reference::conv2d_backward_filter(problem, x, dL_dy),
                          reference::conv2d_backward_filter(problem, absolute(x), absolute(dL_dy)));
    }

    // bf16 math multiplies the same stored values in the same fragments: the same bits.
    const ReducedResults bf16 = run_reduced(problem, in, ConvMath::bf16, dtype, stream, format);
    EXPECT_EQ(bit_patterns(bf16.y), bit_patterns(tf32.y));
    EXPECT_EQ(bit_patterns(bf16.dL_dx), bit_patterns(tf32.dL_dx));
    EXPECT_EQ(bit_patterns(bf16.dL_dweight), bit_patterns(tf32.dL_dweight));
  }
}

// An f32 dL_dweight or dL_dbias of reduced operands holds the dtype's result widened, bit for
// bit, from the tensor cores (bf16 math) and the CUDA cores (fp32 math), in either layout:
// autocast's gradients of f32 parameters, without a cast back. The other reduced dtype is refused.
TEST_P(Conv2dTensorCoreStorage, F32ParameterGradientsAreTheDtypesResultWidened) {
  const auto& [test_case, dtype] = GetParam();
  const Conv2dProblem& problem = test_case.problem;
  const cudaStream_t stream = current_stream();
  const Inputs in = reduced_inputs(test_case, 2049, /*integers=*/false, dtype, stream);
  const Shape bias_shape{problem.out_channels};
  for (const ConvMath math : {ConvMath::fp32, ConvMath::bf16}) {
    for (const MemoryFormat format : {MemoryFormat::contiguous, MemoryFormat::channels_last}) {
      SCOPED_TRACE(std::string(to_string(math)) + ", " + std::string(memory_format_name(format)));
      Conv2dParams params = problem.params;
      params.math = math;
      const Tensor x = in.x_device.to_memory_format(format, stream);
      const Tensor dL_dy = in.dL_dy_device.to_memory_format(format, stream);
      Tensor weight_in_dtype = testing::poisoned_storage(weight_shape(problem), dtype, stream);
      conv2d_backward_filter(x, dL_dy, weight_in_dtype, params, stream);
      Tensor weight_widened = poisoned_tensor(weight_shape(problem), stream);
      conv2d_backward_filter(x, dL_dy, weight_widened, params, stream);
      EXPECT_EQ(bit_patterns(weight_widened.to_vector<float>(stream)),
                bit_patterns(testing::storage_values(weight_in_dtype, stream)));
      Tensor bias_in_dtype = testing::poisoned_storage(bias_shape, dtype, stream);
      conv2d_backward_bias(dL_dy, bias_in_dtype, stream);
      Tensor bias_widened = poisoned_tensor(bias_shape, stream);
      conv2d_backward_bias(dL_dy, bias_widened, stream);
      EXPECT_EQ(bit_patterns(bias_widened.to_vector<float>(stream)),
                bit_patterns(testing::storage_values(bias_in_dtype, stream)));
    }
  }
  const DType other = dtype == DType::bf16 ? DType::f16 : DType::bf16;
  Tensor weight_other = testing::poisoned_storage(weight_shape(problem), other, stream);
  EXPECT_THROW(conv2d_backward_filter(in.x_device, in.dL_dy_device, weight_other, problem.params, stream),
               InvalidArgument);
  Tensor bias_other = testing::poisoned_storage(bias_shape, other, stream);
  EXPECT_THROW(conv2d_backward_bias(in.dL_dy_device, bias_other, stream), InvalidArgument);
}

// Every case with each of bf16 and f16.
std::vector<std::pair<TensorCoreCase, DType>> with_storage_dtypes(const std::vector<TensorCoreCase>& test_cases) {
  std::vector<std::pair<TensorCoreCase, DType>> cases;
  for (const TensorCoreCase& test_case : test_cases) {
    for (const DType dtype : testing::kReducedDtypes) cases.emplace_back(test_case, dtype);
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Conv2d, Conv2dTensorCoreStorage,
                         ::testing::ValuesIn(with_storage_dtypes(reduced_storage_cases())),
                         [](const ::testing::TestParamInfo<std::pair<TensorCoreCase, DType>>& case_info) {
                           return case_info.param.first.name + "_" + std::string(dtype_name(case_info.param.second));
                         });

TEST_F(Conv2dTensorCoreExact, ReducedStorageSmallIntegersMatchTheCudaCoreKernels) {
  // Small integers are exact in f16 and bf16, and every sum is an integer exact in f32 in any
  // order: the tensor cores (math tf32) and the CUDA-core kernels (math fp32) round the same
  // f32 values to the dtype, so they store the same bits.
  const cudaStream_t stream = current_stream();
  const TensorCoreCase test_case =
      make_case("GroupsDilation", 1, 16, 7, 6, 16, 3, 2, {.padding = {1, 2}, .dilation = {2, 1}, .groups = 2});
  for (const DType dtype : testing::kReducedDtypes) {
    SCOPED_TRACE(dtype_name(dtype));
    const Inputs in = reduced_inputs(test_case, 79, /*integers=*/true, dtype, stream);
    const ReducedResults cuda_cores = run_reduced(test_case.problem, in, ConvMath::fp32, dtype, stream);
    const ReducedResults tensor_cores = run_reduced(test_case.problem, in, ConvMath::tf32, dtype, stream);
    EXPECT_EQ(bit_patterns(tensor_cores.y), bit_patterns(cuda_cores.y));
    EXPECT_EQ(bit_patterns(tensor_cores.dL_dx), bit_patterns(cuda_cores.dL_dx));
    EXPECT_EQ(bit_patterns(tensor_cores.dL_dweight), bit_patterns(cuda_cores.dL_dweight));
  }
}

// ---- Through F::conv2d -----------------------------------------------------------------------

TEST_F(Conv2dTensorCoreExact, FunctionalConv2dPassesTheMathToTheDataAndFilterGradients) {
  // Through autograd, dL/dx and dL/dw are the tensor-core kernels' results (bit for bit, so the
  // math reached them) and differ from fp32's; dL/db stays fp32. The filter gradient's
  // reduction is split (two images of 9x8 pixels).
  const cudaStream_t stream = current_stream();
  const TensorCoreCase test_case = make_case("Layer", 2, 8, 9, 8, 12, 3, 3, {.padding = {1, 1}});
  ASSERT_GT(filter_splits(test_case.problem), 1);
  const Inputs in = make_inputs(test_case, 31, /*integers=*/false, stream);

  // y, dL/dx, dL/dw and dL/db of F::conv2d with math.
  const auto run = [&](ConvMath math) {
    const Conv2dProblem& problem = test_case.problem;
    Tensor x = device_tensor(in.x, input_shape(problem), stream);
    Tensor weight = device_tensor(in.weight, weight_shape(problem), stream);
    Tensor bias = device_tensor(in.bias, Shape{problem.out_channels}, stream);
    for (Tensor* leaf : {&x, &weight, &bias}) leaf->set_requires_grad();
    Conv2dParams params = test_case.problem.params;
    params.math = math;
    const Tensor y = F::conv2d(x, weight, bias, params, Engine::custom);
    autograd::backward(y, in.dL_dy_device, stream);
    return std::vector<std::vector<float>>{y.to_vector<float>(stream), x.grad().to_vector<float>(stream),
                                           weight.grad().to_vector<float>(stream),
                                           bias.grad().to_vector<float>(stream)};
  };
  const auto fp32 = run(ConvMath::fp32);
  for (const ConvMath math : {ConvMath::tf32, ConvMath::bf16}) {
    SCOPED_TRACE(to_string(math));
    const auto rounded = run(math);
    const std::vector<std::vector<float>> kernels = {forward(test_case.problem, in, math, stream),
                                                     backward_data(test_case.problem, in, math, stream),
                                                     backward_filter(test_case.problem, in, math, stream)};
    for (std::size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(bit_patterns(rounded[i]), bit_patterns(kernels[i])) << "result " << i << " as the kernel's";
      EXPECT_NE(bit_patterns(rounded[i]), bit_patterns(fp32[i])) << "result " << i << " rounded";
    }
    EXPECT_EQ(bit_patterns(rounded[3]), bit_patterns(fp32[3])) << "the bias gradient stays fp32";
  }
}

}  // namespace
}  // namespace strata::kernels
