// conv2d backward passes on the tensor cores (conv2d_backward_data_tensor_core.cu,
// conv2d_backward_filter_tensor_core.cu): the launchers that kernels::conv2d_backward_data and
// conv2d_backward_filter call when Conv2dParams::math allows tf32 or bf16 and the
// *_uses_tensor_cores predicate accepts the shape, and what the host needs to know of the
// block tile that the three tensor-core kernels share (conv2d_tensor_core.cuh). Internal: the
// public entry points stay the kernels::conv2d_* launchers, which check the arguments first.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernels/conv2d_plan.h"
#include "strata/kernels/conv2d.h"

namespace strata::kernels {

// The block tile of every tensor-core conv2d kernel's register path: 64x64 outputs per block
// (four warps of 32x32), the reduction staged 16 steps at a time (the asynchronous path may
// take 128x128: select_conv2d_tensor_core_tile). A split reduction's chunks are multiples of
// the step; statistics slots are 64 rows in either tile.
inline constexpr int kConv2dTensorCoreBlockM = 64;
inline constexpr int kConv2dTensorCoreBlockN = 64;
inline constexpr int kConv2dTensorCoreStepK = 16;
// The asynchronous path's large blocks: 128x128 (eight warps of 64x32) and 128x64 (four warps
// of 64x32).
inline constexpr int kConv2dTensorCoreLargeBlock = 128;

// The rows and the columns of a chosen tile's block (never automatic).
constexpr int conv2d_tensor_core_block_m(Conv2dTensorCoreTile tile) {
  return tile == Conv2dTensorCoreTile::m64n64 ? kConv2dTensorCoreBlockM : kConv2dTensorCoreLargeBlock;
}
// Whether a tile multiplies with wgmma (either 128x128 wgmma tile).
constexpr bool is_wgmma(Conv2dTensorCoreTile tile) {
  return tile == Conv2dTensorCoreTile::m128n128_wgmma || tile == Conv2dTensorCoreTile::m128n128_wgmma_tma;
}
constexpr int conv2d_tensor_core_block_n(Conv2dTensorCoreTile tile) {
  return tile == Conv2dTensorCoreTile::m128n128 || is_wgmma(tile) ? kConv2dTensorCoreLargeBlock
                                                                  : kConv2dTensorCoreBlockN;
}

// The block shapes a pass's asynchronous loader takes: any, any and the wgmma block (the data
// pass's), any and the wgmma block with or without the weights by TMA (the forward's), or the
// square ones only and the square ones and the wgmma block (the filter gradient's, whose GEMM
// rows are output channels, not pixels).
enum class TileShapes : std::uint8_t { any, any_and_wgmma, any_and_wgmma_tma, square, square_and_wgmma };
constexpr bool square_only(TileShapes shapes) {
  return shapes == TileShapes::square || shapes == TileShapes::square_and_wgmma;
}
constexpr bool with_wgmma(TileShapes shapes) {
  return shapes == TileShapes::any_and_wgmma || shapes == TileShapes::any_and_wgmma_tma ||
         shapes == TileShapes::square_and_wgmma;
}
constexpr bool with_tma_weights(TileShapes shapes) { return shapes == TileShapes::any_and_wgmma_tma; }

// The tile an asynchronous tensor-core pass takes for a gemm_m x gemm_n GEMM computed
// `batches` times (groups x chunks of the reduction) on a GPU of `multiprocessors`: `setting`
// unless automatic (m128n64 taken as m64n64 where `shapes` is square, m128n128_wgmma_tma as
// m128n128_wgmma where `shapes` has no TMA weights, m128n128_wgmma as m128n128 where `shapes`
// has no wgmma block); then the tile of the
// most outputs per warp whose grid still has eight warps for every multiprocessor: 128x128
// (eight warps a block) when both sides are at least 128, else 128x64 (four) when gemm_m is
// at least 128 and `shapes` allows it, else 64x64. Never returns automatic.
Conv2dTensorCoreTile select_conv2d_tensor_core_tile(Conv2dTensorCoreTile setting, std::int64_t gemm_m,
                                                    std::int64_t gemm_n, std::int64_t batches, int multiprocessors,
                                                    TileShapes shapes = TileShapes::any);

// Whether the current GPU has tf32, bf16 and f16 wmma (compute capability 8.0; the simulator's has).
bool conv2d_tensor_cores_available();

// How the blocks of a filter GEMM store their f32 tile: into out + split * split_stride
// (split_stride 0: straight into an f32 dL_dweight; K*C/groups*R*S: a workspace slab per chunk
// of the reduction, which f16 and bf16 always use), or with atomicAdd into a zeroed f32
// dL_dweight (non-deterministic mode).
struct Conv2dFilterOutput {
  float* out;
  std::int64_t split_stride;
  bool atomic;
};

// Whether the forward (conv2d_forward_tensor_core.h) copies its slices asynchronously for x
// in formats (conv2d_tensor_core_async.cuh): a channels-last x, 16-byte aligned, C/groups a
// multiple of the 16-byte vector (8 f16/bf16 or 4 f32 elements), and math that multiplies the
// stored values (f16, bf16, or f32 with tf32). The same bits either way; tests ask which path ran.
template <typename T>
bool conv2d_forward_copies_asynchronously(const Conv2dShape& shape, const Conv2dFormats& formats, const T* x);

// Both launchers take storage type T: float, __half or __nv_bfloat16 (the instantiations
// there are). f32 inputs are rounded to shape.params.math (tf32 or bf16), f16 and bf16 ones
// multiplied as they are; the products are summed in f32.

// dL_dx (N, C, H, W) from dL_dy (N, K, P, Q) and weight (K, C/groups, R, S, contiguous),
// rounded once to T; dL_dx and dL_dy in formats (input, output). Arguments already checked by
// expect_conv2d_backward_data_arguments.
template <typename T>
void conv2d_backward_data_tensor_core(const Conv2dShape& shape, const Conv2dFormats& formats, const T* dL_dy,
                                      const Tensor& weight, T* dL_dx, cudaStream_t stream);

// Whether the backward data pass copies its slices asynchronously for dL_dy in formats: a
// channels-last dL_dy, 16-byte aligned, K/groups and C/groups multiples of the vector, math
// that multiplies the stored values.
template <typename T>
bool conv2d_backward_data_copies_asynchronously(const Conv2dShape& shape, const Conv2dFormats& formats,
                                                const T* dL_dy);

// The tile the filter GEMM of these operands runs in, chosen before its reduction is split
// (the split is made for the tile's blocks): 64x64 unless the slices are copied asynchronously
// (conv2d_backward_filter_copies_asynchronously); then select_conv2d_tensor_core_tile's for
// the chunks that split_conv2d_reduction would make for 128x128 blocks.
template <typename T>
Conv2dTensorCoreTile conv2d_backward_filter_tensor_core_tile(const Conv2dShape& shape, const Conv2dFormats& formats,
                                                             const T* x, const T* dL_dy);

// The filter GEMM of x (N, C, H, W) and dL_dy (N, K, P, Q) (in formats) in split.splits chunks of the
// N*P*Q reduction (split from split_conv2d_reduction for `tile`'s blocks, with
// kConv2dTensorCoreStepK), in the tile conv2d_backward_filter_tensor_core_tile chose, each
// chunk's (K, C/groups, R, S) tile stored as output says. Arguments already checked by
// expect_conv2d_backward_filter_arguments.
template <typename T>
void conv2d_backward_filter_tensor_core(const Conv2dShape& shape, const Conv2dFormats& formats, const T* x,
                                        const T* dL_dy, Conv2dFilterOutput output, const Conv2dReductionSplit& split,
                                        Conv2dTensorCoreTile tile, cudaStream_t stream);

// Whether the backward filter pass copies its slices asynchronously for x and dL_dy in
// formats: both channels-last and 16-byte aligned, K/groups and C/groups multiples of the
// vector, math that multiplies the stored values.
template <typename T>
bool conv2d_backward_filter_copies_asynchronously(const Conv2dShape& shape, const Conv2dFormats& formats, const T* x,
                                                  const T* dL_dy);

}  // namespace strata::kernels
