// linear's bias: broadcast into the output before the GEMM accumulates x W^T onto it, and
// the bias gradient, a column sum reduced in a fixed order (no atomics), so reruns agree
// bit for bit.
#include "kernels/linear_bias.h"

#include "kernels/common.cuh"

namespace strata::kernels::detail {

namespace {

constexpr int kBroadcastThreads = 256;
// Bias gradient blocks: 32 columns (coalesced reads along a row) by 8 row stripes.
constexpr int kColumnsPerBlock = kWarpSize;
constexpr int kRowStripes = 8;

__global__ void broadcast_bias_kernel(const float* bias /* (columns) */, float* y /* (rows, columns) */,
                                      std::int64_t rows, std::int64_t columns) {
  const std::int64_t count = rows * columns;
  for (std::int64_t i = global_thread_index(); i < count; i += global_thread_count()) y[i] = bias[i % columns];
}

// Thread (x, y) sums rows y, y + 8, ... of column x of the block's tile; then stripe 0
// adds the 8 partial sums in stripe order.
__global__ void bias_gradient_kernel(const float* dL_dy /* (rows, columns) */, float* dL_dbias /* (columns) */,
                                     std::int64_t rows, std::int64_t columns, bool accumulate) {
  __shared__ float partial[kRowStripes][kColumnsPerBlock];
  const std::int64_t column = static_cast<std::int64_t>(blockIdx.x) * kColumnsPerBlock + threadIdx.x;
  float sum = 0.0f;
  if (column < columns) {
    for (std::int64_t row = threadIdx.y; row < rows; row += kRowStripes) sum += dL_dy[row * columns + column];
  }
  partial[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y != 0 || column >= columns) return;
  float total = 0.0f;
  for (int stripe = 0; stripe < kRowStripes; ++stripe) total += partial[stripe][threadIdx.x];
  dL_dbias[column] = accumulate ? dL_dbias[column] + total : total;
}

}  // namespace

void launch_broadcast_bias(const float* bias, float* y, std::int64_t rows, std::int64_t columns,
                           cudaStream_t stream) {
  launch(broadcast_bias_kernel,
         LaunchConfig{.grid = grid_stride_blocks(rows * columns, kBroadcastThreads), .block = kBroadcastThreads,
                      .stream = stream, .name = "linear_broadcast_bias"},
         bias, y, rows, columns);
}

void launch_bias_gradient(const float* dL_dy, float* dL_dbias, std::int64_t rows, std::int64_t columns,
                          bool accumulate, cudaStream_t stream) {
  launch(bias_gradient_kernel,
         LaunchConfig{.grid = static_cast<unsigned>(ceil_div(columns, kColumnsPerBlock)),
                      .block = dim3(kColumnsPerBlock, kRowStripes), .stream = stream, .name = "linear_bias_gradient"},
         dL_dy, dL_dbias, rows, columns, accumulate);
}

}  // namespace strata::kernels::detail
