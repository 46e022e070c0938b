// conv2d forward on the tensor cores (Conv2dParams::math tf32 and bf16): against the double
// reference twice, once with the inputs rounded to the math type as the kernel rounds them
// (only the f32 summation may differ) and once with the exact inputs (the bound that the math
// type promises); small integers bit-identical to the fp32 kernel; which shapes go to the
// tensor cores and that the others give the fp32 kernel's results; bit-identical results
// under shuffled simulator schedules; and F::conv2d passing the option through, with
// backward passes that stay fp32.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "strata/core/autograd.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/kernels/conv2d.h"
#include "strata/layers/functional.h"
#include "tests/kernels/device_values.h"
#include "tests/reference/conv2d_reference.h"
#include "tests/reference/reference_common.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"

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
  std::vector<float> x, weight, bias;  // (N, C, H, W), (K, C/groups, R, S), (K) or empty
  Tensor x_device, weight_device, bias_device;
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
  const std::vector<float> y = forward(problem, in, math, stream);

  const std::int64_t reduction = problem.weight_count() / problem.out_channels;
  // f32 sums of reduction products and the bias, in any order: gamma_(reduction + 1), doubled
  // for the hardware's unspecified order and internal rounding.
  const double summation = 2.0 * static_cast<double>(reduction + 2) * std::ldexp(1.0, -24);

  // 1. The inputs rounded as the kernel rounds them: only the summation differs.
  const std::vector<float> x_rounded = rounded_to(math, in.x), weight_rounded = rounded_to(math, in.weight);
  const std::vector<double> expected_rounded =
      reference::conv2d_forward(problem, to_double(x_rounded), to_double(weight_rounded), to_double(in.bias));
  const std::vector<double> magnitude_rounded =
      reference::conv2d_forward(problem, absolute(x_rounded), absolute(weight_rounded), absolute(in.bias));
  std::vector<double> bound(y.size());
  for (std::size_t i = 0; i < y.size(); ++i) bound[i] = summation * magnitude_rounded[i] + 1e-30;
  EXPECT_TRUE(within_bounds(y, expected_rounded, bound)) << "against the reference of the rounded inputs";

  // 2. The exact inputs: each product within (2u + u^2) |x w| (u: the input roundoff), plus the sums.
  const std::vector<double> expected = reference::conv2d_forward(problem, to_double(in.x), to_double(in.weight),
                                                                 to_double(in.bias));
  const std::vector<double> magnitude =
      reference::conv2d_forward(problem, absolute(in.x), absolute(in.weight), absolute(in.bias));
  const double u = input_roundoff(math);
  for (std::size_t i = 0; i < y.size(); ++i) bound[i] = (2.0 * u + u * u + 2.0 * summation) * magnitude[i] + 1e-30;
  EXPECT_TRUE(within_bounds(y, expected, bound)) << "against the reference of the exact inputs";

  // 3. The rounding happened: random inputs in [-1, 1) are not tf32 or bf16 values.
  const std::vector<float> y_fp32 = forward(problem, in, ConvMath::fp32, stream);
  int differing = 0;
  for (std::size_t i = 0; i < y.size(); ++i) differing += y[i] != y_fp32[i] ? 1 : 0;
  EXPECT_GT(differing, 0) << "no result differs from the fp32 kernel's";
}

std::vector<std::pair<TensorCoreCase, ConvMath>> cases_with_maths() {
  std::vector<std::pair<TensorCoreCase, ConvMath>> cases;
  for (const TensorCoreCase& test_case : tensor_core_cases()) {
    for (const ConvMath math : {ConvMath::tf32, ConvMath::bf16}) cases.emplace_back(test_case, math);
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Conv2d, Conv2dTensorCore, ::testing::ValuesIn(cases_with_maths()),
                         [](const ::testing::TestParamInfo<std::pair<TensorCoreCase, ConvMath>>& case_info) {
                           return case_info.param.first.name + "_" + std::string(to_string(case_info.param.second));
                         });

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

  // A depthwise convolution asked for tf32 or bf16 gives the fp32 kernel's results, bit for
  // bit, although its random inputs are not tf32 or bf16 values.
  const cudaStream_t stream = current_stream();
  const TensorCoreCase depthwise = make_case("Depthwise", 2, 5, 6, 6, 10, 3, 3, {.padding = {1, 1}, .groups = 5});
  const Inputs in = make_inputs(depthwise, 5, /*integers=*/false, stream);
  const std::vector<float> y_fp32 = forward(depthwise.problem, in, ConvMath::fp32, stream);
  for (const ConvMath math : {ConvMath::tf32, ConvMath::bf16}) {
    EXPECT_EQ(bit_patterns(forward(depthwise.problem, in, math, stream)), bit_patterns(y_fp32)) << to_string(math);
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

// ---- Through F::conv2d -----------------------------------------------------------------------

TEST_F(Conv2dTensorCoreExact, FunctionalConv2dPassesTheMathAndKeepsFp32Backward) {
  const cudaStream_t stream = current_stream();
  const TensorCoreCase test_case = make_case("Layer", 2, 4, 6, 5, 12, 3, 3, {.padding = {1, 1}});
  const Inputs in = make_inputs(test_case, 31, /*integers=*/false, stream);
  const Tensor dL_dy = testing::random_device(4, output_shape(test_case.problem));

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
    autograd::backward(y, dL_dy, stream);
    return std::vector<std::vector<float>>{y.to_vector<float>(stream), x.grad().to_vector<float>(stream),
                                           weight.grad().to_vector<float>(stream),
                                           bias.grad().to_vector<float>(stream)};
  };
  const auto fp32 = run(ConvMath::fp32);
  for (const ConvMath math : {ConvMath::tf32, ConvMath::bf16}) {
    SCOPED_TRACE(to_string(math));
    const auto rounded = run(math);
    EXPECT_EQ(bit_patterns(rounded[0]), bit_patterns(forward(test_case.problem, in, math, stream))) << "forward";
    EXPECT_NE(bit_patterns(rounded[0]), bit_patterns(fp32[0])) << "forward rounded";
    for (std::size_t i = 1; i < 4; ++i) EXPECT_EQ(bit_patterns(rounded[i]), bit_patterns(fp32[i])) << "gradient " << i;
  }
}

}  // namespace
}  // namespace strata::kernels
