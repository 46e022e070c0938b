// The autocast casts of the functional ops (layers/autocast_policy.h).
#include "layers/autocast_policy.h"

#include "strata/core/autocast.h"
#include "strata/layers/functional.h"

namespace strata::detail {

Tensor autocast_lower(const Tensor& tensor) {
  const std::optional<DType> dtype = autocast_dtype();
  if (!dtype || !tensor.defined() || tensor.dtype() != DType::f32) return tensor;
  return F::to_dtype(tensor, *dtype);
}

Tensor autocast_f32(const Tensor& tensor) {
  if (!autocast_dtype() || !tensor.defined() || !is_floating_point(tensor.dtype()) || tensor.dtype() == DType::f32) {
    return tensor;
  }
  return F::to_dtype(tensor, DType::f32);
}

DType promote_floating(DType a, DType b) noexcept { return a == b ? a : DType::f32; }

}  // namespace strata::detail
