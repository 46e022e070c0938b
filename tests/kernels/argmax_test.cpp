// argmax over the last dimension and count_equal against a plain CPU reference: odd shapes
// (rows shorter and longer than a warp, rank 1 and 3), ties (the first index wins, -0 and +0
// tie), NaN (larger than any number, the first NaN wins) and infinities, poisoned outputs,
// and the errors; x in f32, f16 and bf16 (rounding to 16 bits makes ties of random values).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "strata/core/stream.h"
#include "strata/kernels/argmax.h"
#include "tests/kernels/device_values.h"
#include "tests/support/compare.h"
#include "tests/support/storage_dtypes.h"

namespace strata::kernels {
namespace {

using testing::device_tensor;
using testing::invalid_argument_message;
using testing::random_uniform;

constexpr std::int64_t kPoisonIndex = -7;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// torch.argmax(x.view(-1, columns), dim=1): the first NaN of a row, else the first largest.
std::vector<std::int64_t> reference_argmax(const std::vector<float>& x, std::int64_t columns) {
  std::vector<std::int64_t> indices;
  for (std::size_t begin = 0; begin < x.size(); begin += static_cast<std::size_t>(columns)) {
    std::int64_t best = 0;
    for (std::int64_t c = 0; c < columns; ++c) {
      const double value = x[begin + static_cast<std::size_t>(c)];
      const double best_value = x[begin + static_cast<std::size_t>(best)];
      if (std::isnan(best_value)) break;
      if (std::isnan(value) || value > best_value) best = c;
    }
    indices.push_back(best);
  }
  return indices;
}

constexpr DType kFloatingDtypes[] = {DType::f32, DType::f16, DType::bf16};

// argmax_last_dim of values (shape) stored in dtype (values exact in it) into a poisoned output.
std::vector<std::int64_t> device_argmax(const std::vector<float>& values, const Shape& shape,
                                        DType dtype = DType::f32) {
  const cudaStream_t stream = current_stream();
  const Tensor x = testing::storage_tensor(values, shape, dtype, stream);
  const auto dims = shape.dims();
  const Shape out_shape(dims.first(dims.size() - 1));
  Tensor indices = device_tensor(std::vector<std::int64_t>(static_cast<std::size_t>(out_shape.numel()), kPoisonIndex),
                                 out_shape, stream);
  argmax_last_dim(x, indices, stream);
  return indices.to_vector<std::int64_t>(stream);
}

TEST(ArgmaxLastDim, MatchesTheReferenceOnOddShapes) {
  std::uint64_t seed = 4100;
  for (const Shape& shape : {Shape{1, 1}, Shape{3, 10}, Shape{7, 33}, Shape{5, 1000}, Shape{37, 64}, Shape{17},
                             Shape{2, 3, 5}, Shape{1025, 10}}) {
    SCOPED_TRACE("x " + shape.to_string());
    const std::vector<float> x = random_uniform(seed++, static_cast<std::size_t>(shape.numel()));
    EXPECT_EQ(device_argmax(x, shape), reference_argmax(x, shape[shape.rank() - 1]));
  }
  // The allocating form, and a rank-1 x giving a () index.
  const std::vector<float> x = random_uniform(4200, 17);
  const Tensor index = argmax_last_dim(device_tensor(x, Shape{17}, current_stream()), current_stream());
  EXPECT_EQ(index.shape(), Shape{});
  EXPECT_EQ(index.dtype(), DType::i64);
  EXPECT_EQ(index.to_vector<std::int64_t>(current_stream()), reference_argmax(x, 17));
}

TEST(ArgmaxLastDim, ReducedDtypesMatchTheReferenceOfTheirRoundedValues) {
  std::uint64_t seed = 4600;
  for (const DType dtype : testing::kReducedDtypes) {
    for (const Shape& shape : {Shape{3, 10}, Shape{7, 33}, Shape{5, 1000}, Shape{17}, Shape{2, 3, 5}}) {
      SCOPED_TRACE(::testing::Message() << dtype << " x " << shape.to_string());
      // Rows of 1000 values rounded to 8 or 11 significant bits hold ties near their maximum.
      const std::vector<float> x =
          testing::rounded_to(random_uniform(seed++, static_cast<std::size_t>(shape.numel())), dtype, current_stream());
      EXPECT_EQ(device_argmax(x, shape, dtype), reference_argmax(x, shape[shape.rank() - 1]));
    }
  }
}

// Ties inside one lane's share, across lanes (columns 5, 37 and 69 fall to lanes 5, 5 and 5;
// 6 and 38 to lanes 6 and 6; 3 and 34 to lanes 3 and 2), a constant row, and -0 against +0.
TEST(ArgmaxLastDim, TiesGoToTheFirstIndex) {
  constexpr std::int64_t kColumns = 70;
  std::vector<float> x;
  const auto row_with = [&](std::vector<std::int64_t> maxima, float low, float high) {
    std::vector<float> row(kColumns, low);
    for (const std::int64_t column : maxima) row[static_cast<std::size_t>(column)] = high;
    x.insert(x.end(), row.begin(), row.end());
  };
  row_with({5, 37, 69}, -1.0f, 2.0f);
  row_with({69, 38, 6}, 0.0f, 1.0f);
  row_with({34, 3}, -3.0f, -2.0f);
  row_with({}, 4.0f, 4.0f);      // constant: index 0
  row_with({63, 64}, -1.0f, 0.0f);
  row_with({12}, -0.0f, 0.0f);  // -0 everywhere, +0 at 12: a tie, so index 0
  const std::vector<std::int64_t> expected = {5, 6, 3, 0, 63, 0};
  EXPECT_EQ(reference_argmax(x, kColumns), expected);
  for (const DType dtype : kFloatingDtypes) EXPECT_EQ(device_argmax(x, Shape{6, kColumns}, dtype), expected) << dtype;
}

TEST(ArgmaxLastDim, NaNIsLargerThanAnyNumberAndTheFirstNaNWins) {
  constexpr std::int64_t kColumns = 50;
  std::vector<float> x;
  const auto row_with = [&](std::vector<std::pair<std::int64_t, float>> entries) {
    std::vector<float> row = random_uniform(4300 + x.size(), kColumns);
    for (const auto& [column, value] : entries) row[static_cast<std::size_t>(column)] = value;
    x.insert(x.end(), row.begin(), row.end());
  };
  row_with({{2, kInf}, {40, kNaN}});              // NaN beats infinity
  row_with({{45, kNaN}, {9, kNaN}, {33, kNaN}});  // the first NaN
  row_with({{0, kNaN}, {1, kInf}});
  row_with({{17, kInf}, {49, kInf}});  // infinities tie: the first
  std::vector<float> negative_infinities(kColumns, -kInf);
  x.insert(x.end(), negative_infinities.begin(), negative_infinities.end());
  std::vector<float> all_nan(kColumns, kNaN);
  x.insert(x.end(), all_nan.begin(), all_nan.end());
  const std::vector<std::int64_t> expected = {40, 9, 0, 17, 0, 0};
  EXPECT_EQ(reference_argmax(x, kColumns), expected);
  // NaN and infinities survive the rounding; the other values cannot beat them.
  for (const DType dtype : kFloatingDtypes) EXPECT_EQ(device_argmax(x, Shape{6, kColumns}, dtype), expected) << dtype;
}

TEST(ArgmaxLastDim, ErrorsNameTheOpAndTheShapes) {
  const cudaStream_t stream = current_stream();
  const Tensor x = device_tensor(random_uniform(4400, 12), Shape{3, 4}, stream);
  Tensor wrong_shape = Tensor::empty(Shape{4}, DType::i64, stream);
  EXPECT_NE(invalid_argument_message([&] { argmax_last_dim(x, wrong_shape, stream); })
                .find("indices must have shape (3)"),
            std::string::npos);
  Tensor wrong_dtype = Tensor::empty(Shape{3}, DType::f32, stream);
  EXPECT_NE(invalid_argument_message([&] { argmax_last_dim(x, wrong_dtype, stream); }).find("dtype i64"),
            std::string::npos);
  const Tensor empty_rows = Tensor::empty(Shape{3, 0}, DType::f32, stream);
  EXPECT_NE(invalid_argument_message([&] { argmax_last_dim(empty_rows, stream); }).find("(3, 0)"),
            std::string::npos);
  const Tensor scalar = Tensor::empty(Shape{}, DType::f32, stream);
  EXPECT_NE(invalid_argument_message([&] { argmax_last_dim(scalar, stream); }).find("at least one dimension"),
            std::string::npos);
  const Tensor integers = Tensor::zeros(Shape{3, 4}, DType::i32, stream);
  EXPECT_NE(invalid_argument_message([&] { argmax_last_dim(integers, stream); })
                .find("argmax_last_dim: x must have dtype f32, f16 or bf16"),
            std::string::npos);
}

TEST(CountEqual, CountsEqualEntriesExactly) {
  const cudaStream_t stream = current_stream();
  for (const std::int64_t count : {0, 1, 31, 513, 5000}) {
    SCOPED_TRACE("count " + std::to_string(count));
    std::vector<std::int64_t> a, b;
    std::int64_t expected = 0;
    const std::vector<float> draws = random_uniform(4500 + static_cast<std::uint64_t>(count), 2 * count, 0.0f, 10.0f);
    for (std::int64_t i = 0; i < count; ++i) {
      a.push_back(static_cast<std::int64_t>(draws[static_cast<std::size_t>(2 * i)]));
      b.push_back(static_cast<std::int64_t>(draws[static_cast<std::size_t>(2 * i + 1)]));
      expected += a.back() == b.back();
    }
    Tensor result = device_tensor(std::vector<std::int64_t>{kPoisonIndex}, Shape{}, stream);
    count_equal(device_tensor(a, Shape{count}, stream), device_tensor(b, Shape{count}, stream), result, stream);
    EXPECT_EQ(result.to_vector<std::int64_t>(stream), std::vector<std::int64_t>{expected});
  }
  // A tensor against itself, in the allocating form: every entry.
  const Tensor same = device_tensor(std::vector<std::int64_t>{4, -1, 4, 9}, Shape{2, 2}, stream);
  EXPECT_EQ(count_equal(same, same, stream).to_vector<std::int64_t>(stream), std::vector<std::int64_t>{4});
}

TEST(CountEqual, ErrorsNameTheOpAndTheShapes) {
  const cudaStream_t stream = current_stream();
  const Tensor a = Tensor::zeros(Shape{4}, DType::i64, stream);
  const Tensor b = Tensor::zeros(Shape{5}, DType::i64, stream);
  EXPECT_NE(invalid_argument_message([&] { count_equal(a, b, stream); }).find("a (4) and b (5)"), std::string::npos);
  const Tensor f = Tensor::zeros(Shape{4}, DType::f32, stream);
  EXPECT_NE(invalid_argument_message([&] { count_equal(a, f, stream); }).find("count_equal: b must have dtype i64"),
            std::string::npos);
}

}  // namespace
}  // namespace strata::kernels
