// conv2d forward on the tensor cores (kernels/conv2d_forward_tensor_core.cu), the launcher
// that kernels::conv2d_forward calls when Conv2dParams::math allows tf32 or bf16 and
// conv2d_forward_uses_tensor_cores accepts the shape. Internal: the public entry point stays
// kernels::conv2d_forward, which checks the arguments first.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/channel_stats.h"
#include "strata/kernels/conv2d.h"

namespace strata::kernels {

// y (N, K, P, Q) = conv(x (N, C, H, W), weight (K, C/groups, R, S)) + bias (K, or null), all
// of storage type T (float, __half or __nv_bfloat16, the instantiations there are): f32 inputs
// rounded to shape.params.math (tf32 or bf16), f16 and bf16 ones multiplied as they are, the
// products summed in f32, y rounded once to T. Arguments already checked by
// expect_conv2d_forward_arguments. With partials.data (6, ceil(N*P*Q / kConv2dTensorCoreBlockM),
// K), each block also writes the moments of the y values it stored to slot m_tile.
template <typename T>
void conv2d_forward_tensor_core(const Conv2dShape& shape, const T* x, const T* weight, const T* bias, T* y,
                                const ChannelPartials& partials, cudaStream_t stream);

}  // namespace strata::kernels
