// The backend half of pooling on cuDNN (kernels/cudnn/pool2d_cudnn.h): cuDNN's pooling
// routines in the CUDA build (pool2d_cudnn_backend.cpp), a refusal in the simulator build
// (pool2d_cudnn_unavailable.cpp). Arguments are already checked and the window already
// maps the op; the run functions are called only after refusal() came back empty.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "kernels/cudnn/pool2d_cudnn.h"
#include "strata/core/dtype.h"

namespace strata::kernels::cudnn_pool_backend {

// Empty when cuDNN can run window; otherwise why not (no cuDNN, a tensor too large for
// cuDNN's 32-bit descriptors, cuDNN computing another output size), for every dtype alike.
std::string refusal(const CudnnPoolWindow& window);

// Pointers to device memory of dtype (f32, f16 or bf16; cuDNN computes in f32) in the shapes
// of window: x (N, C, H, W), y (N, C, Ho, Wo), all laid out in window.format.
void forward(const CudnnPoolWindow& window, DType dtype, const void* x, void* y, cudaStream_t stream);
void backward(const CudnnPoolWindow& window, DType dtype, const void* x, const void* y, const void* dL_dy, void* dL_dx,
              cudaStream_t stream);

}  // namespace strata::kernels::cudnn_pool_backend
