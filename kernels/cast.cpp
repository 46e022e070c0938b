// The checks of the floating-point casts; the conversion itself is core's launch_convert
// (core/tensor_ops.cu), shared with Tensor::to_dtype: element-wise in memory order when
// input and output share a memory order, else core's transposing conversion, which casts
// each element as it moves it (one pass, as Tensor::to_memory_format's).
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
  const bool same_order = same_memory_order(output, input);
  if (same_order && output.memory_ptr() == input.memory_ptr() && output.dtype() == input.dtype()) return;
  expect_distinct(output, input, kOp, "output", "input");
  if (same_order) {
    detail::launch_convert(input.memory_ptr(), input.dtype(), output.memory_ptr(), output.dtype(), input.numel(),
                           stream);
  } else {
    detail::launch_convert_memory_format(input.memory_ptr(), input.dtype(), output.memory_ptr(), output.dtype(),
                                         input.shape(), output.memory_format(), stream);
  }
}

Tensor cast(const Tensor& input, DType dtype, cudaStream_t stream) {
  return cast(input, dtype, input.memory_format(), stream);  // the checks there name an undefined input
}

Tensor cast(const Tensor& input, DType dtype, MemoryFormat format, cudaStream_t stream) {
  STRATA_CHECK(is_floating_point(dtype), "{}: the target dtype is {}, but casts are between f32, f16 and bf16", kOp,
               dtype);
  expect_floating_device_tensor(input, "input");
  STRATA_CHECK(format == MemoryFormat::contiguous || input.dim() == 4,
               "{}: into {} needs a 4-D input (N, C, H, W), got {}", kOp, memory_format_name(format), input.shape());
  Tensor output = Tensor::empty(input.shape(), dtype, stream, format);
  cast(input, output, stream);
  return output;
}

}  // namespace strata::kernels
