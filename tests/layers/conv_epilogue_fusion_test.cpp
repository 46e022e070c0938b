// Conv epilogue fusion above the kernels: F::fused_conv2d (forward against a double reference,
// gradients against central finite differences of it, bit for bit against F::conv2d then
// F::relu / F::gelu, autocast as F::conv2d's, constants refused when they require gradients,
// cuDNN's refusal or parity), nn::Conv2d with Conv2dOptions::activation, and
// nn::fuse_conv_batch_norm_eval (the folded conv against conv -> batch norm -> activation in
// eval, the checks, the original modules and state dicts untouched).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "strata/core/autocast.h"
#include "strata/core/autograd.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/layers/functional.h"
#include "strata/layers/fusion.h"
#include "strata/layers/modules.h"
#include "tests/kernels/device_values.h"
#include "tests/reference/conv2d_reference.h"
#include "tests/reference/elementwise_reference.h"
#include "tests/support/compare.h"
#include "tests/support/cudnn_test.h"
#include "tests/support/device_test.h"
#include "tests/support/gradcheck.h"

namespace strata {
namespace {

using ::testing::HasSubstr;
using kernels::Conv2dEpilogue;
using kernels::FusedActivation;
using reference::Conv2dProblem;
using testing::random_device;
using testing::random_leaf;
using testing::to_doubles;

using ConvEpilogueFusionTest = testing::DeviceTest;

std::vector<float> values_of(const Tensor& tensor) {
  const Tensor f32 = tensor.dtype() == DType::f32 ? tensor : tensor.to_dtype(DType::f32, current_stream());
  return f32.to_vector<float>(current_stream());
}

// N = 2, C = 3, 5x4 images, K = 4, 3x3 with padding 1 (the fp32 kernel: fast in the simulator).
const Conv2dProblem kProblem{.batch = 2, .in_channels = 3, .in_height = 5, .in_width = 4, .out_channels = 4,
                             .kernel_height = 3, .kernel_width = 3, .params = {.padding = {1, 1}}};
const Shape kInput{2, 3, 5, 4};
const Shape kWeight{4, 3, 3, 3};
const Shape kOutput{2, 4, 5, 4};

// activation(scale * (conv + bias) + shift) in double (empty scale: 1, empty shift: 0).
std::vector<double> fused_reference(std::span<const double> x, std::span<const double> weight,
                                    std::span<const double> bias, const std::vector<double>& scale,
                                    const std::vector<double>& shift, FusedActivation activation) {
  std::vector<double> v = reference::conv2d_forward(kProblem, x, weight, bias);
  const std::int64_t plane = kProblem.out_height() * kProblem.out_width();
  for (std::size_t i = 0; i < v.size(); ++i) {
    const auto k = static_cast<std::size_t>((static_cast<std::int64_t>(i) / plane) % kProblem.out_channels);
    if (!scale.empty()) v[i] *= scale[k];
    if (!shift.empty()) v[i] += shift[k];
  }
  switch (activation) {
    case FusedActivation::relu: return reference::relu_forward(v);
    case FusedActivation::gelu: return reference::gelu_forward(v, false);
    case FusedActivation::gelu_tanh: return reference::gelu_forward(v, true);
    default: return v;
  }
}

class FusedConv2dGradients : public testing::DeviceTest, public ::testing::WithParamInterface<FusedActivation> {};

TEST_P(FusedConv2dGradients, ForwardMatchesTheReferenceAndGradientsFiniteDifferences) {
  const FusedActivation activation = GetParam();
  const std::uint64_t seed = 9100 + static_cast<std::uint64_t>(activation);
  Tensor x = random_leaf(seed, kInput);
  Tensor weight = random_leaf(seed + 1, kWeight);
  Tensor bias = random_leaf(seed + 2, Shape{4});
  const Tensor scale = random_device(seed + 3, Shape{4}, 0.5f, 2.0f);
  const Tensor shift = random_device(seed + 4, Shape{4}, -0.5f, 0.5f);
  const Tensor y = F::fused_conv2d(x, weight, bias, kProblem.params,
                                   {.scale = scale, .shift = shift, .activation = activation});
  ASSERT_NE(y.grad_fn(), nullptr);
  EXPECT_EQ(y.grad_fn()->name(), "FusedConv2dBackward");

  const std::vector<double> x_values = to_doubles(values_of(x));
  const std::vector<double> weight_values = to_doubles(values_of(weight));
  const std::vector<double> bias_values = to_doubles(values_of(bias));
  const std::vector<double> scale_values = to_doubles(values_of(scale));
  const std::vector<double> shift_values = to_doubles(values_of(shift));
  const testing::Tolerance tolerance{.abs_tol = 1e-5, .rel_tol = 1e-5};
  EXPECT_TRUE(testing::all_close(
      values_of(y), fused_reference(x_values, weight_values, bias_values, scale_values, shift_values, activation),
      tolerance));

  const Tensor dL_dy = random_device(seed + 5, kOutput);
  y.backward(dL_dy);
  const std::vector<double> dL_dy_values = to_doubles(values_of(dL_dy));
  const auto loss = [&](std::span<const double> xs, std::span<const double> ws, std::span<const double> bs) {
    return testing::weighted_sum(fused_reference(xs, ws, bs, scale_values, shift_values, activation), dL_dy_values);
  };
  const testing::Tolerance gradient_tolerance{.abs_tol = 1e-4, .rel_tol = 1e-4};
  EXPECT_TRUE(testing::all_close(
      values_of(x.grad()),
      testing::numerical_gradient([&](std::span<const double> xs) { return loss(xs, weight_values, bias_values); },
                                  x_values),
      gradient_tolerance))
      << "dL/dx";
  EXPECT_TRUE(testing::all_close(
      values_of(weight.grad()),
      testing::numerical_gradient([&](std::span<const double> ws) { return loss(x_values, ws, bias_values); },
                                  weight_values),
      gradient_tolerance))
      << "dL/dweight";
  EXPECT_TRUE(testing::all_close(
      values_of(bias.grad()),
      testing::numerical_gradient([&](std::span<const double> bs) { return loss(x_values, weight_values, bs); },
                                  bias_values),
      gradient_tolerance))
      << "dL/dbias";
}

INSTANTIATE_TEST_SUITE_P(Conv2d, FusedConv2dGradients,
                         ::testing::Values(FusedActivation::none, FusedActivation::relu, FusedActivation::gelu,
                                           FusedActivation::gelu_tanh),
                         [](const ::testing::TestParamInfo<FusedActivation>& param) {
                           return std::string(kernels::fused_activation_name(param.param));
                         });

// Without scale and shift, in f32: F::conv2d then the activation's op, outputs and gradients
// bit for bit (the same conv bits, the same activation functors on the same values).
TEST_F(ConvEpilogueFusionTest, ActivationAloneIsConvThenActivationBitForBit) {
  for (const FusedActivation activation : {FusedActivation::relu, FusedActivation::gelu, FusedActivation::gelu_tanh}) {
    SCOPED_TRACE(kernels::fused_activation_name(activation));
    // The same leaves twice (same seeds), so that each path accumulates into fresh gradients.
    Tensor x = random_leaf(9200, kInput);
    Tensor weight = random_leaf(9201, kWeight);
    Tensor bias = random_leaf(9202, Shape{4});
    const Tensor dL_dy = random_device(9203, kOutput);
    const Tensor fused = F::fused_conv2d(x, weight, bias, kProblem.params, {.activation = activation});
    fused.backward(dL_dy);
    const std::vector<float> fused_grads[] = {values_of(x.grad()), values_of(weight.grad()), values_of(bias.grad())};
    x = random_leaf(9200, kInput);
    weight = random_leaf(9201, kWeight);
    bias = random_leaf(9202, Shape{4});
    const Tensor z = F::conv2d(x, weight, bias, kProblem.params);
    const Tensor unfused = activation == FusedActivation::relu ? F::relu(z)
                           : F::gelu(z, activation == FusedActivation::gelu ? kernels::GeluApproximation::none
                                                                            : kernels::GeluApproximation::tanh);
    unfused.backward(dL_dy);
    EXPECT_EQ(testing::bit_patterns(values_of(fused)), testing::bit_patterns(values_of(unfused)));
    EXPECT_EQ(testing::bit_patterns(fused_grads[0]), testing::bit_patterns(values_of(x.grad())));
    EXPECT_EQ(testing::bit_patterns(fused_grads[1]), testing::bit_patterns(values_of(weight.grad())));
    EXPECT_EQ(testing::bit_patterns(fused_grads[2]), testing::bit_patterns(values_of(bias.grad())));
  }
}

TEST_F(ConvEpilogueFusionTest, IdentityEpilogueIsConv2dItself) {
  const Tensor x = random_leaf(9300, kInput);
  const Tensor weight = random_leaf(9301, kWeight);
  const Tensor y = F::fused_conv2d(x, weight, Tensor(), kProblem.params, {});
  ASSERT_NE(y.grad_fn(), nullptr);
  EXPECT_EQ(y.grad_fn()->name(), "Conv2dBackward");
  EXPECT_EQ(testing::bit_patterns(values_of(y)),
            testing::bit_patterns(values_of(F::conv2d(x, weight, Tensor(), kProblem.params))));
}

// Under autocast the op runs in the autocast dtype, as F::conv2d: the same bits as the op on
// inputs cast first, and f32 gradients for the f32 leaves.
TEST_F(ConvEpilogueFusionTest, AutocastFollowsConv2dsPolicy) {
  for (const DType dtype : {DType::bf16, DType::f16}) {
    SCOPED_TRACE(dtype_name(dtype));
    Tensor x = random_leaf(9400, kInput);
    Tensor weight = random_leaf(9401, kWeight);
    Tensor bias = random_leaf(9402, Shape{4});
    const Tensor scale = random_device(9403, Shape{4}, 0.5f, 2.0f);
    const Conv2dEpilogue epilogue{.scale = scale, .activation = FusedActivation::gelu};
    Tensor y;
    {
      AutocastGuard autocast(dtype);
      y = F::fused_conv2d(x, weight, bias, kProblem.params, epilogue);
    }
    EXPECT_EQ(y.dtype(), dtype);
    const Tensor cast_first = F::fused_conv2d(F::to_dtype(x.detach(), dtype), F::to_dtype(weight.detach(), dtype),
                                              F::to_dtype(bias.detach(), dtype), kProblem.params, epilogue);
    EXPECT_EQ(testing::bit_patterns(values_of(y)), testing::bit_patterns(values_of(cast_first)));
    y.backward(F::to_dtype(random_device(9404, kOutput), dtype));
    EXPECT_EQ(x.grad().dtype(), DType::f32);
    EXPECT_EQ(weight.grad().dtype(), DType::f32);
    EXPECT_EQ(bias.grad().dtype(), DType::f32);
  }
}

TEST_F(ConvEpilogueFusionTest, RefusesConstantsThatRequireGradientsAndBadShapes) {
  const Tensor x = random_device(9500, kInput);
  const Tensor weight = random_device(9501, kWeight);
  const Tensor trained_scale = random_leaf(9502, Shape{4});
  EXPECT_THAT([&] { F::fused_conv2d(x, weight, Tensor(), kProblem.params, {.scale = trained_scale}); },
              ::testing::ThrowsMessage<InvalidArgument>(
                  HasSubstr("fused_conv2d: the epilogue's scale (4) requires gradients, but scale and shift are "
                            "constants here")));
  const Tensor short_shift = random_device(9503, Shape{3});
  EXPECT_THAT([&] { F::fused_conv2d(x, weight, Tensor(), kProblem.params, {.shift = short_shift}); },
              ::testing::ThrowsMessage<InvalidArgument>(
                  HasSubstr("fused_conv2d: epilogue shift (3) must be (K) for the y (2, 4, 5, 4)")));
}

// ---- Engines ----------------------------------------------------------------------------------

using ConvEpilogueWithoutCudnnTest = testing::WithoutCudnnTest;

TEST_F(ConvEpilogueWithoutCudnnTest, CudnnEngineIsNotSupportedNamingTheConv) {
  const Tensor x = random_device(9600, kInput);
  const Tensor weight = random_device(9601, kWeight);
  EXPECT_THAT(
      [&] {
        F::fused_conv2d(x, weight, Tensor(), kProblem.params, {.activation = FusedActivation::relu}, Engine::cudnn);
      },
      ::testing::ThrowsMessage<NotSupported>(HasSubstr("conv2d on Engine::cudnn")));
}

using ConvEpilogueCudnnTest = testing::CudnnTest;

// cuDNN's conv then Strata's epilogue kernel, against the custom fused kernel: the convs sum in
// different orders, the rest is the same code.
TEST_F(ConvEpilogueCudnnTest, CudnnConvThenEpilogueMatchesTheFusedKernel) {
  for (const FusedActivation activation : {FusedActivation::relu, FusedActivation::gelu}) {
    Tensor x = random_leaf(9700, kInput);
    Tensor weight = random_leaf(9701, kWeight);
    const Conv2dEpilogue epilogue{.scale = random_device(9702, Shape{4}, 0.5f, 2.0f),
                                  .shift = random_device(9703, Shape{4}), .activation = activation};
    const Tensor dL_dy = random_device(9704, kOutput);
    const Tensor custom = F::fused_conv2d(x, weight, Tensor(), kProblem.params, epilogue, Engine::custom);
    custom.backward(dL_dy);
    const std::vector<float> custom_dx = values_of(x.grad());
    x = random_leaf(9700, kInput);
    const Tensor cudnn = F::fused_conv2d(x, weight, Tensor(), kProblem.params, epilogue, Engine::cudnn);
    cudnn.backward(dL_dy);
    const testing::Tolerance tolerance{.abs_tol = 1e-5, .rel_tol = 1e-5};
    EXPECT_TRUE(testing::all_close(values_of(cudnn), to_doubles(values_of(custom)), tolerance));
    EXPECT_TRUE(testing::all_close(values_of(x.grad()), to_doubles(custom_dx), tolerance));
  }
}

// ---- Modules ----------------------------------------------------------------------------------

TEST_F(ConvEpilogueFusionTest, Conv2dWithAnActivationIsConv2dThenTheActivation) {
  nn::Conv2d fused(3, 4, 3, {.padding = 1, .activation = FusedActivation::relu});
  nn::Conv2d plain(3, 4, 3, {.padding = 1});
  // Same parameters (and state dict names: the activation is not state).
  ASSERT_TRUE(plain.load_state_dict(fused.state_dict()).missing_keys.empty());
  EXPECT_EQ(fused.state_dict().size(), plain.state_dict().size());
  EXPECT_THAT(fused.extra_repr(), HasSubstr("activation=relu"));
  const Tensor x = random_device(9800, kInput);
  EXPECT_EQ(testing::bit_patterns(values_of(fused(x))), testing::bit_patterns(values_of(F::relu(plain(x)))));
}

struct ConvBatchNorm {
  nn::Conv2d conv;
  nn::BatchNorm2d batch_norm;
};

// A conv and a batch norm with non-trivial running statistics and affine parameters (set
// through load_state_dict), in eval mode.
ConvBatchNorm trained_pair(bool conv_bias, std::uint64_t seed) {
  ConvBatchNorm pair{nn::Conv2d(3, 4, 3, {.padding = 1, .bias = conv_bias}), nn::BatchNorm2d(4)};
  NamedTensors state = pair.batch_norm.state_dict();
  for (auto& [name, tensor] : state) {
    if (name == "weight") tensor = random_device(seed, Shape{4}, 0.5f, 1.5f);
    if (name == "bias") tensor = random_device(seed + 1, Shape{4});
    if (name == "running_mean") tensor = random_device(seed + 2, Shape{4});
    if (name == "running_var") tensor = random_device(seed + 3, Shape{4}, 0.25f, 2.0f);
  }
  pair.batch_norm.load_state_dict(state);
  pair.conv.eval();
  pair.batch_norm.eval();
  return pair;
}

TEST_F(ConvEpilogueFusionTest, FoldedConvInEvalIsConvBatchNormActivation) {
  for (const bool conv_bias : {true, false}) {
    for (const FusedActivation activation : {FusedActivation::none, FusedActivation::relu, FusedActivation::gelu}) {
      SCOPED_TRACE(fmt::format("bias {}, {}", conv_bias, kernels::fused_activation_name(activation)));
      ConvBatchNorm pair = trained_pair(conv_bias, 9900);
      const NamedTensors conv_state = pair.conv.state_dict();
      const std::vector<float> conv_weight_before = values_of(pair.conv.weight());
      nn::Conv2d folded = nn::fuse_conv_batch_norm_eval(pair.conv, pair.batch_norm, activation);
      EXPECT_EQ(folded.activation(), activation);
      ASSERT_TRUE(folded.bias().defined());
      const Tensor x = random_device(9910, kInput);
      Tensor expected = pair.batch_norm(pair.conv(x));
      if (activation == FusedActivation::relu) expected = F::relu(expected);
      if (activation == FusedActivation::gelu) expected = F::gelu(expected);
      EXPECT_TRUE(testing::all_close(values_of(folded(x)), to_doubles(values_of(expected)),
                                     {.abs_tol = 1e-5, .rel_tol = 1e-5}));
      // The unfused modules are untouched: same state dict entries, same values.
      const NamedTensors after = pair.conv.state_dict();
      ASSERT_EQ(after.size(), conv_state.size());
      for (std::size_t i = 0; i < after.size(); ++i) EXPECT_EQ(after[i].first, conv_state[i].first);
      EXPECT_EQ(testing::bit_patterns(values_of(pair.conv.weight())), testing::bit_patterns(conv_weight_before));
    }
  }
}

TEST_F(ConvEpilogueFusionTest, FoldingRefusesTrainingMismatchedChannelsAndAnActivatedConv) {
  ConvBatchNorm pair = trained_pair(true, 9950);
  pair.batch_norm.train();
  EXPECT_THAT([&] { nn::fuse_conv_batch_norm_eval(pair.conv, pair.batch_norm); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("the batch norm is in training mode")));
  nn::BatchNorm2d wide(5);
  wide.eval();
  EXPECT_THAT([&] { nn::fuse_conv_batch_norm_eval(pair.conv, wide); },
              ::testing::ThrowsMessage<InvalidArgument>(
                  HasSubstr("the batch norm has 5 channels, the conv 4 output channels")));
  nn::Conv2d activated(3, 4, 3, {.activation = FusedActivation::relu});
  pair.batch_norm.eval();
  EXPECT_THAT([&] { nn::fuse_conv_batch_norm_eval(activated, pair.batch_norm); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("the conv applies relu before the batch norm")));
}

// A network whose batch norms saw two training batches (non-trivial running statistics),
// fused for inference: each conv -> batch norm (-> activation) run becomes one conv, nested
// Sequentials included, and the output stays within float roundings of the original's.
TEST_F(ConvEpilogueFusionTest, FuseForInferenceFoldsEveryConvBatchNormRun) {
  auto model = nn::Sequential(
      nn::Conv2d(3, 4, 3, {.padding = 1}), nn::BatchNorm2d(4), nn::ReLU(), nn::MaxPool2d(2),
      nn::Sequential(nn::Conv2d(4, 6, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d(6),
                     nn::GELU({.approximate = kernels::GeluApproximation::tanh})),
      nn::Conv2d(6, 6, 1), nn::BatchNorm2dActivation(6, {.activation = FusedActivation::relu}));
  for (std::uint64_t seed : {9960, 9961}) (void)model(random_device(seed, Shape{2, 3, 6, 6}, -2.0f, 2.0f));
  EXPECT_THAT([&] { (void)nn::fuse_for_inference(model); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("the model is in training mode")));
  model.eval();
  nn::Sequential fused = nn::fuse_for_inference(model);
  EXPECT_FALSE(fused.is_training());
  ASSERT_EQ(fused.size(), 4u);  // conv+bn+relu, the pool, the nested block, conv+bn-relu
  EXPECT_EQ(fused.at<nn::Conv2d>(0).activation(), FusedActivation::relu);
  EXPECT_EQ(&fused[1], &model[3]);  // layers not fused are shared
  ASSERT_EQ(fused.at<nn::Sequential>(2).size(), 1u);
  EXPECT_EQ(fused.at<nn::Sequential>(2).at<nn::Conv2d>(0).activation(), FusedActivation::gelu_tanh);
  EXPECT_EQ(fused.at<nn::Conv2d>(3).activation(), FusedActivation::relu);
  const Tensor x = random_device(9962, Shape{2, 3, 6, 6}, -2.0f, 2.0f);
  EXPECT_TRUE(testing::all_close(values_of(fused(x)), to_doubles(values_of(model(x))),
                                 {.abs_tol = 1e-5, .rel_tol = 1e-5}));
}

}  // namespace
}  // namespace strata
