// F::to_dtype: the floating-point cast of strata/kernels/cast.h in an op named "cast", and
// its backward, the cast of the gradient back to the input's dtype ("cast_backward").
#include "core/check.h"
#include "core/format.h"
#include "strata/core/autograd.h"
#include "strata/core/op.h"
#include "strata/core/stream.h"
#include "strata/kernels/cast.h"
#include "strata/layers/functional.h"

namespace strata::F {

namespace {

// x converted to dtype in a new tensor of x's memory format (the cast is element-wise, so
// the gradient comes back in the format of the tensor it is for), queued on stream as op name.
Tensor cast_into_new(const char* name, const Tensor& x, DType dtype, cudaStream_t stream) {
  Tensor y = Tensor::empty(x.shape(), dtype, stream, x.memory_format());
  graph::run_op_on(stream, name, {x}, {y}, [x = x.detach(), y](cudaStream_t s) mutable { kernels::cast(x, y, s); });
  return y;
}

}  // namespace

Tensor to_dtype(const Tensor& x, DType dtype) {
  STRATA_CHECK(x.defined(), "F::to_dtype: x is an undefined tensor");
  STRATA_CHECK(x.is_device() && is_floating_point(x.dtype()) && is_floating_point(dtype),
               "F::to_dtype: casts a floating-point device tensor (f32, f16, bf16) to a floating-point dtype; got {}, "
               "to {}",
               x.to_string(), dtype);
  if (x.dtype() == dtype) return x;  // as torch.Tensor.to: the tensor itself, not a copy
  Tensor y = cast_into_new("cast", x, dtype, current_stream());
  if (autograd::needs_grad({x})) {
    // The backward keeps only a dtype: never released, so that a cast autocast caches for a
    // parameter serves every backward of its region (several micro-batches under one guard).
    autograd::keep_after_backward(
        autograd::record("ToDtypeBackward", {x}, y,
                         [input_dtype = x.dtype()](autograd::Gradients dL_dy, cudaStream_t stream) {
                           return autograd::Gradients{cast_into_new("cast_backward", dL_dy[0], input_dtype, stream)};
                         }));
  }
  return y;
}

}  // namespace strata::F
