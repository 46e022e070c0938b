// F::to_dtype: the floating-point cast of strata/kernels/cast.h in an op named "cast", and
// its backward, the cast of the gradient back to the input's dtype ("cast_backward"); with a
// memory format, the cast into it in the same pass, and the gradient's back out of it.
#include "core/check.h"
#include "core/format.h"
#include "strata/core/autograd.h"
#include "strata/core/op.h"
#include "strata/core/stream.h"
#include "strata/kernels/cast.h"
#include "strata/layers/functional.h"

namespace strata::F {

namespace {

// x converted to dtype in a new tensor in format, queued on stream as op name.
Tensor cast_into_new(const char* name, const Tensor& x, DType dtype, MemoryFormat format, cudaStream_t stream) {
  Tensor y = Tensor::empty(x.shape(), dtype, stream, format);
  graph::run_op_on(stream, name, {x}, {y}, [x = x.detach(), y](cudaStream_t s) mutable { kernels::cast(x, y, s); });
  return y;
}

}  // namespace

Tensor to_dtype(const Tensor& x, DType dtype) {
  STRATA_CHECK(x.defined(), "F::to_dtype: x is an undefined tensor");
  return to_dtype(x, dtype, x.memory_format());
}

Tensor to_dtype(const Tensor& x, DType dtype, MemoryFormat format) {
  STRATA_CHECK(x.defined(), "F::to_dtype: x is an undefined tensor");
  STRATA_CHECK(x.is_device() && is_floating_point(x.dtype()) && is_floating_point(dtype),
               "F::to_dtype: casts a floating-point device tensor (f32, f16, bf16) to a floating-point dtype; got {}, "
               "to {}",
               x.to_string(), dtype);
  STRATA_CHECK(format == MemoryFormat::contiguous || x.dim() == 4,
               "F::to_dtype: {} needs a 4-D tensor (N, C, H, W), got x of shape {}", memory_format_name(format),
               x.shape());
  // As torch.Tensor.to: the tensor itself, not a copy.
  if (x.dtype() == dtype && x.memory_format() == format) return x;
  Tensor y = cast_into_new("cast", x, dtype, format, current_stream());
  if (autograd::needs_grad({x})) {
    // The backward keeps only a dtype and a format: never released, so that a cast autocast
    // caches for a parameter serves every backward of its region (several micro-batches
    // under one guard). A gradient may come in any format; it leaves in x's where the
    // forward changed the format, else in its own (no transpose an element-wise cast needs).
    const bool format_changed = format != x.memory_format();
    autograd::keep_after_backward(autograd::record(
        "ToDtypeBackward", {x}, y,
        [input_dtype = x.dtype(), input_format = x.memory_format(), format_changed](autograd::Gradients dL_dy,
                                                                                    cudaStream_t stream) {
          const MemoryFormat back = format_changed ? input_format : dL_dy[0].memory_format();
          return autograd::Gradients{cast_into_new("cast_backward", dL_dy[0], input_dtype, back, stream)};
        }));
  }
  return y;
}

}  // namespace strata::F
