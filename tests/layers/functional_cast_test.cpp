// F::to_dtype: the cast of kernels::cast with autograd, whose backward casts the gradient
// back to the input's dtype (f32 master weights get f32 gradients through an f16 copy).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

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

}  // namespace
}  // namespace strata
