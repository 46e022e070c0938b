// F:: ops in f16 and bf16 storage and under autocast (strata/core/autocast.h): linear, softmax,
// log_softmax and cross_entropy through autograd. Under autocast, F::linear (and nn::Linear)
// runs in the autocast dtype and returns f32 gradients to f32 parameters; softmax and
// log_softmax run in f32; the cross-entropy loss is f32 with dL_dlogits in the logits'
// dtype. Outside autocast, ops run in their inputs' one dtype and refuse mixed ones. Every
// value is checked against the double reference of the inputs as rounded to the dtype, within
// the f32 bound plus the output's rounding.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "strata/core/autocast.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/layers/functional.h"
#include "strata/layers/modules.h"
#include "tests/kernels/device_values.h"
#include "tests/reference/linear_reference.h"
#include "tests/reference/softmax_reference.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"
#include "tests/support/storage_dtypes.h"

namespace strata {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
using testing::all_close;
using testing::random_storage;
using testing::rounded_doubles;
using testing::storage_doubles;
using testing::to_doubles;

class MixedPrecisionLinearSoftmaxLossTest : public testing::DeviceTest, public ::testing::WithParamInterface<DType> {};

INSTANTIATE_TEST_SUITE_P(ReducedDtypes, MixedPrecisionLinearSoftmaxLossTest,
                         ::testing::ValuesIn(testing::kReducedDtypes), testing::dtype_param_name);

// Leaves are f32 (master weights): a reduced activation that needs a gradient is an f32 leaf
// cast with F::to_dtype, whose node hands the leaf the dtype gradient converted to f32.
struct CastLeaf {
  Tensor leaf;        // f32, requires gradients
  Tensor activation;  // leaf cast to dtype
};
CastLeaf cast_leaf(std::uint64_t seed, const Shape& shape, DType dtype) {
  Tensor leaf = random_storage(seed, shape, DType::f32, true);
  Tensor activation = F::to_dtype(leaf, dtype);
  return {leaf, activation};
}

// Whether every value is exactly representable in dtype: a gradient computed in dtype and
// converted to f32 is.
::testing::AssertionResult representable_in(const Tensor& tensor, DType dtype) {
  const std::vector<float> values = testing::storage_values(tensor, current_stream());
  return testing::all_equal(values, testing::rounded_to(values, dtype, current_stream()));
}

// The f32 bound of these small sums plus one rounding to dtype.
testing::Tolerance tolerance_of(DType dtype) {
  return {.abs_tol = 1e-5, .rel_tol = 1e-5 + testing::storage_rel_tol(dtype)};
}

TEST_P(MixedPrecisionLinearSoftmaxLossTest, LinearUnderAutocastRunsInItsDtypeWithF32ParameterGradients) {
  const DType dtype = GetParam();
  const reference::LinearSizes sizes{.rows = 6, .in_features = 5, .out_features = 3};
  Tensor x = random_storage(1, {2, 3, 5}, DType::f32, true);
  Tensor weight = random_storage(2, {3, 5}, DType::f32, true);
  Tensor bias = random_storage(3, {3}, DType::f32, true);
  Tensor y;
  {
    AutocastGuard autocast(dtype);
    y = F::linear(x, weight, bias);
  }
  EXPECT_EQ(y.dtype(), dtype);
  EXPECT_EQ(y.shape(), (Shape{2, 3, 3}));
  // The op reads x, weight and bias as cast to dtype.
  const std::vector<double> x_read = rounded_doubles(x, dtype, current_stream());
  const std::vector<double> weight_read = rounded_doubles(weight, dtype, current_stream());
  EXPECT_TRUE(all_close(testing::storage_values(y, current_stream()),
                        reference::linear(x_read, weight_read, rounded_doubles(bias, dtype, current_stream()), sizes),
                        tolerance_of(dtype)));

  const Tensor dL_dy = random_storage(4, y.shape(), dtype);
  y.backward(dL_dy);
  // Gradients computed in dtype, then cast back to the f32 leaves by the casts' nodes.
  ASSERT_TRUE(x.grad().defined() && weight.grad().defined() && bias.grad().defined());
  EXPECT_EQ(x.grad().dtype(), DType::f32);
  EXPECT_EQ(weight.grad().dtype(), DType::f32);
  EXPECT_EQ(bias.grad().dtype(), DType::f32);
  const std::vector<double> dy = storage_doubles(dL_dy, current_stream());
  EXPECT_TRUE(all_close(x.grad().to_vector<float>(), reference::linear_backward_data(dy, weight_read, sizes),
                        tolerance_of(dtype)));
  EXPECT_TRUE(all_close(weight.grad().to_vector<float>(), reference::linear_backward_weight(dy, x_read, sizes),
                        tolerance_of(dtype)));
  EXPECT_TRUE(
      all_close(bias.grad().to_vector<float>(), reference::linear_backward_bias(dy, sizes), tolerance_of(dtype)));
}

TEST_P(MixedPrecisionLinearSoftmaxLossTest, LinearModuleKeepsF32MasterWeightsUnderAutocast) {
  const DType dtype = GetParam();
  nn::Linear linear(7, 4);
  EXPECT_EQ(linear.weight().dtype(), DType::f32);
  const Tensor x = random_storage(5, {9, 7}, DType::f32);
  Tensor y;
  {
    AutocastGuard autocast(dtype);
    y = linear(x);
  }
  EXPECT_EQ(y.dtype(), dtype);
  const reference::LinearSizes sizes{.rows = 9, .in_features = 7, .out_features = 4};
  const std::vector<double> x_read = rounded_doubles(x, dtype, current_stream());
  EXPECT_TRUE(all_close(testing::storage_values(y, current_stream()),
                        reference::linear(x_read, rounded_doubles(linear.weight(), dtype, current_stream()),
                                          rounded_doubles(linear.bias(), dtype, current_stream()), sizes),
                        tolerance_of(dtype)));
  const Tensor dL_dy = random_storage(6, y.shape(), dtype);
  y.backward(dL_dy);
  EXPECT_EQ(linear.weight().grad().dtype(), DType::f32);
  EXPECT_EQ(linear.bias().grad().dtype(), DType::f32);
  EXPECT_TRUE(all_close(linear.weight().grad().to_vector<float>(),
                        reference::linear_backward_weight(storage_doubles(dL_dy, current_stream()), x_read, sizes),
                        tolerance_of(dtype)));
}

TEST_P(MixedPrecisionLinearSoftmaxLossTest, LinearOutsideAutocastRunsInItsInputsDtypeAndRefusesMixedOnes) {
  const DType dtype = GetParam();
  const CastLeaf x = cast_leaf(7, {4, 5}, dtype);
  const CastLeaf weight = cast_leaf(8, {3, 5}, dtype);
  const CastLeaf bias = cast_leaf(9, {3}, dtype);
  Tensor y = F::linear(x.activation, weight.activation, bias.activation);
  EXPECT_EQ(y.dtype(), dtype);
  const Tensor dL_dy = random_storage(10, y.shape(), dtype);
  y.backward(dL_dy);
  const reference::LinearSizes sizes{.rows = 4, .in_features = 5, .out_features = 3};
  const std::vector<double> dy = storage_doubles(dL_dy, current_stream());
  EXPECT_TRUE(representable_in(x.leaf.grad(), dtype));
  EXPECT_TRUE(representable_in(weight.leaf.grad(), dtype));
  EXPECT_TRUE(representable_in(bias.leaf.grad(), dtype));
  EXPECT_TRUE(
      all_close(x.leaf.grad().to_vector<float>(),
                reference::linear_backward_data(dy, storage_doubles(weight.activation, current_stream()), sizes),
                tolerance_of(dtype)));
  EXPECT_TRUE(all_close(weight.leaf.grad().to_vector<float>(),
                        reference::linear_backward_weight(dy, storage_doubles(x.activation, current_stream()), sizes),
                        tolerance_of(dtype)));
  EXPECT_TRUE(all_close(bias.leaf.grad().to_vector<float>(), reference::linear_backward_bias(dy, sizes),
                        tolerance_of(dtype)));

  const Tensor f32_weight = random_storage(11, {3, 5}, DType::f32);
  EXPECT_THAT([&] { F::linear(x.activation, f32_weight, Tensor()); },
              ThrowsMessage<InvalidArgument>(HasSubstr(
                  fmt::format("linear: weight has dtype f32 but x has dtype {}; the operands must share one dtype "
                              "(cast one with F::to_dtype, or run the model under strata::AutocastGuard)",
                              dtype_name(dtype)))));
  // Under autocast the f32 weight is cast like the rest.
  AutocastGuard autocast(dtype);
  EXPECT_EQ(F::linear(x.activation, f32_weight, Tensor()).dtype(), dtype);
}

TEST_P(MixedPrecisionLinearSoftmaxLossTest, SoftmaxRunsInItsInputsDtypeAndInF32UnderAutocast) {
  const DType dtype = GetParam();
  const Shape shape{3, 11};
  for (const bool log : {false, true}) {
    SCOPED_TRACE(log ? "log_softmax" : "softmax");
    const auto op = [&](const Tensor& x) { return log ? F::log_softmax(x) : F::softmax(x); };
    const auto reference_of = [&](const std::vector<double>& x) {
      return log ? reference::log_softmax(x, 11) : reference::softmax(x, 11);
    };
    const auto reference_backward_of = [&](const std::vector<double>& dL_dy, const std::vector<double>& y) {
      return log ? reference::log_softmax_backward(dL_dy, y, 11) : reference::softmax_backward(dL_dy, y, 11);
    };
    CastLeaf x = cast_leaf(20, shape, dtype);
    const std::vector<double> x_values = storage_doubles(x.activation, current_stream());

    // Outside autocast: dtype in, dtype out, gradient computed in dtype.
    Tensor y = op(x.activation);
    EXPECT_EQ(y.dtype(), dtype);
    const std::vector<double> y_values = storage_doubles(y, current_stream());
    EXPECT_TRUE(all_close(testing::storage_values(y, current_stream()), reference_of(x_values), tolerance_of(dtype)));
    const Tensor dL_dy = random_storage(21, shape, dtype);
    y.backward(dL_dy);
    EXPECT_TRUE(representable_in(x.leaf.grad(), dtype));
    EXPECT_TRUE(all_close(x.leaf.grad().to_vector<float>(),
                          reference_backward_of(storage_doubles(dL_dy, current_stream()), y_values),
                          tolerance_of(dtype)));

    // Under autocast: computed in f32 from the same values, f32 out; the gradient goes back
    // through autocast's cast to dtype, then the test's cast to the f32 leaf.
    x.leaf.set_grad(Tensor());
    x.activation = F::to_dtype(x.leaf, dtype);  // a fresh cast: the first backward freed the last
    Tensor y_f32;
    {
      AutocastGuard autocast(dtype);
      y_f32 = op(x.activation);
      EXPECT_EQ(op(random_storage(22, shape, DType::f32)).dtype(), DType::f32);
    }
    EXPECT_EQ(y_f32.dtype(), DType::f32);
    EXPECT_TRUE(all_close(y_f32.to_vector<float>(), reference_of(x_values), {.abs_tol = 1e-6, .rel_tol = 1e-5}));
    const Tensor dL_dy_f32 = random_storage(23, shape, DType::f32);
    y_f32.backward(dL_dy_f32);
    EXPECT_TRUE(representable_in(x.leaf.grad(), dtype));
    EXPECT_TRUE(all_close(
        x.leaf.grad().to_vector<float>(),
        reference_backward_of(storage_doubles(dL_dy_f32, current_stream()), to_doubles(y_f32.to_vector<float>())),
        tolerance_of(dtype)));
  }
}

TEST_P(MixedPrecisionLinearSoftmaxLossTest, CrossEntropyOfReducedLogitsIsF32WithGradientsInTheirDtype) {
  const DType dtype = GetParam();
  const std::int64_t classes = 7;
  const CastLeaf logits = cast_leaf(30, {5, classes}, dtype);
  const std::vector<std::int64_t> target_values{0, 6, 3, -100, 2};
  const Tensor targets = testing::device_tensor(target_values, {5}, current_stream());
  const F::CrossEntropyParams params{.label_smoothing = 0.1f};
  Tensor loss;
  {
    AutocastGuard autocast(dtype);  // the loss runs on the logits as given, in f32
    loss = F::cross_entropy(logits.activation, targets, params);
  }
  EXPECT_EQ(loss.dtype(), DType::f32);
  const std::vector<double> logit_values = storage_doubles(logits.activation, current_stream());
  EXPECT_TRUE(all_close(loss.to_vector<float>(), reference::cross_entropy(logit_values, target_values, classes, params),
                        {.abs_tol = 1e-5, .rel_tol = 1e-5}));
  loss.backward();
  EXPECT_TRUE(representable_in(logits.leaf.grad(), dtype));  // dL_dlogits was computed in dtype
  EXPECT_TRUE(all_close(
      logits.leaf.grad().to_vector<float>(),
      reference::cross_entropy_backward(std::vector<double>{1.0}, logit_values, target_values, classes, params),
      {.abs_tol = 1e-6, .rel_tol = 1e-5 + testing::storage_rel_tol(dtype)}));
}

TEST_P(MixedPrecisionLinearSoftmaxLossTest, ClassifierHeadUnderAutocastGivesAnF32LossAndF32WeightGradients) {
  const DType dtype = GetParam();
  const std::int64_t rows = 8, features = 6, classes = 5;
  Tensor x = random_storage(40, {rows, features}, DType::f32);
  Tensor weight = random_storage(41, {classes, features}, DType::f32, true);
  Tensor bias = random_storage(42, {classes}, DType::f32, true);
  const std::vector<std::int64_t> target_values{4, 0, 1, 3, 2, 2, 0, 1};
  const Tensor targets = testing::device_tensor(target_values, {rows}, current_stream());
  Tensor logits, loss;
  {
    AutocastGuard autocast(dtype);
    logits = F::linear(x, weight, bias);
    loss = F::cross_entropy(logits, targets);
  }
  EXPECT_EQ(logits.dtype(), dtype);
  EXPECT_EQ(loss.dtype(), DType::f32);
  loss.backward();
  ASSERT_EQ(weight.grad().dtype(), DType::f32);
  // The reference from the logits the linear produced: dL_dlogits in double, rounded to dtype
  // as the kernel stores it, then dL_dweight = dL_dlogits^T x in double. An element of
  // dL_dlogits may round the other way than the kernel's f32 value: one unit in the last
  // place of dtype, times |x| <= 1, summed over the rows.
  const std::vector<float> dL_dlogits_f32 = [&] {
    const std::vector<double> exact = reference::cross_entropy_backward(
        std::vector<double>{1.0}, storage_doubles(logits, current_stream()), target_values, classes, {});
    return std::vector<float>(exact.begin(), exact.end());
  }();
  const std::vector<double> dL_dlogits = to_doubles(testing::rounded_to(dL_dlogits_f32, dtype, current_stream()));
  const reference::LinearSizes sizes{.rows = rows, .in_features = features, .out_features = classes};
  const std::vector<double> expected =
      reference::linear_backward_weight(dL_dlogits, rounded_doubles(x, dtype, current_stream()), sizes);
  double largest = 0.0;
  for (const double value : dL_dlogits) largest = std::max(largest, std::fabs(value));
  const double ulp = 2.0 * testing::storage_rel_tol(dtype);
  EXPECT_TRUE(all_close(weight.grad().to_vector<float>(), expected,
                        {.abs_tol = 1e-6 + ulp * largest * static_cast<double>(rows), .rel_tol = ulp}));
  EXPECT_TRUE(all_close(bias.grad().to_vector<float>(), reference::linear_backward_bias(dL_dlogits, sizes),
                        {.abs_tol = 1e-6 + ulp * largest * static_cast<double>(rows), .rel_tol = ulp}));
}

}  // namespace
}  // namespace strata
