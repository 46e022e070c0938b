// The fully connected layer y = x W^T + b (PyTorch's F.linear) and its gradients, on the
// project's GEMM (cuBLAS in the CUDA build, a CPU GEMM in the simulator). x may have any
// leading dimensions: (..., in_features) -> (..., out_features).
//
// dtypes: every tensor of a call (x, weight, bias, y; dL_dy, dL_dx, dL_dweight, dL_dbias) is a
// device tensor of one floating dtype T, f32, f16 or bf16; products and the bias gradient's
// column sums accumulate in f32 (double in the simulator's GEMM) and are rounded once to T.
// Mixed dtypes are an InvalidArgument naming both operands (cast with F::to_dtype, or let
// autocast do it).
//
//   Tensor y = linear_forward(x, weight, bias, stream);             // (N, out)
//   linear_backward_data(dL_dy, weight, dL_dx, {}, stream);         // (N, in)
//   linear_backward_weight(dL_dy, x, dL_dweight, {}, stream);       // (out, in)
//   linear_backward_bias(dL_dy, dL_dbias, {}, stream);              // (out)
#pragma once

#include <cuda_runtime_api.h>

#include "strata/core/shape.h"
#include "strata/core/tensor.h"

namespace strata::kernels {

struct LinearBackwardParams {
  // Add the gradient to what the output tensor holds (GEMM beta = 1), as autograd does when
  // a tensor is used more than once; otherwise overwrite it (never read).
  bool accumulate = false;
};

// (..., out_features) for x (..., in_features) and weight (out_features, in_features);
// throws InvalidArgument naming both shapes when they do not fit, a size is < 1 or a GEMM
// size exceeds 2^31 - 1.
Shape linear_output_shape(const Shape& x, const Shape& weight);

// y = x W^T + b. bias (out_features) may be an undefined Tensor (no bias). All device
// tensors of x's dtype; y must not overlap the inputs. The allocating form makes y in x's
// dtype.
void linear_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y, cudaStream_t stream);
Tensor linear_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, cudaStream_t stream);

// dL_dx (..., in) = dL_dy (..., out) W.
void linear_backward_data(const Tensor& dL_dy, const Tensor& weight, Tensor& dL_dx,
                          const LinearBackwardParams& params, cudaStream_t stream);
// dL_dweight (out, in) = dL_dy^T X, summed over all leading dimensions.
void linear_backward_weight(const Tensor& dL_dy, const Tensor& x, Tensor& dL_dweight,
                            const LinearBackwardParams& params, cudaStream_t stream);
// dL_dbias (out) = dL_dy summed over all leading dimensions, in a fixed order
// (deterministic: no atomics).
void linear_backward_bias(const Tensor& dL_dy, Tensor& dL_dbias, const LinearBackwardParams& params,
                          cudaStream_t stream);

}  // namespace strata::kernels
