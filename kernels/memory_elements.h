// memory_elements<T>(tensor): the first element of a tensor in memory as T*, whatever its
// memory format (Tensor::memory_ptr), for kernels that handle the format themselves: element-
// wise maps over operands of one memory order, and the kernels whose geometry carries the
// layout (conv2d, batch norm, pooling). The caller has checked the dtype and the formats.
#pragma once

#include "strata/core/tensor.h"

namespace strata::kernels {

template <typename T>
T* memory_elements(Tensor& tensor) {
  return static_cast<T*>(tensor.memory_ptr());
}
template <typename T>
const T* memory_elements(const Tensor& tensor) {
  return static_cast<const T*>(tensor.memory_ptr());
}

}  // namespace strata::kernels
