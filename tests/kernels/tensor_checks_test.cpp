// The launchers' argument checks name the op, the argument and the shapes.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "kernels/tensor_checks.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"

namespace strata::kernels {
namespace {

std::string message_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const InvalidArgument& error) {
    return error.what();
  }
  return "(no exception)";
}

TEST(TensorChecks, NameTheOpArgumentAndShape) {
  const cudaStream_t stream = current_stream();
  const Tensor device = Tensor::empty({2, 3}, DType::f32, stream);
  const Tensor host = Tensor::empty_host({2, 3}, DType::f32);
  EXPECT_NO_THROW(expect_device_tensor(device, "op", "x"));
  EXPECT_NE(message_of([&] { expect_device_tensor(host, "conv2d", "weight"); }).find("conv2d: weight must be a device tensor"),
            std::string::npos);
  EXPECT_NE(message_of([&] { expect_device_tensor(device, "conv2d", "weight", DType::i64); }).find("dtype i64"),
            std::string::npos);
  EXPECT_NE(message_of([&] { expect_device_tensor(Tensor(), "relu", "x"); }).find("relu: x is an undefined tensor"),
            std::string::npos);
  EXPECT_NE(message_of([&] { expect_rank(device, 4, "max_pool2d", "input"); })
                .find("max_pool2d: input must have 4 dimensions, got shape (2, 3)"),
            std::string::npos);
  EXPECT_NE(message_of([&] { expect_shape(device, Shape{3, 2}, "add", "b"); }).find("add: b must have shape (3, 2), got (2, 3)"),
            std::string::npos);
}

TEST(TensorChecks, OverlappingOutputIsRejected) {
  const cudaStream_t stream = current_stream();
  const Tensor x = Tensor::empty({4, 8}, DType::f32, stream);
  const Tensor other = Tensor::empty({4, 8}, DType::f32, stream);
  EXPECT_NO_THROW(expect_distinct(other, x, "op", "y", "x"));
  EXPECT_THROW(expect_distinct(x.narrow(0, 1, 2), x, "op", "y", "x"), InvalidArgument);
}

}  // namespace
}  // namespace strata::kernels
