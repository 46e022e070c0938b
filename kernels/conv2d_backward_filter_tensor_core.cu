// conv2d backward-filter on the tensor cores: the implicit GEMM of conv2d_backward_filter.cu
// (per group, dL_dweight (K/groups x C/groups*R*S) = dL_dy (K/groups x N*P*Q) * im2col(x)
// (N*P*Q x C/groups*R*S)), on the block tile of conv2d_tensor_core.cuh (f32 dL_dy and x
// rounded to tf32 or bf16 as they are staged, f16 and bf16 copied as they are; f32
// accumulators, stored in f32 as Conv2dFilterOutput says). The N*P*Q reduction is split into
// the chunks the launcher's caller chose (Conv2dReductionSplit), a block each, stored as
// Conv2dFilterOutput says; conv2d_backward_filter adds a deterministic split's partial sums
// in chunk order, as for the fp32 kernel. Channels-last x and dL_dy whose channels per group
// fill whole 16-byte vectors are copied asynchronously (conv2d_tensor_core_async.cuh), the
// GEMM's columns then ordered (r, s, c) instead of (c, r, s): where a column sits in the tile
// changes none of its sums, so the weight gradient is the same bits. In the wgmma tile the
// slices are MN-major swizzled slices (conv2d_tensor_core_wgmma.cuh).
#include <cstdint>
#include <type_traits>

#include "kernels/conv2d_tensor_core.cuh"
#include "kernels/conv2d_tensor_core_async.cuh"
#include "kernels/conv2d_tensor_core_wgmma.cuh"

namespace strata::kernels {

namespace {

using conv2d_detail::Conv2dGeometry;
using namespace conv2d_tensor_core;

// The loader of the filter GEMM: each thread keeps one reduction step of every slice (an
// output pixel, tid % kStepK) and fixed rows (output channels) of A and columns ((c, r, s))
// of B, whose decomposition it does once. T: the storage type.
template <typename T>
struct FilterLoader {
  static constexpr int kColumnsPerPass = kThreads / kStepK;
  static_assert(kThreads % kStepK == 0 && kALoads * kColumnsPerPass == kBlockM && kBLoads * kColumnsPerPass == kBlockN,
                "each thread loads one fixed reduction step of every slice");

  const T* x;      // (N, C, H, W), g.input's format
  const T* dL_dy;  // (N, K, P, Q), g.output's format
  const Conv2dGeometry& g;  // the kernel's parameter
  std::int64_t first_channel;     // the group's first, in K
  std::int64_t channel_begin;     // m0: the block tile's first row (output channel in the group)
  std::int64_t in_channel_begin;  // the group's first, in C
  int k_local;                    // this thread's step of every slice
  int first_row;                  // its rows and columns: first_row + load * kColumnsPerPass
  std::int64_t column_offset[kBLoads];  // offset of the column's input channel c
  int column_dh[kBLoads];               // r * dilation_h
  int column_dw[kBLoads];               // s * dilation_w
  bool column_valid[kBLoads];
  T a[kALoads];
  T b[kBLoads];

  __device__ __forceinline__ FilterLoader(const T* x_, const T* dL_dy_, const Conv2dGeometry& g_,
                                          unsigned group, std::int64_t m0, int n0)
      : x(x_), dL_dy(dL_dy_), g(g_), first_channel(group * g_.out_channels_per_group), channel_begin(m0),
        in_channel_begin(group * g_.in_channels_per_group), k_local(static_cast<int>(threadIdx.x) % kStepK),
        first_row(static_cast<int>(threadIdx.x) / kStepK) {
    const int gemm_n = static_cast<int>(g.in_channels_per_group) * g.kernel_area;
    STRATA_UNROLL
    for (int load = 0; load < kBLoads; ++load) {
      const int column = n0 + first_row + load * kColumnsPerPass;
      column_valid[load] = column < gemm_n;
      const auto [c, rs] = g.dividers.kernel_area.divide_with_remainder(column_valid[load] ? column : 0);
      const auto [r, s] = g.dividers.kernel_width.divide_with_remainder(rs);
      column_offset[load] = c * g.input.channel;
      column_dh[load] = r * g.dilation_h;
      column_dw[load] = s * g.dilation_w;
    }
  }

  __device__ __forceinline__ void gather(std::int64_t k0, std::int64_t k_end) {
    // This thread's reduction step: output pixel (image, p, q).
    const bool step_valid = k0 + k_local < k_end;
    const int step = step_valid ? static_cast<int>(k0 + k_local) : 0;
    const auto [image, pq] = g.dividers.out_plane.divide_with_remainder(step);
    const auto [p, q] = g.dividers.out_width.divide_with_remainder(pq);
    const int h_origin = p * g.stride_h - g.pad_h;
    const int w_origin = q * g.stride_w - g.pad_w;
    const T* dL_dy_pixel = dL_dy + g.output.offset(image, first_channel, pq);  // (K/groups) at (p, q)
    const T* x_group = x + g.input.offset(image, in_channel_begin, 0);           // (C/groups, H, W)
    STRATA_UNROLL
    for (int load = 0; load < kALoads; ++load) {
      const std::int64_t channel = channel_begin + first_row + load * kColumnsPerPass;
      a[load] = (step_valid && channel < g.out_channels_per_group) ? dL_dy_pixel[channel * g.output.channel]
                                                                   : zero<T>();
    }
    STRATA_UNROLL
    for (int load = 0; load < kBLoads; ++load) {
      const int h = h_origin + column_dh[load];
      const int w = w_origin + column_dw[load];
      const bool inside = step_valid && column_valid[load] && h >= 0 && h < g.in_height && w >= 0 && w < g.in_width;
      b[load] = inside ? x_group[column_offset[load] + (h * g.in_width + w) * g.input.pixel] : zero<T>();
    }
  }
  __device__ __forceinline__ int a_offset(int load) const {
    return k_local * kLdA + first_row + load * kColumnsPerPass;
  }
  __device__ __forceinline__ int b_offset(int load) const {
    return (first_row + load * kColumnsPerPass) * kLdB + k_local;
  }
};

// The asynchronous path's copies, the slice's steps k being output pixels: A (output channel,
// k) vectors along the output channels of a channels-last dL_dy at the pixel, B (k, column)
// with the columns ordered (r, s, c), vectors along the input channels of a channels-last x at
// the pixel that tap (r, s) reads. Padding, rows and columns past the GEMM and steps past the
// chunk are zero-filled (whole vectors: K/groups and C/groups are multiples of the vector).
template <typename T, typename Block>
struct ChannelsLastFilterLoader {
  using ALayout = AAlongM<T, Block>;
  using BLayout = BAlongN<T, Block>;
  // A's rows and B's columns share each load's pixel: square blocks only (TileShapes::square).
  static_assert(Block::m == Block::n, "the filter loader takes the square blocks only");
  static constexpr int kLoads = kAVectorLoads<T, Block>;

  const T* x;      // (N, H, W, C) in memory
  const T* dL_dy;  // (N, P, Q, K) in memory
  Conv2dGeometry g;
  std::int64_t a_channel[kLoads];  // this load's first output channel, in K
  bool a_valid[kLoads];
  std::int64_t column_channel[kLoads];  // this load's first input channel (c), in C
  int column_dh[kLoads];                // r * dilation_h
  int column_dw[kLoads];                // s * dilation_w
  bool column_valid[kLoads];

  __device__ __forceinline__ void issue(std::int64_t k0, std::int64_t k_end, T* a_slice, T* b_slice) const {
    STRATA_UNROLL
    for (int load = 0; load < kLoads; ++load) {
      // The same (step row, first element) for A's channels and B's columns: one pixel.
      const SliceVector vector = slice_vector<T, Block::m, Block>(load);
      const std::int64_t k = k0 + vector.outer;
      const bool step_valid = k < k_end;
      const auto [image, pq] = g.dividers.out_plane.divide_with_remainder(step_valid ? static_cast<int>(k) : 0);
      const auto [p, q] = g.dividers.out_width.divide_with_remainder(pq);
      const bool a_inside = step_valid && a_valid[load];
      async_copy<16>(a_slice + ALayout::offset(vector.inner, vector.outer),
                     a_inside ? dL_dy + g.output.offset(image, a_channel[load], pq) : dL_dy, a_inside);
      const int h = p * g.stride_h - g.pad_h + column_dh[load];
      const int w = q * g.stride_w - g.pad_w + column_dw[load];
      const bool b_inside =
          step_valid && column_valid[load] && h >= 0 && h < g.in_height && w >= 0 && w < g.in_width;
      async_copy<16>(b_slice + BLayout::offset(vector.outer, vector.inner),
                     b_inside ? x + g.input.offset(image, column_channel[load], h * g.in_width + w) : x, b_inside);
    }
  }
};

// The reduction column (r, s, c) of the asynchronous path: c fastest.
struct FilterColumn {
  int c;
  int rs;
};

__device__ __forceinline__ FilterColumn rsc_filter_column(const Conv2dGeometry& g, int column) {
  const auto [rs, c] = g.dividers.in_channels_per_group.divide_with_remainder(column);
  return {c, rs};
}

template <typename Block, typename T>
__device__ __forceinline__ ChannelsLastFilterLoader<T, Block> channels_last_filter_loader(
    const T* x, const T* dL_dy, const Conv2dGeometry& g, const conv2d_detail::GemmSizes& gemm,
    const conv2d_detail::GemmBlockTile& tile) {
  ChannelsLastFilterLoader<T, Block> loader{};
  loader.x = x;
  loader.dL_dy = dL_dy;
  loader.g = g;
  STRATA_UNROLL
  for (int load = 0; load < ChannelsLastFilterLoader<T, Block>::kLoads; ++load) {
    const int first = slice_vector<T, Block::m, Block>(load).inner;
    const std::int64_t row = tile.m0 + first;
    loader.a_valid[load] = row < gemm.m;
    loader.a_channel[load] = tile.block.group * g.out_channels_per_group + row;
    const std::int64_t column = tile.n0 + first;
    const bool column_valid = column < gemm.n;
    const FilterColumn rsc = rsc_filter_column(g, column_valid ? static_cast<int>(column) : 0);
    const auto [r, s] = g.dividers.kernel_width.divide_with_remainder(rsc.rs);
    loader.column_valid[load] = column_valid;
    loader.column_channel[load] = tile.block.group * g.in_channels_per_group + rsc.c;
    loader.column_dh[load] = r * g.dilation_h;
    loader.column_dw[load] = s * g.dilation_w;
  }
  return loader;
}

// Path::async: x and dL_dy channels-last, the slices copied asynchronously, the columns (r, s, c).
template <typename Path, typename Math = typename Path::Math, typename Block = typename Path::Block,
          typename T = typename Math::Storage>
__global__ void __launch_bounds__(Block::threads)
    conv2d_backward_filter_tensor_core_kernel(const T* __restrict__ x,      // (N, C, H, W), g.input's format
                                              const T* __restrict__ dL_dy,  // (N, K, P, Q), g.output's format
                                              Conv2dFilterOutput output,        // (splits or 1, K, C/groups, R, S)
                                              std::int64_t chunk, Conv2dGeometry g) {
  STRATA_DYNAMIC_SHARED(unsigned char, shared);  // Path::shared_bytes

  const conv2d_detail::GemmSizes gemm = conv2d_detail::backward_filter_gemm(g);
  const conv2d_detail::GemmBlockTile tile = conv2d_detail::gemm_block_tile(gemm, g.groups, Block::m, Block::n);
  const std::int64_t reduction_begin = tile.block.split * chunk;
  const std::int64_t reduction_end =
      reduction_begin + chunk < gemm.reduction ? reduction_begin + chunk : gemm.reduction;

  BlockAccumulators<Math, Block> accumulators;
  if constexpr (Path::async) {
    const auto loader = channels_last_filter_loader<Block>(x, dL_dy, g, gemm, tile);
    accumulate_block_tile_async<Math>(loader, reduction_begin, reduction_end, shared, accumulators);
  } else {
    FilterLoader<T> loader(x, dL_dy, g, tile.block.group, tile.m0, static_cast<int>(tile.n0));
    accumulate_block_tile<Math>(loader, reduction_begin, reduction_end, shared, accumulators);
  }

  float* out = output.out + tile.block.split * output.split_stride;  // (K, C/groups*R*S)
  const std::int64_t first_row = tile.block.group * g.out_channels_per_group + tile.m0;
  write_block_tile(accumulators, shared, gemm.m - tile.m0, gemm.n - tile.n0, Contiguous::n,
                   [&](int m_local, int n_local, float value) {
                     std::int64_t column = tile.n0 + n_local;  // (c, r, s), or (r, s, c) when async
                     if constexpr (Path::async) {
                       const FilterColumn rsc = rsc_filter_column(g, static_cast<int>(column));
                       column = static_cast<std::int64_t>(rsc.c) * g.kernel_area + rsc.rs;
                     }
                     const std::int64_t index = (first_row + m_local) * gemm.n + column;
                     if (output.atomic) {
                       atomicAdd(out + index, value);
                     } else {
                       out[index] = value;
                     }
                   });
}

}  // namespace

bool conv2d_backward_filter_uses_tensor_cores(const Conv2dShape& shape) {
  return shape.params.math != ConvMath::fp32 &&
         shape.out_channels_per_group() >= kConv2dTensorCoreMinChannelsPerGroup && conv2d_tensor_cores_available();
}

template <typename T>
bool conv2d_backward_filter_copies_asynchronously(const Conv2dShape& shape, const Conv2dFormats& formats, const T* x,
                                                  const T* dL_dy) {
  return math_copies_storage<T>(shape) && formats.input == MemoryFormat::channels_last &&
         formats.output == MemoryFormat::channels_last && whole_vectors_of<T>(shape.out_channels_per_group()) &&
         whole_vectors_of<T>(shape.in_channels_per_group()) && is_16_byte_aligned(x) && is_16_byte_aligned(dL_dy);
}

template <typename T>
Conv2dTensorCoreTile conv2d_backward_filter_tensor_core_tile(const Conv2dShape& shape, const Conv2dFormats& formats,
                                                             const T* x, const T* dL_dy) {
  const bool copies_asynchronously = conv2d_backward_filter_copies_asynchronously(shape, formats, x, dL_dy);
  if (!copies_asynchronously) return Conv2dTensorCoreTile::m64n64;
  const conv2d_detail::GemmSizes gemm =
      conv2d_detail::backward_filter_gemm(conv2d_detail::make_conv2d_geometry(shape, formats));
  constexpr std::int64_t kLarge = kConv2dTensorCoreLargeBlock;
  const std::int64_t large_blocks = ceil_div(gemm.m, kLarge) * ceil_div(gemm.n, kLarge) * shape.params.groups;
  const Conv2dReductionSplit large_split =
      split_conv2d_reduction(gemm.reduction, large_blocks, kConv2dTensorCoreStepK);
  return pass_tile(true, gemm, shape.params.groups * large_split.splits, TileShapes::square_and_wgmma);
}

template <typename T>
void conv2d_backward_filter_tensor_core(const Conv2dShape& shape, const Conv2dFormats& formats, const T* x,
                                        const T* dL_dy, Conv2dFilterOutput output, const Conv2dReductionSplit& split,
                                        Conv2dTensorCoreTile tile, cudaStream_t stream) {
  const Conv2dGeometry geometry = conv2d_detail::make_conv2d_geometry(shape, formats);
  const auto run = [&]<bool kAsync>(std::bool_constant<kAsync>) {
    launch_block_tiles<T, kAsync, TileShapes::square_and_wgmma>(
        shape, conv2d_detail::backward_filter_gemm(geometry), split.splits, tile, stream,
        "conv2d_backward_filter_tensor_core",
        []<typename Path>(std::type_identity<Path>) { return conv2d_backward_filter_tensor_core_kernel<Path>; }, x,
        dL_dy, output, split.chunk, geometry);
  };
  if (conv2d_backward_filter_copies_asynchronously(shape, formats, x, dL_dy)) {
    run(std::true_type{});
  } else {
    run(std::false_type{});
  }
}

template bool conv2d_backward_filter_copies_asynchronously<float>(const Conv2dShape&, const Conv2dFormats&,
                                                                  const float*, const float*);
template bool conv2d_backward_filter_copies_asynchronously<__half>(const Conv2dShape&, const Conv2dFormats&,
                                                                   const __half*, const __half*);
template bool conv2d_backward_filter_copies_asynchronously<__nv_bfloat16>(const Conv2dShape&, const Conv2dFormats&,
                                                                          const __nv_bfloat16*,
                                                                          const __nv_bfloat16*);
template Conv2dTensorCoreTile conv2d_backward_filter_tensor_core_tile<float>(const Conv2dShape&,
                                                                            const Conv2dFormats&, const float*,
                                                                            const float*);
template Conv2dTensorCoreTile conv2d_backward_filter_tensor_core_tile<__half>(const Conv2dShape&,
                                                                             const Conv2dFormats&, const __half*,
                                                                             const __half*);
template Conv2dTensorCoreTile conv2d_backward_filter_tensor_core_tile<__nv_bfloat16>(const Conv2dShape&,
                                                                                    const Conv2dFormats&,
                                                                                    const __nv_bfloat16*,
                                                                                    const __nv_bfloat16*);
template void conv2d_backward_filter_tensor_core<float>(const Conv2dShape&, const Conv2dFormats&, const float*,
                                                        const float*, Conv2dFilterOutput, const Conv2dReductionSplit&,
                                                        Conv2dTensorCoreTile, cudaStream_t);
template void conv2d_backward_filter_tensor_core<__half>(const Conv2dShape&, const Conv2dFormats&, const __half*,
                                                         const __half*, Conv2dFilterOutput,
                                                         const Conv2dReductionSplit&, Conv2dTensorCoreTile,
                                                         cudaStream_t);
template void conv2d_backward_filter_tensor_core<__nv_bfloat16>(const Conv2dShape&, const Conv2dFormats&,
                                                                const __nv_bfloat16*, const __nv_bfloat16*,
                                                                Conv2dFilterOutput, const Conv2dReductionSplit&,
                                                                Conv2dTensorCoreTile, cudaStream_t);

}  // namespace strata::kernels
