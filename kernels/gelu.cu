// GELU forward and backward in both of PyTorch's forms, exact (erf) and tanh, as
// element-wise maps (elementwise_map.cuh) of the functors in activation_ops.cuh, which
// also says how both forms avoid cancellation. f32, f16 or bf16 storage, computed in f32; in
// memory order, so any memory format, one for all operands.
#include "strata/kernels/activations.h"

#include "core/nvtx.h"
#include "kernels/activation_ops.cuh"
#include "kernels/elementwise_map.cuh"

namespace strata::kernels {

void gelu_forward(const Tensor& x, Tensor& y, const GeluParams& params, cudaStream_t stream) {
  NvtxRange range("gelu_forward");
  expect_floating_device_tensor(x, "gelu_forward", "x");
  expect_floating_device_tensor(y, "gelu_forward", "y");
  expect_same_dtype(y, x, "gelu_forward", "y", "x");
  expect_shape(y, x.shape(), "gelu_forward", "y");
  expect_same_memory_order(y, x, "gelu_forward", "y", "x");
  expect_same_or_distinct(y, x, "gelu_forward", "y", "x");
  dispatch_elementwise_dtype(x.dtype(), "gelu_forward", [&]<typename T>(std::type_identity<T>) {
    if (params.approximation == GeluApproximation::tanh) {
      launch_unary_map(memory_elements<T>(x), memory_elements<T>(y), x.numel(), GeluTanhForwardOp{}, stream,
                       "gelu_tanh_forward");
    } else {
      launch_unary_map(memory_elements<T>(x), memory_elements<T>(y), x.numel(), GeluExactForwardOp{}, stream,
                       "gelu_forward");
    }
  });
}

Tensor gelu_forward(const Tensor& x, const GeluParams& params, cudaStream_t stream) {
  expect_floating_device_tensor(x, "gelu_forward", "x");
  Tensor y = Tensor::empty(x.shape(), x.dtype(), stream, x.memory_format());
  gelu_forward(x, y, params, stream);
  return y;
}

void gelu_backward(const Tensor& dL_dy, const Tensor& x, Tensor& dL_dx, const GeluParams& params, cudaStream_t stream) {
  NvtxRange range("gelu_backward");
  expect_floating_device_tensor(dL_dy, "gelu_backward", "dL_dy");
  expect_floating_device_tensor(x, "gelu_backward", "x");
  expect_floating_device_tensor(dL_dx, "gelu_backward", "dL_dx");
  expect_same_dtype(x, dL_dy, "gelu_backward", "x", "dL_dy");
  expect_same_dtype(dL_dx, dL_dy, "gelu_backward", "dL_dx", "dL_dy");
  expect_shape(x, dL_dy.shape(), "gelu_backward", "x");
  expect_shape(dL_dx, dL_dy.shape(), "gelu_backward", "dL_dx");
  expect_same_memory_order(x, dL_dy, "gelu_backward", "x", "dL_dy");
  expect_same_memory_order(dL_dx, dL_dy, "gelu_backward", "dL_dx", "dL_dy");
  expect_same_or_distinct(dL_dx, dL_dy, "gelu_backward", "dL_dx", "dL_dy");
  expect_same_or_distinct(dL_dx, x, "gelu_backward", "dL_dx", "x");
  dispatch_elementwise_dtype(dL_dy.dtype(), "gelu_backward", [&]<typename T>(std::type_identity<T>) {
    if (params.approximation == GeluApproximation::tanh) {
      launch_binary_map(memory_elements<T>(dL_dy), memory_elements<T>(x), memory_elements<T>(dL_dx), dL_dy.numel(),
                        GeluTanhBackwardOp{}, stream, "gelu_tanh_backward");
    } else {
      launch_binary_map(memory_elements<T>(dL_dy), memory_elements<T>(x), memory_elements<T>(dL_dx), dL_dy.numel(),
                        GeluExactBackwardOp{}, stream, "gelu_backward");
    }
  });
}

Tensor gelu_backward(const Tensor& dL_dy, const Tensor& x, const GeluParams& params, cudaStream_t stream) {
  expect_floating_device_tensor(dL_dy, "gelu_backward", "dL_dy");
  Tensor dL_dx = Tensor::empty(dL_dy.shape(), dL_dy.dtype(), stream, dL_dy.memory_format());
  gelu_backward(dL_dy, x, dL_dx, params, stream);
  return dL_dx;
}

}  // namespace strata::kernels
