// F::conv2d, F::linear, F::batch_norm2d (training and eval) and F::cross_entropy through
// autograd: outputs and every gradient against the double CPU references of tests/reference
// or their finite differences, with only some inputs requiring gradients, and a small
// network (conv -> flatten -> linear -> loss) whose gradients are checked by central finite
// differences of the whole loss.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "strata/core/autograd.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/layers/functional.h"
#include "tests/kernels/device_values.h"
#include "tests/reference/batch_norm_reference.h"
#include "tests/reference/conv2d_reference.h"
#include "tests/reference/linear_reference.h"
#include "tests/reference/softmax_reference.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"
#include "tests/support/gradcheck.h"

namespace strata {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
using testing::all_close;
using testing::device_tensor;
using testing::random_uniform;
using testing::to_doubles;
using FunctionalConvLinearTest = testing::DeviceTest;

constexpr testing::Tolerance kTolerance{1e-5, 1e-4};

Tensor random_device(std::uint64_t seed, const Shape& shape, bool requires_grad = false) {
  Tensor tensor = device_tensor(random_uniform(seed, static_cast<std::size_t>(shape.numel())), shape, current_stream());
  if (requires_grad) tensor.set_requires_grad();
  return tensor;
}

std::vector<double> values_of(const Tensor& tensor) { return to_doubles(tensor.to_vector<float>()); }

TEST_F(FunctionalConvLinearTest, Conv2dGradientsMatchTheReference) {
  const reference::Conv2dProblem problem{.batch = 2, .in_channels = 4, .in_height = 7, .in_width = 6,
                                         .out_channels = 6, .kernel_height = 3, .kernel_width = 2,
                                         .params = {.stride = {2, 1}, .padding = {1, 1}, .groups = 2}};
  Tensor x = random_device(1, {2, 4, 7, 6}, true);
  Tensor weight = random_device(2, {6, 2, 3, 2}, true);
  Tensor bias = random_device(3, {6}, true);
  Tensor y = F::conv2d(x, weight, bias, problem.params);
  const std::vector<double> expected_y =
      reference::conv2d_forward(problem, values_of(x), values_of(weight), values_of(bias));
  EXPECT_TRUE(all_close(y.to_vector<float>(), expected_y, kTolerance));

  Tensor dL_dy = random_device(4, y.shape());
  y.backward(dL_dy);
  EXPECT_TRUE(all_close(x.grad().to_vector<float>(),
                        reference::conv2d_backward_data(problem, values_of(dL_dy), values_of(weight)), kTolerance));
  EXPECT_TRUE(all_close(weight.grad().to_vector<float>(),
                        reference::conv2d_backward_filter(problem, values_of(x), values_of(dL_dy)), kTolerance));
  EXPECT_TRUE(all_close(bias.grad().to_vector<float>(), reference::conv2d_backward_bias(problem, values_of(dL_dy)),
                        kTolerance));
}

TEST_F(FunctionalConvLinearTest, OnlyInputsThatRequireGradientsGetThem) {
  Tensor x = random_device(5, {1, 2, 5, 5});  // the network's input: no gradient
  Tensor weight = random_device(6, {3, 2, 3, 3}, true);
  Tensor bias = random_device(7, {3});  // frozen
  Tensor y = F::conv2d(x, weight, bias, {.padding = {1, 1}});
  y.backward(random_device(8, y.shape()));
  EXPECT_FALSE(x.grad().defined());
  EXPECT_FALSE(bias.grad().defined());
  EXPECT_TRUE(weight.grad().defined());

  autograd::NoGradGuard no_grad;
  EXPECT_FALSE(F::conv2d(x, weight, bias).requires_grad());
}

TEST_F(FunctionalConvLinearTest, LinearGradientsMatchTheReferenceWithLeadingDimensions) {
  const reference::LinearSizes sizes{.rows = 6, .in_features = 5, .out_features = 3};
  Tensor x = random_device(9, {2, 3, 5}, true);
  Tensor weight = random_device(10, {3, 5}, true);
  Tensor bias = random_device(11, {3}, true);
  Tensor y = F::linear(x, weight, bias);
  EXPECT_EQ(y.shape(), (Shape{2, 3, 3}));
  EXPECT_TRUE(all_close(y.to_vector<float>(),
                        reference::linear(values_of(x), values_of(weight), values_of(bias), sizes), kTolerance));
  Tensor dL_dy = random_device(12, y.shape());
  y.backward(dL_dy);
  EXPECT_TRUE(all_close(x.grad().to_vector<float>(),
                        reference::linear_backward_data(values_of(dL_dy), values_of(weight), sizes), kTolerance));
  EXPECT_TRUE(all_close(weight.grad().to_vector<float>(),
                        reference::linear_backward_weight(values_of(dL_dy), values_of(x), sizes), kTolerance));
  EXPECT_TRUE(all_close(bias.grad().to_vector<float>(), reference::linear_backward_bias(values_of(dL_dy), sizes),
                        kTolerance));
}

TEST_F(FunctionalConvLinearTest, ShapeErrorsNameTheOpAndTheShapes) {
  Tensor x = random_device(13, {2, 5});
  EXPECT_THAT([&] { F::linear(x, random_device(14, {3, 4}), Tensor()); },
              ThrowsMessage<InvalidArgument>(HasSubstr("(2, 5)")));
  EXPECT_THAT([&] { F::linear(x, random_device(14, {3, 5}), random_device(15, {4})); },
              ThrowsMessage<InvalidArgument>(HasSubstr("linear: bias (4) does not match the weight (3, 5)")));
  Tensor image = random_device(16, {1, 3, 4, 4});
  EXPECT_THAT([&] { F::conv2d(image, random_device(17, {2, 3, 3, 3}), random_device(18, {3})); },
              ThrowsMessage<InvalidArgument>(HasSubstr("conv2d: bias (3) does not match the weight (2, 3, 3, 3)")));
}

TEST_F(FunctionalConvLinearTest, BatchNormTrainingGradientsAndRunningStatistics) {
  const reference::BatchNormSizes sizes{.batch = 3, .channels = 2, .height = 3, .width = 2};
  Tensor x = random_device(19, {3, 2, 3, 2}, true);
  Tensor weight = random_device(20, {2}, true);
  Tensor bias = random_device(21, {2}, true);
  F::BatchNormRunningStats running{Tensor::zeros({2}, DType::f32, current_stream()),
                                   device_tensor(std::vector<float>{1, 1}, {2}, current_stream())};
  Tensor y = F::batch_norm2d(x, weight, bias, running, /*training=*/true, {.momentum = 0.4f});
  const reference::BatchNormTrainingResult expected = reference::batch_norm2d_training(
      values_of(x), values_of(weight), values_of(bias), std::vector<double>{0, 0}, std::vector<double>{1, 1}, sizes,
      1e-5, 0.4);
  EXPECT_TRUE(all_close(y.to_vector<float>(), expected.y, kTolerance));
  EXPECT_TRUE(all_close(running.mean.to_vector<float>(), expected.running_mean, kTolerance));
  EXPECT_TRUE(all_close(running.var.to_vector<float>(), expected.running_var, kTolerance));

  Tensor dL_dy = random_device(22, y.shape());
  y.backward(dL_dy);
  const reference::BatchNormGradientsResult gradients =
      reference::batch_norm2d_backward(values_of(dL_dy), values_of(x), values_of(weight), sizes, 1e-5);
  EXPECT_TRUE(all_close(x.grad().to_vector<float>(), gradients.dL_dx, {1e-4, 1e-4}));
  EXPECT_TRUE(all_close(weight.grad().to_vector<float>(), gradients.dL_dweight, kTolerance));
  EXPECT_TRUE(all_close(bias.grad().to_vector<float>(), gradients.dL_dbias, kTolerance));
}

// Eval mode (frozen batch norm): the running statistics are constants, and every gradient
// matches central finite differences of the double reference forward.
TEST_F(FunctionalConvLinearTest, BatchNormEvalGradientsMatchFiniteDifferences) {
  const reference::BatchNormSizes sizes{.batch = 2, .channels = 3, .height = 3, .width = 2};
  Tensor x = random_device(23, {2, 3, 3, 2}, true);
  Tensor weight = random_device(24, {3}, true);
  Tensor bias = random_device(25, {3}, true);
  F::BatchNormRunningStats running{random_device(26, {3}),
                                   device_tensor(std::vector<float>{0.5f, 2.0f, 1.25f}, {3}, current_stream())};
  Tensor y = F::batch_norm2d(x, weight, bias, running, /*training=*/false, {.eps = 1e-3f});
  const std::vector<double> mean = values_of(running.mean);
  const std::vector<double> var = values_of(running.var);
  const auto forward = [&](std::span<const double> x_values, std::span<const double> w, std::span<const double> b) {
    return reference::batch_norm2d_eval(x_values, w, b, mean, var, sizes, 1e-3);
  };
  EXPECT_TRUE(all_close(y.to_vector<float>(), forward(values_of(x), values_of(weight), values_of(bias)), kTolerance));

  Tensor dL_dy = random_device(27, y.shape());
  y.backward(dL_dy);
  const std::vector<double> weights = values_of(dL_dy);
  const std::vector<double> x_values = values_of(x);
  const std::vector<double> w_values = values_of(weight);
  const std::vector<double> b_values = values_of(bias);
  const auto loss_of_x = [&](std::span<const double> v) {
    return testing::weighted_sum(forward(v, w_values, b_values), weights);
  };
  const auto loss_of_w = [&](std::span<const double> v) {
    return testing::weighted_sum(forward(x_values, v, b_values), weights);
  };
  const auto loss_of_b = [&](std::span<const double> v) {
    return testing::weighted_sum(forward(x_values, w_values, v), weights);
  };
  const testing::Tolerance tolerance{1e-4, 1e-3};
  EXPECT_TRUE(all_close(x.grad().to_vector<float>(), testing::numerical_gradient(loss_of_x, x_values), tolerance));
  EXPECT_TRUE(all_close(weight.grad().to_vector<float>(), testing::numerical_gradient(loss_of_w, w_values), tolerance));
  EXPECT_TRUE(all_close(bias.grad().to_vector<float>(), testing::numerical_gradient(loss_of_b, b_values), tolerance));
}

TEST_F(FunctionalConvLinearTest, CrossEntropyGradientsMatchTheReference) {
  const std::int64_t classes = 7;
  Tensor logits = random_device(26, {5, classes}, true);
  const std::vector<std::int64_t> target_values{0, 6, 3, -100, 2};
  Tensor targets = device_tensor(target_values, {5}, current_stream());
  const F::CrossEntropyParams params{.label_smoothing = 0.2f, .reduction = F::Reduction::sum};
  Tensor loss = F::cross_entropy(logits, targets, params);
  EXPECT_EQ(loss.shape(), Shape{});
  EXPECT_TRUE(all_close(loss.to_vector<float>(),
                        reference::cross_entropy(values_of(logits), target_values, classes, params), kTolerance));
  loss.backward();
  EXPECT_TRUE(all_close(logits.grad().to_vector<float>(),
                        reference::cross_entropy_backward(std::vector<double>{1.0}, values_of(logits), target_values,
                                                          classes, params),
                        kTolerance));
}

TEST_F(FunctionalConvLinearTest, CrossEntropyRecordsBadTargetsInTheGivenCheck) {
  Tensor logits = random_device(27, {2, 3}, true);
  Tensor targets = device_tensor(std::vector<std::int64_t>{1, 3}, {2}, current_stream());
  F::TargetCheck check(current_stream());
  F::cross_entropy(logits, targets, {}, &check);
  EXPECT_THAT([&] { check.check(current_stream()); }, ThrowsMessage<InvalidArgument>(HasSubstr("3")));
}

// loss(w) of conv -> relu-free flatten -> linear -> mean cross-entropy, in double via the
// references, for finite differences of the whole network with respect to the conv weight.
TEST_F(FunctionalConvLinearTest, SmallNetworkGradientMatchesFiniteDifferences) {
  const reference::Conv2dProblem conv{.batch = 2, .in_channels = 2, .in_height = 4, .in_width = 4,
                                      .out_channels = 3, .kernel_height = 3, .kernel_width = 3,
                                      .params = {.padding = {1, 1}}};
  const reference::LinearSizes fc{.rows = 2, .in_features = 48, .out_features = 4};
  const std::vector<std::int64_t> target_values{1, 3};
  Tensor x = random_device(28, {2, 2, 4, 4});
  Tensor conv_weight = random_device(29, {3, 2, 3, 3}, true);
  Tensor fc_weight = random_device(30, {4, 48}, true);
  Tensor targets = device_tensor(target_values, {2}, current_stream());

  Tensor flat = F::conv2d(x, conv_weight, Tensor(), conv.params).flatten(1);  // (2, 48)
  Tensor loss = F::cross_entropy(F::linear(flat, fc_weight, Tensor()), targets);
  loss.backward();

  const std::vector<double> x_values = values_of(x);
  const std::vector<double> fc_values = values_of(fc_weight);
  const auto loss_of = [&](std::span<const double> weight) {
    const std::vector<double> features = reference::conv2d_forward(conv, x_values, weight, {});
    const std::vector<double> logits = reference::linear(features, fc_values, {}, fc);
    return reference::cross_entropy(logits, target_values, 4, {})[0];
  };
  const std::vector<double> numerical = testing::numerical_gradient(loss_of, values_of(conv_weight));
  EXPECT_TRUE(all_close(conv_weight.grad().to_vector<float>(), numerical, {1e-4, 1e-3}));
}

}  // namespace
}  // namespace strata
