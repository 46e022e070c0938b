// The element-wise ops of the functional API through autograd: activations, softmax,
// dropout, add, mul, cat and flatten. Forwards and the gradients backward() leaves in
// grad() against the double references of tests/reference/, which nodes are recorded and
// when, accumulation, dropout's use of the generator, a chain of ops, and the errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "strata/core/autograd.h"
#include "strata/core/errors.h"
#include "strata/core/generator.h"
#include "strata/core/stream.h"
#include "strata/layers/functional.h"
#include "tests/kernels/device_values.h"
#include "tests/reference/elementwise_reference.h"
#include "tests/reference/softmax_reference.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"

namespace strata::F {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
using testing::all_close;
using testing::all_equal;
using testing::random_uniform;
using testing::to_doubles;
using testing::Tolerance;
using FunctionalElementwiseTest = testing::DeviceTest;

// Float arithmetic (erf, exp, sums over a row) against double.
constexpr Tolerance kTolerance{.abs_tol = 1e-6, .rel_tol = 1e-5};

// (N, C, H, W) with rows of 7 for the softmaxes, and 210 elements: not a multiple of 4.
const Shape kShape{2, 3, 5, 7};
constexpr std::int64_t kColumns = 7;

Tensor device_values(const std::vector<float>& values, const Shape& shape) {
  return testing::device_tensor(values, shape, current_stream());
}

// A leaf that requires gradients, as a parameter or an input being optimised would.
Tensor leaf(const std::vector<float>& values, const Shape& shape) {
  return device_values(values, shape).set_requires_grad();
}

std::vector<float> random_values(std::uint64_t seed, const Shape& shape, float low = -1.0f, float high = 1.0f) {
  return random_uniform(seed, static_cast<std::size_t>(shape.numel()), low, high);
}

std::vector<double> scaled(std::span<const double> values, double factor) {
  std::vector<double> result;
  for (const double value : values) result.push_back(factor * value);
  return result;
}

// ---- activations and softmax ----------------------------------------------------------

// One single-input op, its node's name and its double references.
struct UnaryCase {
  std::string node_name;
  std::function<Tensor(const Tensor&)> forward;
  std::function<std::vector<double>(std::span<const double> x)> reference_forward;
  std::function<std::vector<double>(std::span<const double> x, std::span<const double> dL_dy)> reference_backward;
};

std::vector<UnaryCase> unary_cases() {
  return {
      {"ReluBackward", [](const Tensor& x) { return relu(x); },
       [](std::span<const double> x) { return reference::relu_forward(x); },
       [](std::span<const double> x, std::span<const double> dL_dy) { return reference::relu_backward(dL_dy, x); }},
      {"GeluBackward", [](const Tensor& x) { return gelu(x); },
       [](std::span<const double> x) { return reference::gelu_forward(x, /*tanh_form=*/false); },
       [](std::span<const double> x, std::span<const double> dL_dy) {
         return reference::gelu_backward(dL_dy, x, /*tanh_form=*/false);
       }},
      {"GeluBackward", [](const Tensor& x) { return gelu(x, GeluApproximation::tanh); },
       [](std::span<const double> x) { return reference::gelu_forward(x, /*tanh_form=*/true); },
       [](std::span<const double> x, std::span<const double> dL_dy) {
         return reference::gelu_backward(dL_dy, x, /*tanh_form=*/true);
       }},
      {"SoftmaxBackward", [](const Tensor& x) { return softmax(x); },
       [](std::span<const double> x) { return reference::softmax(x, kColumns); },
       [](std::span<const double> x, std::span<const double> dL_dy) {
         return reference::softmax_backward(dL_dy, reference::softmax(x, kColumns), kColumns);
       }},
      {"LogSoftmaxBackward", [](const Tensor& x) { return log_softmax(x); },
       [](std::span<const double> x) { return reference::log_softmax(x, kColumns); },
       [](std::span<const double> x, std::span<const double> dL_dy) {
         return reference::log_softmax_backward(dL_dy, reference::log_softmax(x, kColumns), kColumns);
       }},
  };
}

TEST_F(FunctionalElementwiseTest, UnaryOpsMatchTheReferences) {
  std::uint64_t seed = 100;
  for (const UnaryCase& op : unary_cases()) {
    SCOPED_TRACE(op.node_name);
    const std::vector<float> x_values = random_values(seed++, kShape, -3.0f, 3.0f);
    const std::vector<float> dL_dy_values = random_values(seed++, kShape);
    const Tensor x = leaf(x_values, kShape);
    const Tensor y = op.forward(x);
    ASSERT_EQ(y.shape(), kShape);
    EXPECT_TRUE(all_close(y.to_vector<float>(), op.reference_forward(to_doubles(x_values)), kTolerance));
    EXPECT_TRUE(y.requires_grad());
    ASSERT_NE(y.grad_fn(), nullptr);
    EXPECT_EQ(y.grad_fn()->name(), op.node_name);

    y.backward(device_values(dL_dy_values, kShape));
    ASSERT_TRUE(x.grad().defined());
    EXPECT_TRUE(all_close(x.grad().to_vector<float>(),
                          op.reference_backward(to_doubles(x_values), to_doubles(dL_dy_values)), kTolerance));
  }
}

TEST_F(FunctionalElementwiseTest, UnaryOpsRecordNothingWithoutGradients) {
  std::uint64_t seed = 200;
  for (const UnaryCase& op : unary_cases()) {
    SCOPED_TRACE(op.node_name);
    const std::vector<float> x_values = random_values(seed++, kShape);
    const Tensor y = op.forward(device_values(x_values, kShape));
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
    EXPECT_TRUE(all_close(y.to_vector<float>(), op.reference_forward(to_doubles(x_values)), kTolerance));

    const Tensor x = leaf(x_values, kShape);
    autograd::NoGradGuard no_grad;
    const Tensor y_no_grad = op.forward(x);
    EXPECT_FALSE(y_no_grad.requires_grad());
    EXPECT_EQ(y_no_grad.grad_fn(), nullptr);
  }
}

TEST_F(FunctionalElementwiseTest, UnaryGradientsAccumulateAcrossBackwardCalls) {
  std::uint64_t seed = 300;
  for (const UnaryCase& op : unary_cases()) {
    SCOPED_TRACE(op.node_name);
    const Tensor x = leaf(random_values(seed++, kShape), kShape);
    const Tensor dL_dy = device_values(random_values(seed++, kShape), kShape);
    const Tensor y = op.forward(x);
    y.backward(dL_dy, current_stream(), {.retain_graph = true});
    const std::vector<float> once = x.grad().to_vector<float>();
    y.backward(dL_dy);
    std::vector<float> doubled;
    for (const float value : once) doubled.push_back(2.0f * value);
    EXPECT_TRUE(all_equal(x.grad().to_vector<float>(), doubled));
  }
}

// ---- dropout ---------------------------------------------------------------------------

TEST_F(FunctionalElementwiseTest, DropoutDrawsItsMasksFromTheDefaultGenerator) {
  constexpr float p = 0.3f;
  const auto count = static_cast<std::size_t>(kShape.numel());
  const std::vector<float> x_values = random_values(400, kShape);
  const std::vector<float> dL_dy_values = random_values(401, kShape);
  const Tensor x = leaf(x_values, kShape);

  manual_seed(1234);
  const GeneratorState first_state = default_generator().state();
  const Tensor y = dropout(x, p, /*training=*/true);
  const GeneratorState second_state = default_generator().state();
  EXPECT_EQ(second_state.seed, first_state.seed);
  EXPECT_GE(second_state.offset, first_state.offset + count) << "the offset advances past the words used";
  const std::vector<std::uint8_t> mask = reference::dropout_mask(first_state.seed, first_state.offset, count, p);
  EXPECT_TRUE(all_close(y.to_vector<float>(), reference::dropout_forward(to_doubles(x_values), mask, p), kTolerance));
  ASSERT_NE(y.grad_fn(), nullptr);
  EXPECT_EQ(y.grad_fn()->name(), "DropoutBackward");

  // The next call draws the next words: a different mask.
  const Tensor y_next = dropout(x, p, /*training=*/true);
  const std::vector<std::uint8_t> next_mask =
      reference::dropout_mask(second_state.seed, second_state.offset, count, p);
  EXPECT_NE(next_mask, mask);
  EXPECT_TRUE(
      all_close(y_next.to_vector<float>(), reference::dropout_forward(to_doubles(x_values), next_mask, p), kTolerance));

  // The same seed again: the same mask, bit for bit.
  manual_seed(1234);
  EXPECT_TRUE(all_equal(dropout(x, p, /*training=*/true).to_vector<float>(), y.to_vector<float>()));

  // The gradient is dL_dy * mask / (1 - p).
  y.backward(device_values(dL_dy_values, kShape));
  EXPECT_TRUE(all_close(x.grad().to_vector<float>(), reference::dropout_backward(to_doubles(dL_dy_values), mask, p),
                        kTolerance));
}

TEST_F(FunctionalElementwiseTest, DropoutInEvalModeOrWithPZeroReturnsXItself) {
  const Tensor x = leaf(random_values(410, kShape), kShape);
  manual_seed(5);
  const GeneratorState state = default_generator().state();
  for (const Tensor& y : {dropout(x, 0.5f, /*training=*/false), dropout(x, 0.0f, /*training=*/true)}) {
    EXPECT_EQ(y.data_ptr(), x.data_ptr());
    EXPECT_EQ(y.grad_fn(), nullptr) << "no node: x itself, with x's autograd state";
    EXPECT_TRUE(y.requires_grad());
  }
  EXPECT_EQ(default_generator().state(), state) << "no words drawn";
}

TEST_F(FunctionalElementwiseTest, DropoutWithPOneZeroesEverything) {
  const Tensor x = leaf(random_values(420, kShape), kShape);
  const Tensor y = dropout(x, 1.0f, /*training=*/true);
  const std::vector<double> zeros(static_cast<std::size_t>(kShape.numel()), 0.0);
  EXPECT_TRUE(all_close(y.to_vector<float>(), zeros, Tolerance{}));
  y.backward(device_values(random_values(421, kShape), kShape));
  EXPECT_TRUE(all_close(x.grad().to_vector<float>(), zeros, Tolerance{}));
}

TEST_F(FunctionalElementwiseTest, DropoutWithoutGradientsRecordsNothing) {
  const Tensor y = dropout(device_values(random_values(430, kShape), kShape), 0.5f, /*training=*/true);
  EXPECT_FALSE(y.requires_grad());
  const Tensor x = leaf(random_values(431, kShape), kShape);
  autograd::NoGradGuard no_grad;
  EXPECT_EQ(dropout(x, 0.5f, /*training=*/true).grad_fn(), nullptr);
}

TEST_F(FunctionalElementwiseTest, DropoutErrors) {
  const Tensor x = leaf(random_values(440, kShape), kShape);
  for (const bool training : {true, false}) {
    EXPECT_THAT([&] { dropout(x, 1.5f, training); },
                ThrowsMessage<InvalidArgument>(HasSubstr("dropout: p must be in [0, 1], got 1.5 (x (2, 3, 5, 7))")));
    EXPECT_THAT([&] { dropout(x, -0.25f, training); },
                ThrowsMessage<InvalidArgument>(HasSubstr("dropout: p must be in [0, 1], got -0.25")));
  }
  const GeneratorState state = default_generator().state();
  EXPECT_THAT([&] { dropout(x.to_host(), 0.5f, true); },
              ThrowsMessage<InvalidArgument>(HasSubstr("dropout: x must be a device tensor")));
  EXPECT_EQ(default_generator().state(), state) << "a rejected call draws nothing";
}

// ---- add and mul -----------------------------------------------------------------------

TEST_F(FunctionalElementwiseTest, AddGradientsAreDLDyAndAlphaTimesDLDy) {
  std::uint64_t seed = 500;
  for (const float alpha : {1.0f, -0.5f, 0.3f}) {
    SCOPED_TRACE("alpha " + std::to_string(alpha));
    const std::vector<float> a_values = random_values(seed++, kShape);
    const std::vector<float> b_values = random_values(seed++, kShape);
    const std::vector<float> dL_dy_values = random_values(seed++, kShape);
    const Tensor a = leaf(a_values, kShape);
    const Tensor b = leaf(b_values, kShape);
    const Tensor y = add(a, b, alpha);
    EXPECT_TRUE(all_close(y.to_vector<float>(), reference::add(to_doubles(a_values), to_doubles(b_values), alpha),
                          kTolerance));
    ASSERT_NE(y.grad_fn(), nullptr);
    EXPECT_EQ(y.grad_fn()->name(), "AddBackward");

    y.backward(device_values(dL_dy_values, kShape));
    EXPECT_TRUE(all_equal(a.grad().to_vector<float>(), dL_dy_values));
    EXPECT_TRUE(all_close(b.grad().to_vector<float>(), scaled(to_doubles(dL_dy_values), alpha),
                          Tolerance{.rel_tol = 1e-7}));
    // For alpha 1 both gradients are dL_dy itself; the leaves must still get separate copies.
    EXPECT_FALSE(a.grad().shares_storage_with(b.grad()));
  }
}

TEST_F(FunctionalElementwiseTest, AddGivesGradientsOnlyToInputsThatRequireThem) {
  const std::vector<float> dL_dy_values = random_values(510, kShape);
  const Tensor dL_dy = device_values(dL_dy_values, kShape);
  const Tensor plain = device_values(random_values(511, kShape), kShape);

  const Tensor a = leaf(random_values(512, kShape), kShape);
  add(a, plain, 0.5f).backward(dL_dy);
  EXPECT_TRUE(all_equal(a.grad().to_vector<float>(), dL_dy_values));
  EXPECT_FALSE(plain.grad().defined());

  const Tensor b = leaf(random_values(513, kShape), kShape);
  add(plain, b, 0.5f).backward(dL_dy);
  EXPECT_TRUE(all_close(b.grad().to_vector<float>(), scaled(to_doubles(dL_dy_values), 0.5), Tolerance{}));
  EXPECT_FALSE(plain.grad().defined());

  EXPECT_FALSE(add(plain, plain).requires_grad());
}

// add(x, x, alpha): both gradients meet at x and are summed; fresh graphs accumulate.
TEST_F(FunctionalElementwiseTest, AddOfATensorWithItselfSumsBothGradients) {
  const std::vector<float> dL_dy_values = random_values(520, kShape);
  const Tensor dL_dy = device_values(dL_dy_values, kShape);
  const Tensor x = leaf(random_values(521, kShape), kShape);
  add(x, x, 0.5f).backward(dL_dy);
  EXPECT_TRUE(all_close(x.grad().to_vector<float>(), scaled(to_doubles(dL_dy_values), 1.5),
                        Tolerance{.rel_tol = 1e-7}));
  add(x, x, 0.5f).backward(dL_dy);
  EXPECT_TRUE(all_close(x.grad().to_vector<float>(), scaled(to_doubles(dL_dy_values), 3.0),
                        Tolerance{.rel_tol = 1e-7}));
}

TEST_F(FunctionalElementwiseTest, MulScalesTheValuesAndTheGradient) {
  constexpr float factor = -2.5f;
  const std::vector<float> x_values = random_values(530, kShape);
  const std::vector<float> dL_dy_values = random_values(531, kShape);
  const Tensor x = leaf(x_values, kShape);
  const Tensor y = mul(x, factor);
  EXPECT_TRUE(all_close(y.to_vector<float>(), scaled(to_doubles(x_values), factor), Tolerance{.rel_tol = 1e-7}));
  ASSERT_NE(y.grad_fn(), nullptr);
  EXPECT_EQ(y.grad_fn()->name(), "MulBackward");
  y.backward(device_values(dL_dy_values, kShape));
  EXPECT_TRUE(
      all_close(x.grad().to_vector<float>(), scaled(to_doubles(dL_dy_values), factor), Tolerance{.rel_tol = 1e-7}));

  EXPECT_FALSE(mul(device_values(x_values, kShape), factor).requires_grad());
  autograd::NoGradGuard no_grad;
  EXPECT_FALSE(mul(x, factor).requires_grad());
}

// ---- cat and flatten -------------------------------------------------------------------

std::vector<std::int64_t> dims_of(const Shape& shape) {
  std::vector<std::int64_t> dims;
  for (int d = 0; d < shape.rank(); ++d) dims.push_back(shape[d]);
  return dims;
}

TEST_F(FunctionalElementwiseTest, CatSplitsTheGradientAmongItsInputs) {
  struct CatCase {
    int dim;
    std::vector<Shape> shapes;
  };
  const std::vector<CatCase> cases = {
      {1, {Shape{2, 3, 4, 5}, Shape{2, 1, 4, 5}, Shape{2, 2, 4, 5}}},
      {-1, {Shape{2, 3, 4}, Shape{2, 3, 1}, Shape{2, 3, 2}}},
      {0, {Shape{3, 5}, Shape{0, 5}, Shape{2, 5}}},
  };
  std::uint64_t seed = 600;
  for (const CatCase& cat_case : cases) {
    SCOPED_TRACE("dim " + std::to_string(cat_case.dim));
    std::vector<std::vector<double>> x_values;
    std::vector<std::vector<std::int64_t>> x_dims;
    std::vector<Tensor> xs;
    for (std::size_t i = 0; i < cat_case.shapes.size(); ++i) {
      const std::vector<float> values = random_values(seed++, cat_case.shapes[i]);
      x_values.push_back(to_doubles(values));
      x_dims.push_back(dims_of(cat_case.shapes[i]));
      // The middle input does not require gradients, as a frozen branch.
      xs.push_back(i == 1 ? device_values(values, cat_case.shapes[i]) : leaf(values, cat_case.shapes[i]));
    }
    const Tensor y = cat(xs, cat_case.dim);
    // The reference takes only dims counted from the front.
    const int dim = cat_case.dim < 0 ? cat_case.dim + cat_case.shapes[0].rank() : cat_case.dim;
    EXPECT_TRUE(all_close(y.to_vector<float>(), reference::concat(x_values, x_dims, dim), Tolerance{}));
    ASSERT_NE(y.grad_fn(), nullptr);
    EXPECT_EQ(y.grad_fn()->name(), "CatBackward");

    const std::vector<float> dL_dy_values = random_values(seed++, y.shape());
    y.backward(device_values(dL_dy_values, y.shape()));
    const std::vector<std::vector<double>> expected =
        reference::split(to_doubles(dL_dy_values), x_dims, dim);
    EXPECT_TRUE(all_close(xs[0].grad().to_vector<float>(), expected[0], Tolerance{}));
    EXPECT_FALSE(xs[1].grad().defined());
    EXPECT_TRUE(all_close(xs[2].grad().to_vector<float>(), expected[2], Tolerance{}));
  }
}

TEST_F(FunctionalElementwiseTest, CatRecordsNothingWithoutGradients) {
  const std::vector<Tensor> plain = {device_values(random_values(610, kShape), kShape),
                                     device_values(random_values(611, kShape), kShape)};
  EXPECT_FALSE(cat(plain).requires_grad());
  const std::vector<Tensor> leaves = {leaf(random_values(612, kShape), kShape),
                                      leaf(random_values(613, kShape), kShape)};
  autograd::NoGradGuard no_grad;
  EXPECT_FALSE(cat(leaves).requires_grad());
}

TEST_F(FunctionalElementwiseTest, FlattenIsARecordedView) {
  const std::vector<float> dL_dy_values = random_values(620, Shape{2, 105});
  const Tensor x = leaf(random_values(621, kShape), kShape);
  const Tensor y = flatten(x);
  EXPECT_EQ(y.shape(), (Shape{2, 105}));
  EXPECT_EQ(y.data_ptr(), x.data_ptr());
  ASSERT_NE(y.grad_fn(), nullptr);
  EXPECT_EQ(y.grad_fn()->name(), "ReshapeBackward");
  y.backward(device_values(dL_dy_values, y.shape()));
  EXPECT_EQ(x.grad().shape(), kShape);
  EXPECT_TRUE(all_equal(x.grad().to_vector<float>(), dL_dy_values));

  EXPECT_EQ(flatten(x, 0).shape(), (Shape{210}));
  EXPECT_EQ(flatten(x, -2).shape(), (Shape{2, 3, 35}));
  EXPECT_EQ(flatten(x, -1).shape(), kShape);
  autograd::NoGradGuard no_grad;
  EXPECT_FALSE(flatten(x).requires_grad());
}

// ---- a chain -------------------------------------------------------------------------

// log_softmax(add(mul(x, 2), relu(x))): x feeds two branches whose gradients meet at x.
TEST_F(FunctionalElementwiseTest, ChainOfOpsWithTwoBranches) {
  const Shape shape{4, kColumns};
  const std::vector<float> x_values = random_values(700, shape, -2.0f, 2.0f);
  const std::vector<float> dL_dy_values = random_values(701, shape);
  const Tensor x = leaf(x_values, shape);
  const Tensor y = log_softmax(add(mul(x, 2.0f), relu(x)));
  y.backward(device_values(dL_dy_values, shape));

  const std::vector<double> x_double = to_doubles(x_values);
  const std::vector<double> relu_x = reference::relu_forward(x_double);
  const std::vector<double> sum = reference::add(scaled(x_double, 2.0), relu_x, 1.0);
  const std::vector<double> expected_y = reference::log_softmax(sum, kColumns);
  EXPECT_TRUE(all_close(y.to_vector<float>(), expected_y, kTolerance));
  const std::vector<double> dL_dsum = reference::log_softmax_backward(to_doubles(dL_dy_values), expected_y, kColumns);
  const std::vector<double> expected_dL_dx =
      reference::add(scaled(dL_dsum, 2.0), reference::relu_backward(dL_dsum, x_double), 1.0);
  EXPECT_TRUE(all_close(x.grad().to_vector<float>(), expected_dL_dx, kTolerance));
}

// ---- errors ----------------------------------------------------------------------------

TEST_F(FunctionalElementwiseTest, ErrorsNameTheOpAndTheShapes) {
  const Tensor x = leaf(random_values(800, kShape), kShape);
  EXPECT_THAT([] { relu(Tensor()); },
              ThrowsMessage<InvalidArgument>(HasSubstr("relu_forward: x is an undefined tensor")));
  EXPECT_THAT([&] { gelu(x.to_host()); },
              ThrowsMessage<InvalidArgument>(HasSubstr("gelu_forward: x must be a device tensor")));
  EXPECT_THAT([&] { softmax(device_values({}, Shape{3, 0})); },
              ThrowsMessage<InvalidArgument>(
                  HasSubstr("softmax: x needs at least one dimension and one element, got shape (3, 0)")));
  EXPECT_THAT([&] { add(x, x.flatten(1)); },
              ThrowsMessage<InvalidArgument>(
                  HasSubstr("add_forward: a (2, 3, 5, 7) and b (2, 105) must have the same shape (no broadcasting)")));
  EXPECT_THAT([] { mul(Tensor(), 2.0f); }, ThrowsMessage<InvalidArgument>(HasSubstr("mul: x is an undefined tensor")));
  EXPECT_THAT([] { cat(std::vector<Tensor>{}); },
              ThrowsMessage<InvalidArgument>(HasSubstr("concat: needs at least one input")));
  EXPECT_THAT([&] { cat(std::vector<Tensor>{x, x.flatten(2)}); },
              ThrowsMessage<InvalidArgument>(HasSubstr("concat: input 1 (2, 3, 35) has rank 3, but input 0")));
  EXPECT_THAT([&] { cat(std::vector<Tensor>{x, x}, 4); },
              ThrowsMessage<InvalidArgument>(HasSubstr("concat: dim 4 is out of range for inputs of rank 4")));
  EXPECT_THAT([&] { flatten(x, 4); },
              ThrowsMessage<InvalidArgument>(
                  HasSubstr("flatten: start_dim 4 is out of range for x of shape (2, 3, 5, 7) (rank 4)")));
  EXPECT_THAT([&] { flatten(x, -5); },
              ThrowsMessage<InvalidArgument>(HasSubstr("flatten: start_dim -5 is out of range")));
  EXPECT_THAT([] { flatten(Tensor()); },
              ThrowsMessage<InvalidArgument>(HasSubstr("flatten: x is an undefined tensor")));
}

}  // namespace
}  // namespace strata::F
