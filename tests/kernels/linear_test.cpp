// linear (y = x W^T + b) and its three gradients against the double reference: odd sizes,
// leading dimensions, no bias, accumulation into existing gradients, exact small-integer
// products, finite differences, argument errors and a bit-identical bias gradient; f16 and
// bf16 storage against the reference of the rounded inputs, and mixed dtypes refused.
#include <cstdint>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "strata/core/stream.h"
#include "strata/kernels/linear.h"
#include "tests/kernels/device_values.h"
#include "tests/reference/linear_reference.h"
#include "tests/support/compare.h"
#include "tests/support/gradcheck.h"
#include "tests/support/storage_dtypes.h"

namespace strata::kernels {
namespace {

using ::testing::HasSubstr;
using testing::Tolerance;

constexpr Tolerance kTolerance{.abs_tol = 1e-5, .rel_tol = 1e-5};

std::vector<double> plus(const std::vector<double>& a, const std::vector<float>& b) {
  std::vector<double> sum(a);
  for (std::size_t i = 0; i < sum.size(); ++i) sum[i] += b[i];
  return sum;
}

struct LinearCase {
  Shape x;  // (..., in)
  std::int64_t out_features;
  bool bias;
};

TEST(Linear, OutputShape) {
  EXPECT_EQ(linear_output_shape({8, 5}, {3, 5}), (Shape{8, 3}));
  EXPECT_EQ(linear_output_shape({2, 4, 5}, {3, 5}), (Shape{2, 4, 3}));
  EXPECT_EQ(linear_output_shape({5}, {1, 5}), Shape{1});
  EXPECT_THAT(testing::invalid_argument_message([] { linear_output_shape({8, 5}, {3, 4}); }),
              HasSubstr("linear: needs x (..., in_features) and weight (out_features, in_features), got x (8, 5) "
                        "and weight (3, 4)"));
  EXPECT_THAT(testing::invalid_argument_message([] { linear_output_shape({8, 5}, {5}); }),
              HasSubstr("got x (8, 5) and weight (5)"));
  EXPECT_THAT(testing::invalid_argument_message([] { linear_output_shape({0, 5}, {3, 5}); }),
              HasSubstr("linear: sizes must be at least 1, got x (0, 5) and weight (3, 5)"));
  EXPECT_THAT(testing::invalid_argument_message([] { linear_output_shape({4, 0}, {3, 0}); }),
              HasSubstr("sizes must be at least 1"));
  EXPECT_THAT(testing::invalid_argument_message([] { linear_output_shape({1 << 16, 1 << 16}, {1 << 16, 1 << 16}); }),
              HasSubstr("exceed the GEMM's 32-bit sizes"));
}

TEST(Linear, ForwardAndGradientsMatchTheReference) {
  Stream stream;
  std::uint64_t seed = 500;
  for (const LinearCase& c : {LinearCase{{1, 1}, 1, true}, LinearCase{{7, 13}, 5, true}, LinearCase{{7, 13}, 5, false},
                              LinearCase{{33, 17}, 65, true}, LinearCase{{2, 3, 6}, 4, true}, LinearCase{{9}, 10, true},
                              LinearCase{{130, 3}, 2, false}}) {
    SCOPED_TRACE(::testing::Message() << "x " << c.x.to_string() << ", out_features " << c.out_features << ", bias "
                                      << c.bias << ", seed " << seed);
    const std::int64_t in = c.x[c.x.rank() - 1];
    const Shape weight_shape{c.out_features, in};
    const Shape y_shape = linear_output_shape(c.x, weight_shape);
    const reference::LinearSizes sizes{.rows = c.x.numel() / in, .in_features = in, .out_features = c.out_features};
    const std::vector<float> x = testing::random_uniform(seed++, static_cast<std::size_t>(c.x.numel()));
    const std::vector<float> weight = testing::random_uniform(seed++, static_cast<std::size_t>(weight_shape.numel()));
    const std::vector<float> bias =
        c.bias ? testing::random_uniform(seed++, static_cast<std::size_t>(c.out_features)) : std::vector<float>{};
    const std::vector<float> dL_dy = testing::random_uniform(seed++, static_cast<std::size_t>(y_shape.numel()));

    const Tensor x_device = testing::device_tensor(x, c.x, stream);
    const Tensor weight_device = testing::device_tensor(weight, weight_shape, stream);
    const Tensor bias_device = c.bias ? testing::device_tensor(bias, {c.out_features}, stream) : Tensor();
    Tensor y = testing::poisoned_tensor(y_shape, stream);
    linear_forward(x_device, weight_device, bias_device, y, stream);
    EXPECT_TRUE(testing::all_close(y.to_vector<float>(stream),
                                   reference::linear(testing::to_doubles(x), testing::to_doubles(weight),
                                                     testing::to_doubles(bias), sizes),
                                   kTolerance));

    const Tensor dL_dy_device = testing::device_tensor(dL_dy, y_shape, stream);
    Tensor dL_dx = testing::poisoned_tensor(c.x, stream);
    Tensor dL_dweight = testing::poisoned_tensor(weight_shape, stream);
    Tensor dL_dbias = testing::poisoned_tensor({c.out_features}, stream);
    linear_backward_data(dL_dy_device, weight_device, dL_dx, {}, stream);
    linear_backward_weight(dL_dy_device, x_device, dL_dweight, {}, stream);
    linear_backward_bias(dL_dy_device, dL_dbias, {}, stream);
    const std::vector<double> dy = testing::to_doubles(dL_dy);
    const std::vector<double> expected_dx = reference::linear_backward_data(dy, testing::to_doubles(weight), sizes);
    const std::vector<double> expected_dweight = reference::linear_backward_weight(dy, testing::to_doubles(x), sizes);
    const std::vector<double> expected_dbias = reference::linear_backward_bias(dy, sizes);
    EXPECT_TRUE(testing::all_close(dL_dx.to_vector<float>(stream), expected_dx, kTolerance));
    EXPECT_TRUE(testing::all_close(dL_dweight.to_vector<float>(stream), expected_dweight, kTolerance));
    EXPECT_TRUE(testing::all_close(dL_dbias.to_vector<float>(stream), expected_dbias, kTolerance));

    // Accumulation adds to what the gradients hold.
    const std::vector<float> old_dx = testing::random_uniform(seed++, static_cast<std::size_t>(c.x.numel()));
    const std::vector<float> old_dweight =
        testing::random_uniform(seed++, static_cast<std::size_t>(weight_shape.numel()));
    const std::vector<float> old_dbias = testing::random_uniform(seed++, static_cast<std::size_t>(c.out_features));
    dL_dx = testing::device_tensor(old_dx, c.x, stream);
    dL_dweight = testing::device_tensor(old_dweight, weight_shape, stream);
    dL_dbias = testing::device_tensor(old_dbias, {c.out_features}, stream);
    const LinearBackwardParams accumulate{.accumulate = true};
    linear_backward_data(dL_dy_device, weight_device, dL_dx, accumulate, stream);
    linear_backward_weight(dL_dy_device, x_device, dL_dweight, accumulate, stream);
    linear_backward_bias(dL_dy_device, dL_dbias, accumulate, stream);
    EXPECT_TRUE(testing::all_close(dL_dx.to_vector<float>(stream), plus(expected_dx, old_dx), kTolerance));
    EXPECT_TRUE(
        testing::all_close(dL_dweight.to_vector<float>(stream), plus(expected_dweight, old_dweight), kTolerance));
    EXPECT_TRUE(testing::all_close(dL_dbias.to_vector<float>(stream), plus(expected_dbias, old_dbias), kTolerance));
  }
}

TEST(Linear, ReducedDtypesMatchTheReferenceOfTheirRoundedInputs) {
  Stream stream;
  std::uint64_t seed = 700;
  for (const DType dtype : testing::kReducedDtypes) {
    // f32 accumulation (as the f32 test) plus one rounding of each output to dtype.
    const Tolerance tolerance{.abs_tol = 1e-5, .rel_tol = testing::storage_rel_tol(dtype)};
    for (const LinearCase& c : {LinearCase{{7, 13}, 5, true}, LinearCase{{2, 3, 6}, 4, false},
                                LinearCase{{33, 17}, 65, true}, LinearCase{{9}, 10, true}}) {
      SCOPED_TRACE(::testing::Message() << dtype << ", x " << c.x.to_string() << ", out_features " << c.out_features
                                        << ", bias " << c.bias << ", seed " << seed);
      const std::int64_t in = c.x[c.x.rank() - 1];
      const Shape weight_shape{c.out_features, in};
      const Shape y_shape = linear_output_shape(c.x, weight_shape);
      const reference::LinearSizes sizes{.rows = c.x.numel() / in, .in_features = in, .out_features = c.out_features};
      const auto random = [&](std::int64_t count) {
        return testing::rounded_to(testing::random_uniform(seed++, static_cast<std::size_t>(count)), dtype, stream);
      };
      const std::vector<float> x = random(c.x.numel());
      const std::vector<float> weight = random(weight_shape.numel());
      const std::vector<float> bias = c.bias ? random(c.out_features) : std::vector<float>{};
      const std::vector<float> dL_dy = random(y_shape.numel());
      const std::vector<float> old_dweight = random(weight_shape.numel());

      const Tensor x_device = testing::storage_tensor(x, c.x, dtype, stream);
      const Tensor weight_device = testing::storage_tensor(weight, weight_shape, dtype, stream);
      const Tensor bias_device = c.bias ? testing::storage_tensor(bias, {c.out_features}, dtype, stream) : Tensor();
      Tensor y = testing::poisoned_storage(y_shape, dtype, stream);
      linear_forward(x_device, weight_device, bias_device, y, stream);
      EXPECT_EQ(linear_forward(x_device, weight_device, bias_device, stream).dtype(), dtype);
      EXPECT_TRUE(testing::all_close(testing::storage_values(y, stream),
                                     reference::linear(testing::to_doubles(x), testing::to_doubles(weight),
                                                       testing::to_doubles(bias), sizes),
                                     tolerance));

      const Tensor dL_dy_device = testing::storage_tensor(dL_dy, y_shape, dtype, stream);
      Tensor dL_dx = testing::poisoned_storage(c.x, dtype, stream);
      Tensor dL_dbias = testing::poisoned_storage({c.out_features}, dtype, stream);
      // The weight gradient accumulates onto what it holds (the GEMM reads C in dtype).
      Tensor dL_dweight = testing::storage_tensor(old_dweight, weight_shape, dtype, stream);
      linear_backward_data(dL_dy_device, weight_device, dL_dx, {}, stream);
      linear_backward_weight(dL_dy_device, x_device, dL_dweight, {.accumulate = true}, stream);
      linear_backward_bias(dL_dy_device, dL_dbias, {}, stream);
      const std::vector<double> dy = testing::to_doubles(dL_dy);
      EXPECT_TRUE(testing::all_close(testing::storage_values(dL_dx, stream),
                                     reference::linear_backward_data(dy, testing::to_doubles(weight), sizes),
                                     tolerance));
      EXPECT_TRUE(testing::all_close(
          testing::storage_values(dL_dweight, stream),
          plus(reference::linear_backward_weight(dy, testing::to_doubles(x), sizes), old_dweight), tolerance));
      EXPECT_TRUE(testing::all_close(testing::storage_values(dL_dbias, stream),
                                     reference::linear_backward_bias(dy, sizes), tolerance));
    }
  }
}

TEST(Linear, ReducedBiasGradientAccumulatesInF32) {
  Stream stream;
  // A 1 and 256 terms of 2^-8: a bf16 running sum would round 1 + 2^-8 back to 1 and lose
  // them; summed in f32 and rounded once, the column sum is 2 exactly.
  std::vector<float> dL_dy(257, 1.0f / 256.0f);
  dL_dy.front() = 1.0f;
  for (const DType dtype : testing::kReducedDtypes) {
    const Tensor dL_dy_device = testing::storage_tensor(dL_dy, {257, 1}, dtype, stream);
    Tensor dL_dbias = testing::poisoned_storage({1}, dtype, stream);
    linear_backward_bias(dL_dy_device, dL_dbias, {}, stream);
    EXPECT_TRUE(testing::all_equal(testing::storage_values(dL_dbias, stream), std::vector<float>{2.0f})) << dtype;
  }
}

TEST(Linear, SmallIntegersGiveExactResults) {
  Stream stream;
  // x (2, 3), weight (2, 3), bias (2): every product and sum is a small integer.
  const Tensor x = testing::device_tensor(std::vector<float>{1, 2, 3, -1, 0, 4}, {2, 3}, stream);
  const Tensor weight = testing::device_tensor(std::vector<float>{2, 0, -1, 1, 1, 1}, {2, 3}, stream);
  const Tensor bias = testing::device_tensor(std::vector<float>{10, -5}, {2}, stream);
  const Tensor y = linear_forward(x, weight, bias, stream);
  EXPECT_TRUE(testing::all_equal(y.to_vector<float>(stream), std::vector<float>{9, 1, 4, -2}));
  const Tensor dL_dy = testing::device_tensor(std::vector<float>{1, -1, 2, 3}, {2, 2}, stream);
  Tensor dL_dx = testing::poisoned_tensor({2, 3}, stream);
  Tensor dL_dweight = testing::poisoned_tensor({2, 3}, stream);
  Tensor dL_dbias = testing::poisoned_tensor({2}, stream);
  linear_backward_data(dL_dy, weight, dL_dx, {}, stream);
  linear_backward_weight(dL_dy, x, dL_dweight, {}, stream);
  linear_backward_bias(dL_dy, dL_dbias, {}, stream);
  EXPECT_TRUE(testing::all_equal(dL_dx.to_vector<float>(stream), std::vector<float>{1, -1, -2, 7, 3, 1}));
  EXPECT_TRUE(testing::all_equal(dL_dweight.to_vector<float>(stream), std::vector<float>{-1, 2, 11, -4, -2, 9}));
  EXPECT_TRUE(testing::all_equal(dL_dbias.to_vector<float>(stream), std::vector<float>{3, 2}));
}

TEST(Linear, GradientsMatchFiniteDifferences) {
  Stream stream;
  const reference::LinearSizes sizes{.rows = 3, .in_features = 4, .out_features = 5};
  const std::vector<float> x = testing::random_uniform(601, 12);
  const std::vector<float> weight = testing::random_uniform(602, 20);
  const std::vector<float> bias = testing::random_uniform(603, 5);
  const std::vector<float> dL_dy = testing::random_uniform(604, 15);
  const Tensor dL_dy_device = testing::device_tensor(dL_dy, {3, 5}, stream);
  Tensor dL_dx = testing::poisoned_tensor({3, 4}, stream);
  Tensor dL_dweight = testing::poisoned_tensor({5, 4}, stream);
  Tensor dL_dbias = testing::poisoned_tensor({5}, stream);
  linear_backward_data(dL_dy_device, testing::device_tensor(weight, {5, 4}, stream), dL_dx, {}, stream);
  linear_backward_weight(dL_dy_device, testing::device_tensor(x, {3, 4}, stream), dL_dweight, {}, stream);
  linear_backward_bias(dL_dy_device, dL_dbias, {}, stream);

  const std::vector<double> weights = testing::to_doubles(dL_dy);
  std::vector<double> x_d = testing::to_doubles(x), weight_d = testing::to_doubles(weight),
                      bias_d = testing::to_doubles(bias);
  const auto loss = [&](std::span<const double> x_in, std::span<const double> weight_in,
                        std::span<const double> bias_in) {
    return testing::weighted_sum(reference::linear(x_in, weight_in, bias_in, sizes), weights);
  };
  const Tolerance tolerance{.abs_tol = 1e-6, .rel_tol = 1e-5};
  EXPECT_TRUE(testing::all_close(
      dL_dx.to_vector<float>(stream),
      testing::numerical_gradient([&](std::span<const double> v) { return loss(v, weight_d, bias_d); }, x_d),
      tolerance));
  EXPECT_TRUE(testing::all_close(
      dL_dweight.to_vector<float>(stream),
      testing::numerical_gradient([&](std::span<const double> v) { return loss(x_d, v, bias_d); }, weight_d),
      tolerance));
  EXPECT_TRUE(testing::all_close(
      dL_dbias.to_vector<float>(stream),
      testing::numerical_gradient([&](std::span<const double> v) { return loss(x_d, weight_d, v); }, bias_d),
      tolerance));
}

TEST(Linear, BiasGradientRerunsAreBitIdentical) {
  Stream stream;
  // More rows than row stripes, more columns than one block's 32.
  const std::vector<float> dL_dy = testing::random_uniform(611, 301 * 70);
  const Tensor dL_dy_device = testing::device_tensor(dL_dy, {301, 70}, stream);
  const auto results = testing::run_with_schedule_seeds<std::vector<std::uint32_t>>([&] {
    Tensor dL_dbias = testing::poisoned_tensor({70}, stream);
    linear_backward_bias(dL_dy_device, dL_dbias, {}, stream);
    return testing::bit_patterns(dL_dbias.to_vector<float>(stream));
  });
  for (std::size_t i = 1; i < results.size(); ++i) EXPECT_EQ(results[i], results[0]) << "rerun " << i;
}

TEST(Linear, ArgumentErrorsNameTheOpAndShapes) {
  Stream stream;
  const Tensor x = Tensor::zeros({4, 3}, DType::f32, stream);
  const Tensor weight = Tensor::zeros({2, 3}, DType::f32, stream);
  const Tensor wrong_bias = Tensor::zeros({3}, DType::f32, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] { linear_forward(x, weight, wrong_bias, stream); }),
              HasSubstr("linear: bias must have shape (2), got (3)"));
  Tensor wrong_y = Tensor::zeros({4, 3}, DType::f32, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] { linear_forward(x, weight, Tensor(), wrong_y, stream); }),
              HasSubstr("linear: y must have shape (4, 2), got (4, 3)"));
  const Tensor square = Tensor::zeros({3, 3}, DType::f32, stream);
  Tensor aliased = square;
  EXPECT_THAT(testing::invalid_argument_message([&] { linear_forward(square, square, Tensor(), aliased, stream); }),
              HasSubstr("linear: y (3, 3) overlaps x (3, 3)"));
  const Tensor integers = Tensor::zeros({4, 3}, DType::i32, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] { linear_forward(integers, weight, Tensor(), stream); }),
              HasSubstr("linear: x must have dtype f32"));
  // Mixed floating dtypes: named, with what to do.
  const Tensor bf16_x = Tensor::zeros({4, 3}, DType::bf16, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] { linear_forward(bf16_x, weight, Tensor(), stream); }),
              HasSubstr("linear: weight has dtype f32 but x has dtype bf16; the operands must share one dtype "
                        "(cast one with F::to_dtype, or run the model under strata::AutocastGuard)"));
  const Tensor bf16_weight = Tensor::zeros({2, 3}, DType::bf16, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] { linear_forward(bf16_x, bf16_weight, wrong_bias, stream); }),
              HasSubstr("linear: bias has dtype f32 but x has dtype bf16"));
  Tensor f16_y = Tensor::zeros({4, 2}, DType::f16, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] { linear_forward(bf16_x, bf16_weight, Tensor(), f16_y, stream); }),
              HasSubstr("linear: y has dtype f16 but x has dtype bf16"));
  const Tensor dL_dy = Tensor::zeros({4, 5}, DType::f32, stream);
  Tensor dL_dx = Tensor::zeros({4, 3}, DType::f32, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] { linear_backward_data(dL_dy, weight, dL_dx, {}, stream); }),
              HasSubstr("linear: dL_dy must be (..., 2) for weight (2, 3), got (4, 5)"));
  Tensor dL_dweight = Tensor::zeros({2, 3}, DType::f32, stream);
  const Tensor other_x = Tensor::zeros({5, 3}, DType::f32, stream);
  const Tensor good_dy = Tensor::zeros({4, 2}, DType::f32, stream);
  EXPECT_THAT(
      testing::invalid_argument_message([&] { linear_backward_weight(good_dy, other_x, dL_dweight, {}, stream); }),
      HasSubstr("linear: x must have shape (4, 3), got (5, 3)"));
  Tensor dL_dbias = Tensor::zeros({3}, DType::f32, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] { linear_backward_bias(good_dy, dL_dbias, {}, stream); }),
              HasSubstr("linear: dL_dbias must have shape (2), got (3)"));
  const Tensor bf16_dy = Tensor::zeros({4, 2}, DType::bf16, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] { linear_backward_data(bf16_dy, weight, dL_dx, {}, stream); }),
              HasSubstr("linear: weight has dtype f32 but dL_dy has dtype bf16"));
  EXPECT_THAT(
      testing::invalid_argument_message([&] { linear_backward_weight(bf16_dy, bf16_x, dL_dweight, {}, stream); }),
      HasSubstr("linear: dL_dweight has dtype f32 but dL_dy has dtype bf16"));
  Tensor bf16_dbias = Tensor::zeros({2}, DType::f16, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] { linear_backward_bias(bf16_dy, bf16_dbias, {}, stream); }),
              HasSubstr("linear: dL_dbias has dtype f16 but dL_dy has dtype bf16"));
}

}  // namespace
}  // namespace strata::kernels
