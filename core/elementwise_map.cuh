// Grid-stride element-wise maps y[i] = op(x[i]) and y[i] = op(a[i], b[i]) that move four
// floats at a time through float4 when every pointer is 16-byte aligned, then finish the
// tail (and unaligned views) one element at a time. Core's gradient accumulation
// (Tensor::add_) and the element-wise kernels of kernels/ (relu, gelu, add, scale) are all
// built on these.
#pragma once

#include <cstdint>
#include <type_traits>

#include "core/dtype_dispatch.h"
#include "core/launch.cuh"
#include "core/tensor_ops.h"

namespace strata::detail {

inline constexpr unsigned kElementwiseThreads = 256;

inline bool is_16_byte_aligned(const void* pointer) { return reinterpret_cast<std::uintptr_t>(pointer) % 16 == 0; }

__device__ __forceinline__ std::int64_t map_thread_index() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ std::int64_t map_thread_count() { return static_cast<std::int64_t>(gridDim.x) * blockDim.x; }

// a + alpha * b as one fused multiply-add: rounds once, so both builds give the same bits.
struct FmaAddOp {
  float alpha;
  __device__ float operator()(float a, float b) const { return fmaf(alpha, b, a); }
};

template <typename T>
__device__ __forceinline__ float load_as_float(const T* data, std::int64_t i) {
  return detail::convert_element<float>(data[i]);
}
template <typename T>
__device__ __forceinline__ void store_from_float(T* data, std::int64_t i, float value) {
  data[i] = detail::convert_element<T>(value);
}

// y (count) = op(x (count)); y may be x. The first vector_count * 4 elements go as float4
// (vector_count is 0 unless T is float and both pointers are 16-byte aligned).
template <typename T, typename Op>
__global__ void unary_map_kernel(const T* x /* (count) */, T* y /* (count) */, std::int64_t count,
                                 std::int64_t vector_count, Op op) {
  const std::int64_t first = map_thread_index();
  const std::int64_t stride = map_thread_count();
  if constexpr (std::is_same_v<T, float>) {
    const auto* x4 = reinterpret_cast<const float4*>(x);  // (vector_count)
    auto* y4 = reinterpret_cast<float4*>(y);              // (vector_count)
    for (std::int64_t v = first; v < vector_count; v += stride) {
      const float4 in = x4[v];
      y4[v] = make_float4(op(in.x), op(in.y), op(in.z), op(in.w));
    }
  }
  for (std::int64_t i = vector_count * 4 + first; i < count; i += stride) {
    store_from_float(y, i, op(load_as_float(x, i)));
  }
}

// y (count) = op(a (count), b (count)); y may be a or b.
template <typename T, typename Op>
__global__ void binary_map_kernel(const T* a /* (count) */, const T* b /* (count) */, T* y /* (count) */,
                                  std::int64_t count, std::int64_t vector_count, Op op) {
  const std::int64_t first = map_thread_index();
  const std::int64_t stride = map_thread_count();
  if constexpr (std::is_same_v<T, float>) {
    const auto* a4 = reinterpret_cast<const float4*>(a);  // (vector_count)
    const auto* b4 = reinterpret_cast<const float4*>(b);  // (vector_count)
    auto* y4 = reinterpret_cast<float4*>(y);              // (vector_count)
    for (std::int64_t v = first; v < vector_count; v += stride) {
      const float4 in_a = a4[v];
      const float4 in_b = b4[v];
      y4[v] = make_float4(op(in_a.x, in_b.x), op(in_a.y, in_b.y), op(in_a.z, in_b.z), op(in_a.w, in_b.w));
    }
  }
  for (std::int64_t i = vector_count * 4 + first; i < count; i += stride) {
    store_from_float(y, i, op(load_as_float(a, i), load_as_float(b, i)));
  }
}

// Threads for a map whose first vector_count * 4 of count elements go as float4: enough
// for the larger of the vector loop and the scalar tail.
inline LaunchConfig map_launch_config(std::int64_t count, std::int64_t vector_count, cudaStream_t stream,
                                      const char* name) {
  const std::int64_t tail = count - vector_count * 4;
  const std::int64_t threads = vector_count > tail ? vector_count : tail;
  return LaunchConfig{.grid = grid_stride_blocks(threads, kElementwiseThreads),
                      .block = kElementwiseThreads,
                      .stream = stream,
                      .name = name};
}

template <typename T, typename Op>
void launch_unary_map(const T* x, T* y, std::int64_t count, Op op, cudaStream_t stream, const char* name) {
  if (count == 0) return;
  const bool vectorize = std::is_same_v<T, float> && is_16_byte_aligned(x) && is_16_byte_aligned(y);
  const std::int64_t vector_count = vectorize ? count / 4 : 0;
  launch(unary_map_kernel<T, Op>, map_launch_config(count, vector_count, stream, name), x, y, count, vector_count, op);
}

template <typename T, typename Op>
void launch_binary_map(const T* a, const T* b, T* y, std::int64_t count, Op op, cudaStream_t stream, const char* name) {
  if (count == 0) return;
  const bool vectorize =
      std::is_same_v<T, float> && is_16_byte_aligned(a) && is_16_byte_aligned(b) && is_16_byte_aligned(y);
  const std::int64_t vector_count = vectorize ? count / 4 : 0;
  launch(binary_map_kernel<T, Op>, map_launch_config(count, vector_count, stream, name), a, b, y, count, vector_count,
         op);
}

}  // namespace strata::detail
