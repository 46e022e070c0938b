// The autocast casts of the functional ops (layers/autocast_policy.h).
#include "layers/autocast_policy.h"

#include "strata/core/autocast.h"
#include "strata/core/autograd.h"
#include "strata/layers/functional.h"

namespace strata::detail {

Tensor autocast_lower(const Tensor& tensor) {
  return tensor.defined() ? autocast_lower(tensor, tensor.memory_format()) : tensor;
}

Tensor autocast_lower(const Tensor& tensor, MemoryFormat format) {
  const std::optional<DType> dtype = autocast_dtype();
  if (!dtype || !tensor.defined() || tensor.dtype() != DType::f32) return tensor;
  // Only parameters are cached (PyTorch's rule): activations are cast once anyway, and a
  // tensor an op produced may be rewritten in place between uses.
  if (!tensor.is_leaf() || !tensor.requires_grad()) return F::to_dtype(tensor, *dtype, format);
  const bool recorded = autograd::is_grad_enabled();
  if (const Tensor* cached = autocast_cache_find(tensor, *dtype, format, recorded)) return *cached;
  Tensor cast = F::to_dtype(tensor, *dtype, format);
  autocast_cache_insert(tensor, *dtype, recorded, cast);
  return cast;
}

Tensor lower_conv2d_weight(const Tensor& weight, MemoryFormat format) {
  const Tensor lowered = autocast_lower(weight, format);
  if (!lowered.defined() || lowered.dim() != 4) return lowered;  // the op reports it
  return F::to_memory_format(lowered, format);
}

Tensor autocast_f32(const Tensor& tensor) {
  if (!autocast_dtype() || !tensor.defined() || !is_floating_point(tensor.dtype()) || tensor.dtype() == DType::f32) {
    return tensor;
  }
  return F::to_dtype(tensor, DType::f32);
}

DType promote_floating(DType a, DType b) noexcept { return a == b ? a : DType::f32; }

}  // namespace strata::detail
