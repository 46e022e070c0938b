// Helpers of the tests of ops that store f32, f16 or bf16 (the linear, softmax, cross-entropy
// and argmax tests): device tensors of a storage dtype made from f32 values, poisoned
// outputs of that dtype, elements read back as float, values rounded as the kernels round,
// and the relative error of one rounding to the dtype.
#pragma once

#include <cmath>
#include <vector>

#include "strata/core/tensor.h"
#include "tests/kernels/device_values.h"

namespace strata::testing {

inline constexpr DType kReducedDtypes[] = {DType::bf16, DType::f16};

// A device tensor of dtype holding values rounded to it (to nearest, ties to even).
inline Tensor storage_tensor(const std::vector<float>& values, const Shape& shape, DType dtype, cudaStream_t stream) {
  const Tensor f32 = device_tensor(values, shape, stream);
  return dtype == DType::f32 ? f32 : f32.to_dtype(dtype, stream);
}

// A device tensor of dtype whose every element is the poison (a NaN in f16 and bf16 too).
inline Tensor poisoned_storage(const Shape& shape, DType dtype, cudaStream_t stream) {
  const Tensor poisoned = poisoned_tensor(shape, stream);
  return dtype == DType::f32 ? poisoned : poisoned.to_dtype(dtype, stream);
}

// The elements of a floating device tensor as float (exact).
inline std::vector<float> storage_values(const Tensor& tensor, cudaStream_t stream) {
  return tensor.dtype() == DType::f32 ? tensor.to_vector<float>(stream)
                                      : tensor.to_dtype(DType::f32, stream).to_vector<float>(stream);
}

// values rounded to dtype as the kernels round their stores, back as float: the values a
// kernel reads from a tensor of dtype, which the double reference then takes as its inputs.
inline std::vector<float> rounded_to(const std::vector<float>& values, DType dtype, cudaStream_t stream) {
  if (dtype == DType::f32 || values.empty()) return values;
  return storage_values(storage_tensor(values, Shape{static_cast<std::int64_t>(values.size())}, dtype, stream), stream);
}

// The relative error bound of one rounding to dtype, generously: 2^-8 for bf16 (8 significant
// bits), 2^-11 for f16 (11), 0 for f32 (whose tests carry their own bound).
inline double storage_rel_tol(DType dtype) {
  switch (dtype) {
    case DType::bf16: return std::ldexp(1.0, -8);
    case DType::f16: return std::ldexp(1.0, -11);
    default: return 0.0;
  }
}

}  // namespace strata::testing
