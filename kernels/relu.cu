// ReLU forward and backward: element-wise maps (elementwise_map.cuh) of the functors in
// activation_ops.cuh over f32, f16 or bf16 (exact in each: only selects), 16 bytes at a
// time where aligned, in memory order: any memory format, one for all operands.
#include "strata/kernels/activations.h"

#include "core/nvtx.h"
#include "kernels/activation_ops.cuh"
#include "kernels/elementwise_map.cuh"

namespace strata::kernels {

void relu_forward(const Tensor& x, Tensor& y, const ReluParams& /*params*/, cudaStream_t stream) {
  NvtxRange range("relu_forward");
  expect_floating_device_tensor(x, "relu_forward", "x");
  expect_floating_device_tensor(y, "relu_forward", "y");
  expect_same_dtype(y, x, "relu_forward", "y", "x");
  expect_shape(y, x.shape(), "relu_forward", "y");
  expect_same_memory_order(y, x, "relu_forward", "y", "x");
  expect_same_or_distinct(y, x, "relu_forward", "y", "x");
  dispatch_elementwise_dtype(x.dtype(), "relu_forward", [&]<typename T>(std::type_identity<T>) {
    launch_unary_map(memory_elements<T>(x), memory_elements<T>(y), x.numel(), ReluForwardOp{}, stream, "relu_forward");
  });
}

Tensor relu_forward(const Tensor& x, const ReluParams& params, cudaStream_t stream) {
  expect_floating_device_tensor(x, "relu_forward", "x");
  Tensor y = Tensor::empty(x.shape(), x.dtype(), stream, x.memory_format());
  relu_forward(x, y, params, stream);
  return y;
}

void relu_backward(const Tensor& dL_dy, const Tensor& y, Tensor& dL_dx, const ReluParams& /*params*/,
                   cudaStream_t stream) {
  NvtxRange range("relu_backward");
  expect_floating_device_tensor(dL_dy, "relu_backward", "dL_dy");
  expect_floating_device_tensor(y, "relu_backward", "y");
  expect_floating_device_tensor(dL_dx, "relu_backward", "dL_dx");
  expect_same_dtype(y, dL_dy, "relu_backward", "y", "dL_dy");
  expect_same_dtype(dL_dx, dL_dy, "relu_backward", "dL_dx", "dL_dy");
  expect_shape(y, dL_dy.shape(), "relu_backward", "y");
  expect_shape(dL_dx, dL_dy.shape(), "relu_backward", "dL_dx");
  expect_same_memory_order(y, dL_dy, "relu_backward", "y", "dL_dy");
  expect_same_memory_order(dL_dx, dL_dy, "relu_backward", "dL_dx", "dL_dy");
  expect_same_or_distinct(dL_dx, dL_dy, "relu_backward", "dL_dx", "dL_dy");
  expect_same_or_distinct(dL_dx, y, "relu_backward", "dL_dx", "y");
  dispatch_elementwise_dtype(dL_dy.dtype(), "relu_backward", [&]<typename T>(std::type_identity<T>) {
    launch_binary_map(memory_elements<T>(dL_dy), memory_elements<T>(y), memory_elements<T>(dL_dx), dL_dy.numel(),
                      ReluBackwardOp{}, stream, "relu_backward");
  });
}

Tensor relu_backward(const Tensor& dL_dy, const Tensor& y, const ReluParams& params, cudaStream_t stream) {
  expect_floating_device_tensor(dL_dy, "relu_backward", "dL_dy");
  Tensor dL_dx = Tensor::empty(dL_dy.shape(), dL_dy.dtype(), stream, dL_dy.memory_format());
  relu_backward(dL_dy, y, dL_dx, params, stream);
  return dL_dx;
}

}  // namespace strata::kernels
