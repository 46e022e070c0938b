// The weight in the order a conv kernel reads it (kernels/conv2d_weight_layout.h).
#include "kernels/conv2d_weight_layout.h"

#include <cstdint>

#include "core/tensor_ops.h"
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

Tensor weight_in_rsck_order(const Tensor& weight, std::int64_t groups, cudaStream_t stream) {
  const Tensor krsc = weight_in_krsc_order(weight, stream);
  const std::int64_t out_channels = weight.shape()[0] / groups;
  const std::int64_t taps_and_channels = weight.numel() / weight.shape()[0];  // R * S * C/groups
  Tensor rsck = Tensor::empty({groups, taps_and_channels, out_channels}, weight.dtype(), stream);
  // (groups, K/groups, R*S*C/groups, 1) read as contiguous, written channels-last: the transposes.
  detail::launch_convert_memory_format(krsc.memory_ptr(), weight.dtype(), rsck.memory_ptr(), weight.dtype(),
                                       {groups, out_channels, taps_and_channels, 1}, MemoryFormat::channels_last,
                                       stream);
  return rsck;
}

}  // namespace strata::kernels
