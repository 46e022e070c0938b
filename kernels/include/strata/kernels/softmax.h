// Softmax and log-softmax over the last dimension of a tensor (..., C), numerically stable
// (the row maximum is subtracted before exponentiating), with their backward passes, as
// PyTorch's softmax(x, dim=-1) and log_softmax(x, dim=-1). Both backwards take the
// forward's output, as PyTorch's do, so the input need not be kept.
//
// dtypes: x and y (dL_dy, y and dL_dx) are device tensors of one floating dtype, f32, f16 or
// bf16; the maximum, the sums and every output are computed in f32 and rounded once to that
// dtype. (F::softmax and F::log_softmax run them in f32 under autocast.)
//
//   Tensor probabilities = softmax_forward(logits, stream);                  // (N, C)
//   Tensor dL_dlogits = softmax_backward(dL_dprobabilities, probabilities, stream);
#pragma once

#include <cuda_runtime_api.h>

#include "strata/core/tensor.h"

namespace strata::kernels {

// y = exp(x - max) / sum exp(x - max) along the last dimension. x and y: device tensors of
// the same shape and dtype, rank >= 1, last dimension >= 1, not overlapping. The allocating
// forms make their output in the input's dtype.
void softmax_forward(const Tensor& x, Tensor& y, cudaStream_t stream);
Tensor softmax_forward(const Tensor& x, cudaStream_t stream);
// dL_dx = y * (dL_dy - sum_j dL_dy_j * y_j), from the forward's output y.
void softmax_backward(const Tensor& dL_dy, const Tensor& y, Tensor& dL_dx, cudaStream_t stream);
Tensor softmax_backward(const Tensor& dL_dy, const Tensor& y, cudaStream_t stream);

// y = x - max - log sum exp(x - max) along the last dimension.
void log_softmax_forward(const Tensor& x, Tensor& y, cudaStream_t stream);
Tensor log_softmax_forward(const Tensor& x, cudaStream_t stream);
// dL_dx = dL_dy - exp(y) * sum_j dL_dy_j, from the forward's output y.
void log_softmax_backward(const Tensor& dL_dy, const Tensor& y, Tensor& dL_dx, cudaStream_t stream);
Tensor log_softmax_backward(const Tensor& dL_dy, const Tensor& y, cudaStream_t stream);

}  // namespace strata::kernels
