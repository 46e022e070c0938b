// Softmax and log-softmax over the last dimension, forward and backward: one warp per row,
// which reduces the row (maximum, sums) with shuffles and then writes it. One template per
// kernel for f32, f16 and bf16 storage: elements are loaded as float, everything is computed
// in f32 and each output is rounded once to the storage type.
#include "strata/kernels/softmax.h"

#include <cmath>
#include <cstdint>

#include "core/elementwise_map.cuh"
#include "core/nvtx.h"
#include "kernels/common.cuh"
#include "kernels/softmax_checks.h"
#include "kernels/tensor_checks.h"

namespace strata::kernels {

namespace {

using detail::load_as_float;
using detail::store_from_float;

constexpr int kThreads = 256;  // 8 warps, each working on one row at a time

enum class SoftmaxKind : bool { softmax, log_softmax };

constexpr const char* op_name(SoftmaxKind kind) { return kind == SoftmaxKind::softmax ? "softmax" : "log_softmax"; }

template <SoftmaxKind kind, typename T>
__global__ void softmax_forward_kernel(const T* x /* (rows, C) */, T* y /* (rows, C) */, std::int64_t rows,
                                       std::int64_t columns) {
  const int lane = static_cast<int>(threadIdx.x % kWarpSize);
  const std::int64_t row_stride = global_thread_count() / kWarpSize;
  // The loop condition is uniform across a warp, as the warp reductions need.
  for (std::int64_t row = global_thread_index() / kWarpSize; row < rows; row += row_stride) {
    const T* x_row = x + row * columns;  // (C)
    T* y_row = y + row * columns;        // (C)
    float row_max = -INFINITY;
    for (std::int64_t j = lane; j < columns; j += kWarpSize) row_max = fmaxf(row_max, load_as_float(x_row, j));
    row_max = warp_max(row_max);
    // A NaN skipped by the max still poisons the sum, so the whole row is NaN as in PyTorch.
    float exp_sum = 0.0f;
    for (std::int64_t j = lane; j < columns; j += kWarpSize) exp_sum += expf(load_as_float(x_row, j) - row_max);
    exp_sum = warp_sum(exp_sum);
    if constexpr (kind == SoftmaxKind::softmax) {
      for (std::int64_t j = lane; j < columns; j += kWarpSize) {
        store_from_float(y_row, j, expf(load_as_float(x_row, j) - row_max) / exp_sum);
      }
    } else {
      const float log_exp_sum = logf(exp_sum);
      for (std::int64_t j = lane; j < columns; j += kWarpSize) {
        store_from_float(y_row, j, (load_as_float(x_row, j) - row_max) - log_exp_sum);
      }
    }
  }
}

// softmax: dL_dx = y * (dL_dy - sum_j dL_dy_j y_j); log_softmax: dL_dx = dL_dy - exp(y) * sum_j dL_dy_j.
template <SoftmaxKind kind, typename T>
__global__ void softmax_backward_kernel(const T* dL_dy /* (rows, C) */, const T* y /* (rows, C) */,
                                        T* dL_dx /* (rows, C) */, std::int64_t rows, std::int64_t columns) {
  const int lane = static_cast<int>(threadIdx.x % kWarpSize);
  const std::int64_t row_stride = global_thread_count() / kWarpSize;
  for (std::int64_t row = global_thread_index() / kWarpSize; row < rows; row += row_stride) {
    const std::int64_t offset = row * columns;
    float row_sum = 0.0f;
    for (std::int64_t j = lane; j < columns; j += kWarpSize) {
      if constexpr (kind == SoftmaxKind::softmax) {
        row_sum += load_as_float(dL_dy, offset + j) * load_as_float(y, offset + j);
      } else {
        row_sum += load_as_float(dL_dy, offset + j);
      }
    }
    row_sum = warp_sum(row_sum);
    for (std::int64_t j = lane; j < columns; j += kWarpSize) {
      const float dy = load_as_float(dL_dy, offset + j);
      if constexpr (kind == SoftmaxKind::softmax) {
        store_from_float(dL_dx, offset + j, load_as_float(y, offset + j) * (dy - row_sum));
      } else {
        store_from_float(dL_dx, offset + j, dy - expf(load_as_float(y, offset + j)) * row_sum);
      }
    }
  }
}

template <SoftmaxKind kind>
void launch_forward(const Tensor& x, Tensor& y, cudaStream_t stream) {
  const std::int64_t rows = expect_softmax_forward_arguments(x, y, op_name(kind));
  detail::dispatch_floating_dtype(x.dtype(), op_name(kind), [&]<typename T>(std::type_identity<T>) {
    launch(softmax_forward_kernel<kind, T>,
           LaunchConfig{.grid = grid_stride_blocks(rows * kWarpSize, kThreads), .block = kThreads, .stream = stream,
                        .name = kind == SoftmaxKind::softmax ? "softmax_forward" : "log_softmax_forward"},
           x.data<T>(), y.data<T>(), rows, x.size(x.dim() - 1));
  });
}

template <SoftmaxKind kind>
void launch_backward(const Tensor& dL_dy, const Tensor& y, Tensor& dL_dx, cudaStream_t stream) {
  const std::int64_t rows = expect_softmax_backward_arguments(dL_dy, y, dL_dx, op_name(kind));
  detail::dispatch_floating_dtype(y.dtype(), op_name(kind), [&]<typename T>(std::type_identity<T>) {
    launch(softmax_backward_kernel<kind, T>,
           LaunchConfig{.grid = grid_stride_blocks(rows * kWarpSize, kThreads), .block = kThreads, .stream = stream,
                        .name = kind == SoftmaxKind::softmax ? "softmax_backward" : "log_softmax_backward"},
           dL_dy.data<T>(), y.data<T>(), dL_dx.data<T>(), rows, y.size(y.dim() - 1));
  });
}

Tensor empty_like(const Tensor& tensor, const char* op, const char* name, cudaStream_t stream) {
  expect_floating_device_tensor(tensor, op, name);
  return Tensor::empty(tensor.shape(), tensor.dtype(), stream);
}

}  // namespace

void softmax_forward(const Tensor& x, Tensor& y, cudaStream_t stream) {
  NvtxRange range("softmax_forward");
  launch_forward<SoftmaxKind::softmax>(x, y, stream);
}

Tensor softmax_forward(const Tensor& x, cudaStream_t stream) {
  Tensor y = empty_like(x, "softmax", "x", stream);
  softmax_forward(x, y, stream);
  return y;
}

void softmax_backward(const Tensor& dL_dy, const Tensor& y, Tensor& dL_dx, cudaStream_t stream) {
  NvtxRange range("softmax_backward");
  launch_backward<SoftmaxKind::softmax>(dL_dy, y, dL_dx, stream);
}

Tensor softmax_backward(const Tensor& dL_dy, const Tensor& y, cudaStream_t stream) {
  Tensor dL_dx = empty_like(y, "softmax", "y", stream);
  softmax_backward(dL_dy, y, dL_dx, stream);
  return dL_dx;
}

void log_softmax_forward(const Tensor& x, Tensor& y, cudaStream_t stream) {
  NvtxRange range("log_softmax_forward");
  launch_forward<SoftmaxKind::log_softmax>(x, y, stream);
}

Tensor log_softmax_forward(const Tensor& x, cudaStream_t stream) {
  Tensor y = empty_like(x, "log_softmax", "x", stream);
  log_softmax_forward(x, y, stream);
  return y;
}

void log_softmax_backward(const Tensor& dL_dy, const Tensor& y, Tensor& dL_dx, cudaStream_t stream) {
  NvtxRange range("log_softmax_backward");
  launch_backward<SoftmaxKind::log_softmax>(dL_dy, y, dL_dx, stream);
}

Tensor log_softmax_backward(const Tensor& dL_dy, const Tensor& y, cudaStream_t stream) {
  Tensor dL_dx = empty_like(y, "log_softmax", "y", stream);
  log_softmax_backward(dL_dy, y, dL_dx, stream);
  return dL_dx;
}

}  // namespace strata::kernels
