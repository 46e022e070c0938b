// F::conv2d_max_pool2d (strata/layers/functional_conv_pool.h) against F::max_pool2d of
// F::conv2d: y and the gradients of x, weight and bias the same bits on the fused path (f32,
// bf16 and f16 storage, tf32 and bf16 math, a frozen weight, no bias) and under autocast; the
// gradients against central finite differences of the double references (inputs that the
// tensor cores take exactly); the statistics (the fused kernel's slots, or F::max_pool2d's bits
// where the op composes); the engines where cuDNN is unavailable (Engine::cudnn refuses as
// F::conv2d does, Engine::auto gives the custom kernels' bits).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "strata/core/autocast.h"
#include "strata/core/autograd.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/kernels/conv2d_max_pool2d.h"
#include "strata/layers/functional.h"
#include "tests/layers/engine_test_support.h"
#include "tests/reference/conv2d_reference.h"
#include "tests/reference/pool2d_reference.h"
#include "tests/support/compare.h"
#include "tests/support/gradcheck.h"
#include "tests/support/storage_dtypes.h"

namespace strata {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
using testing::bit_patterns;
using testing::storage_values;

constexpr F::Pool2dParams kPool{.kernel = {2, 2}};
// N 2, C 3, 7x9 images, K 10, 3x3 same-padded: P = 7, Q = 9 (the last row and column dropped).
const Shape kInput{2, 3, 7, 9};
const Shape kWeight{10, 3, 3, 3};
const Shape kPooled{2, 10, 3, 4};

using Conv2dMaxPool2dFusionTest = testing::DeviceTest;

// Fresh leaves of one run: x, weight and bias (undefined when !with_bias) of dtype, each a leaf
// that requires gradients unless frozen.
struct Leaves {
  Tensor x, weight, bias;
  Leaves(DType dtype, std::uint64_t seed, bool with_bias = true, bool frozen_weight = false)
      : x(testing::random_storage(seed, kInput, dtype, true)),
        weight(testing::random_storage(seed + 1, kWeight, dtype, !frozen_weight)) {
    if (with_bias) bias = testing::random_storage(seed + 2, {kWeight[0]}, dtype, true);
  }
};

// y and the defined gradients of one run, as floats.
struct Outcome {
  std::vector<float> y, dL_dx, dL_dweight, dL_dbias;
};

std::vector<float> values_or_empty(const Tensor& tensor) {
  return tensor.defined() ? storage_values(tensor, current_stream()) : std::vector<float>{};
}

// y = op(leaves), then backward with dL_dy of y's dtype.
template <typename Op>
Outcome run(Leaves& leaves, Op op, std::uint64_t dL_dy_seed) {
  const Tensor y = op(leaves);
  y.backward(testing::random_storage(dL_dy_seed, y.shape(), y.dtype()));
  return {storage_values(y, current_stream()), values_or_empty(leaves.x.grad()), values_or_empty(leaves.weight.grad()),
          leaves.bias.defined() ? values_or_empty(leaves.bias.grad()) : std::vector<float>{}};
}

void expect_same_bits(const Outcome& actual, const Outcome& expected) {
  EXPECT_EQ(bit_patterns(actual.y), bit_patterns(expected.y)) << "y";
  EXPECT_EQ(bit_patterns(actual.dL_dx), bit_patterns(expected.dL_dx)) << "dL/dx";
  EXPECT_EQ(bit_patterns(actual.dL_dweight), bit_patterns(expected.dL_dweight)) << "dL/dweight";
  EXPECT_EQ(bit_patterns(actual.dL_dbias), bit_patterns(expected.dL_dbias)) << "dL/dbias";
}

Tensor fused_op(const Leaves& leaves, const F::Conv2dParams& conv, std::optional<Engine> engine = std::nullopt) {
  return F::conv2d_max_pool2d(leaves.x, leaves.weight, leaves.bias, conv, kPool, engine);
}
Tensor composed_op(const Leaves& leaves, const F::Conv2dParams& conv) {
  return F::max_pool2d(F::conv2d(leaves.x, leaves.weight, leaves.bias, conv), kPool);
}

TEST_F(Conv2dMaxPool2dFusionTest, FusedForwardAndGradientsEqualTheCompositionBitForBit) {
  for (const DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    for (const kernels::ConvMath math : {kernels::ConvMath::tf32, kernels::ConvMath::bf16}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + ", math " + std::string(kernels::to_string(math)));
      const F::Conv2dParams conv{.padding = {1, 1}, .math = math};
      ASSERT_TRUE(kernels::conv2d_max_pool2d_fuses(kernels::conv2d_shape(kInput, kWeight, conv), kPool));
      Leaves fused_leaves(dtype, 1), composed_leaves(dtype, 1);
      const Outcome fused = run(fused_leaves, [&](const Leaves& l) {
        Tensor y = fused_op(l, conv);
        EXPECT_EQ(y.grad_fn()->name(), "Conv2dMaxPool2dBackward");  // the fused kernel ran
        return y;
      }, 9);
      const Outcome composed = run(composed_leaves, [&](const Leaves& l) { return composed_op(l, conv); }, 9);
      ASSERT_EQ(fused.y.size(), static_cast<std::size_t>(kPooled.numel()));
      expect_same_bits(fused, composed);
    }
  }
}

// Only the gradients that are needed: a frozen weight gets none, no bias none either.
TEST_F(Conv2dMaxPool2dFusionTest, FrozenWeightAndNoBias) {
  const F::Conv2dParams conv{.padding = {1, 1}, .math = kernels::ConvMath::tf32};
  Leaves fused_leaves(DType::f32, 11, false, true), composed_leaves(DType::f32, 11, false, true);
  const Outcome fused = run(fused_leaves, [&](const Leaves& l) { return fused_op(l, conv); }, 19);
  const Outcome composed = run(composed_leaves, [&](const Leaves& l) { return composed_op(l, conv); }, 19);
  EXPECT_FALSE(fused_leaves.weight.grad().defined());
  EXPECT_FALSE(fused.dL_dx.empty());
  expect_same_bits(fused, composed);
  // Without gradients: the same y, no node.
  autograd::NoGradGuard no_grad;
  const Tensor y = fused_op(fused_leaves, conv);
  EXPECT_EQ(y.grad_fn(), nullptr);
  EXPECT_EQ(bit_patterns(storage_values(y, current_stream())), bit_patterns(fused.y));
}

// Values on a grid of 2^-8 in [-1, 1): the tensor cores take them exactly and every conv sum
// and gradient is exact in f32, so the central differences of the double references (in
// double) bound the gradients tightly.
TEST_F(Conv2dMaxPool2dFusionTest, GradientsMatchFiniteDifferencesOfTheReferences) {
  const reference::Conv2dProblem problem{.batch = 1, .in_channels = 2, .in_height = 5, .in_width = 6,
                                         .out_channels = 8, .kernel_height = 3, .kernel_width = 3,
                                         .params = {.padding = {1, 1}, .math = kernels::ConvMath::tf32}};
  const Shape x_shape{1, 2, 5, 6}, weight_shape{8, 2, 3, 3}, y_shape{1, 8, 2, 3}, conv_shape{1, 8, 5, 6};
  const auto grid = [](std::uint64_t seed, std::int64_t count) {
    std::vector<float> values = testing::random_uniform(seed, static_cast<std::size_t>(count));
    for (float& value : values) value = std::floor(value * 256.0f) / 256.0f;
    return values;
  };
  const std::vector<float> x = grid(21, x_shape.numel()), weight = grid(22, weight_shape.numel()),
                           bias = grid(23, 8), dL_dy = grid(24, y_shape.numel());
  const cudaStream_t stream = current_stream();
  Tensor x_device = testing::device_tensor(x, x_shape, stream);
  Tensor weight_device = testing::device_tensor(weight, weight_shape, stream);
  Tensor bias_device = testing::device_tensor(bias, Shape{8}, stream);
  for (Tensor* leaf : {&x_device, &weight_device, &bias_device}) leaf->set_requires_grad();
  const Tensor y = F::conv2d_max_pool2d(x_device, weight_device, bias_device, problem.params, kPool);
  y.backward(testing::device_tensor(dL_dy, y_shape, stream));

  const std::vector<double> x_ref(x.begin(), x.end()), weight_ref(weight.begin(), weight.end()),
      bias_ref(bias.begin(), bias.end()), dL_dy_ref(dL_dy.begin(), dL_dy.end());
  const auto loss = [&](std::span<const double> xs, std::span<const double> ws, std::span<const double> bs) {
    const std::vector<double> convolved = reference::conv2d_forward(problem, xs, ws, bs);
    return testing::weighted_sum(reference::max_pool2d_forward(convolved, conv_shape, kPool).y, dL_dy_ref);
  };
  const testing::Tolerance tolerance{.abs_tol = 1e-6, .rel_tol = 1e-6};
  EXPECT_TRUE(testing::all_close(
      x_device.grad().to_vector<float>(),
      testing::numerical_gradient([&](std::span<const double> v) { return loss(v, weight_ref, bias_ref); }, x_ref),
      tolerance))
      << "dL/dx";
  EXPECT_TRUE(testing::all_close(
      weight_device.grad().to_vector<float>(),
      testing::numerical_gradient([&](std::span<const double> v) { return loss(x_ref, v, bias_ref); }, weight_ref),
      tolerance))
      << "dL/dweight";
  EXPECT_TRUE(testing::all_close(
      bias_device.grad().to_vector<float>(),
      testing::numerical_gradient([&](std::span<const double> v) { return loss(x_ref, weight_ref, v); }, bias_ref),
      tolerance))
      << "dL/dbias";
}

// Under autocast the op lowers its inputs as F::conv2d does: y in the autocast dtype, the
// leaves' gradients f32, and the composition's bits.
TEST_F(Conv2dMaxPool2dFusionTest, UnderAutocastLowersAsConv2d) {
  const F::Conv2dParams conv{.padding = {1, 1}, .math = kernels::ConvMath::bf16};
  for (const DType dtype : testing::kReducedDtypes) {
    SCOPED_TRACE(dtype_name(dtype));
    Leaves fused_leaves(DType::f32, 31), composed_leaves(DType::f32, 31);
    const auto under_autocast = [dtype](auto op) {
      return [dtype, op](const Leaves& l) {
        AutocastGuard autocast(dtype);
        return op(l);
      };
    };
    const Outcome fused = run(fused_leaves, under_autocast([&](const Leaves& l) { return fused_op(l, conv); }), 39);
    const Outcome composed =
        run(composed_leaves, under_autocast([&](const Leaves& l) { return composed_op(l, conv); }), 39);
    expect_same_bits(fused, composed);
    AutocastGuard autocast(dtype);
    EXPECT_EQ(fused_op(fused_leaves, conv).dtype(), dtype);
    EXPECT_EQ(fused_leaves.x.grad().dtype(), DType::f32);
    EXPECT_EQ(fused_leaves.weight.grad().dtype(), DType::f32);
  }
}

// The statistics: fused, one slot per 16 windows (2*3*4 = 24 windows: 2 slots); composed (fp32
// math), F::max_pool2d's partials bit for bit.
TEST_F(Conv2dMaxPool2dFusionTest, StatisticsComeFromTheKernelThatRan) {
  const Leaves leaves(DType::f32, 41);
  F::ChannelStatistics fused_statistics;
  const F::Conv2dParams tf32{.padding = {1, 1}, .math = kernels::ConvMath::tf32};
  F::conv2d_max_pool2d(leaves.x, leaves.weight, leaves.bias, tf32, kPool, std::nullopt, &fused_statistics);
  ASSERT_TRUE(fused_statistics.partials.defined());
  EXPECT_EQ(fused_statistics.partials.shape(), (Shape{6, 2, 10}));

  const F::Conv2dParams fp32{.padding = {1, 1}};
  F::ChannelStatistics composed_statistics, pool_statistics;
  F::conv2d_max_pool2d(leaves.x, leaves.weight, leaves.bias, fp32, kPool, std::nullopt, &composed_statistics);
  F::max_pool2d(F::conv2d(leaves.x, leaves.weight, leaves.bias, fp32), kPool, std::nullopt, &pool_statistics);
  EXPECT_EQ(bit_patterns(composed_statistics.partials.to_vector<float>()),
            bit_patterns(pool_statistics.partials.to_vector<float>()));
}

// Where cuDNN cannot run (the simulator build): Engine::cudnn refuses as F::conv2d does, and
// Engine::auto falls back to the custom kernels with their bits.
using Conv2dMaxPool2dEngineTest = testing::EngineWithoutCudnnTest;

TEST_F(Conv2dMaxPool2dEngineTest, CudnnRefusesAndAutoFallsBackToTheCustomKernels) {
  const F::Conv2dParams conv{.padding = {1, 1}, .math = kernels::ConvMath::tf32};
  const Leaves leaves(DType::f32, 51);
  EXPECT_THAT([&] { fused_op(leaves, conv, Engine::cudnn); },
              ThrowsMessage<NotSupported>(AllOf(HasSubstr("conv2d on Engine::cudnn"), HasSubstr("simulator build"))));
  EXPECT_EQ(fused_op(leaves, conv, Engine::custom).grad_fn()->name(), "Conv2dMaxPool2dBackward");
  Leaves auto_leaves(DType::f32, 51), custom_leaves(DType::f32, 51);
  Outcome on_auto;
  testing::stderr_of(
      [&] { on_auto = run(auto_leaves, [&](const Leaves& l) { return fused_op(l, conv, Engine::automatic); }, 59); });
  const Outcome on_custom = run(custom_leaves, [&](const Leaves& l) { return fused_op(l, conv, Engine::custom); }, 59);
  expect_same_bits(on_auto, on_custom);
}

}  // namespace
}  // namespace strata
