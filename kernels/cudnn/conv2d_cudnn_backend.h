// The backend half of conv2d on cuDNN (kernels/conv2d_cudnn.h): cuDNN's routines in the CUDA
// build (conv2d_cudnn_backend.cpp), a refusal in the simulator build
// (conv2d_cudnn_unavailable.cpp). Arguments are already checked; the run functions are
// called only after the refusal came back empty.
#pragma once

#include <string>

#include <cuda_runtime_api.h>

#include "strata/kernels/conv2d.h"

namespace strata::kernels::cudnn_backend {

std::string refusal(const Conv2dShape& shape, cudaStream_t stream);

// Pointers to f32 device memory in the shapes of shape; bias may be null.
void forward(const Conv2dShape& shape, const float* x, const float* weight, const float* bias, float* y,
             cudaStream_t stream);
void backward_data(const Conv2dShape& shape, const float* dL_dy, const float* weight, float* dL_dx,
                   cudaStream_t stream);
void backward_filter(const Conv2dShape& shape, const float* x, const float* dL_dy, float* dL_dweight,
                     cudaStream_t stream);
// dL_dbias (K) = dL_dy (N, K, P, Q) summed over N, P and Q. Throws NotSupported, naming the
// op and the shape, when cuDNN is not available or dL_dy is too large for its descriptors.
void backward_bias(const Shape& dL_dy_shape, const float* dL_dy, float* dL_dbias, cudaStream_t stream);

}  // namespace strata::kernels::cudnn_backend
