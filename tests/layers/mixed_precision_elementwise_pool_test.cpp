// F:: element-wise and pooling ops in f16 and bf16 storage and under autocast
// (strata/core/autocast.h): each runs in its input's dtype through autograd, computing in
// f32 and rounding once, so its outputs and gradients are the f32 run's on the same rounded
// values, rounded to the dtype, bit for bit; an f32 leaf cast with F::to_dtype gets an f32
// gradient. F::add promotes mixed floating dtypes to f32; ops taking several tensors of one
// dtype reject a mix, naming it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "strata/core/autocast.h"
#include "strata/core/errors.h"
#include "strata/core/generator.h"
#include "strata/core/stream.h"
#include "strata/layers/functional.h"
#include "tests/kernels/device_values.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"
#include "tests/support/storage_dtypes.h"

namespace strata::F {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
using testing::bit_patterns;
using testing::storage_values;
using testing::random_uniform;

// (N, C, H, W): 210 elements, not a multiple of the 8-element vectors; odd planes.
const Shape kShape{2, 3, 5, 7};

class MixedPrecisionElementwisePoolTest : public testing::DeviceTest, public ::testing::WithParamInterface<DType> {};

Tensor f32_leaf(const std::vector<float>& values, const Shape& shape) {
  return testing::device_tensor(values, shape, current_stream()).set_requires_grad();
}

std::vector<std::uint32_t> bits_in(const Tensor& tensor, DType dtype) {
  return bit_patterns(storage_values(tensor.to_dtype(dtype, current_stream()), current_stream()));
}

// A one-input op with its parameters bound.
struct UnaryCase {
  const char* name;
  std::function<Tensor(const Tensor&)> apply;
};

std::vector<UnaryCase> unary_cases() {
  return {
      {"relu", [](const Tensor& x) { return relu(x); }},
      {"gelu", [](const Tensor& x) { return gelu(x); }},
      {"gelu_tanh", [](const Tensor& x) { return gelu(x, GeluApproximation::tanh); }},
      {"mul", [](const Tensor& x) { return mul(x, -0.3f); }},
      {"dropout",
       [](const Tensor& x) {
         manual_seed(17);  // the same mask in both runs
         return dropout(x, 0.25f, /*training=*/true);
       }},
      {"max_pool2d",
       [](const Tensor& x) { return max_pool2d(x, {.kernel = {3, 3}, .stride = Size2d{2, 2}, .padding = {1, 1}}); }},
      {"avg_pool2d",
       [](const Tensor& x) {
         const Pool2dParams window{.kernel = {3, 2}, .stride = Size2d{2, 3}, .padding = {1, 1}, .ceil_mode = true};
         return avg_pool2d(x, {.window = window, .count_include_pad = false});
       }},
      {"adaptive_avg_pool2d", [](const Tensor& x) { return adaptive_avg_pool2d(x, {3, 4}); }},
      {"adaptive_max_pool2d", [](const Tensor& x) { return adaptive_max_pool2d(x, {4, 5}); }},
      {"flatten", [](const Tensor& x) { return flatten(x); }},
  };
}

// Each op on an f32 leaf cast to dtype: y in dtype, the f32 run's y on the rounded values
// rounded once; the leaf's gradient f32, the f32 run's gradient rounded to dtype (the cast's
// backward then widens it exactly).
TEST_P(MixedPrecisionElementwisePoolTest, UnaryOpsAreTheF32RunRoundedOnceThroughAutograd) {
  const DType dtype = GetParam();
  const cudaStream_t stream = current_stream();
  std::uint64_t seed = 40;
  for (const UnaryCase& op : unary_cases()) {
    SCOPED_TRACE(op.name);
    const std::vector<float> x_values = random_uniform(seed++, static_cast<std::size_t>(kShape.numel()), -3, 3);
    const Tensor w = f32_leaf(x_values, kShape);
    const Tensor y = op.apply(to_dtype(w, dtype));
    ASSERT_EQ(y.dtype(), dtype);
    const testing::RoundedTensor dL_dy = testing::rounded_device(
        random_uniform(seed++, static_cast<std::size_t>(y.numel())), y.shape(), dtype, stream);
    y.backward(dL_dy.tensor);

    const Tensor x_f32 = f32_leaf(testing::rounded_to(x_values, dtype, stream), kShape);
    const Tensor y_f32 = op.apply(x_f32);
    y_f32.backward(testing::device_tensor(dL_dy.values, y.shape(), stream));

    EXPECT_EQ(bit_patterns(storage_values(y, stream)), bits_in(y_f32, dtype));
    ASSERT_TRUE(w.grad().defined());
    EXPECT_EQ(w.grad().dtype(), DType::f32);
    EXPECT_EQ(bit_patterns(w.grad().to_vector<float>(stream)), bits_in(x_f32.grad(), dtype));
  }
}

// cat of two reduced tensors, and its split in the backward.
TEST_P(MixedPrecisionElementwisePoolTest, CatAndItsSplitStayInTheDtype) {
  const DType dtype = GetParam();
  const cudaStream_t stream = current_stream();
  const std::vector<float> a_values = random_uniform(60, 2 * 3 * 4);
  const std::vector<float> b_values = random_uniform(61, 2 * 5 * 4);
  const Tensor a = f32_leaf(a_values, {2, 3, 4});
  const Tensor b = f32_leaf(b_values, {2, 5, 4});
  const std::vector<Tensor> pieces = {to_dtype(a, dtype), to_dtype(b, dtype)};
  const Tensor y = cat(pieces, 1);
  ASSERT_EQ(y.dtype(), dtype);
  const testing::RoundedTensor dL_dy =
      testing::rounded_device(random_uniform(62, static_cast<std::size_t>(y.numel())), y.shape(), dtype, stream);
  y.backward(dL_dy.tensor);

  const Tensor a_f32 = f32_leaf(testing::rounded_to(a_values, dtype, stream), {2, 3, 4});
  const Tensor b_f32 = f32_leaf(testing::rounded_to(b_values, dtype, stream), {2, 5, 4});
  const std::vector<Tensor> pieces_f32 = {a_f32, b_f32};
  const Tensor y_f32 = cat(pieces_f32, 1);
  y_f32.backward(testing::device_tensor(dL_dy.values, y.shape(), stream));
  EXPECT_EQ(bit_patterns(storage_values(y, stream)), bit_patterns(y_f32.to_vector<float>(stream)));
  EXPECT_EQ(bit_patterns(a.grad().to_vector<float>(stream)), bit_patterns(a_f32.grad().to_vector<float>(stream)));
  EXPECT_EQ(bit_patterns(b.grad().to_vector<float>(stream)), bit_patterns(b_f32.grad().to_vector<float>(stream)));
}

// add of one dtype stays in it: a + alpha * b in f32 from the rounded values, rounded once;
// dL_db = alpha * dL_dy rounded to the dtype.
TEST_P(MixedPrecisionElementwisePoolTest, AddOfOneDtypeStaysInIt) {
  const DType dtype = GetParam();
  const cudaStream_t stream = current_stream();
  const std::vector<float> a_values = random_uniform(70, static_cast<std::size_t>(kShape.numel()));
  const std::vector<float> b_values = random_uniform(71, static_cast<std::size_t>(kShape.numel()));
  const Tensor a = f32_leaf(a_values, kShape);
  const Tensor b = f32_leaf(b_values, kShape);
  const Tensor y = add(to_dtype(a, dtype), to_dtype(b, dtype), -0.75f);
  ASSERT_EQ(y.dtype(), dtype);
  const testing::RoundedTensor dL_dy =
      testing::rounded_device(random_uniform(72, static_cast<std::size_t>(kShape.numel())), kShape, dtype, stream);
  y.backward(dL_dy.tensor);

  const Tensor a_f32 = f32_leaf(testing::rounded_to(a_values, dtype, stream), kShape);
  const Tensor b_f32 = f32_leaf(testing::rounded_to(b_values, dtype, stream), kShape);
  const Tensor y_f32 = add(a_f32, b_f32, -0.75f);
  y_f32.backward(testing::device_tensor(dL_dy.values, kShape, stream));
  EXPECT_EQ(bit_patterns(storage_values(y, stream)), bits_in(y_f32, dtype));
  EXPECT_EQ(bit_patterns(a.grad().to_vector<float>(stream)), bits_in(a_f32.grad(), dtype));
  EXPECT_EQ(bit_patterns(b.grad().to_vector<float>(stream)), bits_in(b_f32.grad(), dtype));
}

// Two different floating dtypes meet in f32, always (not only under autocast): the narrower
// operand is cast with to_dtype, and its gradient cast back.
TEST_P(MixedPrecisionElementwisePoolTest, AddPromotesMixedDtypesToF32) {
  const DType dtype = GetParam();
  const DType other = dtype == DType::bf16 ? DType::f16 : DType::bf16;
  const cudaStream_t stream = current_stream();
  const std::vector<float> a_values = random_uniform(80, 6);
  const std::vector<float> b_values = random_uniform(81, 6);
  const Tensor a = f32_leaf(a_values, {6});
  const Tensor b = f32_leaf(b_values, {6});
  const Tensor b_reduced = to_dtype(b, dtype);
  const std::vector<float> b_rounded = storage_values(b_reduced, stream);

  const Tensor y = add(a, b_reduced, 0.5f);
  ASSERT_EQ(y.dtype(), DType::f32);
  const std::vector<float> y_values = y.to_vector<float>(stream);
  for (std::size_t i = 0; i < y_values.size(); ++i) {
    EXPECT_EQ(y_values[i], std::fmaf(0.5f, b_rounded[i], a_values[i])) << "element " << i;
  }
  y.backward(testing::device_tensor(std::vector<float>{1, 2, 3, 4, 5, 6}, {6}, stream));
  EXPECT_THAT(a.grad().to_vector<float>(stream), ::testing::ElementsAre(1, 2, 3, 4, 5, 6));
  EXPECT_EQ(b.grad().dtype(), DType::f32);
  EXPECT_THAT(b.grad().to_vector<float>(stream), ::testing::ElementsAre(0.5f, 1, 1.5f, 2, 2.5f, 3));

  // f16 with bf16: neither holds the other, so f32; either order.
  EXPECT_EQ(add(to_dtype(a, other), b_reduced).dtype(), DType::f32);
  EXPECT_EQ(add(b_reduced, to_dtype(a, other)).dtype(), DType::f32);
  // Under autocast too (add is not one of the lowered ops).
  AutocastGuard autocast(dtype);
  EXPECT_EQ(add(a, b_reduced).dtype(), DType::f32);
}

// Autocast leaves these ops in their input's dtype: f32 stays f32, a reduced input stays so.
TEST_P(MixedPrecisionElementwisePoolTest, AutocastRunsTheseOpsInTheirInputsDtype) {
  const DType dtype = GetParam();
  const Tensor x = testing::device_tensor(random_uniform(90, static_cast<std::size_t>(kShape.numel())), kShape,
                                          current_stream());
  AutocastGuard autocast(dtype);
  for (const UnaryCase& op : unary_cases()) {
    SCOPED_TRACE(op.name);
    EXPECT_EQ(op.apply(x).dtype(), DType::f32);
    EXPECT_EQ(op.apply(to_dtype(x, dtype)).dtype(), dtype);
  }
}

TEST_P(MixedPrecisionElementwisePoolTest, MixedOrIntegerDtypesAreErrorsNamingTheOperands) {
  const DType dtype = GetParam();
  const cudaStream_t stream = current_stream();
  const std::string name(dtype_name(dtype));
  const std::vector<Tensor> mixed = {Tensor::zeros({2, 3}, dtype, stream), Tensor::zeros({2, 3}, DType::f32, stream)};
  EXPECT_THAT([&] { cat(mixed, 0); },
              ThrowsMessage<InvalidArgument>(AllOf(HasSubstr("cat: xs[1] has dtype f32 but xs[0] has dtype " + name),
                                                   HasSubstr("F::to_dtype"), HasSubstr("strata::AutocastGuard"))));
  const Tensor ints = Tensor::zeros({1, 2, 4, 4}, DType::i32, stream);
  EXPECT_THAT([&] { relu(ints); },
              ThrowsMessage<InvalidArgument>(HasSubstr("relu_forward: x must have dtype f32, f16 or bf16")));
  EXPECT_THAT([&] { max_pool2d(ints, {.kernel = {2, 2}}); },
              ThrowsMessage<InvalidArgument>(HasSubstr("max_pool2d: x must have dtype f32, f16 or bf16")));
  EXPECT_THAT([&] { add(ints, Tensor::zeros({1, 2, 4, 4}, dtype, stream)); },
              ThrowsMessage<InvalidArgument>(HasSubstr("add: a must have dtype f32, f16 or bf16")));
}

INSTANTIATE_TEST_SUITE_P(F16AndBf16, MixedPrecisionElementwisePoolTest, ::testing::ValuesIn(testing::kReducedDtypes),
                         testing::dtype_param_name);

}  // namespace
}  // namespace strata::F
