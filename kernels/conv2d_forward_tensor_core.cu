// conv2d forward on the tensor cores: the implicit GEMM of conv2d_forward.cu (per group,
// y (N*P*Q pixels x K/groups channels) = im2col(x) (pixels x C/groups*R*S) * weight^T), with
// the tiles converted to tf32 or bf16 as they are staged in shared memory and multiplied by
// nvcuda::wmma into f32 accumulators. Four warps share a 64x64 block tile, 32x32 each (2x2
// fragments of 16x16); the reduction advances 16 steps at a time through two shared-memory
// buffers: while the warps multiply one, the next slice is gathered from global memory into
// registers and then stored, converted, into the other, with one barrier per slice.
// Edges of the GEMM and padding of the convolution are zeros in shared memory, so every
// fragment is whole; the results pass through shared memory so that only the valid part of
// an edge tile is written, with the bias added there.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "core/wmma.cuh"
#include "kernels/conv2d_forward_tensor_core.h"
#include "kernels/conv2d_tiling.cuh"
#include "strata/core/device.h"

namespace strata::kernels {

namespace {

namespace wmma = nvcuda::wmma;
using conv2d_detail::Conv2dGeometry;

constexpr int kBlockM = 64;    // output pixels per block
constexpr int kBlockN = 64;    // output channels (of the group) per block
constexpr int kWarpTile = 32;  // each warp: 32x32 of the block tile, 2x2 fragments
constexpr int kStepK = 16;     // reduction steps per shared-memory slice
constexpr int kThreads = 128;  // four warps
static_assert(kBlockM / kWarpTile * (kBlockN / kWarpTile) * 32 == kThreads, "one warp per warp tile");

// Leading dimensions in elements, padded by 8 so that ldm stays a multiple of 16 bytes and
// every fragment's first element 32-byte aligned (what wmma requires), for 2- and 4-byte types.
constexpr int kLdA = kBlockM + 8;  // a slice (k, m): the im2col operand, column-major A
constexpr int kLdB = kStepK + 8;   // b slice (n, k): weight rows, column-major B
constexpr int kLdC = kBlockM + 8;  // results (n, m): column-major, pixels contiguous as in y
constexpr int kASlice = kStepK * kLdA;
constexpr int kBSlice = kBlockN * kLdB;

// Each thread gathers kALoads elements of a slice of A (one fixed output pixel) and kBLoads of B.
static_assert(kThreads % kBlockM == 0, "each thread gathers the patch of one fixed output pixel");
constexpr int kRowsOfKPerPass = kThreads / kBlockM;
constexpr int kALoads = kStepK / kRowsOfKPerPass;
constexpr int kBLoads = kStepK * kBlockN / kThreads;
static_assert(kStepK % kRowsOfKPerPass == 0 && kStepK * kBlockN % kThreads == 0, "whole loads per thread");

// The math types: how a slice is stored in shared memory and which fragments multiply it.
struct Tf32Math {
  using Element = float;  // f32 storage holding tf32 values (the low 13 mantissa bits zero)
  using FragmentElement = wmma::precision::tf32;
  static constexpr int mma_k = 8;  // m16n16k8
  // To nearest, ties away from zero (cvt.rna.tf32.f32), as CUDA's programming guide does.
  static __device__ __forceinline__ float convert(float value) { return wmma::__float_to_tf32(value); }
};

struct Bf16Math {
  using Element = __nv_bfloat16;
  using FragmentElement = __nv_bfloat16;
  static constexpr int mma_k = 16;  // m16n16k16
  static __device__ __forceinline__ __nv_bfloat16 convert(float value) { return __float2bfloat16(value); }  // RNE
};

// The two slices of the pipeline, then (after the last barrier) the results in the same bytes.
template <typename Math>
constexpr std::size_t kSharedBytes =
    std::max(2 * (kASlice + kBSlice) * sizeof(typename Math::Element), kBlockN * kLdC * sizeof(float));

template <typename Math>
__global__ void __launch_bounds__(kThreads)
    conv2d_forward_tensor_core_kernel(const float* __restrict__ x,       // (N, C, H, W)
                                      const float* __restrict__ weight,  // (K, C/groups, R, S)
                                      const float* __restrict__ bias,    // (K), or null
                                      float* __restrict__ y,             // (N, K, P, Q)
                                      Conv2dGeometry g) {
  using Element = typename Math::Element;
  using AFragment = wmma::fragment<wmma::matrix_a, 16, 16, Math::mma_k, typename Math::FragmentElement,
                                   wmma::col_major>;
  using BFragment = wmma::fragment<wmma::matrix_b, 16, 16, Math::mma_k, typename Math::FragmentElement,
                                   wmma::col_major>;
  using Accumulator = wmma::fragment<wmma::accumulator, 16, 16, Math::mma_k, float>;

  __shared__ __align__(32) unsigned char shared[kSharedBytes<Math>];
  Element* a_slices = reinterpret_cast<Element*>(shared);  // [2] of (kStepK, kLdA): (k, m)
  Element* b_slices = a_slices + 2 * kASlice;              // [2] of (kBlockN, kLdB): (n, k)
  float* c_tile = reinterpret_cast<float*>(shared);        // (kBlockN, kLdC): (n, m), after the loop

  const std::int64_t gemm_m = static_cast<std::int64_t>(g.batch) * g.out_plane;  // < 2^31
  const std::int64_t gemm_n = g.out_channels_per_group;
  const int reduction = static_cast<int>(g.in_channels_per_group) * g.kernel_area;
  const conv2d_detail::GemmBlock block =
      conv2d_detail::gemm_block(static_cast<unsigned>(ceil_div(gemm_m, kBlockM)),
                                static_cast<unsigned>(ceil_div(gemm_n, kBlockN)), static_cast<unsigned>(g.groups));
  const std::int64_t m0 = static_cast<std::int64_t>(block.m_tile) * kBlockM;
  const std::int64_t n0 = static_cast<std::int64_t>(block.n_tile) * kBlockN;
  const int tid = static_cast<int>(threadIdx.x);
  const int warp = tid / 32;
  const int warp_m = warp % (kBlockM / kWarpTile) * kWarpTile;
  const int warp_n = warp / (kBlockM / kWarpTile) * kWarpTile;

  // The output pixel whose input patch this thread gathers, the same for every slice.
  const int a_row = tid % kBlockM;
  const int a_first_k = tid / kBlockM;
  const bool a_pixel_valid = m0 + a_row < gemm_m;
  const int a_pixel = a_pixel_valid ? static_cast<int>(m0 + a_row) : 0;
  const int a_image = a_pixel / g.out_plane;
  const int a_pq = a_pixel - a_image * g.out_plane;
  const int a_p = a_pq / g.out_width;
  const int h_origin = a_p * g.stride_h - g.pad_h;
  const int w_origin = (a_pq - a_p * g.out_width) * g.stride_w - g.pad_w;
  const float* x_group =
      x + (a_image * g.in_channels + block.group * g.in_channels_per_group) * g.in_plane;  // (C/groups, H, W)
  const float* weight_group = weight + block.group * g.out_channels_per_group * reduction;  // (K/groups, C/groups*R*S)

  // The slice starting at reduction step k0, read from global memory into registers (f32).
  float a_staged[kALoads];
  float b_staged[kBLoads];
  const auto gather = [&](int k0) {
    STRATA_UNROLL
    for (int load = 0; load < kALoads; ++load) {
      const int k = k0 + a_first_k + load * kRowsOfKPerPass;
      float value = 0.0f;  // padding and the tails of the GEMM read as zero
      if (a_pixel_valid && k < reduction) {
        const int c = k / g.kernel_area;
        const int rs = k - c * g.kernel_area;
        const int r = rs / g.kernel_width;
        const int h = h_origin + r * g.dilation_h;
        const int w = w_origin + (rs - r * g.kernel_width) * g.dilation_w;
        if (h >= 0 && h < g.in_height && w >= 0 && w < g.in_width) {
          value = x_group[static_cast<std::int64_t>(c) * g.in_plane + h * g.in_width + w];
        }
      }
      a_staged[load] = value;
    }
    STRATA_UNROLL
    for (int load = 0; load < kBLoads; ++load) {
      const int index = tid + load * kThreads;
      const int k = k0 + index % kStepK;  // fastest: the weight row is contiguous in k
      const std::int64_t channel = n0 + index / kStepK;
      b_staged[load] = (k < reduction && channel < gemm_n) ? weight_group[channel * reduction + k] : 0.0f;
    }
  };
  // The registers, converted to the math type, into shared-memory buffer `buffer`.
  const auto stage = [&](int buffer) {
    Element* a_slice = a_slices + buffer * kASlice;
    Element* b_slice = b_slices + buffer * kBSlice;
    STRATA_UNROLL
    for (int load = 0; load < kALoads; ++load) {
      a_slice[(a_first_k + load * kRowsOfKPerPass) * kLdA + a_row] = Math::convert(a_staged[load]);
    }
    STRATA_UNROLL
    for (int load = 0; load < kBLoads; ++load) {
      const int index = tid + load * kThreads;
      b_slice[index / kStepK * kLdB + index % kStepK] = Math::convert(b_staged[load]);
    }
  };

  Accumulator accumulators[2][2];
  STRATA_UNROLL
  for (int i = 0; i < 2; ++i) {
    STRATA_UNROLL
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(accumulators[i][j], 0.0f);
  }

  const int slices = static_cast<int>(ceil_div(reduction, kStepK));
  gather(0);
  stage(0);
  __syncthreads();
  for (int slice = 0; slice < slices; ++slice) {
    const int buffer = slice & 1;
    const bool more = slice + 1 < slices;
    if (more) gather((slice + 1) * kStepK);  // global loads in flight while the tensor cores work
    const Element* a_slice = a_slices + buffer * kASlice;
    const Element* b_slice = b_slices + buffer * kBSlice;
    STRATA_UNROLL
    for (int k = 0; k < kStepK; k += Math::mma_k) {
      AFragment a_fragments[2];
      BFragment b_fragments[2];
      STRATA_UNROLL
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a_fragments[i], a_slice + k * kLdA + warp_m + 16 * i, kLdA);
      STRATA_UNROLL
      for (int j = 0; j < 2; ++j) {
        wmma::load_matrix_sync(b_fragments[j], b_slice + (warp_n + 16 * j) * kLdB + k, kLdB);
      }
      STRATA_UNROLL
      for (int i = 0; i < 2; ++i) {
        STRATA_UNROLL
        for (int j = 0; j < 2; ++j) {
          wmma::mma_sync(accumulators[i][j], a_fragments[i], b_fragments[j], accumulators[i][j]);
        }
      }
    }
    // The other buffer was last read in the previous slice, before the barrier that ended it.
    if (more) stage(buffer ^ 1);
    __syncthreads();
  }

  // The last barrier above ends every read of the slices: the results may take their bytes.
  STRATA_UNROLL
  for (int i = 0; i < 2; ++i) {
    STRATA_UNROLL
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(c_tile + (warp_n + 16 * j) * kLdC + warp_m + 16 * i, accumulators[i][j], kLdC,
                              wmma::mem_col_major);
    }
  }
  __syncthreads();
  for (int e = tid; e < kBlockM * kBlockN; e += kThreads) {
    const int m_local = e % kBlockM;  // fastest: neighbouring pixels of y
    const int n_local = e / kBlockM;
    const std::int64_t m = m0 + m_local;
    const std::int64_t channel_in_group = n0 + n_local;
    if (m >= gemm_m || channel_in_group >= gemm_n) continue;
    const int pixel = static_cast<int>(m);
    const int image = pixel / g.out_plane;
    const int pq = pixel - image * g.out_plane;
    const std::int64_t channel = block.group * g.out_channels_per_group + channel_in_group;
    const float shift = bias != nullptr ? bias[channel] : 0.0f;
    y[(image * g.out_channels + channel) * g.out_plane + pq] = c_tile[n_local * kLdC + m_local] + shift;
  }
}

}  // namespace

bool conv2d_forward_uses_tensor_cores(const Conv2dShape& shape) {
  // tf32 and bf16 wmma need compute capability 8.0 (the default build targets 9.0 only).
  return shape.params.math != ConvMath::fp32 &&
         shape.out_channels_per_group() >= kConv2dTensorCoreMinChannelsPerGroup &&
         device_properties().compute_capability_major >= 8;
}

void conv2d_forward_tensor_core(const Conv2dShape& shape, const float* x, const float* weight, const float* bias,
                                float* y, cudaStream_t stream) {
  const Conv2dGeometry geometry = conv2d_detail::make_conv2d_geometry(shape);
  const std::int64_t gemm_m = shape.batch * shape.out_height * shape.out_width;
  const std::int64_t gemm_n = shape.out_channels_per_group();
  const unsigned blocks = conv2d_detail::gemm_grid(ceil_div(gemm_m, kBlockM), ceil_div(gemm_n, kBlockN),
                                                   shape.params.groups, 1, "conv2d_forward (tensor cores)");
  const LaunchConfig config{.grid = blocks, .block = kThreads, .stream = stream, .name = "conv2d_forward_tensor_core"};
  switch (shape.params.math) {
    case ConvMath::tf32:
      launch(conv2d_forward_tensor_core_kernel<Tf32Math>, config, x, weight, bias, y, geometry);
      return;
    case ConvMath::bf16:
      launch(conv2d_forward_tensor_core_kernel<Bf16Math>, config, x, weight, bias, y, geometry);
      return;
    case ConvMath::fp32: break;
  }
  STRATA_CHECK(false, "conv2d_forward (tensor cores): called with math fp32 ({})", to_string(shape.params));
}

}  // namespace strata::kernels
