// ReLU and GELU kernels against their double references, finite differences and PyTorch.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <span>
#include <limits>
#include <string>
#include <vector>

#include "strata/core/stream.h"
#include "strata/kernels/activations.h"
#include "tests/kernels/elementwise_test_support.h"
#include "tests/reference/elementwise_reference.h"
#include "tests/support/compare.h"
#include "tests/support/golden.h"
#include "tests/support/gradcheck.h"

namespace strata::kernels {
namespace {

using testing::all_close;
using testing::device_tensor;
using testing::doubles;
using testing::poisoned_tensor;
using testing::random_uniform;
using testing::Tolerance;

// Sizes around the float4 width (tails of 1 to 3), one element, a non-square 4-D shape and
// a large odd count.
const std::vector<Shape> kOddShapes = {Shape{1},          Shape{3},          Shape{5},     Shape{7},
                                       Shape{2, 3, 5, 7}, Shape{1, 1, 1, 1}, Shape{100003}};

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// ---- ReLU ------------------------------------------------------------------------------

TEST(Relu, ForwardAndBackwardMatchReferenceOnOddSizes) {
  const cudaStream_t stream = current_stream();
  std::uint64_t seed = 100;
  for (const Shape& shape : kOddShapes) {
    SCOPED_TRACE("shape " + shape.to_string());
    const auto count = static_cast<std::size_t>(shape.numel());
    const std::vector<float> x = random_uniform(seed++, count);
    const std::vector<float> dL_dy = random_uniform(seed++, count);
    const Tensor x_device = device_tensor(x, shape, stream);
    Tensor y = poisoned_tensor(shape, stream);
    relu_forward(x_device, y, {}, stream);
    EXPECT_TRUE(all_close(y.to_vector<float>(stream), reference::relu_forward(doubles(x)), Tolerance{}));

    Tensor dL_dx = poisoned_tensor(shape, stream);
    relu_backward(device_tensor(dL_dy, shape, stream), y, dL_dx, {}, stream);
    const std::vector<double> expected = reference::relu_backward(doubles(dL_dy), doubles(x));
    EXPECT_TRUE(all_close(dL_dx.to_vector<float>(stream), expected, Tolerance{}));
    // The saved input gives the same gradient as the saved output.
    Tensor dL_dx_from_x = poisoned_tensor(shape, stream);
    relu_backward(device_tensor(dL_dy, shape, stream), x_device, dL_dx_from_x, {}, stream);
    EXPECT_TRUE(all_close(dL_dx_from_x.to_vector<float>(stream), expected, Tolerance{}));
  }
}

TEST(Relu, ExactAtZeroNegativeZeroAndNaN) {
  const cudaStream_t stream = current_stream();
  const std::vector<float> x = {-2.0f, -1.0f, -0.0f, 0.0f, 1.0f, 2.0f, kNaN};
  const std::vector<float> dL_dy = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f, 7.0f};
  const Shape shape{7};
  const Tensor y = relu_forward(device_tensor(x, shape, stream), {}, stream);
  const std::vector<float> y_host = y.to_vector<float>(stream);
  EXPECT_TRUE(testing::all_equal(y_host, std::vector<float>{0, 0, -0.0f, 0, 1, 2, kNaN}));
  EXPECT_TRUE(std::signbit(y_host[2])) << "relu(-0) is -0, as in PyTorch";
  // The gradient at 0 is 0; NaN passes the gradient on (PyTorch's threshold_backward).
  const Tensor dL_dx = relu_backward(device_tensor(dL_dy, shape, stream), y, {}, stream);
  EXPECT_TRUE(testing::all_equal(dL_dx.to_vector<float>(stream), std::vector<float>{0, 0, 0, 0, 5, 6, 7}));
}

TEST(Relu, InPlaceForwardAndBackward) {
  const cudaStream_t stream = current_stream();
  const Shape shape{4, 9, 7};
  const std::vector<float> x = random_uniform(7, 252);
  const std::vector<float> dL_dy = random_uniform(8, 252);
  Tensor data = device_tensor(x, shape, stream);
  relu_forward(data, data, {}, stream);
  EXPECT_TRUE(all_close(data.to_vector<float>(stream), reference::relu_forward(doubles(x)), Tolerance{}));
  Tensor gradient = device_tensor(dL_dy, shape, stream);
  relu_backward(gradient, data, gradient, {}, stream);
  EXPECT_TRUE(
      all_close(gradient.to_vector<float>(stream), reference::relu_backward(doubles(dL_dy), doubles(x)), Tolerance{}));
}

// Views one float past an aligned start cannot use float4: the scalar path must cover all.
TEST(Relu, UnalignedViews) {
  const cudaStream_t stream = current_stream();
  const std::vector<float> x = random_uniform(11, 1001);
  const Tensor x_view = device_tensor(x, Shape{1001}, stream).narrow(0, 1, 1000);
  Tensor y_storage = poisoned_tensor(Shape{1001}, stream);
  Tensor y_view = y_storage.narrow(0, 1, 1000);
  relu_forward(x_view, y_view, {}, stream);
  std::vector<double> expected = reference::relu_forward(doubles(x));
  expected[0] = std::numeric_limits<double>::quiet_NaN();  // never written: still the poison
  const std::vector<float> actual = y_storage.to_vector<float>(stream);
  EXPECT_TRUE(all_close(std::span(actual).subspan(1), std::span<const double>(expected).subspan(1), Tolerance{}));
  EXPECT_EQ(std::bit_cast<std::uint32_t>(actual[0]), testing::kPoisonBits) << "wrote before the view";
}

// Views at an aligned start take float4 for whole groups; the tail must stop at the view's
// end, leaving the guard elements after it untouched.
TEST(Relu, WritesNothingPastTheEnd) {
  const cudaStream_t stream = current_stream();
  for (const std::int64_t n : testing::kTailSizes) {
    SCOPED_TRACE("size " + std::to_string(n));
    const Shape storage_shape{n + testing::kGuardElements};
    const std::vector<float> x = random_uniform(static_cast<std::uint64_t>(30 + n), static_cast<std::size_t>(n));
    Tensor y_storage = poisoned_tensor(storage_shape, stream);
    Tensor y = y_storage.narrow(0, 0, n);
    relu_forward(device_tensor(x, Shape{n}, stream), y, {}, stream);
    Tensor dL_dx_storage = poisoned_tensor(storage_shape, stream);
    Tensor dL_dx = dL_dx_storage.narrow(0, 0, n);
    relu_backward(device_tensor(x, Shape{n}, stream), y, dL_dx, {}, stream);
    for (const Tensor* storage : {&y_storage, &dL_dx_storage}) {
      const std::vector<float> values = storage->to_vector<float>(stream);
      EXPECT_TRUE(all_close(std::span(values).first(static_cast<std::size_t>(n)),
                            storage == &y_storage ? reference::relu_forward(doubles(x))
                                                  : reference::relu_backward(doubles(x), doubles(x)),
                            Tolerance{}));
      EXPECT_TRUE(testing::all_poison(std::span(values).subspan(static_cast<std::size_t>(n))));
    }
  }
}

TEST(Relu, BackwardMatchesFiniteDifferences) {
  const cudaStream_t stream = current_stream();
  const Shape shape{3, 5};
  const std::vector<float> x = testing::random_away_from_zero(21, 15, 0.1f, 1.0f);  // no kink within the step
  const std::vector<float> dL_dy = random_uniform(22, 15);
  const std::vector<double> weights = doubles(dL_dy);
  const std::vector<double> numerical = testing::numerical_gradient(
      [&](std::span<const double> input) { return testing::weighted_sum(reference::relu_forward(input), weights); },
      doubles(x));
  const Tensor x_device = device_tensor(x, shape, stream);
  const Tensor dL_dx = relu_backward(device_tensor(dL_dy, shape, stream), x_device, {}, stream);
  EXPECT_TRUE(all_close(dL_dx.to_vector<float>(stream), numerical, Tolerance{.abs_tol = 1e-6, .rel_tol = 1e-6}));
}

TEST(Relu, MatchesPyTorch) {
  const cudaStream_t stream = current_stream();
  for (const testing::GoldenCase& golden : testing::read_golden("elementwise.txt")) {
    if (golden.name != "relu") continue;
    const testing::GoldenTensor& x = golden.tensor_of("x");
    const Shape shape(std::span<const std::int64_t>(x.shape));
    const Tensor x_device = device_tensor(x.values, shape, stream);
    Tensor y = poisoned_tensor(shape, stream);
    relu_forward(x_device, y, {}, stream);
    EXPECT_TRUE(testing::all_equal(y.to_vector<float>(stream), golden.tensor_of("y").values));
    Tensor dL_dx = poisoned_tensor(shape, stream);
    relu_backward(device_tensor(golden.tensor_of("dL_dy").values, shape, stream), y, dL_dx, {}, stream);
    EXPECT_TRUE(testing::all_equal(dL_dx.to_vector<float>(stream), golden.tensor_of("dL_dx").values));
    return;
  }
  FAIL() << "elementwise.txt has no relu case";
}

TEST(Relu, EmptyTensorIsANoOp) {
  const cudaStream_t stream = current_stream();
  const Tensor x = Tensor::empty(Shape{2, 0, 3}, DType::f32, stream);
  Tensor y = Tensor::empty(Shape{2, 0, 3}, DType::f32, stream);
  EXPECT_NO_THROW(relu_forward(x, y, {}, stream));
  EXPECT_NO_THROW(relu_backward(x, x, y, {}, stream));
}

TEST(Relu, BadArgumentsNameTheOpAndShapes) {
  const cudaStream_t stream = current_stream();
  const Tensor x = Tensor::zeros(Shape{2, 3}, DType::f32, stream);
  Tensor wrong = Tensor::empty(Shape{3, 2}, DType::f32, stream);
  EXPECT_NE(testing::invalid_argument_message([&] {
              relu_forward(x, wrong, {}, stream);
            }).find("relu_forward: y must have shape (2, 3), got (3, 2)"),
            std::string::npos);
  EXPECT_NE(testing::invalid_argument_message([&] {
              relu_backward(x, wrong, wrong, {}, stream);
            }).find("relu_backward: y must have shape (2, 3), got (3, 2)"),
            std::string::npos);
  Tensor ints = Tensor::empty(Shape{2, 3}, DType::i32, stream);
  EXPECT_NE(testing::invalid_argument_message([&] { relu_forward(x, ints, {}, stream); }).find("dtype f32"),
            std::string::npos);
  const Tensor host = Tensor::empty_host(Shape{2, 3}, DType::f32);
  EXPECT_NE(testing::invalid_argument_message([&] {
              relu_forward(host, wrong, {}, stream);
            }).find("relu_forward: x must be a device tensor"),
            std::string::npos);
  // In place is the same tensor; a shifted view of it is a race, and rejected.
  const Tensor storage = Tensor::zeros(Shape{8}, DType::f32, stream);
  Tensor shifted = storage.narrow(0, 1, 4);
  EXPECT_NE(testing::invalid_argument_message([&] {
              relu_forward(storage.narrow(0, 0, 4), shifted, {}, stream);
            }).find("relu_forward: y (4) overlaps x (4)"),
            std::string::npos);
}

// ---- GELU ------------------------------------------------------------------------------

const GeluApproximation kGeluForms[] = {GeluApproximation::none, GeluApproximation::tanh};

std::string form_name(GeluApproximation form) { return form == GeluApproximation::tanh ? "tanh" : "none"; }

// Float evaluation of erfc, exp and tanh-by-sigmoid against a double reference: a few ulp,
// and absolute slack where the result is tiny after cancellation in the reference.
constexpr Tolerance kGeluTolerance{.abs_tol = 1e-6, .rel_tol = 1e-5};

TEST(Gelu, ForwardAndBackwardMatchReferenceOnOddSizes) {
  const cudaStream_t stream = current_stream();
  for (const GeluApproximation form : kGeluForms) {
    std::uint64_t seed = 300;
    for (const Shape& shape : kOddShapes) {
      SCOPED_TRACE("form " + form_name(form) + ", shape " + shape.to_string());
      const auto count = static_cast<std::size_t>(shape.numel());
      const std::vector<float> x = random_uniform(seed++, count, -8.0f, 8.0f);
      const std::vector<float> dL_dy = random_uniform(seed++, count);
      const bool tanh_form = form == GeluApproximation::tanh;
      const Tensor x_device = device_tensor(x, shape, stream);
      Tensor y = poisoned_tensor(shape, stream);
      gelu_forward(x_device, y, {.approximation = form}, stream);
      EXPECT_TRUE(
          all_close(y.to_vector<float>(stream), reference::gelu_forward(doubles(x), tanh_form), kGeluTolerance));
      Tensor dL_dx = poisoned_tensor(shape, stream);
      gelu_backward(device_tensor(dL_dy, shape, stream), x_device, dL_dx, {.approximation = form}, stream);
      EXPECT_TRUE(all_close(dL_dx.to_vector<float>(stream),
                            reference::gelu_backward(doubles(dL_dy), doubles(x), tanh_form), kGeluTolerance));
    }
  }
}

// Large |x|: the forms tend to x and 0, the derivatives to 1 and 0, with no NaN even where
// x^2 and x^3 overflow float (PyTorch's tanh-form backward gives NaN beyond ~1e19).
TEST(Gelu, LargeMagnitudesGiveTheLimits) {
  const cudaStream_t stream = current_stream();
  const std::vector<float> x = {-3e38f, -1e20f, -1e4f, -40.0f, -12.0f, 12.0f, 40.0f, 1e4f, 1e20f, 3e38f};
  const std::vector<float> dL_dy(x.size(), 1.0f);
  const Shape shape{static_cast<std::int64_t>(x.size())};
  for (const GeluApproximation form : kGeluForms) {
    SCOPED_TRACE("form " + form_name(form));
    const bool tanh_form = form == GeluApproximation::tanh;
    const Tensor x_device = device_tensor(x, shape, stream);
    const Tensor y = gelu_forward(x_device, {.approximation = form}, stream);
    EXPECT_TRUE(all_close(y.to_vector<float>(stream), reference::gelu_forward(doubles(x), tanh_form), kGeluTolerance));
    const Tensor dL_dx = gelu_backward(device_tensor(dL_dy, shape, stream), x_device, {.approximation = form}, stream);
    EXPECT_TRUE(
        all_close(dL_dx.to_vector<float>(stream), std::vector<double>{0, 0, 0, 0, 0, 1, 1, 1, 1, 1}, kGeluTolerance));
  }
}

TEST(Gelu, NaNPropagatesAndZeroIsExact) {
  const cudaStream_t stream = current_stream();
  const std::vector<float> x = {kNaN, 0.0f};
  const std::vector<float> dL_dy = {1.0f, 1.0f};
  for (const GeluApproximation form : kGeluForms) {
    SCOPED_TRACE("form " + form_name(form));
    const Tensor x_device = device_tensor(x, Shape{2}, stream);
    const Tensor y = gelu_forward(x_device, {.approximation = form}, stream);
    EXPECT_TRUE(testing::all_equal(y.to_vector<float>(stream), std::vector<float>{kNaN, 0.0f}));
    const Tensor dL_dx =
        gelu_backward(device_tensor(dL_dy, Shape{2}, stream), x_device, {.approximation = form}, stream);
    EXPECT_TRUE(testing::all_equal(dL_dx.to_vector<float>(stream), std::vector<float>{kNaN, 0.5f}));
  }
}

TEST(Gelu, BackwardMatchesFiniteDifferences) {
  const cudaStream_t stream = current_stream();
  const Shape shape{2, 3, 4};
  const std::vector<float> x = random_uniform(41, 24, -4.0f, 4.0f);
  const std::vector<float> dL_dy = random_uniform(42, 24);
  const std::vector<double> weights = doubles(dL_dy);
  for (const GeluApproximation form : kGeluForms) {
    SCOPED_TRACE("form " + form_name(form));
    const bool tanh_form = form == GeluApproximation::tanh;
    const std::vector<double> numerical = testing::numerical_gradient(
        [&](std::span<const double> input) {
          return testing::weighted_sum(reference::gelu_forward(input, tanh_form), weights);
        },
        doubles(x));
    const Tensor dL_dx = gelu_backward(device_tensor(dL_dy, shape, stream), device_tensor(x, shape, stream),
                                       {.approximation = form}, stream);
    EXPECT_TRUE(all_close(dL_dx.to_vector<float>(stream), numerical, Tolerance{.abs_tol = 1e-6, .rel_tol = 1e-5}));
  }
}

TEST(Gelu, InPlaceForwardAndBackward) {
  const cudaStream_t stream = current_stream();
  const Shape shape{5, 13};
  const std::vector<float> x = random_uniform(51, 65, -5.0f, 5.0f);
  const std::vector<float> dL_dy = random_uniform(52, 65);
  for (const GeluApproximation form : kGeluForms) {
    SCOPED_TRACE("form " + form_name(form));
    const bool tanh_form = form == GeluApproximation::tanh;
    const Tensor x_device = device_tensor(x, shape, stream);
    Tensor gradient = device_tensor(dL_dy, shape, stream);
    gelu_backward(gradient, x_device, gradient, {.approximation = form}, stream);
    EXPECT_TRUE(all_close(gradient.to_vector<float>(stream),
                          reference::gelu_backward(doubles(dL_dy), doubles(x), tanh_form), kGeluTolerance));
    Tensor data = device_tensor(x, shape, stream);
    gelu_forward(data, data, {.approximation = form}, stream);
    EXPECT_TRUE(
        all_close(data.to_vector<float>(stream), reference::gelu_forward(doubles(x), tanh_form), kGeluTolerance));
  }
}

TEST(Gelu, MatchesPyTorch) {
  const cudaStream_t stream = current_stream();
  int cases = 0;
  for (const testing::GoldenCase& golden : testing::read_golden("elementwise.txt")) {
    if (golden.name != "gelu_none" && golden.name != "gelu_tanh") continue;
    SCOPED_TRACE("case " + golden.name);
    ++cases;
    const GeluParams params{.approximation =
                                golden.int_of("tanh") != 0 ? GeluApproximation::tanh : GeluApproximation::none};
    const testing::GoldenTensor& x = golden.tensor_of("x");
    const Shape shape(std::span<const std::int64_t>(x.shape));
    const Tensor x_device = device_tensor(x.values, shape, stream);
    Tensor y = poisoned_tensor(shape, stream);
    gelu_forward(x_device, y, params, stream);
    const std::vector<float>& y_torch = golden.tensor_of("y").values;
    EXPECT_TRUE(
        all_close(y.to_vector<float>(stream), std::vector<double>(y_torch.begin(), y_torch.end()), kGeluTolerance));
    Tensor dL_dx = poisoned_tensor(shape, stream);
    gelu_backward(device_tensor(golden.tensor_of("dL_dy").values, shape, stream), x_device, dL_dx, params, stream);
    const std::vector<float>& dL_dx_torch = golden.tensor_of("dL_dx").values;
    EXPECT_TRUE(all_close(dL_dx.to_vector<float>(stream), std::vector<double>(dL_dx_torch.begin(), dL_dx_torch.end()),
                          kGeluTolerance));
  }
  EXPECT_EQ(cases, 2) << "elementwise.txt should have gelu_none and gelu_tanh";
}

TEST(Gelu, BadArgumentsNameTheOpAndShapes) {
  const cudaStream_t stream = current_stream();
  const Tensor x = Tensor::zeros(Shape{4, 5}, DType::f32, stream);
  Tensor wrong = Tensor::empty(Shape{5, 4}, DType::f32, stream);
  EXPECT_NE(testing::invalid_argument_message([&] {
              gelu_forward(x, wrong, {}, stream);
            }).find("gelu_forward: y must have shape (4, 5), got (5, 4)"),
            std::string::npos);
  EXPECT_NE(testing::invalid_argument_message([&] {
              gelu_backward(x, wrong, wrong, {}, stream);
            }).find("gelu_backward: x must have shape (4, 5), got (5, 4)"),
            std::string::npos);
  EXPECT_NE(testing::invalid_argument_message([&] {
              gelu_backward(x, Tensor(), wrong, {}, stream);
            }).find("gelu_backward: x is an undefined tensor"),
            std::string::npos);
}

// ---- f16 and bf16 ----------------------------------------------------------------------

class ReducedActivations : public ::testing::TestWithParam<DType> {};

// ReLU only selects, so it is exact in any dtype.
TEST_P(ReducedActivations, ReluIsExact) {
  const DType dtype = GetParam();
  const cudaStream_t stream = current_stream();
  std::uint64_t seed = 500;
  for (const Shape& shape : testing::kReducedShapes) {
    SCOPED_TRACE("shape " + shape.to_string());
    const auto count = static_cast<std::size_t>(shape.numel());
    const testing::RoundedTensor x =
        testing::rounded_device(random_uniform(seed++, count, -4, 4), shape, dtype, stream);
    const testing::RoundedTensor dL_dy = testing::rounded_device(random_uniform(seed++, count), shape, dtype, stream);
    Tensor y = testing::poisoned_storage(shape, dtype, stream);
    relu_forward(x.tensor, y, {}, stream);
    EXPECT_EQ(y.dtype(), dtype);
    EXPECT_TRUE(all_close(testing::storage_values(y, stream), reference::relu_forward(doubles(x.values)), Tolerance{}));
    Tensor dL_dx = testing::poisoned_storage(shape, dtype, stream);
    relu_backward(dL_dy.tensor, y, dL_dx, {}, stream);
    EXPECT_TRUE(all_close(testing::storage_values(dL_dx, stream),
                          reference::relu_backward(doubles(dL_dy.values), doubles(x.values)), Tolerance{}));
    // The allocating forms keep the dtype.
    EXPECT_EQ(relu_forward(x.tensor, {}, stream).dtype(), dtype);
    EXPECT_EQ(relu_backward(dL_dy.tensor, y, {}, stream).dtype(), dtype);
  }
}

// Computed in f32 from the rounded inputs and rounded once: the f32 bound plus one rounding.
TEST_P(ReducedActivations, GeluWithinOneRoundingOfTheReference) {
  const DType dtype = GetParam();
  const cudaStream_t stream = current_stream();
  const Tolerance tolerance = testing::storage_tolerance(dtype, kGeluTolerance);
  for (const GeluApproximation form : kGeluForms) {
    std::uint64_t seed = 600;
    const bool tanh_form = form == GeluApproximation::tanh;
    for (const Shape& shape : testing::kReducedShapes) {
      SCOPED_TRACE("form " + form_name(form) + ", shape " + shape.to_string());
      const auto count = static_cast<std::size_t>(shape.numel());
      const testing::RoundedTensor x =
          testing::rounded_device(random_uniform(seed++, count, -8, 8), shape, dtype, stream);
      const testing::RoundedTensor dL_dy = testing::rounded_device(random_uniform(seed++, count), shape, dtype, stream);
      Tensor y = testing::poisoned_storage(shape, dtype, stream);
      gelu_forward(x.tensor, y, {.approximation = form}, stream);
      EXPECT_TRUE(all_close(testing::storage_values(y, stream), reference::gelu_forward(doubles(x.values), tanh_form),
                            tolerance));
      Tensor dL_dx = testing::poisoned_storage(shape, dtype, stream);
      gelu_backward(dL_dy.tensor, x.tensor, dL_dx, {.approximation = form}, stream);
      EXPECT_TRUE(all_close(testing::storage_values(dL_dx, stream),
                            reference::gelu_backward(doubles(dL_dy.values), doubles(x.values), tanh_form),
                            tolerance));
    }
  }
}

// A view one element past an aligned start takes the scalar path throughout, an aligned one
// the 16-byte path and a tail; neither writes outside the view.
TEST_P(ReducedActivations, ViewsWriteOnlyTheirElements) {
  const DType dtype = GetParam();
  const cudaStream_t stream = current_stream();
  for (const std::int64_t start : {0, 1}) {
    for (const std::int64_t n : {std::int64_t{3}, std::int64_t{8}, std::int64_t{13}}) {
      SCOPED_TRACE("start " + std::to_string(start) + ", size " + std::to_string(n));
      const Shape storage_shape{start + n + testing::kGuardElements};
      const testing::RoundedTensor x = testing::rounded_device(
          random_uniform(static_cast<std::uint64_t>(40 + n), static_cast<std::size_t>(n), -2, 2), Shape{n}, dtype,
          stream);
      Tensor y_storage = testing::poisoned_storage(storage_shape, dtype, stream);
      Tensor y = y_storage.narrow(0, start, n);
      gelu_forward(x.tensor, y, {}, stream);
      const std::vector<float> actual = testing::storage_values(y_storage, stream);
      const std::vector<double> expected = reference::gelu_forward(doubles(x.values), false);
      for (std::int64_t i = 0; i < storage_shape[0]; ++i) {
        const bool inside = i >= start && i < start + n;
        if (inside) {
          EXPECT_NEAR(actual[static_cast<std::size_t>(i)], expected[static_cast<std::size_t>(i - start)],
                      1e-6 + 0x1p-8 * std::abs(expected[static_cast<std::size_t>(i - start)]))
              << "element " << i;
        } else {
          EXPECT_TRUE(std::isnan(actual[static_cast<std::size_t>(i)])) << "element " << i << " outside the view";
        }
      }
    }
  }
}

TEST_P(ReducedActivations, MismatchedDtypesNameBothOperands) {
  const DType dtype = GetParam();
  const cudaStream_t stream = current_stream();
  const Tensor reduced = Tensor::zeros(Shape{2, 3}, dtype, stream);
  const Tensor f32 = Tensor::zeros(Shape{2, 3}, DType::f32, stream);
  Tensor out = Tensor::empty(Shape{2, 3}, dtype, stream);
  const std::string name(dtype_name(dtype));
  const std::string forward = testing::invalid_argument_message([&] { relu_forward(f32, out, {}, stream); });
  EXPECT_NE(forward.find("relu_forward: y has dtype " + name + " but x has dtype f32"), std::string::npos) << forward;
  EXPECT_NE(forward.find("F::to_dtype"), std::string::npos) << forward;
  const std::string backward =
      testing::invalid_argument_message([&] { gelu_backward(reduced, f32, out, {}, stream); });
  EXPECT_NE(backward.find("gelu_backward: x has dtype f32 but dL_dy has dtype " + name), std::string::npos) << backward;
  const Tensor ints = Tensor::zeros(Shape{2, 3}, DType::i32, stream);
  EXPECT_NE(testing::invalid_argument_message([&] { relu_forward(ints, {}, stream); })
                .find("relu_forward: x must have dtype f32, f16 or bf16"),
            std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(F16AndBf16, ReducedActivations, ::testing::ValuesIn(testing::kReducedDtypes),
                         testing::dtype_param_name);

}  // namespace
}  // namespace strata::kernels
