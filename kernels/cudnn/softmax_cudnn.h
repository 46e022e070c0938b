// softmax and log-softmax on cuDNN: the launchers of strata/kernels/softmax.h computed by
// cudnnSoftmaxForward and cudnnSoftmaxBackward, for Engine::cudnn and Engine::automatic
// (strata/core/engine.h). Same arguments, shapes and checks as the custom launchers: x
// (..., C) is seen as rows = numel / C instances of C classes, cuDNN's tensor (rows, C, 1, 1)
// in CUDNN_SOFTMAX_MODE_INSTANCE. softmax uses CUDNN_SOFTMAX_ACCURATE (the row maximum is
// subtracted, as the custom kernel does), log_softmax CUDNN_SOFTMAX_LOG; both backwards take
// the forward's output y, as the custom ones do. f32, f16 and bf16 tensors, as the custom
// launchers (cuDNN's FLOAT, HALF and BFLOAT16, computed in f32). Private to the library; the
// simulator build has a stub whose launchers throw NotSupported (cuDNN is not available
// there).
//
// Determinism: cuDNN's reproducibility notes list no softmax routine among those that may
// differ between runs; these use no workspace.
#pragma once

#include <string>

#include <cuda_runtime_api.h>

#include "strata/core/shape.h"
#include "strata/core/tensor.h"

namespace strata::kernels {

// Empty when cuDNN can run softmax and log_softmax (both directions) over the last dimension
// of a tensor of shape x; otherwise why not, in a sentence: a tensor of 2^31 elements or more
// (cuDNN's legacy descriptors take 32-bit sizes and strides; decided first, without cuDNN), no
// cuDNN in this build or process. x must have rank >= 1 and at least one element (the
// launchers check that).
std::string softmax_cudnn_refusal(const Shape& x);

// As softmax_forward, softmax_backward, log_softmax_forward and log_softmax_backward of
// strata/kernels/softmax.h. Throw NotSupported, naming the op, the shape and the reason,
// where softmax_cudnn_refusal is not empty.
void softmax_cudnn_forward(const Tensor& x, Tensor& y, cudaStream_t stream);
void softmax_cudnn_backward(const Tensor& dL_dy, const Tensor& y, Tensor& dL_dx, cudaStream_t stream);
void log_softmax_cudnn_forward(const Tensor& x, Tensor& y, cudaStream_t stream);
void log_softmax_cudnn_backward(const Tensor& dL_dy, const Tensor& y, Tensor& dL_dx, cudaStream_t stream);

}  // namespace strata::kernels
