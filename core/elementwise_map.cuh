// Grid-stride element-wise maps y[i] = op(x[i]) and y[i] = op(a[i], b[i]) over f32, f16 or
// bf16 storage: each element is loaded as float, op computes in float and the result is
// rounded once to the storage type. Where every pointer is 16-byte aligned they move 16
// bytes at a time (four floats as float4, eight halves or bfloat16s), then finish the tail
// (and unaligned views) one element at a time. Core's gradient accumulation (Tensor::add_)
// and the element-wise kernels of kernels/ (relu, gelu, add, scale) are all built on these.
#pragma once

#include <cstdint>
#include <string_view>
#include <type_traits>

#include "core/check.h"
#include "core/dtype_dispatch.h"
#include "core/launch.cuh"
#include "core/tensor_ops.h"

namespace strata::detail {

inline constexpr unsigned kElementwiseThreads = 256;

// Calls f(std::type_identity<T>{}) with the C++ type of a floating dtype (float, __half,
// __nv_bfloat16), the element types the maps are instantiated for; any other dtype throws
// InvalidArgument naming op.
template <typename F>
void dispatch_floating_dtype(DType dtype, std::string_view op, F&& f) {
  switch (dtype) {
    case DType::f32: f(std::type_identity<float>{}); return;
    case DType::f16: f(std::type_identity<__half>{}); return;
    case DType::bf16: f(std::type_identity<__nv_bfloat16>{}); return;
    default: break;
  }
  STRATA_CHECK(false, "{}: dtype {} is not supported (f32, f16 and bf16 are)", op, dtype_name(dtype));
}

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

// Every load goes through float and every store rounds once from it (round to nearest even),
// so the host and device compilers, whose __half / __nv_bfloat16 operators differ, agree.
template <typename T>
__device__ __forceinline__ float load_as_float(const T* data, std::int64_t i) {
  return detail::convert_element<float>(data[i]);
}
template <typename T>
__device__ __forceinline__ void store_from_float(T* data, std::int64_t i, float value) {
  data[i] = detail::convert_element<T>(value);
}

// Elements of type T in one 16-byte access: 4 floats, 8 halves or bfloat16s.
template <typename T>
inline constexpr std::int64_t kVectorLanes = 16 / static_cast<std::int64_t>(sizeof(T));

// One 16-byte access of T: float4 for f32 (as before the 16-bit types came), a 16-byte
// aligned array of lanes otherwise, loaded and stored whole.
template <typename T>
struct alignas(16) VectorOf {
  T lane[kVectorLanes<T>];
};
template <>
struct VectorOf<float> {
  float4 value;
};

template <typename T, typename Op>
__device__ __forceinline__ VectorOf<T> map_vector(const VectorOf<T>& in, Op op) {
  if constexpr (std::is_same_v<T, float>) {
    return {make_float4(op(in.value.x), op(in.value.y), op(in.value.z), op(in.value.w))};
  } else {
    VectorOf<T> out;
    for (int k = 0; k < kVectorLanes<T>; ++k) out.lane[k] = convert_element<T>(op(convert_element<float>(in.lane[k])));
    return out;
  }
}

template <typename T, typename Op>
__device__ __forceinline__ VectorOf<T> map_vector(const VectorOf<T>& a, const VectorOf<T>& b, Op op) {
  if constexpr (std::is_same_v<T, float>) {
    return {make_float4(op(a.value.x, b.value.x), op(a.value.y, b.value.y), op(a.value.z, b.value.z),
                        op(a.value.w, b.value.w))};
  } else {
    VectorOf<T> out;
    for (int k = 0; k < kVectorLanes<T>; ++k) {
      out.lane[k] = convert_element<T>(op(convert_element<float>(a.lane[k]), convert_element<float>(b.lane[k])));
    }
    return out;
  }
}

// y (count) = op(x (count)); y may be x. The first vector_count * kVectorLanes<T> elements go
// 16 bytes at a time (vector_count is 0 unless both pointers are 16-byte aligned).
template <typename T, typename Op>
__global__ void unary_map_kernel(const T* x /* (count) */, T* y /* (count) */, std::int64_t count,
                                 std::int64_t vector_count, Op op) {
  const std::int64_t first = map_thread_index();
  const std::int64_t stride = map_thread_count();
  const auto* x_vectors = reinterpret_cast<const VectorOf<T>*>(x);  // (vector_count)
  auto* y_vectors = reinterpret_cast<VectorOf<T>*>(y);              // (vector_count)
  for (std::int64_t v = first; v < vector_count; v += stride) y_vectors[v] = map_vector(x_vectors[v], op);
  for (std::int64_t i = vector_count * kVectorLanes<T> + first; i < count; i += stride) {
    store_from_float(y, i, op(load_as_float(x, i)));
  }
}

// y (count) = op(a (count), b (count)); y may be a or b.
template <typename T, typename Op>
__global__ void binary_map_kernel(const T* a /* (count) */, const T* b /* (count) */, T* y /* (count) */,
                                  std::int64_t count, std::int64_t vector_count, Op op) {
  const std::int64_t first = map_thread_index();
  const std::int64_t stride = map_thread_count();
  const auto* a_vectors = reinterpret_cast<const VectorOf<T>*>(a);  // (vector_count)
  const auto* b_vectors = reinterpret_cast<const VectorOf<T>*>(b);  // (vector_count)
  auto* y_vectors = reinterpret_cast<VectorOf<T>*>(y);              // (vector_count)
  for (std::int64_t v = first; v < vector_count; v += stride) {
    y_vectors[v] = map_vector(a_vectors[v], b_vectors[v], op);
  }
  for (std::int64_t i = vector_count * kVectorLanes<T> + first; i < count; i += stride) {
    store_from_float(y, i, op(load_as_float(a, i), load_as_float(b, i)));
  }
}

// Threads for a map whose first vector_count vectors of lanes elements each (of count
// elements) go as one access: enough for the larger of the vector loop and the scalar tail.
inline LaunchConfig map_launch_config(std::int64_t count, std::int64_t vector_count, std::int64_t lanes,
                                      cudaStream_t stream, const char* name) {
  const std::int64_t tail = count - vector_count * lanes;
  const std::int64_t threads = vector_count > tail ? vector_count : tail;
  return LaunchConfig{.grid = grid_stride_blocks(threads, kElementwiseThreads),
                      .block = kElementwiseThreads,
                      .stream = stream,
                      .name = name};
}

template <typename T, typename Op>
void launch_unary_map(const T* x, T* y, std::int64_t count, Op op, cudaStream_t stream, const char* name) {
  if (count == 0) return;
  const bool vectorize = is_16_byte_aligned(x) && is_16_byte_aligned(y);
  const std::int64_t vector_count = vectorize ? count / kVectorLanes<T> : 0;
  launch(unary_map_kernel<T, Op>, map_launch_config(count, vector_count, kVectorLanes<T>, stream, name), x, y, count,
         vector_count, op);
}

template <typename T, typename Op>
void launch_binary_map(const T* a, const T* b, T* y, std::int64_t count, Op op, cudaStream_t stream, const char* name) {
  if (count == 0) return;
  const bool vectorize = is_16_byte_aligned(a) && is_16_byte_aligned(b) && is_16_byte_aligned(y);
  const std::int64_t vector_count = vectorize ? count / kVectorLanes<T> : 0;
  launch(binary_map_kernel<T, Op>, map_launch_config(count, vector_count, kVectorLanes<T>, stream, name), a, b, y,
         count, vector_count, op);
}

}  // namespace strata::detail
