// Residual add, accumulation, scaling, concat and its split, and flatten as a view: against
// double references, finite differences and PyTorch.
#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "strata/core/stream.h"
#include "strata/kernels/activations.h"
#include "strata/kernels/elementwise.h"
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

const std::vector<Shape> kOddShapes = {Shape{1},          Shape{3},          Shape{6},
                                       Shape{2, 3, 5, 7}, Shape{1, 1, 1, 1}, Shape{100003}};

// fmaf rounds a + alpha * b once: within half an ulp of the exact (double) value.
constexpr Tolerance kOneRounding{.abs_tol = 0.0, .rel_tol = 6e-8};

Shape shape_of(const testing::GoldenTensor& tensor) { return Shape(std::span<const std::int64_t>(tensor.shape)); }

std::vector<double> doubles_of(const testing::GoldenTensor& tensor) { return doubles(tensor.values); }

// ---- add, accumulate, scale -------------------------------------------------------------

TEST(Add, MatchesReferenceOnOddSizes) {
  const cudaStream_t stream = current_stream();
  std::uint64_t seed = 1100;
  for (const float alpha : {1.0f, -0.75f}) {
    for (const Shape& shape : kOddShapes) {
      SCOPED_TRACE("alpha " + std::to_string(alpha) + ", shape " + shape.to_string());
      const auto count = static_cast<std::size_t>(shape.numel());
      const std::vector<float> a = random_uniform(seed++, count);
      const std::vector<float> b = random_uniform(seed++, count);
      Tensor y = poisoned_tensor(shape, stream);
      add_forward(device_tensor(a, shape, stream), device_tensor(b, shape, stream), y, {.alpha = alpha}, stream);
      EXPECT_TRUE(all_close(y.to_vector<float>(stream), reference::add(doubles(a), doubles(b), alpha), kOneRounding));
    }
  }
}

TEST(Add, ExactWithSmallIntegersAndInPlace) {
  const cudaStream_t stream = current_stream();
  const std::vector<float> a = {1, 2, 3, 4, 5, 6, 7};
  const std::vector<float> b = {-3, 0, 2, 9, -1, 4, 8};
  const Shape shape{7};
  EXPECT_TRUE(
      testing::all_equal(add_forward(device_tensor(a, shape, stream), device_tensor(b, shape, stream), {}, stream)
                             .to_vector<float>(stream),
                         std::vector<float>{-2, 2, 5, 13, 4, 10, 15}));
  // The residual connection in place: x += 2 * residual, into either operand.
  Tensor x = device_tensor(a, shape, stream);
  add_forward(x, device_tensor(b, shape, stream), x, {.alpha = 2.0f}, stream);
  EXPECT_TRUE(testing::all_equal(x.to_vector<float>(stream), std::vector<float>{-5, 2, 7, 22, 3, 14, 23}));
  Tensor residual = device_tensor(b, shape, stream);
  add_forward(device_tensor(a, shape, stream), residual, residual, {}, stream);
  EXPECT_TRUE(testing::all_equal(residual.to_vector<float>(stream), std::vector<float>{-2, 2, 5, 13, 4, 10, 15}));
}

// Unaligned views take the element-wise path for the whole tensor.
TEST(Add, UnalignedViews) {
  const cudaStream_t stream = current_stream();
  const std::vector<float> a = random_uniform(1200, 515);
  const std::vector<float> b = random_uniform(1201, 514);
  const Tensor a_view = device_tensor(a, Shape{515}, stream).narrow(0, 1, 514);
  Tensor y = poisoned_tensor(Shape{514}, stream);
  add_forward(a_view, device_tensor(b, Shape{514}, stream), y, {.alpha = 0.5f}, stream);
  EXPECT_TRUE(all_close(y.to_vector<float>(stream),
                        reference::add(std::vector<double>(a.begin() + 1, a.end()), doubles(b), 0.5), kOneRounding));
}

// Views at an aligned start take float4 for whole groups; the tail must stop at the view's
// end, leaving the guard elements after it untouched.
TEST(Add, WritesNothingPastTheEnd) {
  const cudaStream_t stream = current_stream();
  for (const std::int64_t n : testing::kTailSizes) {
    SCOPED_TRACE("size " + std::to_string(n));
    const auto count = static_cast<std::size_t>(n);
    const std::vector<float> a = random_uniform(static_cast<std::uint64_t>(50 + n), count);
    const std::vector<float> b = random_uniform(static_cast<std::uint64_t>(60 + n), count);
    Tensor y_storage = poisoned_tensor(Shape{n + testing::kGuardElements}, stream);
    Tensor y = y_storage.narrow(0, 0, n);
    add_forward(device_tensor(a, Shape{n}, stream), device_tensor(b, Shape{n}, stream), y, {.alpha = 2.0f}, stream);
    const std::vector<float> values = y_storage.to_vector<float>(stream);
    EXPECT_TRUE(all_close(std::span(values).first(count), reference::add(doubles(a), doubles(b), 2.0), kOneRounding));
    EXPECT_TRUE(testing::all_poison(std::span(values).subspan(count)));
  }
}

// The documented backward: dL_da = dL_dy (no kernel), dL_db = scale(dL_dy, alpha).
TEST(Add, BackwardRecipeMatchesFiniteDifferences) {
  const cudaStream_t stream = current_stream();
  const Shape shape{2, 3, 4};
  const double alpha = -0.75;
  const std::vector<float> a = random_uniform(1300, 24);
  const std::vector<float> b = random_uniform(1301, 24);
  const std::vector<float> dL_dy = random_uniform(1302, 24);
  const std::vector<double> weights = doubles(dL_dy);
  const std::vector<double> numerical_a = testing::numerical_gradient(
      [&](std::span<const double> input) {
        return testing::weighted_sum(reference::add(input, doubles(b), alpha), weights);
      },
      doubles(a));
  const std::vector<double> numerical_b = testing::numerical_gradient(
      [&](std::span<const double> input) {
        return testing::weighted_sum(reference::add(doubles(a), input, alpha), weights);
      },
      doubles(b));
  const Tolerance tolerance{.abs_tol = 1e-7, .rel_tol = 1e-6};
  EXPECT_TRUE(all_close(dL_dy, numerical_a, tolerance));
  const Tensor dL_dy_device = device_tensor(dL_dy, shape, stream);
  Tensor dL_db = poisoned_tensor(shape, stream);
  scale(dL_dy_device, dL_db, {.factor = static_cast<float>(alpha)}, stream);
  EXPECT_TRUE(all_close(dL_db.to_vector<float>(stream), numerical_b, tolerance));
}

TEST(Add, MatchesPyTorch) {
  const cudaStream_t stream = current_stream();
  int cases = 0;
  for (const testing::GoldenCase& golden : testing::read_golden("elementwise.txt")) {
    if (golden.name != "add" && golden.name != "add_alpha") continue;
    SCOPED_TRACE("case " + golden.name);
    ++cases;
    const Shape shape = shape_of(golden.tensor_of("a"));
    Tensor y = poisoned_tensor(shape, stream);
    add_forward(device_tensor(golden.tensor_of("a").values, shape, stream),
                device_tensor(golden.tensor_of("b").values, shape, stream), y,
                {.alpha = static_cast<float>(golden.float_of("alpha"))}, stream);
    EXPECT_TRUE(all_close(y.to_vector<float>(stream), doubles_of(golden.tensor_of("y")),
                          Tolerance{.abs_tol = 1e-7, .rel_tol = 1.2e-7}));
  }
  EXPECT_EQ(cases, 2);
}

TEST(Add, BadArgumentsNameTheOpAndShapes) {
  const cudaStream_t stream = current_stream();
  const Tensor a = Tensor::zeros(Shape{2, 3}, DType::f32, stream);
  const Tensor b = Tensor::zeros(Shape{3, 2}, DType::f32, stream);
  Tensor y = Tensor::empty(Shape{2, 3}, DType::f32, stream);
  EXPECT_NE(testing::invalid_argument_message([&] {
              add_forward(a, b, y, {}, stream);
            }).find("add_forward: a (2, 3) and b (3, 2) must have the same shape"),
            std::string::npos);
  Tensor wrong = Tensor::empty(Shape{6}, DType::f32, stream);
  EXPECT_NE(testing::invalid_argument_message([&] {
              add_forward(a, a, wrong, {}, stream);
            }).find("add_forward: y must have shape (2, 3), got (6)"),
            std::string::npos);
  EXPECT_NE(testing::invalid_argument_message([&] {
              accumulate(b, y, {}, stream);
            }).find("accumulate: x (3, 2) and y (2, 3) must have the same shape"),
            std::string::npos);
  EXPECT_NE(testing::invalid_argument_message([&] {
              scale(a, wrong, {}, stream);
            }).find("scale: y must have shape (2, 3), got (6)"),
            std::string::npos);
}

TEST(Accumulate, MatchesReferenceAndAccumulatesInPlace) {
  const cudaStream_t stream = current_stream();
  std::uint64_t seed = 1400;
  for (const Shape& shape : kOddShapes) {
    SCOPED_TRACE("shape " + shape.to_string());
    const auto count = static_cast<std::size_t>(shape.numel());
    const std::vector<float> gradient = random_uniform(seed++, count);
    const std::vector<float> incoming = random_uniform(seed++, count);
    Tensor y = device_tensor(gradient, shape, stream);
    accumulate(device_tensor(incoming, shape, stream), y, {.alpha = 1.5f}, stream);
    EXPECT_TRUE(
        all_close(y.to_vector<float>(stream), reference::add(doubles(gradient), doubles(incoming), 1.5), kOneRounding));
  }
  // x may be y itself: y += y doubles it, exactly.
  Tensor y = device_tensor({1, -2, 3, 0.5f, 7}, Shape{5}, stream);
  accumulate(y, y, {}, stream);
  EXPECT_TRUE(testing::all_equal(y.to_vector<float>(stream), std::vector<float>{2, -4, 6, 1, 14}));
}

TEST(Scale, MatchesReferenceAndWorksInPlace) {
  const cudaStream_t stream = current_stream();
  std::uint64_t seed = 1500;
  for (const Shape& shape : kOddShapes) {
    SCOPED_TRACE("shape " + shape.to_string());
    const auto count = static_cast<std::size_t>(shape.numel());
    const std::vector<float> x = random_uniform(seed++, count);
    Tensor y = poisoned_tensor(shape, stream);
    scale(device_tensor(x, shape, stream), y, {.factor = 0.3f}, stream);
    EXPECT_TRUE(all_close(y.to_vector<float>(stream),
                          reference::add(std::vector<double>(count, 0.0), doubles(x), static_cast<double>(0.3f)),
                          kOneRounding));
  }
  Tensor x = device_tensor({1, -2, 3}, Shape{3}, stream);
  scale(x, x, {.factor = -4.0f}, stream);
  EXPECT_TRUE(testing::all_equal(x.to_vector<float>(stream), std::vector<float>{-4, 8, -12}));
}

TEST(Add, EmptyTensorsAreANoOp) {
  const cudaStream_t stream = current_stream();
  Tensor empty = Tensor::empty(Shape{0, 3}, DType::f32, stream);
  EXPECT_NO_THROW(add_forward(empty, empty, empty, {}, stream));
  EXPECT_NO_THROW(accumulate(empty, empty, {}, stream));
  EXPECT_NO_THROW(scale(empty, empty, {}, stream));
}

// ---- concat and split -------------------------------------------------------------------

std::vector<std::int64_t> dims_of(const Shape& shape) { return {shape.begin(), shape.end()}; }

// Runs concat_forward and concat_backward on random inputs of the given shapes and dtype,
// poisoned outputs, and compares both with the reference exactly (they only move values).
void expect_concat_and_split_match_reference(const std::vector<Shape>& shapes, int dim, std::uint64_t seed,
                                             DType dtype = DType::f32) {
  const cudaStream_t stream = current_stream();
  std::vector<std::vector<double>> xs_host;
  std::vector<std::vector<std::int64_t>> dims;
  std::vector<Tensor> xs;
  for (const Shape& shape : shapes) {
    testing::RoundedTensor x =
        testing::rounded_device(random_uniform(seed++, static_cast<std::size_t>(shape.numel())), shape, dtype, stream);
    xs_host.push_back(doubles(x.values));
    dims.push_back(dims_of(shape));
    xs.push_back(std::move(x.tensor));
  }
  const Shape y_shape = concat_shape(shapes, {.dim = dim});
  Tensor y = testing::poisoned_storage(y_shape, dtype, stream);
  concat_forward(xs, y, {.dim = dim}, stream);
  const int positive_dim = dim < 0 ? dim + y_shape.rank() : dim;
  EXPECT_TRUE(
      all_close(testing::storage_values(y, stream), reference::concat(xs_host, dims, positive_dim), Tolerance{}));

  const testing::RoundedTensor dL_dy =
      testing::rounded_device(random_uniform(seed, static_cast<std::size_t>(y_shape.numel())), y_shape, dtype, stream);
  std::vector<Tensor> dL_dxs;
  for (const Shape& shape : shapes) dL_dxs.push_back(testing::poisoned_storage(shape, dtype, stream));
  concat_backward(dL_dy.tensor, dL_dxs, {.dim = dim}, stream);
  const std::vector<std::vector<double>> expected = reference::split(doubles(dL_dy.values), dims, positive_dim);
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    EXPECT_EQ(dL_dxs[i].dtype(), dtype);
    EXPECT_TRUE(all_close(testing::storage_values(dL_dxs[i], stream), expected[i], Tolerance{})) << "dL_dxs[" << i << "]";
  }
}

TEST(Concat, ChannelsWithOddSizes) {
  // Rows of 15 floats: element-wise copies; a piece with no channels is skipped.
  expect_concat_and_split_match_reference(
      {Shape{2, 3, 3, 5}, Shape{2, 1, 3, 5}, Shape{2, 5, 3, 5}, Shape{2, 0, 3, 5}, Shape{2, 2, 3, 5}}, 1, 1600);
  // 1x1 spatial, batch 1, channel counts that are not multiples of 4 or 32.
  expect_concat_and_split_match_reference({Shape{1, 3, 1, 1}, Shape{1, 33, 1, 1}, Shape{1, 7, 1, 1}}, 1, 1610);
  // Non-square spatial, batch 3.
  expect_concat_and_split_match_reference({Shape{3, 2, 5, 3}, Shape{3, 3, 5, 3}}, 1, 1620);
}

TEST(Concat, ChannelsInFloat4Units) {
  // Every row, offset and pointer a multiple of 4 floats: float4 copies.
  expect_concat_and_split_match_reference({Shape{2, 3, 2, 2}, Shape{2, 5, 2, 2}, Shape{2, 1, 2, 2}}, 1, 1700);
  expect_concat_and_split_match_reference({Shape{4, 4, 1, 1}, Shape{4, 8, 1, 1}}, 1, 1710);
}

// Concat into the front of a larger poisoned buffer, and split into fronts of larger
// buffers: nothing after the outputs may be written, on either copy path.
TEST(Concat, WritesNothingPastTheEnd) {
  const cudaStream_t stream = current_stream();
  for (const std::int64_t spatial : {1, 4}) {  // element-wise and float4 copies
    SCOPED_TRACE("spatial " + std::to_string(spatial));
    const std::vector<Shape> shapes = {Shape{3, 1, spatial}, Shape{3, 2, spatial}};
    const Shape y_shape{3, 3, spatial};
    const std::vector<Tensor> xs = {
        device_tensor(random_uniform(70, static_cast<std::size_t>(3 * spatial)), shapes[0], stream),
        device_tensor(random_uniform(71, static_cast<std::size_t>(6 * spatial)), shapes[1], stream)};
    Tensor y_storage = poisoned_tensor(Shape{9 * spatial + testing::kGuardElements}, stream);
    Tensor y = y_storage.narrow(0, 0, 9 * spatial).view(y_shape);
    concat_forward(xs, y, {}, stream);
    const std::vector<float> y_values = y_storage.to_vector<float>(stream);
    EXPECT_TRUE(testing::all_poison(std::span(y_values).subspan(static_cast<std::size_t>(9 * spatial))));

    std::vector<Tensor> storages;
    std::vector<Tensor> dL_dxs;
    for (const Shape& shape : shapes) {
      storages.push_back(poisoned_tensor(Shape{shape.numel() + testing::kGuardElements}, stream));
      dL_dxs.push_back(storages.back().narrow(0, 0, shape.numel()).view(shape));
    }
    concat_backward(y, dL_dxs, {}, stream);
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      const std::vector<float> values = storages[i].to_vector<float>(stream);
      const auto count = static_cast<std::size_t>(shapes[i].numel());
      EXPECT_TRUE(testing::all_equal(std::span(values).first(count), xs[i].to_vector<float>(stream)));
      EXPECT_TRUE(testing::all_poison(std::span(values).subspan(count)));
    }
  }
}

TEST(Concat, MoreInputsThanOneLaunchTakes) {
  std::vector<Shape> shapes;
  for (std::int64_t i = 0; i < 37; ++i) shapes.push_back(Shape{2, 1 + i % 4, 3, 3});
  expect_concat_and_split_match_reference(shapes, 1, 1800);
}

TEST(Concat, OtherDimensions) {
  expect_concat_and_split_match_reference({Shape{1, 3, 2, 2}, Shape{2, 3, 2, 2}}, 0, 1900);
  expect_concat_and_split_match_reference({Shape{2, 3, 4, 5}, Shape{2, 3, 4, 1}, Shape{2, 3, 4, 2}}, -1, 1910);
  expect_concat_and_split_match_reference({Shape{2, 6}, Shape{2, 3}}, 1, 1920);
}

TEST(Concat, SplitMatchesFiniteDifferences) {
  const cudaStream_t stream = current_stream();
  const std::vector<std::vector<std::int64_t>> dims = {{2, 2, 1, 3}, {2, 3, 1, 3}};
  const std::vector<Shape> shapes = {Shape{2, 2, 1, 3}, Shape{2, 3, 1, 3}};
  const std::vector<float> x0 = random_uniform(2000, 12);
  const std::vector<float> x1 = random_uniform(2001, 18);
  const std::vector<float> dL_dy = random_uniform(2002, 30);
  const std::vector<double> weights = doubles(dL_dy);
  // Gradient with respect to all inputs, laid end to end.
  std::vector<double> joined = doubles(x0);
  joined.insert(joined.end(), x1.begin(), x1.end());
  const std::vector<double> numerical = testing::numerical_gradient(
      [&](std::span<const double> input) {
        const std::vector<std::vector<double>> pieces = {{input.begin(), input.begin() + 12},
                                                         {input.begin() + 12, input.end()}};
        return testing::weighted_sum(reference::concat(pieces, dims, 1), weights);
      },
      joined);
  const std::vector<Tensor> dL_dxs =
      concat_backward(device_tensor(dL_dy, Shape{2, 5, 1, 3}, stream), shapes, {}, stream);
  std::vector<float> kernel = dL_dxs[0].to_vector<float>(stream);
  const std::vector<float> second = dL_dxs[1].to_vector<float>(stream);
  kernel.insert(kernel.end(), second.begin(), second.end());
  EXPECT_TRUE(all_close(kernel, numerical, Tolerance{.abs_tol = 1e-7, .rel_tol = 1e-6}));
}

TEST(Concat, MatchesPyTorch) {
  const cudaStream_t stream = current_stream();
  int cases = 0;
  for (const testing::GoldenCase& golden : testing::read_golden("elementwise.txt")) {
    if (golden.name.rfind("concat", 0) != 0) continue;
    SCOPED_TRACE("case " + golden.name);
    ++cases;
    const ConcatParams params{.dim = static_cast<int>(golden.int_of("dim"))};
    std::vector<Tensor> xs;
    std::vector<Shape> shapes;
    for (std::int64_t i = 0; i < golden.int_of("inputs"); ++i) {
      const testing::GoldenTensor& x = golden.tensor_of(std::string("x").append(std::to_string(i)));
      shapes.push_back(shape_of(x));
      xs.push_back(device_tensor(x.values, shapes.back(), stream));
    }
    const Shape y_shape = shape_of(golden.tensor_of("y"));
    EXPECT_EQ(concat_shape(shapes, params), y_shape);
    Tensor y = poisoned_tensor(y_shape, stream);
    concat_forward(xs, y, params, stream);
    EXPECT_TRUE(testing::all_equal(y.to_vector<float>(stream), golden.tensor_of("y").values));
    const std::vector<Tensor> dL_dxs =
        concat_backward(device_tensor(golden.tensor_of("dL_dy").values, y_shape, stream), shapes, params, stream);
    for (std::size_t i = 0; i < dL_dxs.size(); ++i) {
      EXPECT_TRUE(
          testing::all_equal(dL_dxs[i].to_vector<float>(stream), golden.tensor_of("dL_dx" + std::to_string(i)).values))
          << "dL_dx" << i;
    }
  }
  EXPECT_EQ(cases, 2);
}

TEST(ConcatShape, SumsTheDimensionAndNamesMismatches) {
  EXPECT_EQ(concat_shape(std::vector<Shape>{Shape{2, 3, 4, 5}, Shape{2, 1, 4, 5}}, {}), (Shape{2, 4, 4, 5}));
  EXPECT_EQ(concat_shape(std::vector<Shape>{Shape{2, 3, 4, 5}}, {}), (Shape{2, 3, 4, 5}));
  EXPECT_EQ(concat_shape(std::vector<Shape>{Shape{2, 3}, Shape{2, 4}}, {.dim = -1}), (Shape{2, 7}));
  EXPECT_EQ(concat_shape(std::vector<Shape>{Shape{1, 3}, Shape{4, 3}}, {.dim = 0}), (Shape{5, 3}));
  EXPECT_EQ(concat_shape(std::vector<Shape>{Shape{2, 0, 3}, Shape{2, 0, 3}}, {}), (Shape{2, 0, 3}));

  const auto message = [](std::vector<Shape> shapes, ConcatParams params) {
    return testing::invalid_argument_message([&] { concat_shape(shapes, params); });
  };
  EXPECT_NE(message({Shape{2, 3, 4, 5}, Shape{3, 1, 4, 5}}, {})
                .find("concat: input 1 (3, 1, 4, 5) and input 0 (2, 3, 4, 5) differ in dimension 0"),
            std::string::npos);
  EXPECT_NE(message({Shape{2, 3, 4, 5}, Shape{2, 1, 5, 5}}, {}).find("differ in dimension 2"), std::string::npos);
  EXPECT_NE(message({Shape{2, 3, 4, 5}, Shape{2, 1, 4, 6}}, {}).find("differ in dimension 3"), std::string::npos);
  EXPECT_NE(message({Shape{2, 3, 4, 5}, Shape{2, 1, 4}}, {})
                .find("concat: input 1 (2, 1, 4) has rank 3, but input 0 (2, 3, 4, 5) has rank 4"),
            std::string::npos);
  EXPECT_NE(message({Shape{2, 3}}, {.dim = 2}).find("concat: dim 2 is out of range for inputs of rank 2"),
            std::string::npos);
  EXPECT_NE(message({Shape{2, 3}}, {.dim = -3}).find("dim -3 is out of range"), std::string::npos);
  EXPECT_NE(message({}, {}).find("concat: needs at least one input"), std::string::npos);
  EXPECT_NE(testing::invalid_argument_message([] { concat_forward(std::span<const Tensor>(), {}, current_stream()); })
                .find("concat: needs at least one input"),
            std::string::npos);
}

TEST(Concat, BadArgumentsNameTheOpAndShapes) {
  const cudaStream_t stream = current_stream();
  const std::vector<Tensor> xs = {Tensor::zeros(Shape{2, 3, 4, 5}, DType::f32, stream),
                                  Tensor::zeros(Shape{2, 1, 4, 5}, DType::f32, stream)};
  Tensor wrong = Tensor::empty(Shape{2, 3, 4, 5}, DType::f32, stream);
  EXPECT_NE(testing::invalid_argument_message([&] {
              concat_forward(xs, wrong, {}, stream);
            }).find("concat_forward: y must have shape (2, 4, 4, 5), got (2, 3, 4, 5)"),
            std::string::npos);
  const std::vector<Tensor> mismatched = {xs[0], Tensor::zeros(Shape{2, 1, 3, 5}, DType::f32, stream)};
  EXPECT_NE(testing::invalid_argument_message([&] {
              concat_forward(mismatched, {}, stream);
            }).find("concat: input 1 (2, 1, 3, 5) and input 0 (2, 3, 4, 5) differ in dimension 2"),
            std::string::npos);
  // The output may not be (a view of) an input.
  Tensor storage = Tensor::zeros(Shape{8, 3}, DType::f32, stream);
  const std::vector<Tensor> views = {storage.narrow(0, 0, 2), storage.narrow(0, 2, 2)};
  Tensor overlapping = storage.narrow(0, 3, 4);
  EXPECT_NE(testing::invalid_argument_message([&] {
              concat_forward(views, overlapping, {.dim = 0}, stream);
            }).find("concat_forward: y (4, 3) overlaps xs[1] (2, 3)"),
            std::string::npos);
  // Split outputs must not overlap dL_dy or each other.
  std::vector<Tensor> same_twice = {storage.narrow(0, 0, 2), storage.narrow(0, 1, 2)};
  EXPECT_NE(testing::invalid_argument_message([&] {
              concat_backward(storage.narrow(0, 4, 4), same_twice, {.dim = 0}, stream);
            }).find("concat_backward: dL_dxs[1] (2, 3) overlaps dL_dxs[0] (2, 3)"),
            std::string::npos);
  std::vector<Tensor> wrong_split = {Tensor::empty(Shape{2, 3, 4, 5}, DType::f32, stream)};
  EXPECT_NE(testing::invalid_argument_message([&] {
              concat_backward(xs[1], wrong_split, {}, stream);
            }).find("concat_backward: dL_dy must have shape (2, 3, 4, 5), got (2, 1, 4, 5)"),
            std::string::npos);
}

// ---- flatten -----------------------------------------------------------------------------

TEST(Flatten, IsAViewThatKernelsConsume) {
  const cudaStream_t stream = current_stream();
  const std::vector<float> values = random_uniform(2100, 120);
  Tensor x = device_tensor(values, Shape{2, 3, 4, 5}, stream);  // (N, C, H, W)
  Tensor rows = x.flatten(1);                                   // (N, C*H*W)
  EXPECT_EQ(rows.shape(), (Shape{2, 60}));
  EXPECT_EQ(rows.data_ptr(), x.data_ptr()) << "flatten must not copy";
  EXPECT_TRUE(rows.shares_storage_with(x));
  // A kernel reading the view sees x's elements; one writing through it (in place) changes x.
  const Tensor y = relu_forward(rows, {}, stream);
  EXPECT_EQ(y.shape(), (Shape{2, 60}));
  EXPECT_TRUE(all_close(y.to_vector<float>(stream), reference::relu_forward(doubles(values)), Tolerance{}));
  relu_forward(rows, rows, {}, stream);
  EXPECT_TRUE(all_close(x.to_vector<float>(stream), reference::relu_forward(doubles(values)), Tolerance{}));
}

// ---- f16 and bf16 ------------------------------------------------------------------------

class ReducedElementwise : public ::testing::TestWithParam<DType> {};

// a + alpha * b in f32 from the rounded inputs (one fmaf), then one rounding to the dtype.
TEST_P(ReducedElementwise, AddAccumulateAndScaleRoundOnce) {
  const DType dtype = GetParam();
  const cudaStream_t stream = current_stream();
  const Tolerance tolerance = testing::storage_tolerance(dtype, kOneRounding);
  std::uint64_t seed = 2200;
  for (const Shape& shape : testing::kReducedShapes) {
    SCOPED_TRACE("shape " + shape.to_string());
    const auto count = static_cast<std::size_t>(shape.numel());
    const testing::RoundedTensor a = testing::rounded_device(random_uniform(seed++, count), shape, dtype, stream);
    const testing::RoundedTensor b = testing::rounded_device(random_uniform(seed++, count), shape, dtype, stream);
    Tensor y = testing::poisoned_storage(shape, dtype, stream);
    add_forward(a.tensor, b.tensor, y, {.alpha = -0.75f}, stream);
    EXPECT_TRUE(all_close(testing::storage_values(y, stream), reference::add(doubles(a.values), doubles(b.values), -0.75),
                          tolerance));
    EXPECT_EQ(add_forward(a.tensor, b.tensor, {}, stream).dtype(), dtype);

    Tensor accumulated = a.tensor.to_dtype(DType::f32, stream).to_dtype(dtype, stream);  // a copy of a
    accumulate(b.tensor, accumulated, {.alpha = 1.5f}, stream);
    EXPECT_TRUE(all_close(testing::storage_values(accumulated, stream),
                          reference::add(doubles(a.values), doubles(b.values), 1.5), tolerance));

    Tensor scaled = testing::poisoned_storage(shape, dtype, stream);
    scale(a.tensor, scaled, {.factor = 0.3f}, stream);
    EXPECT_TRUE(all_close(testing::storage_values(scaled, stream),
                          reference::add(std::vector<double>(count, 0.0), doubles(a.values), static_cast<double>(0.3f)),
                          tolerance));
  }
}

// Small integers are exact in every dtype: the 16-byte path and the tail give the exact sum,
// in place too.
TEST_P(ReducedElementwise, AddIsExactWithSmallIntegersInPlace) {
  const DType dtype = GetParam();
  const cudaStream_t stream = current_stream();
  std::vector<float> a(19), b(19), sum(19);
  for (std::size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>(static_cast<int>(i) - 9);
    b[i] = static_cast<float>(3 * static_cast<int>(i % 5) - 4);
    sum[i] = a[i] + 2 * b[i];
  }
  Tensor y = testing::rounded_device(a, Shape{19}, dtype, stream).tensor;
  add_forward(y, testing::rounded_device(b, Shape{19}, dtype, stream).tensor, y, {.alpha = 2.0f}, stream);
  EXPECT_TRUE(testing::all_equal(testing::storage_values(y, stream), sum));
}

TEST_P(ReducedElementwise, ConcatAndSplitAreExact) {
  const DType dtype = GetParam();
  // Rows of 15 elements: element-wise copies.
  expect_concat_and_split_match_reference({Shape{2, 3, 3, 5}, Shape{2, 1, 3, 5}, Shape{2, 0, 3, 5}}, 1, 2300, dtype);
  // Rows of 8 (16 bytes): vector copies.
  expect_concat_and_split_match_reference({Shape{2, 2, 2, 2}, Shape{2, 4, 2, 2}}, 1, 2310, dtype);
  expect_concat_and_split_match_reference({Shape{3, 4}, Shape{3, 2}}, -1, 2320, dtype);
}

TEST_P(ReducedElementwise, MismatchedDtypesNameBothOperands) {
  const DType dtype = GetParam();
  const cudaStream_t stream = current_stream();
  const std::string name(dtype_name(dtype));
  const Tensor reduced = Tensor::zeros(Shape{2, 3}, dtype, stream);
  const Tensor f32 = Tensor::zeros(Shape{2, 3}, DType::f32, stream);
  Tensor out = Tensor::empty(Shape{2, 3}, dtype, stream);
  const std::string add_message =
      testing::invalid_argument_message([&] { add_forward(reduced, f32, out, {}, stream); });
  EXPECT_NE(add_message.find("add_forward: b has dtype f32 but a has dtype " + name), std::string::npos)
      << add_message;
  EXPECT_NE(add_message.find("strata::AutocastGuard"), std::string::npos) << add_message;
  const std::string accumulate_message =
      testing::invalid_argument_message([&] { accumulate(f32, out, {}, stream); });
  EXPECT_NE(accumulate_message.find("accumulate: x has dtype f32 but y has dtype " + name), std::string::npos)
      << accumulate_message;
  const std::vector<Tensor> mixed = {reduced, f32};
  const std::string concat_message =
      testing::invalid_argument_message([&] { concat_forward(mixed, {.dim = 0}, stream); });
  EXPECT_NE(concat_message.find("concat_forward: xs[1] has dtype f32 but xs[0] has dtype " + name),
            std::string::npos)
      << concat_message;
  const Tensor ints = Tensor::zeros(Shape{2, 3}, DType::i32, stream);
  EXPECT_NE(testing::invalid_argument_message([&] {
              add_forward(ints, ints, {}, stream);
            }).find("add_forward: a must have dtype f32, f16 or bf16"),
            std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(F16AndBf16, ReducedElementwise, ::testing::ValuesIn(testing::kReducedDtypes),
                         testing::dtype_param_name);

}  // namespace
}  // namespace strata::kernels
