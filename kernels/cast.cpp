// The checks of the floating-point casts; the conversion itself is core's launch_convert
// (core/tensor_ops.cu), shared with Tensor::to_dtype. Element-wise in memory order, so any
// memory format, one for input and output.
#include "strata/kernels/cast.h"

#include "core/check.h"
#include "core/format.h"
#include "core/nvtx.h"
#include "core/tensor_ops.h"
#include "kernels/tensor_checks.h"
#include "strata/kernels/elementwise.h"

namespace strata::kernels {

namespace {

constexpr const char* kOp = "cast";

void expect_floating_device_tensor(const Tensor& tensor, const char* name) {
  STRATA_CHECK(tensor.defined(), "{}: {} is an undefined tensor", kOp, name);
  STRATA_CHECK(is_floating_point(tensor.dtype()), "{}: {} has dtype {}, but casts are between f32, f16 and bf16 ({})",
               kOp, name, tensor.dtype(), tensor.shape());
  expect_device_tensor(tensor, kOp, name, tensor.dtype());
}

}  // namespace

void cast(const Tensor& input, Tensor& output, cudaStream_t stream) {
  NvtxRange range(kOp);
  expect_floating_device_tensor(input, "input");
  expect_floating_device_tensor(output, "output");
  expect_shape(output, input.shape(), kOp, "output");
  expect_same_memory_order(output, input, kOp, "output", "input");
  if (output.memory_ptr() == input.memory_ptr() && output.dtype() == input.dtype()) return;
  expect_distinct(output, input, kOp, "output", "input");
  detail::launch_convert(input.memory_ptr(), input.dtype(), output.memory_ptr(), output.dtype(), input.numel(),
                         stream);
}

Tensor cast(const Tensor& input, DType dtype, cudaStream_t stream) {
  STRATA_CHECK(is_floating_point(dtype), "{}: the target dtype is {}, but casts are between f32, f16 and bf16", kOp,
               dtype);
  expect_floating_device_tensor(input, "input");
  Tensor output = Tensor::empty(input.shape(), dtype, stream, input.memory_format());
  cast(input, output, stream);
  return output;
}

}  // namespace strata::kernels
