// Device code shared by the three conv2d implicit-GEMM kernels (forward, backward_data,
// backward_filter): the sizes every kernel receives, the mapping of a linear block index to
// its GEMM tile, the register micro-tile product of two shared-memory tiles, and the
// dispatch from a tile kind to the kernel instantiated for it.
#pragma once

#include <cstdint>
#include <limits>

#include "core/check.h"
#include "kernels/common.cuh"
#include "kernels/conv2d_plan.h"

namespace strata::kernels::conv2d_detail {

// The sizes of one convolution as the kernels use them (passed by value to each kernel).
// Reduction indices (C/groups*R*S, K/groups*R*S) fit in 32 bits; conv2d_shape checks it.
struct Conv2dGeometry {
  std::int64_t batch;                   // N
  std::int64_t in_channels;             // C
  std::int64_t in_height, in_width;     // H, W
  std::int64_t out_channels;            // K
  std::int64_t out_height, out_width;   // P, Q
  std::int64_t stride_h, stride_w;
  std::int64_t pad_h, pad_w;
  std::int64_t dilation_h, dilation_w;
  std::int64_t groups;
  std::int64_t in_channels_per_group;   // C/groups
  std::int64_t out_channels_per_group;  // K/groups
  std::int64_t in_plane;                // H*W
  std::int64_t out_plane;               // P*Q
  int kernel_height, kernel_width;      // R, S
  int kernel_area;                      // R*S
};

inline Conv2dGeometry make_conv2d_geometry(const Conv2dShape& shape) {
  Conv2dGeometry g{};
  g.batch = shape.batch;
  g.in_channels = shape.in_channels;
  g.in_height = shape.in_height;
  g.in_width = shape.in_width;
  g.out_channels = shape.out_channels;
  g.out_height = shape.out_height;
  g.out_width = shape.out_width;
  g.stride_h = shape.params.stride.h;
  g.stride_w = shape.params.stride.w;
  g.pad_h = shape.params.padding.h;
  g.pad_w = shape.params.padding.w;
  g.dilation_h = shape.params.dilation.h;
  g.dilation_w = shape.params.dilation.w;
  g.groups = shape.params.groups;
  g.in_channels_per_group = shape.in_channels_per_group();
  g.out_channels_per_group = shape.out_channels_per_group();
  g.in_plane = shape.in_height * shape.in_width;
  g.out_plane = shape.out_height * shape.out_width;
  g.kernel_height = static_cast<int>(shape.kernel_height);
  g.kernel_width = static_cast<int>(shape.kernel_width);
  g.kernel_area = g.kernel_height * g.kernel_width;
  return g;
}

// The GEMM tile of this block. Blocks are numbered m tile fastest, then n tile, group and
// split of the reduction, all in gridDim.x (which allows 2^31 - 1 blocks, unlike y and z).
struct GemmBlock {
  std::int64_t m_tile;
  std::int64_t n_tile;
  std::int64_t group;
  std::int64_t split;
};

__device__ __forceinline__ GemmBlock gemm_block(std::int64_t m_tiles, std::int64_t n_tiles, std::int64_t groups) {
  std::int64_t linear = blockIdx.x;
  GemmBlock block{};
  block.m_tile = linear % m_tiles;
  linear /= m_tiles;
  block.n_tile = linear % n_tiles;
  linear /= n_tiles;
  block.group = linear % groups;
  block.split = linear / groups;
  return block;
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

// acc[i][j] += sum over k of a[k][row_i] * b[k][col_j], where this thread's rows are
// thread_row + i * threads_m and its columns thread_col + j * threads_n: strided, so that
// neighbouring threads touch neighbouring elements of the shared tiles and of the output.
template <Conv2dTile kTile>
__device__ __forceinline__ void multiply_tiles(const float (&a)[kTile.block_k][kTile.block_m],  // (k, m)
                                               const float (&b)[kTile.block_k][kTile.block_n],  // (k, n)
                                               int thread_row, int thread_col,
                                               float (&acc)[kTile.thread_m][kTile.thread_n]) {
  STRATA_UNROLL
  for (int k = 0; k < kTile.block_k; ++k) {
    float a_fragment[kTile.thread_m];
    float b_fragment[kTile.thread_n];
    STRATA_UNROLL
    for (int i = 0; i < kTile.thread_m; ++i) a_fragment[i] = a[k][thread_row + i * kTile.threads_m()];
    STRATA_UNROLL
    for (int j = 0; j < kTile.thread_n; ++j) b_fragment[j] = b[k][thread_col + j * kTile.threads_n()];
    STRATA_UNROLL
    for (int i = 0; i < kTile.thread_m; ++i) {
      STRATA_UNROLL
      for (int j = 0; j < kTile.thread_n; ++j) acc[i][j] += a_fragment[i] * b_fragment[j];
    }
  }
}

// Calls f(TileTag<tile>{}) with the tile of kind, so a launcher writes its launch once:
//   dispatch_conv2d_tile(kind, [&]<Conv2dTile kTile>(TileTag<kTile>) { launch(kernel<kTile>, ...); });
template <Conv2dTile kTile>
struct TileTag {};

template <typename F>
void dispatch_conv2d_tile(Conv2dTileKind kind, F&& f) {
  switch (kind) {
    case Conv2dTileKind::large: f(TileTag<kConv2dLargeTile>{}); return;
    case Conv2dTileKind::small: f(TileTag<kConv2dSmallTile>{}); return;
    case Conv2dTileKind::few_columns: f(TileTag<kConv2dFewColumnsTile>{}); return;
    case Conv2dTileKind::few_rows: f(TileTag<kConv2dFewRowsTile>{}); return;
  }
}

}  // namespace strata::kernels::conv2d_detail
