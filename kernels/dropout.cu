// Dropout forward and backward. The forward gives each thread one Philox group (four words of
// the stream, one call) and so four consecutive elements: float4 / uchar4 accesses when the
// tensor starts on a group boundary and the pointers are aligned, element by element
// otherwise and at the edges. The backward is a plain element-wise map over the saved mask.
// x, y, dL_dy and dL_dx are f32, f16 or bf16 (one dtype), scaled in f32 and rounded once; the
// vectorised paths are f32's (a 16-bit group of four is only 8 bytes). Element i is the i-th
// in memory, so any memory format works (x, y, mask, dL_dy and dL_dx in one), and the mask
// is drawn per memory position (strata/kernels/dropout.h).
#include "strata/kernels/dropout.h"

#include <cstdint>
#include <type_traits>

#include "core/nvtx.h"
#include "kernels/elementwise_map.cuh"
#include "strata/core/philox.h"

namespace strata::kernels {

namespace {

__device__ __forceinline__ bool is_kept(std::uint32_t word, float keep_probability) {
  return uniform_from_bits(word) < keep_probability;
}

template <typename T>
__global__ void dropout_forward_kernel(const T* x /* (count) */, T* y /* (count) */, std::uint8_t* mask /* (count) */,
                                       std::int64_t count, float keep_probability, float kept_scale, std::uint64_t seed,
                                       std::uint64_t offset, const std::int64_t* offset_device, bool vectorized) {
  if (offset_device != nullptr) offset = static_cast<std::uint64_t>(*offset_device);
  // Group first_group + g holds stream words 4 (first_group + g) + lane, that is elements
  // 4 g + lane - lead of the tensor; the float4 path needs lead == 0.
  const std::uint64_t first_group = offset / 4;
  const auto lead = static_cast<std::int64_t>(offset % 4);
  vectorized = vectorized && lead == 0;
  const std::int64_t group_count = (lead + count + 3) / 4;
  for (std::int64_t g = global_thread_index(); g < group_count; g += global_thread_count()) {
    const Philox4x32 words = philox_group(seed, first_group + static_cast<std::uint64_t>(g));
    const std::int64_t base = 4 * g - lead;  // element of lane 0
    if constexpr (std::is_same_v<T, float>) {
      if (vectorized && base + 3 < count) {
        const uchar4 kept = make_uchar4(is_kept(words.x[0], keep_probability), is_kept(words.x[1], keep_probability),
                                        is_kept(words.x[2], keep_probability), is_kept(words.x[3], keep_probability));
        const float4 in = reinterpret_cast<const float4*>(x)[g];
        reinterpret_cast<float4*>(y)[g] =
            make_float4(in.x * (kept.x ? kept_scale : 0.0f), in.y * (kept.y ? kept_scale : 0.0f),
                        in.z * (kept.z ? kept_scale : 0.0f), in.w * (kept.w ? kept_scale : 0.0f));
        reinterpret_cast<uchar4*>(mask)[g] = kept;
        continue;
      }
    }
    for (int lane = 0; lane < 4; ++lane) {
      const std::int64_t i = base + lane;
      if (i < 0 || i >= count) continue;
      const bool kept = is_kept(words.x[lane], keep_probability);
      // x * 0 rather than 0 for dropped elements: NaN and infinity stay visible, as in PyTorch.
      store_from_float(y, i, load_as_float(x, i) * (kept ? kept_scale : 0.0f));
      mask[i] = kept ? 1 : 0;
    }
  }
}

template <typename T>
__global__ void dropout_backward_kernel(const T* dL_dy /* (count) */, const std::uint8_t* mask /* (count) */,
                                        T* dL_dx /* (count) */, std::int64_t count, std::int64_t vector_count,
                                        float kept_scale) {
  const std::int64_t first = global_thread_index();
  const std::int64_t stride = global_thread_count();
  if constexpr (std::is_same_v<T, float>) {
    for (std::int64_t v = first; v < vector_count; v += stride) {
      const float4 in = reinterpret_cast<const float4*>(dL_dy)[v];
      const uchar4 kept = reinterpret_cast<const uchar4*>(mask)[v];
      reinterpret_cast<float4*>(dL_dx)[v] =
          make_float4(in.x * (kept.x ? kept_scale : 0.0f), in.y * (kept.y ? kept_scale : 0.0f),
                      in.z * (kept.z ? kept_scale : 0.0f), in.w * (kept.w ? kept_scale : 0.0f));
    }
  }
  for (std::int64_t i = vector_count * 4 + first; i < count; i += stride) {
    store_from_float(dL_dx, i, load_as_float(dL_dy, i) * (mask[i] != 0 ? kept_scale : 0.0f));
  }
}

bool is_4_byte_aligned(const void* pointer) { return reinterpret_cast<std::uintptr_t>(pointer) % 4 == 0; }

}  // namespace

float dropout_scale(float p) {
  STRATA_CHECK(p >= 0.0f && p <= 1.0f, "dropout: p must be in [0, 1], got {}", p);
  return p == 1.0f ? 0.0f : 1.0f / (1.0f - p);
}

void dropout_forward(const Tensor& x, Tensor& y, Tensor& mask, const DropoutParams& params, cudaStream_t stream) {
  NvtxRange range("dropout_forward");
  expect_floating_device_tensor(x, "dropout_forward", "x");
  expect_floating_device_tensor(y, "dropout_forward", "y");
  expect_same_dtype(y, x, "dropout_forward", "y", "x");
  expect_device_tensor(mask, "dropout_forward", "mask", DType::u8);
  STRATA_CHECK(params.p >= 0.0f && params.p <= 1.0f, "dropout_forward: p must be in [0, 1], got {} (x {})", params.p,
               x.shape().to_string());
  expect_shape(y, x.shape(), "dropout_forward", "y");
  expect_shape(mask, x.shape(), "dropout_forward", "mask");
  expect_same_memory_order(y, x, "dropout_forward", "y", "x");
  expect_same_memory_order(mask, x, "dropout_forward", "mask", "x");
  expect_same_or_distinct(y, x, "dropout_forward", "y", "x");
  expect_distinct(mask, x, "dropout_forward", "mask", "x");
  expect_distinct(mask, y, "dropout_forward", "mask", "y");
  const std::int64_t count = x.numel();
  if (count == 0) return;
  const float keep_probability = 1.0f - params.p;
  const float kept_scale = dropout_scale(params.p);
  const std::int64_t groups = (static_cast<std::int64_t>(params.offset % 4) + count + 3) / 4;
  const LaunchConfig config{.grid = grid_stride_blocks(groups, static_cast<int>(kElementwiseThreads)),
                            .block = kElementwiseThreads,
                            .stream = stream,
                            .name = "dropout_forward"};
  dispatch_elementwise_dtype(x.dtype(), "dropout_forward", [&]<typename T>(std::type_identity<T>) {
    const bool vectorized = params.offset % 4 == 0 && is_16_byte_aligned(x.memory_ptr()) &&
                            is_16_byte_aligned(y.memory_ptr()) && is_4_byte_aligned(mask.memory_ptr());
    launch(dropout_forward_kernel<T>, config, memory_elements<T>(x), memory_elements<T>(y),
           memory_elements<std::uint8_t>(mask), count, keep_probability, kept_scale, params.seed, params.offset,
           params.offset_device, vectorized);
  });
}

DropoutOutputs dropout_forward(const Tensor& x, const DropoutParams& params, cudaStream_t stream) {
  expect_floating_device_tensor(x, "dropout_forward", "x");
  DropoutOutputs outputs{Tensor::empty(x.shape(), x.dtype(), stream, x.memory_format()),
                         Tensor::empty(x.shape(), DType::u8, stream, x.memory_format())};
  dropout_forward(x, outputs.y, outputs.mask, params, stream);
  return outputs;
}

void dropout_backward(const Tensor& dL_dy, const Tensor& mask, Tensor& dL_dx, const DropoutParams& params,
                      cudaStream_t stream) {
  NvtxRange range("dropout_backward");
  expect_floating_device_tensor(dL_dy, "dropout_backward", "dL_dy");
  expect_device_tensor(mask, "dropout_backward", "mask", DType::u8);
  expect_floating_device_tensor(dL_dx, "dropout_backward", "dL_dx");
  expect_same_dtype(dL_dx, dL_dy, "dropout_backward", "dL_dx", "dL_dy");
  STRATA_CHECK(params.p >= 0.0f && params.p <= 1.0f, "dropout_backward: p must be in [0, 1], got {} (dL_dy {})",
               params.p, dL_dy.shape().to_string());
  expect_shape(mask, dL_dy.shape(), "dropout_backward", "mask");
  expect_shape(dL_dx, dL_dy.shape(), "dropout_backward", "dL_dx");
  expect_same_memory_order(mask, dL_dy, "dropout_backward", "mask", "dL_dy");
  expect_same_memory_order(dL_dx, dL_dy, "dropout_backward", "dL_dx", "dL_dy");
  expect_same_or_distinct(dL_dx, dL_dy, "dropout_backward", "dL_dx", "dL_dy");
  expect_distinct(dL_dx, mask, "dropout_backward", "dL_dx", "mask");
  const std::int64_t count = dL_dy.numel();
  if (count == 0) return;
  const float kept_scale = dropout_scale(params.p);
  dispatch_elementwise_dtype(dL_dy.dtype(), "dropout_backward", [&]<typename T>(std::type_identity<T>) {
    const bool vectorize = std::is_same_v<T, float> && is_16_byte_aligned(dL_dy.memory_ptr()) &&
                           is_16_byte_aligned(dL_dx.memory_ptr()) && is_4_byte_aligned(mask.memory_ptr());
    const std::int64_t vector_count = vectorize ? count / 4 : 0;
    launch(dropout_backward_kernel<T>, map_launch_config(count, vector_count, 4, stream, "dropout_backward"),
           memory_elements<T>(dL_dy), memory_elements<std::uint8_t>(mask), memory_elements<T>(dL_dx), count,
           vector_count, kept_scale);
  });
}

Tensor dropout_backward(const Tensor& dL_dy, const Tensor& mask, const DropoutParams& params, cudaStream_t stream) {
  expect_floating_device_tensor(dL_dy, "dropout_backward", "dL_dy");
  Tensor dL_dx = Tensor::empty(dL_dy.shape(), dL_dy.dtype(), stream, dL_dy.memory_format());
  dropout_backward(dL_dy, mask, dL_dx, params, stream);
  return dL_dx;
}

}  // namespace strata::kernels
