// softmax and log_softmax over the last dimension against the double reference: odd row
// lengths (1, not a multiple of 32, longer than a block), extreme logits, NaN rows, exact
// results, finite-difference gradients, argument errors and bit-identical reruns; f16 and
// bf16 storage against the reference of the rounded inputs, and mixed dtypes refused.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "strata/core/stream.h"
#include "strata/kernels/softmax.h"
#include "tests/kernels/device_values.h"
#include "tests/reference/softmax_reference.h"
#include "tests/support/compare.h"
#include "tests/support/gradcheck.h"
#include "tests/support/storage_dtypes.h"

namespace strata::kernels {
namespace {

using ::testing::HasSubstr;
using testing::Tolerance;

enum class Kind { softmax, log_softmax };

const char* kind_name(Kind kind) { return kind == Kind::softmax ? "softmax" : "log_softmax"; }

// Into a poisoned output of x's dtype.
Tensor forward(Kind kind, const Tensor& x, cudaStream_t stream) {
  Tensor y = testing::poisoned_storage(x.shape(), x.dtype(), stream);
  if (kind == Kind::softmax) {
    softmax_forward(x, y, stream);
  } else {
    log_softmax_forward(x, y, stream);
  }
  return y;
}

Tensor backward(Kind kind, const Tensor& dL_dy, const Tensor& y, cudaStream_t stream) {
  Tensor dL_dx = testing::poisoned_storage(y.shape(), y.dtype(), stream);
  if (kind == Kind::softmax) {
    softmax_backward(dL_dy, y, dL_dx, stream);
  } else {
    log_softmax_backward(dL_dy, y, dL_dx, stream);
  }
  return dL_dx;
}

std::vector<double> reference_forward(Kind kind, const std::vector<double>& x, std::int64_t columns) {
  return kind == Kind::softmax ? reference::softmax(x, columns) : reference::log_softmax(x, columns);
}

std::vector<double> reference_backward(Kind kind, const std::vector<double>& dL_dy, const std::vector<double>& y,
                                       std::int64_t columns) {
  return kind == Kind::softmax ? reference::softmax_backward(dL_dy, y, columns)
                               : reference::log_softmax_backward(dL_dy, y, columns);
}

class SoftmaxKinds : public ::testing::TestWithParam<Kind> {};

INSTANTIATE_TEST_SUITE_P(Softmax, SoftmaxKinds, ::testing::Values(Kind::softmax, Kind::log_softmax),
                         [](const auto& test_info) { return std::string(kind_name(test_info.param)); });

TEST_P(SoftmaxKinds, ForwardAndBackwardMatchTheReference) {
  const Kind kind = GetParam();
  Stream stream;
  const std::vector<Shape> shapes = {{1, 1}, {3, 7}, {5, 33}, {2, 1030}, {2, 3, 5}, {17}, {4, 1}, {70, 10}};
  std::uint64_t seed = 100;
  for (const Shape& shape : shapes) {
    SCOPED_TRACE(::testing::Message() << kind_name(kind) << " of shape " << shape.to_string() << ", seed " << seed);
    const std::int64_t columns = shape[shape.rank() - 1];
    const auto count = static_cast<std::size_t>(shape.numel());
    const std::vector<float> x = testing::random_uniform(seed++, count, -6.0f, 6.0f);
    const std::vector<float> dL_dy = testing::random_uniform(seed++, count);
    const Tensor y = forward(kind, testing::device_tensor(x, shape, stream), stream);
    const std::vector<float> y_values = y.to_vector<float>(stream);
    EXPECT_TRUE(testing::all_close(y_values, reference_forward(kind, testing::to_doubles(x), columns),
                                   Tolerance{.abs_tol = 1e-6, .rel_tol = 1e-5}));
    // The backward from the kernel's own output, as a model would run it.
    const Tensor dL_dx = backward(kind, testing::device_tensor(dL_dy, shape, stream), y, stream);
    EXPECT_TRUE(testing::all_close(
        dL_dx.to_vector<float>(stream),
        reference_backward(kind, testing::to_doubles(dL_dy), testing::to_doubles(y_values), columns),
        Tolerance{.abs_tol = 1e-6, .rel_tol = 1e-5}));
  }
}

TEST_P(SoftmaxKinds, ReducedDtypesMatchTheReferenceOfTheirRoundedInputs) {
  const Kind kind = GetParam();
  Stream stream;
  std::uint64_t seed = 150;
  for (const DType dtype : testing::kReducedDtypes) {
    // The f32 test's bound plus one rounding of each output to dtype.
    const Tolerance tolerance{.abs_tol = 1e-6, .rel_tol = 1e-5 + testing::storage_rel_tol(dtype)};
    for (const Shape& shape : {Shape{3, 7}, Shape{5, 33}, Shape{2, 3, 5}, Shape{17}, Shape{4, 1}}) {
      SCOPED_TRACE(::testing::Message() << kind_name(kind) << " in " << dtype << " of shape " << shape.to_string()
                                        << ", seed " << seed);
      const std::int64_t columns = shape[shape.rank() - 1];
      const auto count = static_cast<std::size_t>(shape.numel());
      const std::vector<float> x =
          testing::rounded_to(testing::random_uniform(seed++, count, -6.0f, 6.0f), dtype, stream);
      const std::vector<float> dL_dy = testing::rounded_to(testing::random_uniform(seed++, count), dtype, stream);
      const Tensor y = forward(kind, testing::storage_tensor(x, shape, dtype, stream), stream);
      const std::vector<float> y_values = testing::storage_values(y, stream);
      EXPECT_TRUE(testing::all_close(y_values, reference_forward(kind, testing::to_doubles(x), columns), tolerance));
      const Tensor dL_dx = backward(kind, testing::storage_tensor(dL_dy, shape, dtype, stream), y, stream);
      EXPECT_EQ(dL_dx.dtype(), dtype);
      EXPECT_TRUE(testing::all_close(
          testing::storage_values(dL_dx, stream),
          reference_backward(kind, testing::to_doubles(dL_dy), testing::to_doubles(y_values), columns), tolerance));
    }
  }
}

TEST_P(SoftmaxKinds, BackwardMatchesFiniteDifferences) {
  const Kind kind = GetParam();
  Stream stream;
  const Shape shape{3, 5};
  const std::vector<float> x = testing::random_uniform(7, 15, -2.0f, 2.0f);
  const std::vector<float> dL_dy = testing::random_uniform(8, 15);
  const Tensor y = forward(kind, testing::device_tensor(x, shape, stream), stream);
  const Tensor dL_dx = backward(kind, testing::device_tensor(dL_dy, shape, stream), y, stream);
  const std::vector<double> weights = testing::to_doubles(dL_dy);
  const std::vector<double> numerical = testing::numerical_gradient(
      [&](std::span<const double> input) {
        return testing::weighted_sum(reference_forward(kind, {input.begin(), input.end()}, 5), weights);
      },
      testing::to_doubles(x));
  EXPECT_TRUE(
      testing::all_close(dL_dx.to_vector<float>(stream), numerical, Tolerance{.abs_tol = 2e-6, .rel_tol = 1e-5}));
}

TEST_P(SoftmaxKinds, ExtremeLogitsStayFinite) {
  const Kind kind = GetParam();
  Stream stream;
  // Naive exp(x) overflows at 89 and underflows below -104; the max-subtracted form does not.
  const std::vector<float> x = {1e4f, -1e4f, 0.0f, 1e4f, -1e4f, -1e4f, 5e3f, -1e4f, 9999.0f};
  const Tensor y = forward(kind, testing::device_tensor(x, {3, 3}, stream), stream);
  EXPECT_TRUE(testing::all_close(y.to_vector<float>(stream), reference_forward(kind, testing::to_doubles(x), 3),
                                 Tolerance{.abs_tol = 1e-6, .rel_tol = 1e-6}));
}

TEST_P(SoftmaxKinds, NanLogitMakesItsRowNan) {
  const Kind kind = GetParam();
  Stream stream;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> x = {1.0f, nan, 2.0f, 1.0f, 2.0f, 3.0f};
  const std::vector<float> y =
      forward(kind, testing::device_tensor(x, {2, 3}, stream), stream).to_vector<float>(stream);
  for (int j = 0; j < 3; ++j) EXPECT_TRUE(std::isnan(y[static_cast<std::size_t>(j)])) << "column " << j;
  for (int j = 3; j < 6; ++j) EXPECT_TRUE(std::isfinite(y[static_cast<std::size_t>(j)])) << "column " << j;
}

TEST_P(SoftmaxKinds, RerunsAreBitIdentical) {
  const Kind kind = GetParam();
  Stream stream;
  const Shape shape{37, 45};
  const std::vector<float> x = testing::random_uniform(21, 37 * 45, -5.0f, 5.0f);
  const std::vector<float> dL_dy = testing::random_uniform(22, 37 * 45);
  const auto results = testing::run_with_schedule_seeds<std::vector<std::uint32_t>>([&] {
    const Tensor y = forward(kind, testing::device_tensor(x, shape, stream), stream);
    std::vector<float> values = y.to_vector<float>(stream);
    const std::vector<float> dL_dx =
        backward(kind, testing::device_tensor(dL_dy, shape, stream), y, stream).to_vector<float>(stream);
    values.insert(values.end(), dL_dx.begin(), dL_dx.end());
    return testing::bit_patterns(values);
  });
  for (std::size_t i = 1; i < results.size(); ++i) EXPECT_EQ(results[i], results[0]) << "rerun " << i;
}

TEST(Softmax, UniformRowsGiveExactlyOneOverC) {
  Stream stream;
  for (const std::int64_t columns : {1, 4, 32, 64, 1024}) {
    const std::vector<float> x(static_cast<std::size_t>(2 * columns), 3.0f);
    const Tensor y = softmax_forward(testing::device_tensor(x, {2, columns}, stream), stream);
    const std::vector<float> expected(x.size(), 1.0f / static_cast<float>(columns));
    EXPECT_TRUE(testing::all_equal(y.to_vector<float>(stream), expected)) << columns << " columns";
    // Softmax is invariant to a shift, and a uniform upstream gradient gives zero.
    const Tensor dL_dx = softmax_backward(testing::device_tensor(x, {2, columns}, stream), y, stream);
    EXPECT_TRUE(testing::all_equal(dL_dx.to_vector<float>(stream), std::vector<float>(x.size(), 0.0f)));
  }
}

TEST(LogSoftmax, SingleColumnIsZero) {
  Stream stream;
  const std::vector<float> x = {-3.0f, 0.5f, 1e4f};
  const Tensor y = log_softmax_forward(testing::device_tensor(x, {3, 1}, stream), stream);
  EXPECT_TRUE(testing::all_equal(y.to_vector<float>(stream), std::vector<float>{0.0f, 0.0f, 0.0f}));
}

TEST(Softmax, ArgumentErrorsNameTheOpAndShapes) {
  Stream stream;
  const Tensor x = testing::device_tensor(testing::random_uniform(1, 6), {2, 3}, stream);
  Tensor wrong_shape = Tensor::empty({3, 2}, DType::f32, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] { softmax_forward(x, wrong_shape, stream); }),
              HasSubstr("softmax: y must have shape (2, 3), got (3, 2)"));
  Tensor same = x;
  EXPECT_THAT(testing::invalid_argument_message([&] { log_softmax_forward(x, same, stream); }),
              HasSubstr("log_softmax: y (2, 3) overlaps x (2, 3)"));
  const Tensor integers = Tensor::zeros({2, 3}, DType::i32, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] { softmax_forward(integers, stream); }),
              HasSubstr("softmax: x must have dtype f32"));
  const Tensor scalar = Tensor::zeros({}, DType::f32, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] { softmax_forward(scalar, stream); }),
              HasSubstr("softmax: x needs at least one dimension and one element, got shape ()"));
  const Tensor empty_rows = Tensor::empty({0, 4}, DType::f32, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] { log_softmax_forward(empty_rows, stream); }),
              HasSubstr("got shape (0, 4)"));
  const Tensor dL_dy = Tensor::zeros({2, 4}, DType::f32, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] { softmax_backward(dL_dy, x, stream); }),
              HasSubstr("softmax: dL_dy must have shape (2, 3), got (2, 4)"));
  EXPECT_THAT(testing::invalid_argument_message([&] { softmax_forward(x.to_host(stream), stream); }),
              HasSubstr("softmax: x must be a device tensor"));
  // Mixed floating dtypes: named, with what to do.
  const Tensor bf16_x = x.to_dtype(DType::bf16, stream);
  Tensor f32_y = Tensor::empty({2, 3}, DType::f32, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] { softmax_forward(bf16_x, f32_y, stream); }),
              HasSubstr("softmax: y has dtype f32 but x has dtype bf16; the operands must share one dtype (cast one "
                        "with F::to_dtype, or run the model under strata::AutocastGuard)"));
  EXPECT_THAT(testing::invalid_argument_message([&] { log_softmax_backward(x, bf16_x, stream); }),
              HasSubstr("log_softmax: dL_dy has dtype f32 but y has dtype bf16"));
  Tensor f16_dx = Tensor::empty({2, 3}, DType::f16, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] { softmax_backward(bf16_x, bf16_x, f16_dx, stream); }),
              HasSubstr("softmax: dL_dx has dtype f16 but y has dtype bf16"));
}

}  // namespace
}  // namespace strata::kernels
