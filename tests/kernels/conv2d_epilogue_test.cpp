// The conv2d forward's epilogue (Conv2dEpilogue, strata/kernels/conv2d.h):
// y = activation(scale[k] * (conv + bias[k]) + shift[k]). Against a double reference on the
// fp32 kernel and on the tensor cores (tf32, bf16 math), f32, f16 and bf16 storage, ragged
// and multi-tile shapes, into poisoned outputs; bit for bit against the unfused kernels where
// conv2d.h says so (the identity epilogue; an activation alone in f32; a power-of-two scale
// against batch_norm2d_forward_eval); the pre-activation output, the statistics of y as
// stored, the epilogue's element-wise forward (cuDNN's path) and backward, and the checks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/kernels/activations.h"
#include "strata/kernels/batch_norm2d.h"
#include "strata/kernels/conv2d.h"
#include "tests/kernels/device_values.h"
#include "tests/reference/conv2d_reference.h"
#include "tests/reference/elementwise_reference.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"
#include "tests/support/storage_dtypes.h"

namespace strata::kernels {
namespace {

using reference::Conv2dProblem;
using testing::all_close;
using testing::all_equal;
using testing::device_tensor;
using testing::invalid_argument_message;
using testing::poisoned_storage;
using testing::random_uniform;
using testing::storage_tensor;
using testing::storage_values;
using testing::Tolerance;

Shape input_shape(const Conv2dProblem& p) { return {p.batch, p.in_channels, p.in_height, p.in_width}; }
Shape weight_shape(const Conv2dProblem& p) {
  return {p.out_channels, p.in_channels / p.params.groups, p.kernel_height, p.kernel_width};
}
Shape output_shape(const Conv2dProblem& p) { return {p.batch, p.out_channels, p.out_height(), p.out_width()}; }

// ---- The reference --------------------------------------------------------------------------

// activation(v) in double, from the element-wise references.
std::vector<double> activation_reference(FusedActivation activation, const std::vector<double>& v) {
  switch (activation) {
    case FusedActivation::relu: return reference::relu_forward(v);
    case FusedActivation::gelu: return reference::gelu_forward(v, /*tanh_form=*/false);
    case FusedActivation::gelu_tanh: return reference::gelu_forward(v, /*tanh_form=*/true);
    default: return v;
  }
}

// v = scale * (conv + bias) + shift per channel, in double (empty scale: 1, empty shift: 0).
std::vector<double> affine_reference(const Conv2dProblem& p, std::vector<double> z, const std::vector<float>& scale,
                                     const std::vector<float>& shift) {
  const std::int64_t plane = p.out_height() * p.out_width();
  for (std::size_t i = 0; i < z.size(); ++i) {
    const auto k = static_cast<std::size_t>((static_cast<std::int64_t>(i) / plane) % p.out_channels);
    if (!scale.empty()) z[i] *= scale[k];
    if (!shift.empty()) z[i] += shift[k];
  }
  return z;
}

// ---- Cases ----------------------------------------------------------------------------------

struct EpilogueCase {
  std::string name;
  Conv2dProblem problem;
  ConvMath math = ConvMath::fp32;
  DType dtype = DType::f32;
  FusedActivation activation = FusedActivation::relu;
};

void PrintTo(const EpilogueCase& c, std::ostream* out) {
  *out << c.name << " (" << to_string(c.problem.params) << ", " << to_string(c.math) << ", " << dtype_name(c.dtype)
       << ", " << fused_activation_name(c.activation) << ")";
}

Conv2dProblem problem(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w, std::int64_t k, std::int64_t r,
                      std::int64_t s, Conv2dParams params) {
  return {.batch = n, .in_channels = c, .in_height = h, .in_width = w, .out_channels = k, .kernel_height = r,
          .kernel_width = s, .params = params};
}

// Small shapes (the simulator spends ~25 us per mma_sync) that still leave ragged tiles: K = 10
// and M = 2*5*4 = 40 on the 64x64 tensor-core tile, three m tiles of the fp32 32x32 tile; a
// grouped case and a depthwise one (which keeps the fp32 kernel whatever the math).
std::vector<std::pair<std::string, Conv2dProblem>> shapes() {
  return {{"OddSizes", problem(2, 3, 7, 6, 10, 3, 3, {})},
          {"Stride2Groups2", problem(1, 6, 9, 7, 16, 3, 3, {.stride = {2, 2}, .padding = {1, 1}, .groups = 2})},
          {"Depthwise", problem(2, 4, 5, 5, 4, 3, 3, {.padding = {1, 1}, .groups = 4})}};
}

std::vector<EpilogueCase> epilogue_cases() {
  std::vector<EpilogueCase> cases;
  for (const auto& [name, p] : shapes()) {
    for (const ConvMath math : {ConvMath::fp32, ConvMath::tf32, ConvMath::bf16}) {
      for (const FusedActivation activation :
           {FusedActivation::none, FusedActivation::relu, FusedActivation::gelu, FusedActivation::gelu_tanh}) {
        cases.push_back({name, p, math, DType::f32, activation});
      }
    }
    for (const DType dtype : testing::kReducedDtypes) {
      for (const ConvMath math : {ConvMath::fp32, ConvMath::tf32}) {
        cases.push_back({name, p, math, dtype, FusedActivation::gelu});
        cases.push_back({name, p, math, dtype, FusedActivation::relu});
      }
    }
  }
  return cases;
}

std::string case_name(const ::testing::TestParamInfo<EpilogueCase>& param) {
  const EpilogueCase& c = param.param;
  return fmt::format("{}_{}_{}_{}", c.name, to_string(c.math), dtype_name(c.dtype),
                     fused_activation_name(c.activation));
}

// Inputs of one case, rounded to its storage dtype; scale and shift f32.
struct Inputs {
  std::vector<float> x, weight, bias, scale, shift;
  Tensor x_device, weight_device, bias_device, scale_device, shift_device;
};

Inputs make_inputs(const Conv2dProblem& p, DType dtype, std::uint64_t seed, cudaStream_t stream) {
  Inputs in;
  const auto stored = [&](std::vector<float> values, const Shape& shape, Tensor& device) {
    device = storage_tensor(values, shape, dtype, stream);
    return storage_values(device, stream);  // the values as the kernel reads them
  };
  in.x = stored(random_uniform(seed + 1, static_cast<std::size_t>(p.input_count())), input_shape(p), in.x_device);
  in.weight =
      stored(random_uniform(seed + 2, static_cast<std::size_t>(p.weight_count())), weight_shape(p), in.weight_device);
  in.bias = stored(random_uniform(seed + 3, static_cast<std::size_t>(p.out_channels)), Shape{p.out_channels},
                   in.bias_device);
  in.scale = random_uniform(seed + 4, static_cast<std::size_t>(p.out_channels), 0.25f, 2.0f);
  in.shift = random_uniform(seed + 5, static_cast<std::size_t>(p.out_channels), -0.5f, 0.5f);
  in.scale_device = device_tensor(in.scale, Shape{p.out_channels}, stream);
  in.shift_device = device_tensor(in.shift, Shape{p.out_channels}, stream);
  return in;
}

// The tolerance of y against the exact result of the stored inputs: the math's product error
// (2^-11 tf32, 2^-8 bf16, relative to sum |x w| <= reduction, scaled up to ~2), the f32 sums,
// and one rounding to the storage dtype.
Tolerance tolerance_of(const EpilogueCase& c) {
  const double reduction = static_cast<double>(c.problem.in_channels / c.problem.params.groups *
                                               c.problem.kernel_height * c.problem.kernel_width);
  double abs_tol = 1e-5;
  if (c.math == ConvMath::tf32 && c.dtype == DType::f32) abs_tol = 2.0 * reduction * std::ldexp(1.0, -11);
  if (c.math == ConvMath::bf16 && c.dtype == DType::f32) abs_tol = 2.0 * reduction * std::ldexp(1.0, -8);
  const double rel_tol = c.dtype == DType::bf16 ? std::ldexp(1.0, -8) : c.dtype == DType::f16 ? std::ldexp(1.0, -11)
                                                                                              : 1e-5;
  return {.abs_tol = abs_tol + rel_tol, .rel_tol = rel_tol};
}

class Conv2dEpilogueForward : public testing::DeviceTest, public ::testing::WithParamInterface<EpilogueCase> {};

TEST_P(Conv2dEpilogueForward, MatchesTheDoubleReferenceAndWritesThePreactivation) {
  const EpilogueCase& c = GetParam();
  const cudaStream_t stream = current_stream();
  const Inputs in = make_inputs(c.problem, c.dtype, 8100, stream);
  Conv2dParams params = c.problem.params;
  params.math = c.math;
  const Conv2dEpilogue epilogue{.scale = in.scale_device, .shift = in.shift_device, .activation = c.activation};
  Tensor y = poisoned_storage(output_shape(c.problem), c.dtype, stream);  // (N, K, P, Q)
  Tensor v = poisoned_storage(output_shape(c.problem), c.dtype, stream);  // (N, K, P, Q)
  conv2d_forward(in.x_device, in.weight_device, in.bias_device, y, params, epilogue, stream, nullptr, &v);

  const std::vector<double> z = reference::conv2d_forward(c.problem, testing::to_doubles(in.x),
                                                          testing::to_doubles(in.weight), testing::to_doubles(in.bias));
  const std::vector<double> v_expected = affine_reference(c.problem, z, in.scale, in.shift);
  const Tolerance tolerance = tolerance_of(c);
  EXPECT_TRUE(all_close(storage_values(v, stream), v_expected, tolerance)) << "preactivation";
  EXPECT_TRUE(all_close(storage_values(y, stream), activation_reference(c.activation, v_expected), tolerance)) << "y";
}

INSTANTIATE_TEST_SUITE_P(Conv2d, Conv2dEpilogueForward, ::testing::ValuesIn(epilogue_cases()), case_name);

// ---- Bit for bit against the unfused kernels ------------------------------------------------

class Conv2dEpilogueExact : public testing::DeviceTest {};

const Conv2dProblem kOddSizes = problem(2, 3, 7, 6, 10, 3, 3, {.padding = {1, 1}});

TEST_F(Conv2dEpilogueExact, IdentityEpilogueKeepsThePlainForwardsBitsAndStatistics) {
  const cudaStream_t stream = current_stream();
  for (const DType dtype : {DType::f32, DType::bf16}) {
    for (const ConvMath math : {ConvMath::fp32, ConvMath::tf32}) {
      SCOPED_TRACE(fmt::format("{} {}", dtype_name(dtype), to_string(math)));
      const Inputs in = make_inputs(kOddSizes, dtype, 8200, stream);
      Conv2dParams params = kOddSizes.params;
      params.math = math;
      ChannelStatistics plain_statistics;
      ChannelStatistics fused_statistics;
      const Tensor plain = conv2d_forward(in.x_device, in.weight_device, in.bias_device, params, stream,
                                          &plain_statistics);
      const Tensor fused = conv2d_forward(in.x_device, in.weight_device, in.bias_device, params, Conv2dEpilogue{},
                                          stream, &fused_statistics);
      EXPECT_TRUE(all_equal(storage_values(fused, stream), storage_values(plain, stream)));
      EXPECT_TRUE(all_equal(fused_statistics.partials.to_vector<float>(stream),
                            plain_statistics.partials.to_vector<float>(stream)));
    }
  }
}

// The unfused activation of a plain forward's y (f32 storage: y is the unrounded v).
Tensor unfused_activation(const Tensor& z, FusedActivation activation, cudaStream_t stream) {
  switch (activation) {
    case FusedActivation::relu: return relu_forward(z, {}, stream);
    case FusedActivation::gelu: return gelu_forward(z, {.approximation = GeluApproximation::none}, stream);
    case FusedActivation::gelu_tanh: return gelu_forward(z, {.approximation = GeluApproximation::tanh}, stream);
    default: return z;
  }
}

TEST_F(Conv2dEpilogueExact, ActivationAloneIsTheUnfusedActivationBitForBitInF32) {
  const cudaStream_t stream = current_stream();
  const Inputs in = make_inputs(kOddSizes, DType::f32, 8300, stream);
  for (const ConvMath math : {ConvMath::fp32, ConvMath::tf32, ConvMath::bf16}) {
    Conv2dParams params = kOddSizes.params;
    params.math = math;
    const Tensor z = conv2d_forward(in.x_device, in.weight_device, in.bias_device, params, stream);
    for (const FusedActivation activation :
         {FusedActivation::relu, FusedActivation::gelu, FusedActivation::gelu_tanh}) {
      SCOPED_TRACE(fmt::format("{} {}", to_string(math), fused_activation_name(activation)));
      const Tensor fused = conv2d_forward(in.x_device, in.weight_device, in.bias_device, params,
                                          Conv2dEpilogue{.activation = activation}, stream);
      EXPECT_TRUE(all_equal(fused.to_vector<float>(stream),
                            unfused_activation(z, activation, stream).to_vector<float>(stream)));
    }
  }
}

// With a power-of-two scale, scale * z is exact, so v is the eval batch norm's z bit for bit
// (weight = scale, bias = shift, mean 0, and var = 1 - eps so that its invstd is exactly 1).
TEST_F(Conv2dEpilogueExact, PowerOfTwoScaleIsTheUnfusedEvalBatchNormAndActivationBitForBit) {
  const cudaStream_t stream = current_stream();
  const Inputs in = make_inputs(kOddSizes, DType::f32, 8400, stream);
  const std::int64_t k = kOddSizes.out_channels;
  std::vector<float> scale(static_cast<std::size_t>(k));
  for (std::size_t i = 0; i < scale.size(); ++i) {
    scale[i] = std::ldexp(i % 2 == 0 ? 1.0f : -1.0f, static_cast<int>(i % 5) - 2);  // +-1/4 .. +-4
  }
  const Tensor scale_device = device_tensor(scale, Shape{k}, stream);
  const BatchNormParams bn_params{.eps = 0x1p-10f};
  const BatchNormRunningStats running{
      .mean = device_tensor(std::vector<float>(static_cast<std::size_t>(k), 0.0f), Shape{k}, stream),
      .var = device_tensor(std::vector<float>(static_cast<std::size_t>(k), 1.0f - 0x1p-10f), Shape{k}, stream)};
  for (const ConvMath math : {ConvMath::fp32, ConvMath::tf32}) {
    Conv2dParams params = kOddSizes.params;
    params.math = math;
    const Tensor z = conv2d_forward(in.x_device, in.weight_device, in.bias_device, params, stream);
    Tensor normalized = Tensor::empty(z.shape(), DType::f32, stream);  // (N, K, P, Q)
    batch_norm2d_forward_eval(z, scale_device, in.shift_device, running, normalized, bn_params, stream);
    for (const FusedActivation activation :
         {FusedActivation::none, FusedActivation::relu, FusedActivation::gelu, FusedActivation::gelu_tanh}) {
      SCOPED_TRACE(fmt::format("{} {}", to_string(math), fused_activation_name(activation)));
      const Tensor fused =
          conv2d_forward(in.x_device, in.weight_device, in.bias_device, params,
                         Conv2dEpilogue{.scale = scale_device, .shift = in.shift_device, .activation = activation},
                         stream);
      EXPECT_TRUE(all_equal(fused.to_vector<float>(stream),
                            unfused_activation(normalized, activation, stream).to_vector<float>(stream)));
    }
  }
}

// cuDNN's path: the element-wise epilogue on a plain forward's f32 output gives the fused bits.
TEST_F(Conv2dEpilogueExact, ElementWiseEpilogueOnThePlainOutputIsTheFusedForwardInF32) {
  const cudaStream_t stream = current_stream();
  const Inputs in = make_inputs(kOddSizes, DType::f32, 8500, stream);
  const Conv2dEpilogue epilogue{.scale = in.scale_device, .shift = in.shift_device,
                                .activation = FusedActivation::gelu_tanh};
  Tensor v_fused = Tensor::empty(output_shape(kOddSizes), DType::f32, stream);  // (N, K, P, Q)
  Tensor y_fused = Tensor::empty(output_shape(kOddSizes), DType::f32, stream);  // (N, K, P, Q)
  conv2d_forward(in.x_device, in.weight_device, in.bias_device, y_fused, kOddSizes.params, epilogue, stream, nullptr,
                 &v_fused);
  Tensor z = conv2d_forward(in.x_device, in.weight_device, in.bias_device, kOddSizes.params, stream);
  Tensor v = testing::poisoned_tensor(z.shape(), stream);  // (N, K, P, Q)
  conv2d_epilogue_forward(z, epilogue, z, stream, &v);     // in place
  EXPECT_TRUE(all_equal(z.to_vector<float>(stream), y_fused.to_vector<float>(stream)));
  EXPECT_TRUE(all_equal(v.to_vector<float>(stream), v_fused.to_vector<float>(stream)));
}

TEST_F(Conv2dEpilogueExact, StatisticsAreOfYAsStored) {
  const cudaStream_t stream = current_stream();
  for (const DType dtype : {DType::f32, DType::f16}) {
    for (const ConvMath math : {ConvMath::fp32, ConvMath::tf32}) {
      SCOPED_TRACE(fmt::format("{} {}", dtype_name(dtype), to_string(math)));
      const Inputs in = make_inputs(kOddSizes, dtype, 8600, stream);
      Conv2dParams params = kOddSizes.params;
      params.math = math;
      ChannelStatistics statistics;
      const Tensor y = conv2d_forward(
          in.x_device, in.weight_device, in.bias_device, params,
          Conv2dEpilogue{.scale = in.scale_device, .shift = in.shift_device, .activation = FusedActivation::gelu},
          stream, &statistics);
      // The batch mean and invstd from the statistics against those of a pass over y itself.
      const auto batch_statistics = [&](const ChannelStatistics* given) {
        const std::int64_t k = kOddSizes.out_channels;
        BatchNormRunningStats running;
        BatchNormSaved saved{Tensor::empty({k}, DType::f32, stream), Tensor::empty({k}, DType::f32, stream)};
        Tensor out = Tensor::empty(y.shape(), dtype, stream);  // (N, K, P, Q)
        batch_norm2d_forward_training(y, Tensor(), Tensor(), running, out, saved,
                                      {.affine = BatchNormAffine::none}, stream, given);
        std::vector<float> values = saved.mean.to_vector<float>(stream);
        const std::vector<float> invstd = saved.invstd.to_vector<float>(stream);
        values.insert(values.end(), invstd.begin(), invstd.end());
        return values;
      };
      const std::vector<float> from_pass = batch_statistics(nullptr);
      EXPECT_TRUE(all_close(batch_statistics(&statistics), testing::to_doubles(from_pass),
                            {.abs_tol = 1e-6, .rel_tol = 1e-5}));
    }
  }
}

// ---- The backward ---------------------------------------------------------------------------

TEST_F(Conv2dEpilogueExact, BackwardMatchesTheReferenceAndTheUnfusedKernels) {
  const cudaStream_t stream = current_stream();
  const Shape shape{2, 3, 4, 5};
  const auto count = static_cast<std::size_t>(shape.numel());
  const std::vector<float> v = random_uniform(8700, count, -3.0f, 3.0f);
  const std::vector<float> dL_dy = random_uniform(8701, count);
  const std::vector<float> scale = random_uniform(8702, 3, -2.0f, 2.0f);
  const Tensor v_device = device_tensor(v, shape, stream);
  const Tensor dL_dy_device = device_tensor(dL_dy, shape, stream);
  const Tensor scale_device = device_tensor(scale, Shape{3}, stream);
  for (const FusedActivation activation :
       {FusedActivation::none, FusedActivation::relu, FusedActivation::gelu, FusedActivation::gelu_tanh}) {
    SCOPED_TRACE(fused_activation_name(activation));
    // ReLU's backward reads y; the others v (none: nothing).
    const Tensor saved = activation == FusedActivation::relu ? relu_forward(v_device, {}, stream) : v_device;
    std::vector<double> expected;
    switch (activation) {
      case FusedActivation::relu:
        expected = reference::relu_backward(testing::to_doubles(dL_dy), testing::to_doubles(v));
        break;
      case FusedActivation::none: expected = testing::to_doubles(dL_dy); break;
      default:
        expected = reference::gelu_backward(testing::to_doubles(dL_dy), testing::to_doubles(v),
                                            activation == FusedActivation::gelu_tanh);
    }
    Tensor unscaled = testing::poisoned_tensor(shape, stream);  // (N, K, P, Q)
    conv2d_epilogue_backward(dL_dy_device, saved, Conv2dEpilogue{.activation = activation}, unscaled, stream);
    EXPECT_TRUE(all_close(unscaled.to_vector<float>(stream), expected, {.abs_tol = 1e-6, .rel_tol = 1e-5}));
    if (activation == FusedActivation::relu) {
      EXPECT_TRUE(all_equal(unscaled.to_vector<float>(stream),
                            relu_backward(dL_dy_device, saved, {}, stream).to_vector<float>(stream)));
    } else if (activation != FusedActivation::none) {
      const GeluParams gelu{.approximation = activation == FusedActivation::gelu_tanh ? GeluApproximation::tanh
                                                                                        : GeluApproximation::none};
      EXPECT_TRUE(all_equal(unscaled.to_vector<float>(stream),
                            gelu_backward(dL_dy_device, v_device, gelu, stream).to_vector<float>(stream)));
    }
    Tensor scaled = testing::poisoned_tensor(shape, stream);  // (N, K, P, Q)
    conv2d_epilogue_backward(dL_dy_device, saved, Conv2dEpilogue{.scale = scale_device, .activation = activation},
                             scaled, stream);
    for (std::size_t i = 0; i < count; ++i) expected[i] *= scale[(i / 20) % 3];
    EXPECT_TRUE(all_close(scaled.to_vector<float>(stream), expected, {.abs_tol = 1e-6, .rel_tol = 1e-5}));
  }
}

// ---- Arguments ------------------------------------------------------------------------------

TEST_F(Conv2dEpilogueExact, BadEpilogueArgumentsAreRefusedNamingShapes) {
  const cudaStream_t stream = current_stream();
  const Inputs in = make_inputs(kOddSizes, DType::f32, 8800, stream);
  const Shape y_shape = output_shape(kOddSizes);
  const auto forward = [&](const Conv2dEpilogue& epilogue, Tensor* preactivation = nullptr) {
    return invalid_argument_message([&] {
      Tensor y = Tensor::empty(y_shape, DType::f32, stream);  // (N, K, P, Q)
      conv2d_forward(in.x_device, in.weight_device, in.bias_device, y, kOddSizes.params, epilogue, stream, nullptr,
                     preactivation);
    });
  };
  const std::string wrong_shape = forward({.scale = device_tensor(std::vector<float>(9, 1.0f), Shape{9}, stream)});
  EXPECT_NE(wrong_shape.find("conv2d_forward"), std::string::npos) << wrong_shape;
  EXPECT_NE(wrong_shape.find("epilogue scale (9)"), std::string::npos) << wrong_shape;
  EXPECT_NE(wrong_shape.find(y_shape.to_string()), std::string::npos) << wrong_shape;

  const std::string wrong_dtype = forward({.shift = in.shift_device.to_dtype(DType::f16, stream)});
  EXPECT_NE(wrong_dtype.find("epilogue shift"), std::string::npos) << wrong_dtype;

  const std::string on_host = forward({.shift = Tensor::from_vector(in.shift, Shape{10})});
  EXPECT_NE(on_host.find("epilogue shift"), std::string::npos) << on_host;

  const std::string bad_activation = forward({.activation = static_cast<FusedActivation>(7)});
  EXPECT_NE(bad_activation.find("activation 7"), std::string::npos) << bad_activation;

  Tensor small = Tensor::empty({1, 10, 7, 6}, DType::f32, stream);
  const std::string wrong_preactivation = forward({.activation = FusedActivation::gelu}, &small);
  EXPECT_NE(wrong_preactivation.find("preactivation"), std::string::npos) << wrong_preactivation;

  Tensor half = Tensor::empty(y_shape, DType::f16, stream);
  EXPECT_NE(forward({}, &half).find("preactivation"), std::string::npos);

  // The pre-activation may not be y itself.
  const std::string aliased = invalid_argument_message([&] {
    Tensor y = Tensor::empty(y_shape, DType::f32, stream);  // (N, K, P, Q)
    conv2d_forward(in.x_device, in.weight_device, in.bias_device, y, kOddSizes.params, {}, stream, nullptr, &y);
  });
  EXPECT_NE(aliased.find("preactivation"), std::string::npos) << aliased;

  const std::string backward = invalid_argument_message([&] {
    Tensor dL_dz = Tensor::empty(y_shape, DType::f32, stream);  // (N, K, P, Q)
    conv2d_epilogue_backward(dL_dz, Tensor::empty({2, 10, 7, 5}, DType::f32, stream),
                             {.activation = FusedActivation::gelu}, dL_dz, stream);
  });
  EXPECT_NE(backward.find("conv2d_epilogue_backward: saved"), std::string::npos) << backward;
}

}  // namespace
}  // namespace strata::kernels
