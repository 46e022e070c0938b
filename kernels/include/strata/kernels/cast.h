// Casts between the floating-point element types f32, f16 and bf16, as torch.Tensor.to(dtype)
// on CUDA: each element is rounded to the nearest value of the target type, ties to even;
// a value beyond the target's largest finite value (after rounding) becomes infinity of its
// sign; infinities stay infinities, NaN stays NaN (its payload is not kept), signed zeros keep
// their sign, and subnormals are produced and read as IEEE 754 says (no flush to zero).
//
// The kernel is core's conversion (the one behind Tensor::to_dtype), four elements per load
// and store where the pointers allow: one code path for every cast in Strata. This form
// writes into an existing tensor, e.g. the f16 copy of an f32 master weight, without an
// allocation; F::to_dtype (strata/layers/functional.h) is the autograd-recorded form.
//
//   cast(master_weight, half_weight, stream);   // (K, C, R, S) f32 -> (K, C, R, S) f16
#pragma once

#include <cuda_runtime_api.h>

#include "strata/core/tensor.h"

namespace strata::kernels {

// output = input converted to output.dtype(): defined device tensors of one shape, both of
// a floating-point dtype (f32, f16, bf16). Of one dtype, a copy. output must not share memory
// with input unless it is input itself and the dtypes agree (then nothing happens). Any
// memory formats: of one memory order, element-wise; else each element is cast as it is
// moved into output's format, in one pass (the f32 master weight of a conv cast straight
// into the (K, R, S, C) bf16 copy its channels-last kernels read). The allocating forms give
// output input's format, or `format` (channels-last needs a 4-D input).
void cast(const Tensor& input, Tensor& output, cudaStream_t stream);
Tensor cast(const Tensor& input, DType dtype, cudaStream_t stream);
Tensor cast(const Tensor& input, DType dtype, MemoryFormat format, cudaStream_t stream);

}  // namespace strata::kernels
