// The residual add y = a + alpha * b, accumulation y += alpha * x and scaling y = factor * x:
// element-wise maps (elementwise_map.cuh) over f32, f16 or bf16, computed in f32, 16 bytes
// at a time where aligned. fmaf rounds once, so both builds give the same bits. In memory
// order: any memory format, one for all operands.
#include "strata/kernels/elementwise.h"

#include <cmath>
#include <type_traits>

#include "core/nvtx.h"
#include "core/tensor_ops.h"
#include "kernels/elementwise_map.cuh"

namespace strata::kernels {

namespace {

struct ScaleOp {
  float factor;
  __device__ float operator()(float x) const { return factor * x; }
};

}  // namespace

void add_forward(const Tensor& a, const Tensor& b, Tensor& y, const AddParams& params, cudaStream_t stream) {
  NvtxRange range("add_forward");
  expect_floating_device_tensor(a, "add_forward", "a");
  expect_floating_device_tensor(b, "add_forward", "b");
  expect_floating_device_tensor(y, "add_forward", "y");
  expect_same_dtype(b, a, "add_forward", "b", "a");
  expect_same_dtype(y, a, "add_forward", "y", "a");
  STRATA_CHECK(a.shape() == b.shape(), "add_forward: a {} and b {} must have the same shape (no broadcasting)",
               a.shape().to_string(), b.shape().to_string());
  expect_shape(y, a.shape(), "add_forward", "y");
  expect_same_memory_order(b, a, "add_forward", "b", "a");
  expect_same_memory_order(y, a, "add_forward", "y", "a");
  expect_same_or_distinct(y, a, "add_forward", "y", "a");
  expect_same_or_distinct(y, b, "add_forward", "y", "b");
  dispatch_elementwise_dtype(a.dtype(), "add_forward", [&]<typename T>(std::type_identity<T>) {
    launch_binary_map(memory_elements<T>(a), memory_elements<T>(b), memory_elements<T>(y), a.numel(),
                      FmaAddOp{params.alpha}, stream, "add_forward");
  });
}

Tensor add_forward(const Tensor& a, const Tensor& b, const AddParams& params, cudaStream_t stream) {
  expect_floating_device_tensor(a, "add_forward", "a");
  Tensor y = Tensor::empty(a.shape(), a.dtype(), stream, a.memory_format());
  add_forward(a, b, y, params, stream);
  return y;
}

void accumulate(const Tensor& x, Tensor& y, const AddParams& params, cudaStream_t stream) {
  NvtxRange range("accumulate");
  expect_floating_device_tensor(x, "accumulate", "x");
  expect_floating_device_tensor(y, "accumulate", "y");
  expect_same_dtype(x, y, "accumulate", "x", "y");
  STRATA_CHECK(x.shape() == y.shape(), "accumulate: x {} and y {} must have the same shape (no broadcasting)",
               x.shape().to_string(), y.shape().to_string());
  expect_same_memory_order(x, y, "accumulate", "x", "y");
  expect_same_or_distinct(y, x, "accumulate", "y", "x");
  // The kernel behind Tensor::add_, so that autograd's accumulation and this are one code path.
  detail::launch_add(y.memory_ptr(), x.memory_ptr(), y.memory_ptr(), y.dtype(), y.numel(), params.alpha, stream);
}

void scale(const Tensor& x, Tensor& y, const ScaleParams& params, cudaStream_t stream) {
  NvtxRange range("scale");
  expect_floating_device_tensor(x, "scale", "x");
  expect_floating_device_tensor(y, "scale", "y");
  expect_same_dtype(y, x, "scale", "y", "x");
  expect_shape(y, x.shape(), "scale", "y");
  expect_same_memory_order(y, x, "scale", "y", "x");
  expect_same_or_distinct(y, x, "scale", "y", "x");
  dispatch_elementwise_dtype(x.dtype(), "scale", [&]<typename T>(std::type_identity<T>) {
    launch_unary_map(memory_elements<T>(x), memory_elements<T>(y), x.numel(), ScaleOp{params.factor}, stream, "scale");
  });
}

}  // namespace strata::kernels
