// The prediction of a classifier and how many predictions are right, on the device and
// without synchronising: the argmax over the last dimension (torch.argmax(x, dim=-1)) and
// the count of equal entries of two index tensors ((a == b).sum()).
//
//   Tensor predicted = argmax_last_dim(logits, stream);            // (N, C) -> (N) i64
//   Tensor correct = count_equal(predicted, labels, stream);       // () i64
//
// No gradients: neither is differentiable.
#pragma once

#include <cuda_runtime_api.h>

#include "strata/core/tensor.h"

namespace strata::kernels {

// indices[r] = the index of the largest of row r of x (..., C), C >= 1, over the last
// dimension: the first index on a tie (-0 and +0 tie), and NaN counts as larger than any
// number (the first NaN of a row wins), as PyTorch. x f32, f16 or bf16 (compared as float)
// of rank >= 1, contiguous; indices i64 of x's shape without its last dimension (() for a
// rank-1 x). One warp a row.
void argmax_last_dim(const Tensor& x, Tensor& indices, cudaStream_t stream);
Tensor argmax_last_dim(const Tensor& x, cudaStream_t stream);

// count[] = how many i have a[i] == b[i]; a and b i64 of one shape (any, empty included),
// count () i64, exact. One block of threads: meant for a batch's predictions.
void count_equal(const Tensor& a, const Tensor& b, Tensor& count, cudaStream_t stream);
Tensor count_equal(const Tensor& a, const Tensor& b, cudaStream_t stream);

}  // namespace strata::kernels
