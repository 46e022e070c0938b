// Device code shared by the three conv2d implicit-GEMM kernels (forward, backward_data,
// backward_filter; fp32 and tensor cores): the sizes every kernel receives, the mapping of a
// linear block index to its GEMM tile, backward_data's gather index, the register micro-tile
// product of two shared-memory tiles, the element conversions of the storage dtypes, and the
// dispatch from a tile kind and from a dtype to the kernel instantiated for it.
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

#include "core/check.h"
#include "core/dtype_dispatch.h"
#include "kernels/common.cuh"
#include "kernels/conv2d_plan.h"
#include "kernels/index_divider.h"
#include "kernels/memory_elements.h"

namespace strata::kernels::conv2d_detail {

// Where element (image n, channel c, pixel h * W + w) of an activation tensor lies:
// n * image + c * channel + pixel * this->pixel. Contiguous (N, C, H, W): (C*H*W, H*W, 1);
// channels-last (N, H, W, C) in memory: (H*W*C, 1, C). The kernels' index math is the same
// for both, so their sums (and results) are the same bits in either format.
struct ActivationLayout {
  std::int64_t image;
  std::int64_t channel;
  std::int64_t pixel;

  __host__ __device__ __forceinline__ std::int64_t offset(int n, std::int64_t c, int pixel_index) const {
    return n * image + c * channel + pixel_index * pixel;
  }
};

inline ActivationLayout activation_layout(MemoryFormat format, std::int64_t channels, std::int64_t plane) {
  if (format == MemoryFormat::channels_last) return {plane * channels, 1, channels};
  return {channels * plane, plane, 1};
}

// The sizes the kernels divide pixel and reduction indices by, each set up once on the host
// (a multiply-high and a shift per division instead of a 32-bit division routine).
struct Conv2dDividers {
  IndexDivider32 in_plane, in_width;                             // H*W, W
  IndexDivider32 out_plane, out_width;                           // P*Q, Q
  IndexDivider32 kernel_area, kernel_width;                      // R*S, S
  IndexDivider32 stride_h, stride_w;
  IndexDivider32 in_channels_per_group, out_channels_per_group;  // C/groups, K/groups
};

// The sizes of one convolution as the kernels use them (passed by value to each kernel).
// conv2d_shape guarantees that pixel counts (N*H*W, N*P*Q), padded input sizes, dilated
// kernel sizes and reduction lengths fit in 32 bits, so coordinates are ints and divisions
// are 32-bit (by the dividers); offsets that involve channels are 64-bit.
struct Conv2dGeometry {
  std::int64_t in_channels;             // C
  std::int64_t out_channels;            // K
  std::int64_t groups;
  std::int64_t in_channels_per_group;   // C/groups
  std::int64_t out_channels_per_group;  // K/groups
  int batch;                            // N
  int in_height, in_width;              // H, W
  int out_height, out_width;            // P, Q
  int in_plane, out_plane;              // H*W, P*Q
  int stride_h, stride_w;
  int pad_h, pad_w;
  int dilation_h, dilation_w;
  int kernel_height, kernel_width;      // R, S
  int kernel_area;                      // R*S
  ActivationLayout input;               // x or dL_dx (N, C, H, W)
  ActivationLayout output;              // y or dL_dy (N, K, P, Q)
  bool output_channels_last;            // neighbouring channels of y or dL_dy are adjacent in memory
  bool input_channels_last;             // the same for x or dL_dx
  Conv2dDividers dividers;              // by the sizes above
};

inline Conv2dGeometry make_conv2d_geometry(const Conv2dShape& shape, const Conv2dFormats& formats = {}) {
  const auto narrow = [](std::int64_t value) { return static_cast<int>(value); };  // checked by conv2d_shape
  Conv2dGeometry g{};
  g.in_channels = shape.in_channels;
  g.out_channels = shape.out_channels;
  g.groups = shape.params.groups;
  g.in_channels_per_group = shape.in_channels_per_group();
  g.out_channels_per_group = shape.out_channels_per_group();
  g.batch = narrow(shape.batch);
  g.in_height = narrow(shape.in_height);
  g.in_width = narrow(shape.in_width);
  g.out_height = narrow(shape.out_height);
  g.out_width = narrow(shape.out_width);
  g.in_plane = narrow(shape.in_height * shape.in_width);
  g.out_plane = narrow(shape.out_height * shape.out_width);
  g.stride_h = narrow(shape.params.stride.h);
  g.stride_w = narrow(shape.params.stride.w);
  g.pad_h = narrow(shape.params.padding.h);
  g.pad_w = narrow(shape.params.padding.w);
  g.dilation_h = narrow(shape.params.dilation.h);
  g.dilation_w = narrow(shape.params.dilation.w);
  g.kernel_height = narrow(shape.kernel_height);
  g.kernel_width = narrow(shape.kernel_width);
  g.kernel_area = narrow(shape.kernel_height * shape.kernel_width);
  g.input = activation_layout(formats.input, shape.in_channels, shape.in_height * shape.in_width);
  g.output = activation_layout(formats.output, shape.out_channels, shape.out_height * shape.out_width);
  g.input_channels_last = formats.input == MemoryFormat::channels_last;
  g.output_channels_last = formats.output == MemoryFormat::channels_last;
  // An empty conv (a size of 0) launches nothing: its dividers divide by 1.
  const auto divider = [](std::int64_t size) { return IndexDivider32(size > 0 ? static_cast<int>(size) : 1); };
  g.dividers = Conv2dDividers{.in_plane = divider(g.in_plane),
                              .in_width = divider(g.in_width),
                              .out_plane = divider(g.out_plane),
                              .out_width = divider(g.out_width),
                              .kernel_area = divider(g.kernel_area),
                              .kernel_width = divider(g.kernel_width),
                              .stride_h = divider(g.stride_h),
                              .stride_w = divider(g.stride_w),
                              .in_channels_per_group = divider(g.in_channels_per_group),
                              .out_channels_per_group = divider(g.out_channels_per_group)};
  return g;
}

// A block tile as a type, so that kernels are templates over a type (nvcc's kernel stubs do
// not take class-type template arguments). The values come from conv2d_plan.h.
template <int kBlockM, int kBlockN, int kBlockK, int kThreadM, int kThreadN>
struct GemmTile {
  static constexpr int block_m = kBlockM;
  static constexpr int block_n = kBlockN;
  static constexpr int block_k = kBlockK;
  static constexpr int thread_m = kThreadM;
  static constexpr int thread_n = kThreadN;
  static constexpr int threads_m = kBlockM / kThreadM;
  static constexpr int threads_n = kBlockN / kThreadN;
  static constexpr int threads = threads_m * threads_n;
  static_assert(kBlockM % kThreadM == 0 && kBlockN % kThreadN == 0, "micro-tiles must cover the block tile");
  static_assert(threads % 32 == 0 && threads <= 1024, "whole warps, at most 1024 threads");
};

template <Conv2dTile kTile>
using GemmTileOf = GemmTile<kTile.block_m, kTile.block_n, kTile.block_k, kTile.thread_m, kTile.thread_n>;

// The GEMM tile of this block. Blocks are numbered m tile fastest, then n tile, group and
// split of the reduction, all in gridDim.x (which allows 2^31 - 1 blocks, unlike y and z);
// gemm_grid checks that count, so every factor fits in 32 bits.
struct GemmBlock {
  unsigned m_tile;
  unsigned n_tile;
  unsigned group;
  unsigned split;
};

__device__ __forceinline__ GemmBlock gemm_block(unsigned m_tiles, unsigned n_tiles, unsigned groups) {
  unsigned linear = blockIdx.x;
  GemmBlock block{};
  block.m_tile = linear % m_tiles;
  linear /= m_tiles;
  block.n_tile = linear % n_tiles;
  linear /= n_tiles;
  block.group = linear % groups;
  block.split = linear / groups;
  return block;
}

// The implicit GEMM of each pass, per group: C (m x n) = sum over the reduction of A B.
struct GemmSizes {
  std::int64_t m;
  std::int64_t n;
  std::int64_t reduction;
};

// forward: N*P*Q output pixels x K/groups channels, reduction C/groups*R*S.
__host__ __device__ __forceinline__ GemmSizes forward_gemm(const Conv2dGeometry& g) {
  return {static_cast<std::int64_t>(g.batch) * g.out_plane, g.out_channels_per_group,
          g.in_channels_per_group * g.kernel_area};
}
// backward_data: N*H*W input pixels x C/groups channels, reduction K/groups*R*S.
__host__ __device__ __forceinline__ GemmSizes backward_data_gemm(const Conv2dGeometry& g) {
  return {static_cast<std::int64_t>(g.batch) * g.in_plane, g.in_channels_per_group,
          g.out_channels_per_group * g.kernel_area};
}
// backward_filter: K/groups channels x C/groups*R*S columns, reduction N*P*Q output pixels.
__host__ __device__ __forceinline__ GemmSizes backward_filter_gemm(const Conv2dGeometry& g) {
  return {g.out_channels_per_group, g.in_channels_per_group * g.kernel_area,
          static_cast<std::int64_t>(g.batch) * g.out_plane};
}

// This block's tile of a GEMM cut into block_m x block_n tiles: gemm_block's, with the
// first row and column it covers.
struct GemmBlockTile {
  GemmBlock block;
  std::int64_t m0;
  std::int64_t n0;
};

__device__ __forceinline__ GemmBlockTile gemm_block_tile(const GemmSizes& gemm, std::int64_t groups, int block_m,
                                                         int block_n) {
  const GemmBlock block = gemm_block(static_cast<unsigned>(ceil_div(gemm.m, block_m)),
                                     static_cast<unsigned>(ceil_div(gemm.n, block_n)), static_cast<unsigned>(groups));
  return {block, static_cast<std::int64_t>(block.m_tile) * block_m, static_cast<std::int64_t>(block.n_tile) * block_n};
}

// Number of blocks of a GEMM grid, as a gridDim.x; throws when it exceeds CUDA's limit.
inline unsigned gemm_grid(std::int64_t m_tiles, std::int64_t n_tiles, std::int64_t groups, std::int64_t splits,
                          const char* op) {
  const std::int64_t blocks = m_tiles * n_tiles * groups * splits;
  STRATA_CHECK(blocks <= std::numeric_limits<std::int32_t>::max(),
               "{}: {} blocks ({} x {} tiles, {} groups, {} splits) exceed the grid limit of 2^31 - 1", op, blocks,
               m_tiles, n_tiles, groups, splits);
  return static_cast<unsigned>(blocks);
}

// backward_data's gather: the output coordinate that input coordinate `shifted` (= h + pad)
// reaches through kernel offset `offset` (= r * dilation), or -1 when none does.
__device__ __forceinline__ int source_output_index(int shifted, int offset, const IndexDivider32& stride,
                                                   int out_size) {
  const int numerator = shifted - offset;
  if (numerator < 0) return -1;
  const auto [index, remainder] = stride.divide_with_remainder(numerator);
  return (remainder == 0 && index < out_size) ? index : -1;
}

// acc[i][j] += sum over k of a[k][row_i] * b[k][col_j], where this thread's rows are
// thread_row + i * threads_m and its columns thread_col + j * threads_n: strided, so that
// neighbouring threads touch neighbouring elements of the shared tiles and of the output.
template <typename Tile>
__device__ __forceinline__ void multiply_tiles(const float (&a)[Tile::block_k][Tile::block_m],  // (k, m)
                                               const float (&b)[Tile::block_k][Tile::block_n],  // (k, n)
                                               int thread_row, int thread_col,
                                               float (&acc)[Tile::thread_m][Tile::thread_n]) {
  STRATA_UNROLL
  for (int k = 0; k < Tile::block_k; ++k) {
    float a_fragment[Tile::thread_m];
    float b_fragment[Tile::thread_n];
    STRATA_UNROLL
    for (int i = 0; i < Tile::thread_m; ++i) a_fragment[i] = a[k][thread_row + i * Tile::threads_m];
    STRATA_UNROLL
    for (int j = 0; j < Tile::thread_n; ++j) b_fragment[j] = b[k][thread_col + j * Tile::threads_n];
    STRATA_UNROLL
    for (int i = 0; i < Tile::thread_m; ++i) {
      STRATA_UNROLL
      for (int j = 0; j < Tile::thread_n; ++j) acc[i][j] += a_fragment[i] * b_fragment[j];
    }
  }
}

// The storage dtypes (f32, f16, bf16): every load converts to float, every store rounds once
// to the storage type (to nearest even). Identities for float, so f32 results keep their bits.
template <typename T>
__host__ __device__ __forceinline__ float to_float(T value) {
  return strata::detail::convert_element<float>(value);
}
template <typename T>
__host__ __device__ __forceinline__ T from_float(float value) {
  return strata::detail::convert_element<T>(value);
}

// The formats of a pass's input (x or dL_dx) and output (y or dL_dy) activations.
inline Conv2dFormats conv2d_formats(const Tensor& input, const Tensor& output) {
  return {input.memory_format(), output.memory_format()};
}

// Calls f(std::type_identity<T>{}) with the storage type of a floating dtype (float, __half,
// __nv_bfloat16); the launchers' checks have rejected every other dtype.
template <typename F>
void dispatch_conv2d_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f16: f(std::type_identity<__half>{}); return;
    case DType::bf16: f(std::type_identity<__nv_bfloat16>{}); return;
    default: f(std::type_identity<float>{}); return;
  }
}

// Calls f(std::type_identity<GemmTile<...>>{}) with the tile of kind, so that a launcher
// writes its launch once:
//   dispatch_conv2d_tile(kind, [&]<typename Tile>(std::type_identity<Tile>) { launch(kernel<Tile>, ...); });
template <typename F>
void dispatch_conv2d_tile(Conv2dTileKind kind, F&& f) {
  switch (kind) {
    case Conv2dTileKind::large: f(std::type_identity<GemmTileOf<kConv2dLargeTile>>{}); return;
    case Conv2dTileKind::small: f(std::type_identity<GemmTileOf<kConv2dSmallTile>>{}); return;
    case Conv2dTileKind::few_columns: f(std::type_identity<GemmTileOf<kConv2dFewColumnsTile>>{}); return;
    case Conv2dTileKind::few_rows: f(std::type_identity<GemmTileOf<kConv2dFewRowsTile>>{}); return;
  }
}

}  // namespace strata::kernels::conv2d_detail
