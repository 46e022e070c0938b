// Small device-side building blocks shared by the kernels: index arithmetic, grid sizes
// and warp/block reductions. Host and device both see the integer helpers.
#pragma once

#include <cstdint>

#include "core/launch.cuh"

// `#pragma unroll` for nvcc, placed before a loop with a constant trip count (register
// tiles must be fully unrolled to stay in registers). The host compiler of the simulator
// build would warn about an unknown pragma, so there it is nothing.
// STRATA_UNROLL_BY(n) unrolls by n a loop whose trip count is not constant, e.g. so that the
// loads of n iterations are in flight together.
#if STRATA_BACKEND_SIM
#define STRATA_UNROLL
#define STRATA_UNROLL_BY(n)
#else
#define STRATA_UNROLL _Pragma("unroll")
#define STRATA_UNROLL_PRAGMA(text) _Pragma(#text)
#define STRATA_UNROLL_BY(n) STRATA_UNROLL_PRAGMA(unroll n)
#endif

namespace strata::kernels {

inline constexpr int kWarpSize = 32;

__host__ __device__ constexpr std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// Blocks for a grid-stride loop over count elements: enough to fill the GPU, never more
// than there is work for.
inline unsigned grid_stride_blocks(std::int64_t count, int threads_per_block) {
  constexpr std::int64_t kMaxBlocks = 65535LL * 8;
  const std::int64_t blocks = ceil_div(count, threads_per_block);
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks));
}

// First index and stride of a grid-stride loop, in 64 bits (tensors may exceed 2^31).
__device__ __forceinline__ std::int64_t global_thread_index() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ std::int64_t global_thread_count() {
  return static_cast<std::int64_t>(gridDim.x) * blockDim.x;
}

// Sum over the 32 lanes of a full warp; every lane gets the total.
template <typename T>
__device__ __forceinline__ T warp_sum(T value) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

template <typename T>
__device__ __forceinline__ T warp_max(T value) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    const T other = __shfl_xor_sync(0xffffffffu, value, offset);
    value = other > value ? other : value;
  }
  return value;
}

// Sum over a whole block (blockDim.x a multiple of 32, at most 1024); every thread gets
// the total. scratch holds 32 values in shared memory; the block must not use it
// concurrently for anything else.
template <typename T>
__device__ T block_sum(T value, T* scratch) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  value = warp_sum(value);
  __syncthreads();  // scratch may still be read from a previous call
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  value = lane < warps ? scratch[lane] : T(0);
  return warp_sum(value);
}

template <typename T>
__device__ T block_max(T value, T* scratch, T lowest) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  value = warp_max(value);
  __syncthreads();
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  value = lane < warps ? scratch[lane] : lowest;
  return warp_max(value);
}

}  // namespace strata::kernels
