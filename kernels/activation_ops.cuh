// The element-wise maths of ReLU and GELU, forward and backward, as device functors: the
// maps of relu.cu and gelu.cu and the fused batch norm + activation of
// batch_norm2d_activation.cu apply the same functions, so the fused op gives the unfused
// path's bits. GELU is arranged to avoid cancellation:
//   exact: Phi(x) = 0.5 erfc(-x / sqrt(2)) instead of 0.5 (1 + erf(x / sqrt(2))), which
//          loses every digit for x below about -4;
//   tanh:  0.5 (1 + tanh(u)) = sigmoid(2u) and 1 - tanh(u)^2 = 4 sigmoid(2u) sigmoid(-2u),
//          both from one exp(-2|u|) that cannot overflow.
// The backward ops round dL/dy * f'(x) on its own (__fmul_rn): a caller that goes on to
// subtract from it (batch norm's dL/dx) cannot have it contracted into a fused multiply-add,
// which would change the bits against the unfused path, where the product is stored.
#pragma once

#include <cmath>

#include "core/launch.cuh"
#include "strata/kernels/batch_norm2d_activation.h"

namespace strata::kernels {

struct ReluForwardOp {
  // x < 0 rather than max(x, 0): NaN and -0 pass through unchanged, as in PyTorch.
  __device__ float operator()(float x) const { return x < 0.0f ? 0.0f : x; }
};

// From the output y, or equally from the input x: y > 0 exactly where x > 0, and NaN passes
// in both.
struct ReluBackwardOp {
  __device__ float operator()(float dL_dy, float y) const { return y <= 0.0f ? 0.0f : dL_dy; }
};

namespace gelu_detail {

constexpr float kSqrtHalf = 0.70710678118654752f;       // 1 / sqrt(2)
constexpr float kInvSqrtTwoPi = 0.39894228040143268f;   // 1 / sqrt(2 pi)
constexpr float kSqrtTwoOverPi = 0.79788456080286536f;  // sqrt(2 / pi)
constexpr float kKappa = 0.044715f;

__device__ __forceinline__ float normal_cdf(float x) { return 0.5f * erfcf(-x * kSqrtHalf); }

// sigmoid(2u) and sigmoid(-2u) = 1 - sigmoid(2u), each to full relative precision.
struct SigmoidPair {
  float positive;
  float negative;
};

__device__ __forceinline__ SigmoidPair sigmoid_of_twice(float u) {
  const float e = expf(-2.0f * fabsf(u));  // in [0, 1]
  const float near_one = 1.0f / (1.0f + e);
  const float near_zero = e * near_one;
  return u >= 0.0f ? SigmoidPair{near_one, near_zero} : SigmoidPair{near_zero, near_one};
}

__device__ __forceinline__ float tanh_inner(float x) { return kSqrtTwoOverPi * (x + kKappa * x * x * x); }

}  // namespace gelu_detail

struct GeluExactForwardOp {
  __device__ float operator()(float x) const { return x * gelu_detail::normal_cdf(x); }
};

struct GeluExactBackwardOp {
  __device__ float operator()(float dL_dy, float x) const {
    // d/dx x Phi(x) = Phi(x) + x phi(x); exp(-x^2/2) underflows to 0 for large |x|, and x^2
    // overflowing to infinity only makes it 0 sooner.
    const float pdf = gelu_detail::kInvSqrtTwoPi * expf(-0.5f * x * x);
    return __fmul_rn(dL_dy, gelu_detail::normal_cdf(x) + x * pdf);
  }
};

struct GeluTanhForwardOp {
  __device__ float operator()(float x) const {
    return x * gelu_detail::sigmoid_of_twice(gelu_detail::tanh_inner(x)).positive;
  }
};

struct GeluTanhBackwardOp {
  __device__ float operator()(float dL_dy, float x) const {
    // d/dx 0.5 x (1 + tanh u) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) du/dx
    //                         = s + 2 x s (1 - s) du/dx, with s = sigmoid(2u).
    const gelu_detail::SigmoidPair s = gelu_detail::sigmoid_of_twice(gelu_detail::tanh_inner(x));
    const float bump = s.positive * s.negative;
    // bump is 0 once |u| > ~52 (|x| > ~11): then the second term is exactly 0, and
    // skipping it avoids 0 * infinity when x^2 overflows.
    const float inner_derivative = gelu_detail::kSqrtTwoOverPi * (1.0f + 3.0f * gelu_detail::kKappa * x * x);
    const float derivative = bump == 0.0f ? s.positive : s.positive + 2.0f * x * bump * inner_derivative;
    return __fmul_rn(dL_dy, derivative);
  }
};

// A FusedActivation chosen at run time, for kernels that take it as an argument (the conv2d
// epilogue) rather than instantiating one kernel per functor: the same functors, so the same
// bits. The branch is uniform over a launch.
__device__ __forceinline__ float fused_activation_forward(FusedActivation activation, float x) {
  switch (activation) {
    case FusedActivation::relu: return ReluForwardOp{}(x);
    case FusedActivation::gelu: return GeluExactForwardOp{}(x);
    case FusedActivation::gelu_tanh: return GeluTanhForwardOp{}(x);
    default: return x;
  }
}

// dL/dx from dL/dy and x (for ReLU, x or y) of a FusedActivation chosen at run time.
__device__ __forceinline__ float fused_activation_backward(FusedActivation activation, float dL_dy, float x) {
  switch (activation) {
    case FusedActivation::relu: return ReluBackwardOp{}(dL_dy, x);
    case FusedActivation::gelu: return GeluExactBackwardOp{}(dL_dy, x);
    case FusedActivation::gelu_tanh: return GeluTanhBackwardOp{}(dL_dy, x);
    default: return dL_dy;
  }
}

}  // namespace strata::kernels
