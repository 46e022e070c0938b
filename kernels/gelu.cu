// GELU forward and backward in both of PyTorch's forms, exact (erf) and tanh, as
// element-wise maps (elementwise_map.cuh). Both are arranged to avoid cancellation:
//   exact: Phi(x) = 0.5 erfc(-x / sqrt(2)) instead of 0.5 (1 + erf(x / sqrt(2))), which
//          loses every digit for x below about -4;
//   tanh:  0.5 (1 + tanh(u)) = sigmoid(2u) and 1 - tanh(u)^2 = 4 sigmoid(2u) sigmoid(-2u),
//          both from one exp(-2|u|) that cannot overflow.
#include "strata/kernels/activations.h"

#include <cmath>

#include "core/nvtx.h"
#include "kernels/elementwise_map.cuh"

namespace strata::kernels {

namespace {

constexpr float kSqrtHalf = 0.70710678118654752f;       // 1 / sqrt(2)
constexpr float kInvSqrtTwoPi = 0.39894228040143268f;   // 1 / sqrt(2 pi)
constexpr float kSqrtTwoOverPi = 0.79788456080286536f;  // sqrt(2 / pi)
constexpr float kKappa = 0.044715f;

__device__ __forceinline__ float normal_cdf(float x) { return 0.5f * erfcf(-x * kSqrtHalf); }

struct GeluExactForwardOp {
  __device__ float operator()(float x) const { return x * normal_cdf(x); }
};

struct GeluExactBackwardOp {
  __device__ float operator()(float dL_dy, float x) const {
    // d/dx x Phi(x) = Phi(x) + x phi(x); exp(-x^2/2) underflows to 0 for large |x|, and x^2
    // overflowing to infinity only makes it 0 sooner.
    const float pdf = kInvSqrtTwoPi * expf(-0.5f * x * x);
    return dL_dy * (normal_cdf(x) + x * pdf);
  }
};

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

struct GeluTanhForwardOp {
  __device__ float operator()(float x) const { return x * sigmoid_of_twice(tanh_inner(x)).positive; }
};

struct GeluTanhBackwardOp {
  __device__ float operator()(float dL_dy, float x) const {
    // d/dx 0.5 x (1 + tanh u) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) du/dx
    //                         = s + 2 x s (1 - s) du/dx, with s = sigmoid(2u).
    const SigmoidPair s = sigmoid_of_twice(tanh_inner(x));
    const float bump = s.positive * s.negative;
    // bump is 0 once |u| > ~52 (|x| > ~11): then the second term is exactly 0, and
    // skipping it avoids 0 * infinity when x^2 overflows.
    const float inner_derivative = kSqrtTwoOverPi * (1.0f + 3.0f * kKappa * x * x);
    const float derivative = bump == 0.0f ? s.positive : s.positive + 2.0f * x * bump * inner_derivative;
    return dL_dy * derivative;
  }
};

}  // namespace

void gelu_forward(const Tensor& x, Tensor& y, const GeluParams& params, cudaStream_t stream) {
  NvtxRange range("gelu_forward");
  expect_device_tensor(x, "gelu_forward", "x");
  expect_device_tensor(y, "gelu_forward", "y");
  expect_shape(y, x.shape(), "gelu_forward", "y");
  expect_same_or_distinct(y, x, "gelu_forward", "y", "x");
  dispatch_elementwise_dtype(x.dtype(), "gelu_forward", [&]<typename T>(std::type_identity<T>) {
    if (params.approximation == GeluApproximation::tanh) {
      launch_unary_map(x.data<T>(), y.data<T>(), x.numel(), GeluTanhForwardOp{}, stream, "gelu_tanh_forward");
    } else {
      launch_unary_map(x.data<T>(), y.data<T>(), x.numel(), GeluExactForwardOp{}, stream, "gelu_forward");
    }
  });
}

Tensor gelu_forward(const Tensor& x, const GeluParams& params, cudaStream_t stream) {
  expect_device_tensor(x, "gelu_forward", "x");
  Tensor y = Tensor::empty(x.shape(), x.dtype(), stream);
  gelu_forward(x, y, params, stream);
  return y;
}

void gelu_backward(const Tensor& dL_dy, const Tensor& x, Tensor& dL_dx, const GeluParams& params, cudaStream_t stream) {
  NvtxRange range("gelu_backward");
  expect_device_tensor(dL_dy, "gelu_backward", "dL_dy");
  expect_device_tensor(x, "gelu_backward", "x");
  expect_device_tensor(dL_dx, "gelu_backward", "dL_dx");
  expect_shape(x, dL_dy.shape(), "gelu_backward", "x");
  expect_shape(dL_dx, dL_dy.shape(), "gelu_backward", "dL_dx");
  expect_same_or_distinct(dL_dx, dL_dy, "gelu_backward", "dL_dx", "dL_dy");
  expect_same_or_distinct(dL_dx, x, "gelu_backward", "dL_dx", "x");
  dispatch_elementwise_dtype(dL_dy.dtype(), "gelu_backward", [&]<typename T>(std::type_identity<T>) {
    if (params.approximation == GeluApproximation::tanh) {
      launch_binary_map(dL_dy.data<T>(), x.data<T>(), dL_dx.data<T>(), dL_dy.numel(), GeluTanhBackwardOp{}, stream,
                        "gelu_tanh_backward");
    } else {
      launch_binary_map(dL_dy.data<T>(), x.data<T>(), dL_dx.data<T>(), dL_dy.numel(), GeluExactBackwardOp{}, stream,
                        "gelu_backward");
    }
  });
}

Tensor gelu_backward(const Tensor& dL_dy, const Tensor& x, const GeluParams& params, cudaStream_t stream) {
  expect_device_tensor(dL_dy, "gelu_backward", "dL_dy");
  Tensor dL_dx = Tensor::empty(dL_dy.shape(), dL_dy.dtype(), stream);
  gelu_backward(dL_dy, x, dL_dx, params, stream);
  return dL_dx;
}

}  // namespace strata::kernels
