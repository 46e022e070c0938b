// conv2d forward on the tensor cores (kernels/conv2d_forward_tensor_core.cu), the launcher
// that kernels::conv2d_forward calls when Conv2dParams::math allows tf32 or bf16 and
// conv2d_forward_uses_tensor_cores accepts the shape. Internal: the public entry point stays
// kernels::conv2d_forward, which checks the arguments first.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/activation_ops.cuh"
#include "kernels/channel_stats.h"
#include "kernels/conv2d_tiling.cuh"
#include "strata/kernels/conv2d.h"

namespace strata::kernels {

// The device side of a Conv2dEpilogue (strata/kernels/conv2d.h), shared by the fp32 and the
// tensor-core forward kernels so that both apply it alike: from z = conv + bias to the value
// stored in y. Null pointers are skipped, so the default (the identity) stores z itself.
template <typename T>
struct Conv2dEpilogueArgs {
  const float* scale = nullptr;  // (K), or null: 1
  const float* shift = nullptr;  // (K), or null: 0
  T* preactivation = nullptr;    // (N, K, P, Q) in y's layout, or null: v not stored
  FusedActivation activation = FusedActivation::none;

  // v = scale * z + shift, one rounding (an explicit fused multiply-add, whatever the
  // compiler's contraction settings).
  __device__ __forceinline__ float affine(float z, std::int64_t channel) const {
    if (scale != nullptr) {
      return shift != nullptr ? __fmaf_rn(scale[channel], z, shift[channel]) : __fmul_rn(scale[channel], z);
    }
    return shift != nullptr ? __fadd_rn(z, shift[channel]) : z;
  }

  // Stores y = activation(v) at index of y (and v at index of the preactivation, when asked);
  // returns y as stored, for the statistics.
  __device__ __forceinline__ float store(T* y, std::int64_t index, float z, std::int64_t channel) const {
    const float v = affine(z, channel);
    if (preactivation != nullptr) preactivation[index] = conv2d_detail::from_float<T>(v);
    const T stored = conv2d_detail::from_float<T>(fused_activation_forward(activation, v));
    y[index] = stored;
    return conv2d_detail::to_float(stored);
  }
};

// The device arguments of epilogue for storage type T (already checked).
template <typename T>
Conv2dEpilogueArgs<T> conv2d_epilogue_args(const Conv2dEpilogue& epilogue, Tensor* preactivation) {
  return {.scale = epilogue.scale.defined() ? epilogue.scale.data<float>() : nullptr,
          .shift = epilogue.shift.defined() ? epilogue.shift.data<float>() : nullptr,
          .preactivation = preactivation != nullptr ? memory_elements<T>(*preactivation) : nullptr,
          .activation = epilogue.activation};
}

// y (N, K, P, Q) = conv(x (N, C, H, W), weight (K, C/groups, R, S)) + bias (K, or null), all
// of storage type T (float, __half or __nv_bfloat16, the instantiations there are): f32 inputs
// rounded to shape.params.math (tf32 or bf16), f16 and bf16 ones multiplied as they are, the
// products summed in f32, y rounded once to T. Arguments already checked by
// expect_conv2d_forward_arguments; x and y in formats (each its own). With partials.data
// (6, ceil(N*P*Q / kConv2dTensorCoreBlockM), K), each block also writes the moments of the y
// values it stored, per 64 rows, to their slot (m_tile in a 64-row block). epilogue: applied to conv + bias before the store (the
// identity by default). weight: contiguous (K, C/groups, R, S) of T.
template <typename T>
void conv2d_forward_tensor_core(const Conv2dShape& shape, const Conv2dFormats& formats, const T* x,
                                const Tensor& weight, const T* bias, T* y, const ChannelPartials& partials,
                                const Conv2dEpilogueArgs<T>& epilogue, cudaStream_t stream);

}  // namespace strata::kernels
