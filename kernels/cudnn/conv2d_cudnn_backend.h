// The backend half of conv2d on cuDNN (kernels/conv2d_cudnn.h): cuDNN's routines in the CUDA
// build (conv2d_cudnn_backend.cpp), a refusal in the simulator build
// (conv2d_cudnn_unavailable.cpp). Arguments are already checked; the run functions are
// called only after the refusal came back empty.
#pragma once

#include <string>

#include <cuda_runtime_api.h>

#include "kernels/cudnn/conv2d_cudnn.h"
#include "strata/core/dtype.h"
#include "strata/core/memory_format.h"
#include "strata/kernels/conv2d.h"

namespace strata::kernels::cudnn_backend {

// Why cuDNN cannot run this convolution with tensors of dtype (f32, f16 or bf16) and
// activations in formats, or empty.
std::string refusal(const Conv2dShape& shape, DType dtype, Conv2dCudnnFormats formats, cudaStream_t stream);

// Pointers to device memory of dtype (all of them) in the shapes of shape, the activations
// laid out in formats (input: x, dL_dx; output: y, dL_dy), the weight (K, C/groups, R, S)
// contiguous; bias may be null.
void forward(const Conv2dShape& shape, DType dtype, Conv2dCudnnFormats formats, const void* x, const void* weight,
             const void* bias, void* y, cudaStream_t stream);
void backward_data(const Conv2dShape& shape, DType dtype, Conv2dCudnnFormats formats, const void* dL_dy,
                   const void* weight, void* dL_dx, cudaStream_t stream);
void backward_filter(const Conv2dShape& shape, DType dtype, Conv2dCudnnFormats formats, const void* x,
                     const void* dL_dy, void* dL_dweight, cudaStream_t stream);
// dL_dbias (K) = dL_dy (N, K, P, Q) in dL_dy_format summed over N, P and Q, both of dtype.
// Throws NotSupported, naming the op and the shape, when cuDNN is not available or dL_dy is
// too large for its descriptors.
void backward_bias(const Shape& dL_dy_shape, DType dtype, MemoryFormat dL_dy_format, const void* dL_dy,
                   void* dL_dbias, cudaStream_t stream);

}  // namespace strata::kernels::cudnn_backend
