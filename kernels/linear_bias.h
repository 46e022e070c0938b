// Private launchers of linear's bias kernels (linear_bias.cu), called by linear.cpp with
// tensors it has checked: device tensors of one floating dtype (f32, f16 or bf16).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "strata/core/tensor.h"

namespace strata::kernels::detail {

// y (rows, columns) = bias (columns) repeated in every row.
void launch_broadcast_bias(const Tensor& bias, Tensor& y, std::int64_t rows, std::int64_t columns,
                           cudaStream_t stream);

// dL_dbias (columns) = sum over rows of dL_dy (rows, columns) [+ dL_dbias if accumulate],
// summed in f32 in a fixed order and rounded once to the dtype.
void launch_bias_gradient(const Tensor& dL_dy, Tensor& dL_dbias, std::int64_t rows, std::int64_t columns,
                          bool accumulate, cudaStream_t stream);

}  // namespace strata::kernels::detail
