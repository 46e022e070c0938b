// ReLU and GELU, forward and backward, element-wise over tensors of any shape, with
// PyTorch's semantics (torch.relu; torch.nn.functional.gelu with approximate="none" or
// "tanh"). Outputs have the shape of their input; empty tensors are a no-op.
// dtypes: the operands share one of f32, f16 and bf16 (InvalidArgument naming both
// otherwise); computed in f32 and rounded once to it (ReLU is exact in each). Any memory
// format, one for all operands (strata/kernels/elementwise.h); the allocating forms give
// their output the format of their first argument.
//
//   relu_forward(x, x, {}, stream);                         // in place: y may be x itself
//   relu_backward(dL_dy, y, dL_dx, {}, stream);             // from the saved output (or input)
//   gelu_forward(x, y, {.approximation = GeluApproximation::tanh}, stream);
//   gelu_backward(dL_dy, x, dL_dx, {.approximation = GeluApproximation::tanh}, stream);
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "strata/core/tensor.h"

namespace strata::kernels {

// No options yet; present so that every op has the same launcher signature.
struct ReluParams {};

// y = x < 0 ? 0 : x, so NaN and -0 pass through as in PyTorch. y may be x itself (an
// in-place ReLU); any other overlap is an error.
void relu_forward(const Tensor& x, Tensor& y, const ReluParams& params, cudaStream_t stream);
Tensor relu_forward(const Tensor& x, const ReluParams& params, cudaStream_t stream);

// dL_dx = y <= 0 ? 0 : dL_dy, PyTorch's threshold_backward on the output. The input x gives
// the same result (y > 0 exactly where x > 0, and NaN passes in both), so callers may save
// either; after an in-place forward only y exists. dL_dx may be dL_dy itself.
void relu_backward(const Tensor& dL_dy, const Tensor& y, Tensor& dL_dx, const ReluParams& params, cudaStream_t stream);
Tensor relu_backward(const Tensor& dL_dy, const Tensor& y, const ReluParams& params, cudaStream_t stream);

enum class GeluApproximation : std::uint8_t {
  none,  // exact: x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2)))
  tanh,  // 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
};

struct GeluParams {
  GeluApproximation approximation = GeluApproximation::none;
};

// y = gelu(x), computed in float. y may be x itself.
void gelu_forward(const Tensor& x, Tensor& y, const GeluParams& params, cudaStream_t stream);
Tensor gelu_forward(const Tensor& x, const GeluParams& params, cudaStream_t stream);

// dL_dx = dL_dy * gelu'(x), the exact derivative of the chosen form (the tanh form's
// derivative is that of the approximation, as PyTorch's). Evaluated in a cancellation-free
// arrangement: where PyTorch's float formula gives NaN (|x| > ~1e19 in the tanh form) this
// gives the limit, 1 or 0. dL_dx may be dL_dy itself.
void gelu_backward(const Tensor& dL_dy, const Tensor& x, Tensor& dL_dx, const GeluParams& params, cudaStream_t stream);
Tensor gelu_backward(const Tensor& dL_dy, const Tensor& x, const GeluParams& params, cudaStream_t stream);

}  // namespace strata::kernels
