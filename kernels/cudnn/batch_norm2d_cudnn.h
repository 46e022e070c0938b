// batch_norm2d on cuDNN: the launchers of strata/kernels/batch_norm2d.h computed by cuDNN's
// batch normalisation (cudnnBatchNormalizationForwardTraining, ForwardInference and Backward,
// mode CUDNN_BATCHNORM_SPATIAL), for Engine::cudnn and Engine::automatic
// (strata/core/engine.h). Same arguments, shapes, checks and meaning as the custom launchers:
//   - running statistics: cuDNN's exponentialAverageFactor is params.momentum, so running =
//     (1 - momentum) * running + momentum * batch statistic, the variance unbiased
//     (n / (n - 1)), as PyTorch and the custom kernel; untracked (undefined) running
//     statistics are passed as null, which cuDNN allows.
//   - saved statistics: cuDNN's resultSaveMean and resultSaveInvVariance are the batch mean and
//     1 / sqrt(biased variance + eps), what BatchNormSaved holds, so the backward reads them.
//   - affine variants: cuDNN always takes a scale and a bias; where the layer has none
//     (bias_only: no weight; none: neither) constant ones and zeros are passed, written on the
//     op's stream by cudnnSetTensor, and the gradients not asked for are written to scratch
//     and dropped.
//   - eps: cuDNN 9 accepts any eps >= 0 (CUDNN_BN_MIN_EPSILON is 0; it was 1e-5 up to cuDNN 7),
//     the range the custom kernels accept, so airbench94's 1e-12 runs on cuDNN. The backend
//     fails to compile should a header raise the minimum again.
//   - dtypes: as the custom launchers' (x, y, dL_dy, dL_dx in f32, f16 or bf16; the rest f32):
//     x's descriptor has x's data type, and the per-channel one cuDNN derives from it is float
//     for all three, the configuration cuDNN requires for half and bfloat16 data.
// Memory formats: x, y, dL_dy and dL_dx contiguous or channels-last, all in x's memory order
// (the custom launchers' rule); a channels-last x is described to cuDNN as NHWC
// (kernels/cudnn/cudnn_layout.h), which cuDNN's spatial batch norm takes in every dtype here.
// Mode SPATIAL rather than SPATIAL_PERSISTENT: the persistent kernels are for NHWC half
// precision and may overflow to Inf or NaN on inputs of large magnitude (cuDNN's notes);
// SPATIAL has no such limit. cuDNN's reproducibility notes list no batch normalisation routine
// among those that may differ between runs. cuDNN has no backward of the inference forward:
// the eval-mode backward (frozen batch norm) is the custom kernel's batch_norm2d_backward_eval,
// whichever engine ran the forward.
//
// Private to the library; the simulator build has a stub whose launchers throw NotSupported.
#pragma once

#include <string>

#include <cuda_runtime_api.h>

#include "strata/core/shape.h"
#include "strata/core/tensor.h"
#include "strata/kernels/batch_norm2d.h"

namespace strata::kernels {

// Empty when cuDNN can run batch norm of x (N, C, H, W) with params in every direction;
// otherwise why not, in a sentence: a tensor of 2^31 elements or more (cuDNN's legacy
// descriptors take 32-bit sizes and strides; decided first, without cuDNN), no cuDNN in this
// build or process. The shape and params must be valid (the launchers check them).
std::string batch_norm2d_cudnn_refusal(const Shape& x, const BatchNormParams& params);

// As batch_norm2d_forward_training, batch_norm2d_forward_eval and batch_norm2d_backward of
// strata/kernels/batch_norm2d.h. Throw NotSupported, naming the op, the shape and the reason,
// where batch_norm2d_cudnn_refusal is not empty. The backward's saved statistics may come from
// either engine's training forward (they mean the same).
void batch_norm2d_cudnn_forward_training(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                         BatchNormRunningStats& running, Tensor& y, BatchNormSaved& saved,
                                         const BatchNormParams& params, cudaStream_t stream);
void batch_norm2d_cudnn_forward_eval(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                     const BatchNormRunningStats& running, Tensor& y, const BatchNormParams& params,
                                     cudaStream_t stream);
void batch_norm2d_cudnn_backward(const Tensor& dL_dy, const Tensor& x, const Tensor& weight,
                                 const BatchNormSaved& saved, BatchNormGradients& gradients,
                                 const BatchNormParams& params, cudaStream_t stream);

}  // namespace strata::kernels
