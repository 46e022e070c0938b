// Batch normalisation fused with the activation after it, y = act(BN(x)) for x (N, C, H, W):
// airbench94's BN -> GELU in one pass. BN is batch_norm2d's (strata/kernels/batch_norm2d.h:
// the same statistics kernel, running-statistics update, affine variants, eps and momentum);
// act is none, ReLU, or GELU in its exact or tanh form, with the element-wise maths of
// strata/kernels/activations.h. The pre-activation z = BN(x) is never stored: the forward
// writes only y (and the per-channel statistics), and the backward recomputes z from x and
// the statistics to apply act'(z) on the fly. Compared with batch_norm2d then the
// activation's own kernels, that saves writing and reading z in the forward, and storing it
// (one activation-sized tensor per layer) until the backward.
//
//   BatchNormSaved saved{Tensor::empty({C}, DType::f32, stream), Tensor::empty({C}, DType::f32, stream)};
//   batch_norm2d_activation_forward_training(x, Tensor(), bias, running, y, saved,
//       {.norm = {.eps = 1e-12f, .affine = BatchNormAffine::bias_only}}, stream);
//   batch_norm2d_activation_backward(dL_dy, x, Tensor(), bias, saved, gradients, params, stream);
//
// Results: bit for bit those of batch_norm2d followed by relu/gelu's kernels (the same kernel
// code, the same rounding, the same deterministic per-channel sums in the same order):
// checked in the simulator build, and asserted by the same tests on a GPU.
//
// Dtypes as batch_norm2d's: x, y, dL_dy, dL_dx in one of f32, f16, bf16; the per-channel
// tensors f32. The activation, like the normalisation, is computed in float, so in f16/bf16
// z = BN(x) is never rounded: y is act(z) rounded once, which the unfused pair (z rounded to
// the storage dtype, then the activation) need not match bit for bit.
//
// Memory formats as batch_norm2d's: x, y, dL_dy and dL_dx contiguous or channels-last, one
// format for all four; channels-last gives the contiguous results bit for bit.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "strata/core/tensor.h"
#include "strata/kernels/batch_norm2d.h"

namespace strata::kernels {

enum class FusedActivation : std::uint8_t {
  none,       // y = BN(x)
  relu,       // as relu_forward: NaN and -0 pass
  gelu,       // exact GELU, z Phi(z), as gelu_forward with GeluApproximation::none
  gelu_tanh,  // GELU's tanh form, as gelu_forward with GeluApproximation::tanh
};

// "none", "relu", "gelu", "gelu_tanh".
const char* fused_activation_name(FusedActivation activation);

struct BatchNormActivationParams {
  BatchNormParams norm{};  // eps, momentum, affine: as batch_norm2d
  FusedActivation activation = FusedActivation::gelu;
};

// The shape of the per-channel tensors, (C), for x (N, C, H, W); the checks of
// batch_norm2d_channel_shape, naming this op.
Shape batch_norm2d_activation_channel_shape(const Shape& x, BatchNormMode mode);

// weight and bias as params.norm.affine says (undefined where absent). Writes y (N, C, H, W)
// and saved (the batch mean and invstd, (C) each); updates running in place when defined
// (num_batches_tracked included, as batch_norm2d_forward_training).
// statistics (optional): x's per-channel statistics from its producer, as
// batch_norm2d_forward_training takes them: the forward then reads x once.
void batch_norm2d_activation_forward_training(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                              BatchNormRunningStats& running, Tensor& y, BatchNormSaved& saved,
                                              const BatchNormActivationParams& params, cudaStream_t stream,
                                              const ChannelStatistics* statistics = nullptr);

// y = act((x - running.mean) / sqrt(running.var + eps) * weight + bias).
void batch_norm2d_activation_forward_eval(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                          const BatchNormRunningStats& running, Tensor& y,
                                          const BatchNormActivationParams& params, cudaStream_t stream);

// The backward of the training forward from its input x, weight, bias (to recompute z) and
// what it saved: dL/dz = dL/dy * act'(z), then batch_norm2d_backward's sums of dL/dz.
// Gradients as BatchNormGradients says (each undefined one skipped).
void batch_norm2d_activation_backward(const Tensor& dL_dy, const Tensor& x, const Tensor& weight,
                                      const Tensor& bias, const BatchNormSaved& saved,
                                      BatchNormGradients& gradients, const BatchNormActivationParams& params,
                                      cudaStream_t stream);

// The backward of the eval forward, the running statistics being constants (frozen batch
// norm, as batch_norm2d_backward_eval).
void batch_norm2d_activation_backward_eval(const Tensor& dL_dy, const Tensor& x, const Tensor& weight,
                                           const Tensor& bias, const BatchNormRunningStats& running,
                                           BatchNormGradients& gradients, const BatchNormActivationParams& params,
                                           cudaStream_t stream);

}  // namespace strata::kernels
