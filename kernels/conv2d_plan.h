// Host-side planning of the conv2d implicit GEMMs: the block tiles the kernels are
// instantiated with, which tile a GEMM of a given size uses, and how backward_filter splits
// its long reduction into chunks. Plain host code (no CUDA), tested on its own.
#pragma once

#include <cstdint>

#include "strata/kernels/conv2d.h"

namespace strata::kernels {

// One block tile: block_m x block_n outputs per block, block_k reduction steps per shared
// memory stage, thread_m x thread_n outputs per thread. The kernels take its values as
// template parameters (kernels/conv2d_tiling.cuh: GemmTileOf).
struct Conv2dTile {
  int block_m;
  int block_n;
  int block_k;
  int thread_m;
  int thread_n;

  constexpr int threads_m() const { return block_m / thread_m; }
  constexpr int threads_n() const { return block_n / thread_n; }
  constexpr int threads() const { return threads_m() * threads_n(); }
};

inline constexpr Conv2dTile kConv2dLargeTile{64, 64, 8, 4, 4};        // 256 threads
inline constexpr Conv2dTile kConv2dSmallTile{32, 32, 8, 4, 4};        // 64 threads
inline constexpr Conv2dTile kConv2dFewColumnsTile{128, 8, 8, 4, 2};   // 128 threads
inline constexpr Conv2dTile kConv2dFewRowsTile{8, 128, 8, 2, 4};      // 128 threads

enum class Conv2dTileKind : std::uint8_t { large, small, few_columns, few_rows };

constexpr Conv2dTile conv2d_tile(Conv2dTileKind kind) {
  switch (kind) {
    case Conv2dTileKind::large: return kConv2dLargeTile;
    case Conv2dTileKind::small: return kConv2dSmallTile;
    case Conv2dTileKind::few_columns: return kConv2dFewColumnsTile;
    case Conv2dTileKind::few_rows: return kConv2dFewRowsTile;
  }
  return kConv2dSmallTile;
}

// The tile for a GEMM with gemm_m rows and gemm_n columns (per group), so that narrow
// GEMMs (depthwise: one channel per group) do not leave most of a 64x64 tile idle.
Conv2dTileKind select_conv2d_tile(std::int64_t gemm_m, std::int64_t gemm_n);

// The reduction [0, length) cut into `splits` chunks of `chunk` steps (a multiple of the
// tile's block_k); the last chunk may be shorter, none is empty.
struct Conv2dReductionSplit {
  std::int64_t splits = 1;
  std::int64_t chunk = 0;
};

// Enough chunks that output_blocks * splits blocks keep the GPU busy (about
// kConv2dTargetBlocks), but no chunk shorter than kConv2dMinChunk steps. Depends only on
// the sizes, so a deterministic backward_filter adds the same partial sums in the same order
// on every run and every GPU.
inline constexpr std::int64_t kConv2dTargetBlocks = 256;
inline constexpr std::int64_t kConv2dMinChunk = 64;
Conv2dReductionSplit split_conv2d_reduction(std::int64_t length, std::int64_t output_blocks, int block_k);

// The memory formats of one pass's activations: input is x or dL_dx, output y or dL_dy (the
// weight is always contiguous). The kernels address each through its own strides
// (conv2d_detail::ActivationLayout), so the two may differ.
struct Conv2dFormats {
  MemoryFormat input = MemoryFormat::contiguous;
  MemoryFormat output = MemoryFormat::contiguous;
};

}  // namespace strata::kernels
