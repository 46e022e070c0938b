// The backend half of ReLU and GELU on cuDNN (kernels/cudnn/activation_cudnn.h): cuDNN in the
// CUDA build (activation_cudnn_backend.cpp), a refusal in the simulator build
// (activation_cudnn_unavailable.cpp). Arguments are already checked; the run functions are
// called only after the refusal came back empty, and never for empty tensors.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "strata/core/dtype.h"
#include "strata/core/shape.h"
#include "strata/kernels/activations.h"

namespace strata::kernels::cudnn_activation_backend {

// Empty when cuDNN can run the op on a tensor of shape (and, for GELU, of dtype: its plans
// are built per dtype); otherwise why not.
std::string relu_refusal(const Shape& shape);
std::string gelu_refusal(const Shape& shape, GeluApproximation approximation, DType dtype, cudaStream_t stream);

// Pointers to device memory of shape's size and of dtype (f32, f16 or bf16; cuDNN computes in
// f32).
void relu_forward(const Shape& shape, DType dtype, const void* x, void* y, cudaStream_t stream);
void relu_backward(const Shape& shape, DType dtype, const void* dL_dy, const void* y, void* dL_dx, cudaStream_t stream);
void gelu_forward(const Shape& shape, GeluApproximation approximation, DType dtype, const void* x, void* y,
                  cudaStream_t stream);
void gelu_backward(const Shape& shape, GeluApproximation approximation, DType dtype, const void* dL_dy, const void* x,
                   void* dL_dx, cudaStream_t stream);

}  // namespace strata::kernels::cudnn_activation_backend
