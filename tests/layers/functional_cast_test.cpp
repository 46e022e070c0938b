// F::to_dtype: the cast of kernels::cast with autograd, whose backward casts the gradient
// back to the input's dtype (f32 master weights get f32 gradients through an f16 copy), with
// a memory format the cast into it and the gradient's back out; the autocast cache of
// parameter casts (strata/core/autocast.h), keyed by format too; and the conv weight
// lowering that uses both (lower_conv2d_weight).
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

// f32 leaf (K, C, R, S) -> bf16 channels-last -> f32 contiguous: one kernel each way, the
// values of a cast then a conversion, and dL/dx cast back in the leaf's format.
TEST_F(FunctionalCastTest, CastIntoAFormatAndItsGradientBackOutOfIt) {
  const cudaStream_t stream = current_stream();
  Tensor x = testing::device_tensor(values_that_round(9200, 8 * 3 * 3 * 5), Shape{8, 3, 3, 5}, stream);
  x.set_requires_grad();
  const Tensor lowered = F::to_dtype(x, DType::bf16, MemoryFormat::channels_last);
  EXPECT_EQ(lowered.dtype(), DType::bf16);
  EXPECT_EQ(lowered.memory_format(), MemoryFormat::channels_last);
  EXPECT_EQ(lowered.grad_fn()->name(), "ToDtypeBackward");
  EXPECT_EQ(bit_patterns(F::to_dtype(lowered, DType::f32, MemoryFormat::contiguous).to_vector<float>(stream)),
            bit_patterns(round_trip(x, DType::bf16, stream)));
  // The upstream gradient arrives contiguous, as a conv's filter gradient does.
  const Tensor upstream = testing::device_tensor(values_that_round(9201, 8 * 3 * 3 * 5), Shape{8, 3, 3, 5}, stream);
  const Tensor dL_dlowered = kernels::cast(upstream, DType::bf16, stream);
  autograd::backward(lowered, dL_dlowered, stream);
  EXPECT_EQ(x.grad().dtype(), DType::f32);
  EXPECT_EQ(x.grad().memory_format(), MemoryFormat::contiguous);
  EXPECT_EQ(bit_patterns(x.grad().to_vector<float>(stream)), bit_patterns(round_trip(upstream, DType::bf16, stream)));
  // Of one dtype and format already: x itself. Into channels-last: 4-D only.
  EXPECT_TRUE(F::to_dtype(x, DType::f32, MemoryFormat::contiguous).shares_storage_with(x));
  const Tensor matrix = testing::device_tensor({1.0f, 2.0f}, Shape{1, 2}, stream);
  EXPECT_NE(testing::invalid_argument_message([&] { F::to_dtype(matrix, DType::bf16, MemoryFormat::channels_last); })
                .find("needs a 4-D tensor"),
            std::string::npos);
}

TEST_F(FunctionalCastTest, AutocastCachesACastPerFormatAndLowersConvWeightsIntoTheirFormat) {
  Tensor weight = testing::random_leaf(9250, Shape{8, 16, 3, 3});
  const AutocastGuard autocast(DType::bf16);
  const Tensor channels_last = detail::lower_conv2d_weight(weight, MemoryFormat::channels_last);
  EXPECT_EQ(channels_last.dtype(), DType::bf16);
  EXPECT_EQ(channels_last.memory_format(), MemoryFormat::channels_last);
  EXPECT_EQ(channels_last.grad_fn()->name(), "ToDtypeBackward") << "one op: the cast into the format";
  EXPECT_TRUE(detail::lower_conv2d_weight(weight, MemoryFormat::channels_last).shares_storage_with(channels_last));
  const Tensor contiguous = detail::lower_conv2d_weight(weight, MemoryFormat::contiguous);
  EXPECT_EQ(contiguous.memory_format(), MemoryFormat::contiguous);
  EXPECT_FALSE(contiguous.shares_storage_with(channels_last)) << "another format, another entry";
  EXPECT_EQ(autocast_cached_casts(), 2u);
  {
    // Without autocast the weight keeps its dtype and is converted, with autograd.
    const AutocastGuard off(std::nullopt);
    const Tensor converted = detail::lower_conv2d_weight(weight, MemoryFormat::channels_last);
    EXPECT_EQ(converted.dtype(), DType::f32);
    EXPECT_EQ(converted.memory_format(), MemoryFormat::channels_last);
    EXPECT_EQ(converted.grad_fn()->name(), "ToMemoryFormatBackward");
    EXPECT_TRUE(detail::lower_conv2d_weight(weight, MemoryFormat::contiguous).shares_storage_with(weight));
  }
}

// A leaf's gradient is kept in the leaf's format (PyTorch's layout contract), whatever format
// the first gradient arrives in; later ones are added into it.
TEST_F(FunctionalCastTest, LeafGradientsAreKeptInTheLeafsFormat) {
  const cudaStream_t stream = current_stream();
  for (const MemoryFormat leaf_format : {MemoryFormat::contiguous, MemoryFormat::channels_last}) {
    SCOPED_TRACE(std::string(memory_format_name(leaf_format)));
    Tensor leaf = testing::random_device(9260, Shape{2, 3, 4, 5}).to_memory_format(leaf_format, stream);
    leaf.set_requires_grad();
    const MemoryFormat other = leaf_format == MemoryFormat::contiguous ? MemoryFormat::channels_last
                                                                       : MemoryFormat::contiguous;
    const Tensor upstream = testing::random_device(9261, Shape{2, 3, 4, 5});
    for (int use = 0; use < 2; ++use) {
      // An identity whose backward hands the leaf its gradient in the other format.
      Tensor y = Tensor::empty(leaf.shape(), DType::f32, stream, leaf_format);
      y.copy_from(leaf.detach(), stream);
      autograd::record("GradientInTheOtherFormat", {leaf}, y,
                       [other](autograd::Gradients dL_dy, cudaStream_t s) {
                         return autograd::Gradients{dL_dy[0].detach().to_memory_format(other, s)};
                       });
      autograd::backward(y, upstream.to_memory_format(leaf_format, stream), stream);
      EXPECT_EQ(leaf.grad().memory_format(), leaf_format) << "use " << use;
    }
    const std::vector<float> expected = upstream.to_vector<float>(stream);
    const std::vector<float> got = leaf.grad().to_vector<float>(stream);
    ASSERT_EQ(got.size(), expected.size());
    for (std::size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], 2.0f * expected[i]) << i;
  }
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
