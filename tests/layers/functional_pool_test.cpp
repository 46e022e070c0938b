// The pooling ops of the functional API through autograd: forwards and the gradients that
// backward() leaves in x.grad() against the double references of tests/reference/, which
// nodes are recorded and when, accumulation, a chain of ops, and the errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "strata/core/autograd.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/layers/functional.h"
#include "tests/kernels/device_values.h"
#include "tests/reference/elementwise_reference.h"
#include "tests/reference/pool2d_reference.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"

namespace strata::F {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
using testing::all_close;
using testing::random_uniform;
using testing::to_doubles;
using testing::Tolerance;
using FunctionalPoolTest = testing::DeviceTest;

// Float sums of a few window elements against double ones.
constexpr Tolerance kTolerance{.abs_tol = 1e-6, .rel_tol = 1e-5};

// (N, C, H, W): odd sizes, so windows clip at the edges and adaptive bins overlap.
const Shape kInputShape{2, 3, 7, 9};

Tensor device_values(const std::vector<float>& values, const Shape& shape) {
  return testing::device_tensor(values, shape, current_stream());
}

// A leaf that requires gradients, as a parameter or an input being optimised would.
Tensor leaf(const std::vector<float>& values, const Shape& shape) {
  return device_values(values, shape).set_requires_grad();
}

std::vector<float> random_values(std::uint64_t seed, const Shape& shape) {
  return random_uniform(seed, static_cast<std::size_t>(shape.numel()));
}

// One pooling op with its parameters, its node's name and its double references.
struct PoolCase {
  std::string node_name;
  Shape y_shape;
  std::function<Tensor(const Tensor&)> forward;
  std::function<std::vector<double>(std::span<const double> x)> reference_forward;
  std::function<std::vector<double>(std::span<const double> x, std::span<const double> dL_dy)> reference_backward;
};

std::vector<PoolCase> pool_cases() {
  const Pool2dParams max_params{.kernel = {3, 3}, .stride = Size2d{2, 2}, .padding = {1, 1}};
  const AvgPool2dParams avg_params{
      .window = {.kernel = {3, 2}, .stride = Size2d{2, 3}, .padding = {1, 1}, .ceil_mode = true},
      .count_include_pad = false};
  const AdaptivePool2dParams adaptive_max_params{.output_size = {4, 5}};
  const AdaptivePool2dParams adaptive_avg_params{.output_size = {3, 4}};
  return {
      {"MaxPool2dBackward", reference::max_pool2d_output_shape(kInputShape, max_params),
       [=](const Tensor& x) { return max_pool2d(x, max_params); },
       [=](std::span<const double> x) { return reference::max_pool2d_forward(x, kInputShape, max_params).y; },
       [=](std::span<const double> x, std::span<const double> dL_dy) {
         const auto argmax = reference::max_pool2d_forward(x, kInputShape, max_params).argmax;
         return reference::max_pool_backward(dL_dy, argmax, kInputShape);
       }},
      {"AvgPool2dBackward", reference::avg_pool2d_output_shape(kInputShape, avg_params),
       [=](const Tensor& x) { return avg_pool2d(x, avg_params); },
       [=](std::span<const double> x) { return reference::avg_pool2d_forward(x, kInputShape, avg_params); },
       [=](std::span<const double>, std::span<const double> dL_dy) {
         return reference::avg_pool2d_backward(dL_dy, kInputShape, avg_params);
       }},
      {"AdaptiveMaxPool2dBackward", reference::adaptive_pool2d_output_shape(kInputShape, adaptive_max_params),
       [=](const Tensor& x) { return adaptive_max_pool2d(x, adaptive_max_params.output_size); },
       [=](std::span<const double> x) {
         return reference::adaptive_max_pool2d_forward(x, kInputShape, adaptive_max_params).y;
       },
       [=](std::span<const double> x, std::span<const double> dL_dy) {
         const auto argmax = reference::adaptive_max_pool2d_forward(x, kInputShape, adaptive_max_params).argmax;
         return reference::max_pool_backward(dL_dy, argmax, kInputShape);
       }},
      {"AdaptiveAvgPool2dBackward", reference::adaptive_pool2d_output_shape(kInputShape, adaptive_avg_params),
       [=](const Tensor& x) { return adaptive_avg_pool2d(x, adaptive_avg_params.output_size); },
       [=](std::span<const double> x) {
         return reference::adaptive_avg_pool2d_forward(x, kInputShape, adaptive_avg_params);
       },
       [=](std::span<const double>, std::span<const double> dL_dy) {
         return reference::adaptive_avg_pool2d_backward(dL_dy, kInputShape, adaptive_avg_params);
       }},
  };
}

TEST_F(FunctionalPoolTest, ForwardAndGradientMatchTheReferences) {
  std::uint64_t seed = 10;
  for (const PoolCase& pool : pool_cases()) {
    SCOPED_TRACE(pool.node_name);
    const std::vector<float> x_values = random_values(seed++, kInputShape);
    const std::vector<float> dL_dy_values = random_values(seed++, pool.y_shape);
    const Tensor x = leaf(x_values, kInputShape);
    const Tensor y = pool.forward(x);
    ASSERT_EQ(y.shape(), pool.y_shape);
    EXPECT_TRUE(all_close(y.to_vector<float>(), pool.reference_forward(to_doubles(x_values)), kTolerance));
    EXPECT_TRUE(y.requires_grad());
    ASSERT_NE(y.grad_fn(), nullptr);
    EXPECT_EQ(y.grad_fn()->name(), pool.node_name);

    y.backward(device_values(dL_dy_values, pool.y_shape));
    ASSERT_TRUE(x.grad().defined());
    EXPECT_EQ(x.grad().shape(), kInputShape);
    EXPECT_TRUE(all_close(x.grad().to_vector<float>(),
                          pool.reference_backward(to_doubles(x_values), to_doubles(dL_dy_values)), kTolerance));
  }
}

TEST_F(FunctionalPoolTest, RecordsNothingWithoutGradients) {
  std::uint64_t seed = 20;
  for (const PoolCase& pool : pool_cases()) {
    SCOPED_TRACE(pool.node_name);
    const std::vector<float> x_values = random_values(seed++, kInputShape);
    // An input that does not require gradients: max pooling writes no argmax then.
    const Tensor y = pool.forward(device_values(x_values, kInputShape));
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
    EXPECT_TRUE(all_close(y.to_vector<float>(), pool.reference_forward(to_doubles(x_values)), kTolerance));

    // One that does, under a NoGradGuard.
    const Tensor x = leaf(x_values, kInputShape);
    autograd::NoGradGuard no_grad;
    const Tensor y_no_grad = pool.forward(x);
    EXPECT_FALSE(y_no_grad.requires_grad());
    EXPECT_EQ(y_no_grad.grad_fn(), nullptr);
  }
}

TEST_F(FunctionalPoolTest, GradientsAccumulateAcrossBackwardCalls) {
  std::uint64_t seed = 30;
  for (const PoolCase& pool : pool_cases()) {
    SCOPED_TRACE(pool.node_name);
    const Tensor x = leaf(random_values(seed++, kInputShape), kInputShape);
    const Tensor dL_dy = device_values(random_values(seed++, pool.y_shape), pool.y_shape);
    const Tensor y = pool.forward(x);
    y.backward(dL_dy, current_stream(), {.retain_graph = true});
    const std::vector<float> once = x.grad().to_vector<float>();
    y.backward(dL_dy);  // the retained graph still holds max pooling's argmax
    std::vector<float> doubled;
    for (const float value : once) doubled.push_back(2.0f * value);
    EXPECT_TRUE(testing::all_equal(x.grad().to_vector<float>(), doubled));
  }
}

TEST_F(FunctionalPoolTest, BackwardFreesTheSavedArgmax) {
  const Tensor x = leaf(random_values(40, kInputShape), kInputShape);
  const Tensor y = max_pool2d(x, {.kernel = {2, 2}});
  const Tensor dL_dy = device_values(random_values(41, y.shape()), y.shape());
  y.backward(dL_dy);
  EXPECT_THAT([&] { y.backward(dL_dy); },
              ThrowsMessage<InvalidArgument>(HasSubstr("MaxPool2dBackward a second time")));
}

// relu(max_pool2d(x)): the gradient flows through both nodes, the later one first.
TEST_F(FunctionalPoolTest, ReluOfMaxPoolChainsTheGradients) {
  const Pool2dParams params{.kernel = {3, 3}, .stride = Size2d{2, 2}, .padding = {1, 1}};
  const std::vector<float> x_values = random_values(50, kInputShape);
  const Tensor x = leaf(x_values, kInputShape);
  const Tensor y = relu(max_pool2d(x, params));
  ASSERT_NE(y.grad_fn(), nullptr);
  EXPECT_EQ(y.grad_fn()->name(), "ReluBackward");
  ASSERT_EQ(y.grad_fn()->next_edges().size(), 1u);
  EXPECT_EQ(y.grad_fn()->next_edges()[0].node->name(), "MaxPool2dBackward");

  const std::vector<float> dL_dy_values = random_values(51, y.shape());
  y.backward(device_values(dL_dy_values, y.shape()));
  const reference::MaxPoolResult pooled = reference::max_pool2d_forward(to_doubles(x_values), kInputShape, params);
  EXPECT_TRUE(all_close(y.to_vector<float>(), reference::relu_forward(pooled.y), kTolerance));
  const std::vector<double> dL_dpooled = reference::relu_backward(to_doubles(dL_dy_values), pooled.y);
  EXPECT_TRUE(all_close(x.grad().to_vector<float>(),
                        reference::max_pool_backward(dL_dpooled, pooled.argmax, kInputShape), kTolerance));
}

// A batch of 0 samples: empty outputs and an empty gradient, no launch.
TEST_F(FunctionalPoolTest, EmptyBatch) {
  const Shape shape{0, 3, 7, 9};
  for (const PoolCase& pool : pool_cases()) {
    SCOPED_TRACE(pool.node_name);
    const Tensor x = leaf({}, shape);
    const Tensor y = pool.forward(x);
    EXPECT_EQ(y.shape(), pool.y_shape.with_dim(0, 0));
    y.backward(device_values({}, y.shape()));
    ASSERT_TRUE(x.grad().defined());
    EXPECT_EQ(x.grad().shape(), shape);
  }
}

TEST_F(FunctionalPoolTest, ErrorsNameTheOpAndTheShapes) {
  const Tensor x = leaf(random_values(60, kInputShape), kInputShape);
  const Pool2dParams params{.kernel = {2, 2}};
  EXPECT_THAT([] { max_pool2d(Tensor(), {.kernel = {2, 2}}); },
              ThrowsMessage<InvalidArgument>(HasSubstr("max_pool2d: x is an undefined tensor")));
  EXPECT_THAT([&] { max_pool2d(x.to_host(), params); },
              ThrowsMessage<InvalidArgument>(HasSubstr("max_pool2d: x must be a device tensor")));
  EXPECT_THAT([&] { max_pool2d(x.flatten(2), params); },
              ThrowsMessage<InvalidArgument>(
                  HasSubstr("max_pool2d: x must have 4 dimensions (N, C, H, W), got shape (2, 3, 63)")));
  EXPECT_THAT([&] { max_pool2d(x, {.kernel = {3, 3}, .padding = {2, 1}}); },
              ThrowsMessage<InvalidArgument>(
                  HasSubstr("max_pool2d: padding should be at most half of the kernel size (x (2, 3, 7, 9)")));
  EXPECT_THAT([&] { avg_pool2d(x, {.window = {.kernel = {2, 2}, .dilation = {2, 2}}}); },
              ThrowsMessage<InvalidArgument>(HasSubstr("avg_pool2d has no dilation, it must be (1, 1)")));
  EXPECT_THAT([&] { adaptive_avg_pool2d(x, {0, 2}); },
              ThrowsMessage<InvalidArgument>(
                  HasSubstr("adaptive_avg_pool2d: output_size must be at least (1, 1), got (0, 2) for x")));
  EXPECT_THAT([&] { adaptive_max_pool2d(x.flatten(1), {1, 1}); },
              ThrowsMessage<InvalidArgument>(HasSubstr("adaptive_max_pool2d: x must have 4 dimensions")));
}

}  // namespace
}  // namespace strata::F
