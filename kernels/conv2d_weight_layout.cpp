// The weight in the order a conv kernel reads it (kernels/conv2d_weight_layout.h).
#include "kernels/conv2d_weight_layout.h"

#include <cstdint>

#include "strata/core/memory_format.h"

namespace strata::kernels {

Tensor weight_in_kcrs_order(const Tensor& weight, cudaStream_t stream) {
  return weight.is_contiguous() ? weight : weight.contiguous(stream);
}

Tensor weight_in_krsc_order(const Tensor& weight, cudaStream_t stream) {
  const bool krsc = weight.memory_format() == MemoryFormat::channels_last || layouts_coincide(weight.shape());
  const bool aligned = reinterpret_cast<std::uintptr_t>(weight.memory_ptr()) % 16 == 0;
  if (krsc && aligned) return weight;
  Tensor copy = Tensor::empty(weight.shape(), weight.dtype(), stream, MemoryFormat::channels_last);
  copy.copy_from(weight, stream);
  return copy;
}

}  // namespace strata::kernels
