// The argmax over the last dimension, one warp a row: each lane scans its strided share of
// the row keeping the first best, then the warp combines the lanes' (value, index) pairs
// with the same rule, so a tie goes to the smaller index whatever order the lanes combine
// in. x may be f32, f16 or bf16 (one template; values compared as float, which keeps their
// order, ties and NaNs). count_equal is one block: a grid-stride count per thread, then the
// block's sum.
#include "strata/kernels/argmax.h"

#include <cstdint>

#include "core/check.h"
#include "core/elementwise_map.cuh"
#include "core/nvtx.h"
#include "kernels/common.cuh"
#include "kernels/tensor_checks.h"

namespace strata::kernels {

namespace {

constexpr int kArgmaxThreads = 256;  // 8 warps: 8 rows at a time
constexpr int kCountThreads = 512;

// Whether (value, index) comes before (best, best_index) in PyTorch's order: NaN above
// every number, then larger values, then (a tie, or two NaNs) the smaller index.
__device__ __forceinline__ bool beats(float value, std::int64_t index, float best, std::int64_t best_index) {
  const bool value_nan = value != value, best_nan = best != best;
  if (value_nan != best_nan) return value_nan;
  if (!value_nan && value != best) return value > best;
  return index < best_index;
}

template <typename T>
__global__ void argmax_last_dim_kernel(const T* x /* (rows, columns) */, std::int64_t rows, std::int64_t columns,
                                       std::int64_t* indices /* (rows) */) {
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const std::int64_t warps_per_block = blockDim.x / kWarpSize;
  const std::int64_t first_row = static_cast<std::int64_t>(blockIdx.x) * warps_per_block + threadIdx.x / kWarpSize;
  for (std::int64_t row = first_row; row < rows; row += static_cast<std::int64_t>(gridDim.x) * warps_per_block) {
    const T* values = x + row * columns;  // (columns)
    // Lanes past the row's end hold index `columns`, which every real element beats.
    float best = 0.0f;
    std::int64_t best_index = columns;
    for (std::int64_t column = lane; column < columns; column += kWarpSize) {
      const float value = detail::load_as_float(values, column);
      if (best_index == columns || beats(value, column, best, best_index)) {
        best = value;
        best_index = column;
      }
    }
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
      const float other = __shfl_xor_sync(0xffffffffu, best, offset);
      const std::int64_t other_index = __shfl_xor_sync(0xffffffffu, best_index, offset);
      const bool other_real = other_index < columns;
      if (other_real && (best_index == columns || beats(other, other_index, best, best_index))) {
        best = other;
        best_index = other_index;
      }
    }
    if (lane == 0) indices[row] = best_index;
  }
}

__global__ void count_equal_kernel(const std::int64_t* a /* (count) */, const std::int64_t* b /* (count) */,
                                   std::int64_t count, std::int64_t* equal /* () */) {
  __shared__ unsigned long long scratch[kWarpSize];
  unsigned long long matches = 0;
  for (std::int64_t i = threadIdx.x; i < count; i += blockDim.x) matches += a[i] == b[i] ? 1u : 0u;
  matches = block_sum(matches, scratch);
  if (threadIdx.x == 0) *equal = static_cast<std::int64_t>(matches);
}

Shape argmax_shape(const Tensor& x) {
  const auto dims = x.shape().dims();
  return Shape(dims.first(dims.size() - 1));
}

}  // namespace

void argmax_last_dim(const Tensor& x, Tensor& indices, cudaStream_t stream) {
  NvtxRange range("argmax_last_dim");
  expect_floating_device_tensor(x, "argmax_last_dim", "x");
  expect_device_tensor(indices, "argmax_last_dim", "indices", DType::i64);
  STRATA_CHECK(x.dim() >= 1 && x.size(x.dim() - 1) >= 1,
               "argmax_last_dim: x {} must have a last dimension of at least one element", x.shape().to_string());
  expect_shape(indices, argmax_shape(x), "argmax_last_dim", "indices");
  const std::int64_t columns = x.size(x.dim() - 1);
  const std::int64_t rows = x.numel() / columns;
  if (rows == 0) return;
  detail::dispatch_floating_dtype(x.dtype(), "argmax_last_dim", [&]<typename T>(std::type_identity<T>) {
    launch(argmax_last_dim_kernel<T>,
           LaunchConfig{.grid = grid_stride_blocks(rows * kWarpSize, kArgmaxThreads),
                        .block = kArgmaxThreads,
                        .stream = stream,
                        .name = "argmax_last_dim"},
           x.data<T>(), rows, columns, indices.data<std::int64_t>());
  });
}

Tensor argmax_last_dim(const Tensor& x, cudaStream_t stream) {
  expect_floating_device_tensor(x, "argmax_last_dim", "x");
  STRATA_CHECK(x.dim() >= 1, "argmax_last_dim: x {} must have at least one dimension", x.shape().to_string());
  Tensor indices = Tensor::empty(argmax_shape(x), DType::i64, stream);
  argmax_last_dim(x, indices, stream);
  return indices;
}

void count_equal(const Tensor& a, const Tensor& b, Tensor& count, cudaStream_t stream) {
  NvtxRange range("count_equal");
  expect_device_tensor(a, "count_equal", "a", DType::i64);
  expect_device_tensor(b, "count_equal", "b", DType::i64);
  expect_device_tensor(count, "count_equal", "count", DType::i64);
  STRATA_CHECK(a.shape() == b.shape(), "count_equal: a {} and b {} must have the same shape", a.shape().to_string(),
               b.shape().to_string());
  expect_shape(count, Shape{}, "count_equal", "count");
  expect_distinct(count, a, "count_equal", "count", "a");
  expect_distinct(count, b, "count_equal", "count", "b");
  launch(count_equal_kernel, LaunchConfig{.grid = 1, .block = kCountThreads, .stream = stream, .name = "count_equal"},
         a.data<std::int64_t>(), b.data<std::int64_t>(), a.numel(), count.data<std::int64_t>());
}

Tensor count_equal(const Tensor& a, const Tensor& b, cudaStream_t stream) {
  Tensor count = Tensor::empty(Shape{}, DType::i64, stream);
  count_equal(a, b, count, stream);
  return count;
}

}  // namespace strata::kernels
