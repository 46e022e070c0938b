// linear's bias: broadcast into the output before the GEMM accumulates x W^T onto it, and
// the bias gradient, a column sum reduced in a fixed order (no atomics), so reruns agree
// bit for bit. One template per kernel for f32, f16 and bf16 storage: elements are loaded
// as float, summed in f32 and rounded once to the storage type.
#include "kernels/linear_bias.h"

#include "core/elementwise_map.cuh"
#include "kernels/common.cuh"
#include "kernels/index_divider.h"

namespace strata::kernels::detail {

namespace {

using strata::detail::load_as_float;
using strata::detail::store_from_float;

constexpr int kBroadcastThreads = 256;
// Bias gradient blocks: 32 columns (coalesced reads along a row) by 8 row stripes.
constexpr int kColumnsPerBlock = kWarpSize;
constexpr int kRowStripes = 8;

// A copy: bias and y share their dtype, so no rounding happens.
template <typename T>
__global__ void broadcast_bias_kernel(const T* bias /* (columns) */, T* y /* (rows, columns) */, std::int64_t rows,
                                      IndexDivider columns) {
  const std::int64_t count = rows * columns.divisor();
  for (std::int64_t i = global_thread_index(); i < count; i += global_thread_count()) {
    y[i] = bias[columns.divide_with_remainder(i).remainder];
  }
}

// Thread (x, y) sums rows y, y + 8, ... of column x of the block's tile; then stripe 0
// adds the 8 partial sums in stripe order.
template <typename T>
__global__ void bias_gradient_kernel(const T* dL_dy /* (rows, columns) */, T* dL_dbias /* (columns) */,
                                     std::int64_t rows, std::int64_t columns, bool accumulate) {
  __shared__ float partial[kRowStripes][kColumnsPerBlock];
  const std::int64_t column = static_cast<std::int64_t>(blockIdx.x) * kColumnsPerBlock + threadIdx.x;
  float sum = 0.0f;
  if (column < columns) {
    for (std::int64_t row = threadIdx.y; row < rows; row += kRowStripes) {
      sum += load_as_float(dL_dy, row * columns + column);
    }
  }
  partial[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y != 0 || column >= columns) return;
  float total = 0.0f;
  for (int stripe = 0; stripe < kRowStripes; ++stripe) total += partial[stripe][threadIdx.x];
  store_from_float(dL_dbias, column, accumulate ? load_as_float(dL_dbias, column) + total : total);
}

}  // namespace

void launch_broadcast_bias(const Tensor& bias, Tensor& y, std::int64_t rows, std::int64_t columns,
                           cudaStream_t stream) {
  if (rows * columns == 0) return;
  strata::detail::dispatch_floating_dtype(y.dtype(), "linear", [&]<typename T>(std::type_identity<T>) {
    launch(broadcast_bias_kernel<T>,
           LaunchConfig{.grid = grid_stride_blocks(rows * columns, kBroadcastThreads), .block = kBroadcastThreads,
                        .stream = stream, .name = "linear_broadcast_bias"},
           bias.data<T>(), y.data<T>(), rows, IndexDivider(columns));
  });
}

void launch_bias_gradient(const Tensor& dL_dy, Tensor& dL_dbias, std::int64_t rows, std::int64_t columns,
                          bool accumulate, cudaStream_t stream) {
  strata::detail::dispatch_floating_dtype(dL_dy.dtype(), "linear", [&]<typename T>(std::type_identity<T>) {
    launch(bias_gradient_kernel<T>,
           LaunchConfig{.grid = static_cast<unsigned>(ceil_div(columns, kColumnsPerBlock)),
                        .block = dim3(kColumnsPerBlock, kRowStripes), .stream = stream,
                        .name = "linear_bias_gradient"},
           dL_dy.data<T>(), dL_dbias.data<T>(), rows, columns, accumulate);
  });
}

}  // namespace strata::kernels::detail
