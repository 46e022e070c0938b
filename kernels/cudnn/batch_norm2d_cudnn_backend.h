// The backend half of batch_norm2d on cuDNN (kernels/cudnn/batch_norm2d_cudnn.h): cuDNN's
// routines in the CUDA build (batch_norm2d_cudnn_backend.cpp), a refusal in the simulator
// build (batch_norm2d_cudnn_unavailable.cpp). Arguments are already checked (same meaning as
// the launchers of strata/kernels/batch_norm2d.h); the run functions are called only after
// the refusal came back empty.
#pragma once

#include <string>

#include <cuda_runtime_api.h>

#include "strata/core/tensor.h"
#include "strata/kernels/batch_norm2d.h"

namespace strata::kernels::cudnn_backend {

// Why cuDNN cannot run here at all (no cuDNN in this build or process); empty when it can.
std::string batch_norm2d_refusal();

void batch_norm2d_forward_training(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                   BatchNormRunningStats& running, Tensor& y, BatchNormSaved& saved,
                                   const BatchNormParams& params, cudaStream_t stream);
void batch_norm2d_forward_eval(const Tensor& x, const Tensor& weight, const Tensor& bias,
                               const BatchNormRunningStats& running, Tensor& y, const BatchNormParams& params,
                               cudaStream_t stream);
// At least one gradient is defined.
void batch_norm2d_backward(const Tensor& dL_dy, const Tensor& x, const Tensor& weight, const BatchNormSaved& saved,
                           BatchNormGradients& gradients, const BatchNormParams& params, cudaStream_t stream);

}  // namespace strata::kernels::cudnn_backend
