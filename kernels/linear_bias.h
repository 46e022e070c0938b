// Private launchers of linear's bias kernels (linear_bias.cu), called by linear.cpp with
// pointers it has checked.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace strata::kernels::detail {

// y (rows, columns) = bias (columns) repeated in every row.
void launch_broadcast_bias(const float* bias, float* y, std::int64_t rows, std::int64_t columns, cudaStream_t stream);

// dL_dbias (columns) = sum over rows of dL_dy (rows, columns) [+ dL_dbias if accumulate],
// in a fixed order.
void launch_bias_gradient(const float* dL_dy, float* dL_dbias, std::int64_t rows, std::int64_t columns,
                          bool accumulate, cudaStream_t stream);

}  // namespace strata::kernels::detail
