// F::to_dtype: the cast of kernels::cast with autograd, whose backward casts the gradient
// back to the input's dtype (f32 master weights get f32 gradients through an f16 copy); and
// the autocast cache of parameter casts (strata/core/autocast.h).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "layers/autocast_policy.h"
#include "strata/core/autocast.h"
#include "strata/core/autograd.h"
#include "strata/core/stream.h"
#include "strata/kernels/cast.h"
#include "strata/layers/functional.h"
#include "tests/kernels/device_values.h"
#include "tests/support/device_test.h"

namespace strata {
namespace {

using FunctionalCastTest = testing::DeviceTest;
using testing::bit_patterns;

// Values with bits below f16's and bf16's precision, and beyond f16's range.
std::vector<float> values_that_round(std::uint64_t seed, std::size_t count) {
  std::vector<float> values = testing::random_uniform(seed, count, -3.0f, 3.0f);
  values[0] = 70000.0f;  // inf in f16
  values[1] = 1.0f + 1.0f / 4096.0f;
  return values;
}

// x (f32) -> dtype -> f32 through the kernel, for the expected values.
std::vector<float> round_trip(const Tensor& x, DType dtype, cudaStream_t stream) {
  return kernels::cast(kernels::cast(x, dtype, stream), DType::f32, stream).to_vector<float>(stream);
}

TEST_F(FunctionalCastTest, ForwardIsTheKernelsCast) {
  const cudaStream_t stream = current_stream();
  const Tensor x = testing::device_tensor(values_that_round(9000, 37), Shape{37}, stream);
  for (const DType dtype : {DType::f16, DType::bf16}) {
    const Tensor y = F::to_dtype(x, dtype);
    EXPECT_EQ(y.dtype(), dtype);
    EXPECT_EQ(bit_patterns(F::to_dtype(y, DType::f32).to_vector<float>(stream)),
              bit_patterns(round_trip(x, dtype, stream)));
  }
}

// x (f32 leaf) -> f16 or bf16 -> f32: dL/dx is dL/dz rounded to the middle dtype and back.
TEST_F(FunctionalCastTest, GradientIsCastBackToTheInputDType) {
  const cudaStream_t stream = current_stream();
  for (const DType middle : {DType::f16, DType::bf16}) {
    SCOPED_TRACE(std::string(dtype_name(middle)));
    Tensor x = testing::device_tensor(testing::random_uniform(9100, 2 * 3 * 5), Shape{2, 3, 5}, stream);
    x.set_requires_grad();
    const Tensor reduced = F::to_dtype(x, middle);
    ASSERT_TRUE(reduced.requires_grad());
    EXPECT_EQ(reduced.grad_fn()->name(), "ToDtypeBackward");
    const Tensor z = F::to_dtype(reduced, DType::f32);
    const std::vector<float> upstream = values_that_round(9101, 30);
    const Tensor dL_dz = testing::device_tensor(upstream, Shape{2, 3, 5}, stream);
    z.backward(dL_dz);
    ASSERT_TRUE(x.grad().defined());
    EXPECT_EQ(x.grad().dtype(), DType::f32);
    EXPECT_EQ(bit_patterns(x.grad().to_vector<float>(stream)), bit_patterns(round_trip(dL_dz, middle, stream)));
  }
}

TEST_F(FunctionalCastTest, SameDTypeIsTheTensorItselfAndNoGradModeRecordsNothing) {
  const cudaStream_t stream = current_stream();
  Tensor x = testing::device_tensor({1.0f, 2.0f}, Shape{2}, stream);
  x.set_requires_grad();
  const Tensor same = F::to_dtype(x, DType::f32);
  EXPECT_TRUE(same.shares_storage_with(x));
  EXPECT_TRUE(same.is_leaf());
  const autograd::NoGradGuard no_grad;
  EXPECT_FALSE(F::to_dtype(x, DType::f16).requires_grad());
}

TEST_F(FunctionalCastTest, RejectsIntegerAndHostTensors) {
  const cudaStream_t stream = current_stream();
  const Tensor x = testing::device_tensor({1.0f, 2.0f}, Shape{2}, stream);
  EXPECT_NE(testing::invalid_argument_message([&] { F::to_dtype(x, DType::i32); }).find("F::to_dtype"),
            std::string::npos);
  const Tensor host = Tensor::from_vector(std::vector<float>{1.0f}, Shape{1});
  EXPECT_NE(testing::invalid_argument_message([&] { F::to_dtype(host, DType::f16); }).find("device tensor"),
            std::string::npos);
}

// Small integers: every product and sum of the linear below is exact in bf16.
Tensor integer_tensor(std::uint64_t seed, const Shape& shape, cudaStream_t stream) {
  std::vector<float> values = testing::random_uniform(seed, static_cast<std::size_t>(shape.numel()), -2.5f, 2.5f);
  for (float& value : values) value = static_cast<float>(static_cast<int>(value));
  return testing::device_tensor(values, shape, stream);
}

TEST_F(FunctionalCastTest, AutocastCastsEachParameterOncePerRegionAndDType) {
  const cudaStream_t stream = current_stream();
  Tensor weight = testing::random_leaf(9300, Shape{4, 3});
  const Tensor input = testing::random_device(9301, Shape{4, 3});  // requires no grad
  EXPECT_EQ(autocast_cached_casts(), 0u);
  {
    const AutocastGuard autocast(DType::bf16);
    const Tensor first = detail::autocast_lower(weight);
    const Tensor second = detail::autocast_lower(weight);
    EXPECT_EQ(first.dtype(), DType::bf16);
    EXPECT_TRUE(first.shares_storage_with(second)) << "the second use must reuse the first cast";
    EXPECT_EQ(first.grad_fn(), second.grad_fn());
    EXPECT_EQ(autocast_cached_casts(), 1u);
    // Not a parameter: cast at each use, never cached.
    EXPECT_FALSE(detail::autocast_lower(input).shares_storage_with(detail::autocast_lower(input)));
    const Tensor not_leaf = F::add(weight, weight);
    EXPECT_FALSE(detail::autocast_lower(not_leaf).shares_storage_with(detail::autocast_lower(not_leaf)));
    EXPECT_EQ(autocast_cached_casts(), 1u);
    {
      // Nested: another dtype is another entry; switching autocast off casts nothing; the
      // inner guards' ends keep the cache.
      const AutocastGuard inner(DType::f16);
      EXPECT_EQ(detail::autocast_lower(weight).dtype(), DType::f16);
      EXPECT_EQ(autocast_cached_casts(), 2u);
      const AutocastGuard off(std::nullopt);
      EXPECT_TRUE(detail::autocast_lower(weight).shares_storage_with(weight));
    }
    EXPECT_EQ(autocast_cached_casts(), 2u);
    EXPECT_TRUE(detail::autocast_lower(weight).shares_storage_with(first));
    {
      // Under NoGrad a cast records no node, and is cached apart from the recorded one.
      const autograd::NoGradGuard no_grad;
      const Tensor unrecorded = detail::autocast_lower(weight);
      EXPECT_EQ(unrecorded.grad_fn(), nullptr);
      EXPECT_FALSE(unrecorded.shares_storage_with(first));
      EXPECT_TRUE(detail::autocast_lower(weight).shares_storage_with(unrecorded));
      EXPECT_EQ(autocast_cached_casts(), 3u);
    }
    EXPECT_NE(detail::autocast_lower(weight).grad_fn(), nullptr);
  }
  EXPECT_EQ(autocast_cached_casts(), 0u);  // cleared by the outermost guard
  {
    const AutocastGuard autocast(DType::bf16);
    EXPECT_EQ(autocast_cached_casts(), 0u);
    detail::autocast_lower(weight);
    EXPECT_EQ(autocast_cached_casts(), 1u);
  }
  (void)stream;
}

// A weight used twice (weight sharing) through the cached cast gets the gradient of two
// separate casts: both uses' gradients reach the f32 master weight.
TEST_F(FunctionalCastTest, CachedCastGradientsEqualSeparateCasts) {
  const cudaStream_t stream = current_stream();
  Tensor weight = integer_tensor(9400, Shape{4, 3}, stream);
  Tensor bias = integer_tensor(9401, Shape{4}, stream);
  Tensor weight_apart = integer_tensor(9400, Shape{4, 3}, stream);
  Tensor bias_apart = integer_tensor(9401, Shape{4}, stream);
  for (Tensor* leaf : {&weight, &bias, &weight_apart, &bias_apart}) leaf->set_requires_grad();
  const Tensor x1 = integer_tensor(9402, Shape{5, 3}, stream);
  const Tensor x2 = integer_tensor(9403, Shape{5, 3}, stream);
  const Tensor dL_dy = integer_tensor(9404, Shape{5, 4}, stream);
  Tensor y;
  {
    const AutocastGuard autocast(DType::bf16);
    y = F::to_dtype(F::add(F::linear(x1, weight, bias), F::linear(x2, weight, bias)), DType::f32);
    EXPECT_EQ(autocast_cached_casts(), 2u);  // weight and bias, once each
  }
  y.backward(dL_dy);
  const auto bf16 = [](const Tensor& t) { return F::to_dtype(t, DType::bf16); };
  const Tensor y_apart = F::to_dtype(F::add(F::linear(bf16(x1), bf16(weight_apart), bf16(bias_apart)),
                                            F::linear(bf16(x2), bf16(weight_apart), bf16(bias_apart))),
                                     DType::f32);
  y_apart.backward(dL_dy);
  EXPECT_EQ(bit_patterns(y.to_vector<float>(stream)), bit_patterns(y_apart.to_vector<float>(stream)));
  ASSERT_TRUE(weight.grad().defined());
  EXPECT_EQ(weight.grad().dtype(), DType::f32);
  EXPECT_EQ(bit_patterns(weight.grad().to_vector<float>(stream)),
            bit_patterns(weight_apart.grad().to_vector<float>(stream)));
  EXPECT_EQ(bit_patterns(bias.grad().to_vector<float>(stream)), bit_patterns(bias_apart.grad().to_vector<float>(stream)));
}

// Micro-batches under one guard: each backward runs through the same cached casts, and the
// gradients add up as two separate regions' would.
TEST_F(FunctionalCastTest, SeveralBackwardsRunThroughOneRegionsCachedCasts) {
  const cudaStream_t stream = current_stream();
  Tensor weight = integer_tensor(9410, Shape{4, 3}, stream);
  Tensor weight_apart = integer_tensor(9410, Shape{4, 3}, stream);
  weight.set_requires_grad();
  weight_apart.set_requires_grad();
  const Tensor x[2] = {integer_tensor(9411, Shape{5, 3}, stream), integer_tensor(9412, Shape{5, 3}, stream)};
  const Tensor dL_dy = integer_tensor(9413, Shape{5, 4}, stream);
  {
    const AutocastGuard autocast(DType::bf16);
    for (const Tensor& batch : x) F::to_dtype(F::linear(batch, weight, Tensor()), DType::f32).backward(dL_dy);
    EXPECT_EQ(autocast_cached_casts(), 1u);
  }
  for (const Tensor& batch : x) {
    const AutocastGuard autocast(DType::bf16);  // a region each: no cache shared
    F::to_dtype(F::linear(batch, weight_apart, Tensor()), DType::f32).backward(dL_dy);
  }
  EXPECT_EQ(bit_patterns(weight.grad().to_vector<float>(stream)),
            bit_patterns(weight_apart.grad().to_vector<float>(stream)));
}

}  // namespace
}  // namespace strata
