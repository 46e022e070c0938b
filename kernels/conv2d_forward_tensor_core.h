// conv2d forward on the tensor cores (kernels/conv2d_forward_tensor_core.cu), the launcher
// that kernels::conv2d_forward calls when Conv2dParams::math allows tf32 or bf16 and
// conv2d_forward_uses_tensor_cores accepts the shape. Internal: the public entry point stays
// kernels::conv2d_forward, which checks the arguments first.
#pragma once

#include <cuda_runtime_api.h>

#include "strata/kernels/conv2d.h"

namespace strata::kernels {

// y (N, K, P, Q) = conv(x (N, C, H, W), weight (K, C/groups, R, S)) + bias (K, or null), the
// inputs rounded to shape.params.math (tf32 or bf16), the products summed in f32. Arguments
// already checked by expect_conv2d_forward_arguments.
void conv2d_forward_tensor_core(const Conv2dShape& shape, const float* x, const float* weight, const float* bias,
                                float* y, cudaStream_t stream);

}  // namespace strata::kernels
