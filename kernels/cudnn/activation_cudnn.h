// ReLU and GELU on cuDNN: the launchers of strata/kernels/activations.h computed by NVIDIA
// cuDNN, for Engine::cudnn and Engine::automatic (strata/core/engine.h). Private to the
// library; the simulator build refuses every call (cuDNN is not available there).
//
// ReLU runs cuDNN's legacy activation routines (CUDNN_ACTIVATION_RELU, NaN propagated);
// like the custom kernel, its backward reads the output y (cuDNN takes x and y: Strata
// passes y for both, as an in-place ReLU would, since y > 0 exactly where x > 0). The
// results equal the custom kernels' except where the custom kernels keep PyTorch's corner
// cases that cuDNN does not document: the sign of a zero from -0, and the gradient where y
// is NaN (cuDNN may give 0 where the custom kernel passes dL_dy on).
//
// GELU runs on cuDNN's graph API: one pointwise node (CUDNN_POINTWISE_GELU_FWD or
// GELU_APPROX_TANH_FWD; GELU_BWD or GELU_APPROX_TANH_BWD reading x and dL_dy), in fp32
// math, its execution plan the first of cuDNN's heuristic ranking (mode A) that builds,
// made once per shape, direction, form and cuDNN handle. cuDNN's GELU evaluates its own
// float formula (erf or tanh), so results agree with the custom kernels to a few ulps,
// not bit for bit.
//
// Tensors of any shape are viewed as packed 4-D tensors (the leading dimensions merged);
// tensors of 2^31 elements or more are refused. dtypes as the custom launchers': f32, f16 or
// bf16, one for all operands, described to cuDNN as FLOAT, HALF or BFLOAT16 and computed in
// f32 (GELU's pointwise math precision is FLOAT).
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "strata/core/shape.h"
#include "strata/core/tensor.h"
#include "strata/kernels/activations.h"

namespace strata::kernels {

// Empty when cuDNN can run the op on a tensor of shape x (both directions); otherwise why
// not, in a sentence. The GELU refusal builds (once per shape and dtype, x's) the plans on
// stream's device.
std::string relu_cudnn_refusal(const Shape& x);
std::string gelu_cudnn_refusal(const Shape& x, const GeluParams& params, cudaStream_t stream,
                               DType dtype = DType::f32);

// As relu_forward and relu_backward of strata/kernels/activations.h (y may be x, dL_dx may
// be dL_dy). Throw NotSupported, naming the op, the shape and the reason, where the
// refusal is not empty.
void relu_cudnn_forward(const Tensor& x, Tensor& y, cudaStream_t stream);
void relu_cudnn_backward(const Tensor& dL_dy, const Tensor& y, Tensor& dL_dx, cudaStream_t stream);

// As gelu_forward and gelu_backward, except that outputs must not share memory with
// the inputs (a graph-API plan is not documented to allow it).
void gelu_cudnn_forward(const Tensor& x, Tensor& y, const GeluParams& params, cudaStream_t stream);
void gelu_cudnn_backward(const Tensor& dL_dy, const Tensor& x, Tensor& dL_dx, const GeluParams& params,
                         cudaStream_t stream);

}  // namespace strata::kernels
