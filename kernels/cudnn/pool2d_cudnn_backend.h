// The backend half of pooling on cuDNN (kernels/cudnn/pool2d_cudnn.h): cuDNN's pooling
// routines in the CUDA build (pool2d_cudnn_backend.cpp), a refusal in the simulator build
// (pool2d_cudnn_unavailable.cpp). Arguments are already checked and the window already
// maps the op; the run functions are called only after refusal() came back empty.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "kernels/cudnn/pool2d_cudnn.h"

namespace strata::kernels::cudnn_pool_backend {

// Empty when cuDNN can run window; otherwise why not (no cuDNN, a tensor too large for
// cuDNN's 32-bit descriptors, cuDNN computing another output size).
std::string refusal(const CudnnPoolWindow& window);

// Pointers to f32 device memory in the shapes of window: x (N, C, H, W), y (N, C, Ho, Wo).
void forward(const CudnnPoolWindow& window, const float* x, float* y, cudaStream_t stream);
void backward(const CudnnPoolWindow& window, const float* x, const float* y, const float* dL_dy, float* dL_dx,
              cudaStream_t stream);

}  // namespace strata::kernels::cudnn_pool_backend
