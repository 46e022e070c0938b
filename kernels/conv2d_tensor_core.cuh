// Device code shared by the three tensor-core conv2d kernels (conv2d_forward_tensor_core.cu,
// conv2d_backward_data_tensor_core.cu, conv2d_backward_filter_tensor_core.cu): the math types,
// the block shapes, the block tile's pipelined reduction and its epilogue. Each kernel is an
// implicit GEMM whose block computes a tile C (m, n) = sum over k of A (m, k) B (k, n); it
// supplies only a loader, which gathers one 16-step slice of A and of B from global memory.
//
// Register path (this file): a 64x64 tile (SmallBlock), four warps of 32x32 each (2x2
// fragments of 16x16); the asynchronous path (conv2d_tensor_core_async.cuh) may also take a
// 128x128 tile (LargeBlock, eight warps of 64x32) or a 128x64 one (TallBlock, four warps of
// 64x32). The reduction
// advances 16 steps at a time through two shared-memory buffers: while the warps multiply
// one, the loader gathers the next slice into registers (in the storage type), which are then
// stored into the other buffer, with one barrier per slice: f32 storage converted to tf32 or
// bf16 (the math type), f16 and bf16 storage copied as they are (their fragments are of the
// storage type, so nothing is rounded). Edges of the
// GEMM and padding of the convolution are zeros in shared memory, so every fragment is
// whole; the results pass through shared memory so that only the valid part of an edge tile
// is written.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "core/wmma.cuh"
#include "kernels/channel_stats.cuh"
#include "kernels/conv2d_tensor_core.h"
#include "kernels/conv2d_tiling.cuh"

namespace strata::kernels::conv2d_tensor_core {

namespace wmma = nvcuda::wmma;

// A block shape: kM x kN outputs, kWarpsM x kWarpsN warps, each a (kM / kWarpsM) x
// (kN / kWarpsN) warp tile of 16x16 fragments. Leading dimensions (in elements) are padded by
// 8 so that ldm stays a multiple of 16 bytes and every fragment's first element 32-byte
// aligned (what wmma requires), for 2- and 4-byte types. kWgmma: the block multiplies with
// Hopper's warpgroup MMA instead (conv2d_tensor_core_wgmma.cuh: warpgroup g of the block's
// kM / 64 takes rows 64 g.. of all kN columns), its slices in swizzled layouts; kTmaWeights:
// a wgmma block whose forward loader copies the weights by TMA (ChannelsLastForwardLoader).
template <int kM, int kN, int kWarpsM, int kWarpsN, bool kWgmma = false, bool kTmaWeights = false>
struct BlockShape {
  static constexpr int m = kM;
  static constexpr int n = kN;
  static constexpr bool wgmma = kWgmma;
  static constexpr bool tma_weights = kTmaWeights;
  static constexpr int warps_m = kWarpsM;
  static constexpr int threads = kWarpSize * kWarpsM * kWarpsN;
  static constexpr int warp_tile_m = kM / kWarpsM;
  static constexpr int warp_tile_n = kN / kWarpsN;
  static constexpr int fragments_m = warp_tile_m / 16;
  static constexpr int fragments_n = warp_tile_n / 16;
  static constexpr int ld_c = kM + 8;  // results (n, m): column-major C
  static constexpr std::size_t result_bytes = kN * ld_c * sizeof(float);
  static_assert(warp_tile_m % 16 == 0 && warp_tile_n % 16 == 0, "whole fragments per warp");
  static_assert(kWgmma || !kTmaWeights, "the weights come by TMA in wgmma blocks only");
};

// Every path's block (the register path's only one), and the asynchronous path's larger ones:
// twice the outputs per warp, so 3/4 of the fragment loads from shared memory per mma; the
// tall one for GEMMs of 64 columns (64-channel convs), whose rows are many pixels.
using SmallBlock = BlockShape<kConv2dTensorCoreBlockM, kConv2dTensorCoreBlockN, 2, 2>;  // 4 warps of 32x32
using LargeBlock = BlockShape<kConv2dTensorCoreLargeBlock, kConv2dTensorCoreLargeBlock, 2, 4>;  // 8 warps of 64x32
using TallBlock = BlockShape<kConv2dTensorCoreLargeBlock, kConv2dTensorCoreBlockN, 2, 2>;  // 4 warps of 64x32
// LargeBlock's outputs multiplied by two warpgroups of 64x128 (wgmma m64n128k16).
using WgmmaLargeBlock = BlockShape<kConv2dTensorCoreLargeBlock, kConv2dTensorCoreLargeBlock, 2, 4, true>;
// WgmmaLargeBlock whose forward loader takes the weights by TMA (m128n128_wgmma_tma).
using WgmmaTmaLargeBlock = BlockShape<kConv2dTensorCoreLargeBlock, kConv2dTensorCoreLargeBlock, 2, 4, true, true>;

// The rows of a statistics slot (ChannelPartials): the small block's, whatever the block.
constexpr int kStatisticsRows = SmallBlock::m;

// The register path's block, by its old names.
constexpr int kBlockM = SmallBlock::m;
constexpr int kBlockN = SmallBlock::n;
constexpr int kStepK = kConv2dTensorCoreStepK;
constexpr int kThreads = SmallBlock::threads;

constexpr int kLdA = kBlockM + 8;  // a slice (k, m): column-major A
constexpr int kLdB = kStepK + 8;   // b slice (n, k): column-major B
constexpr int kASlice = kStepK * kLdA;
constexpr int kBSlice = kBlockN * kLdB;

// Elements of a slice each thread gathers, of A and of B.
constexpr int kALoads = kStepK * kBlockM / kThreads;
constexpr int kBLoads = kStepK * kBlockN / kThreads;
static_assert(kStepK * kBlockM % kThreads == 0 && kStepK * kBlockN % kThreads == 0, "whole loads per thread");

// The math types: the storage type the loaders read from global memory, how a slice is
// stored in shared memory and which fragments multiply it.
struct Tf32Math {  // f32 storage
  using Storage = float;
  using Element = float;  // f32 storage holding tf32 values (the low 13 mantissa bits zero)
  using FragmentElement = wmma::precision::tf32;
  static constexpr int mma_k = 8;  // m16n16k8
  // To nearest, ties away from zero (cvt.rna.tf32.f32), as CUDA's programming guide does.
  static __device__ __forceinline__ float convert(float value) { return wmma::__float_to_tf32(value); }
};

struct Bf16Math {  // f32 storage
  using Storage = float;
  using Element = __nv_bfloat16;
  using FragmentElement = __nv_bfloat16;
  static constexpr int mma_k = 16;  // m16n16k16
  static __device__ __forceinline__ __nv_bfloat16 convert(float value) { return __float2bfloat16(value); }  // RNE
};

// f16 or bf16 storage (T = __half or __nv_bfloat16): fragments of T, copied unrounded. Every
// product of two T values is exact in f32, so this is what tf32 (or bf16) math of the same
// values computes.
template <typename T>
struct StorageMath {
  using Storage = T;
  using Element = T;
  using FragmentElement = T;
  static constexpr int mma_k = 16;  // m16n16k16
  static __device__ __forceinline__ T convert(T value) { return value; }
};

// Zero in a storage type: the loaders' value for padding and the GEMM's edges.
template <typename T>
__device__ __forceinline__ T zero() {
  return conv2d_detail::from_float<T>(0.0f);
}

// The two slices of the pipeline, then (after the last barrier) the results in the same bytes:
// a register-path block's dynamic shared memory (launch_block_tiles; STRATA_DYNAMIC_SHARED is
// aligned as wmma needs).
template <typename Math>
constexpr std::size_t kSharedBytes =
    std::max(2 * (kASlice + kBSlice) * sizeof(typename Math::Element), SmallBlock::result_bytes);

// A warp's tile of the block tile, in f32.
template <typename Math, typename Block = SmallBlock>
struct WarpAccumulators {
  using BlockType = Block;
  wmma::fragment<wmma::accumulator, 16, 16, Math::mma_k, float> fragments[Block::fragments_m][Block::fragments_n];

  __device__ __forceinline__ void zero() {
    STRATA_UNROLL
    for (int i = 0; i < Block::fragments_m; ++i) {
      STRATA_UNROLL
      for (int j = 0; j < Block::fragments_n; ++j) wmma::fill_fragment(fragments[i][j], 0.0f);
    }
  }
};

// The top-left corner of this thread's warp tile in the block tile: (m, n).
template <typename Block = SmallBlock>
__device__ __forceinline__ int warp_m() {
  return static_cast<int>(threadIdx.x) / kWarpSize % Block::warps_m * Block::warp_tile_m;
}
template <typename Block = SmallBlock>
__device__ __forceinline__ int warp_n() {
  return static_cast<int>(threadIdx.x) / kWarpSize / Block::warps_m * Block::warp_tile_n;
}

// accumulators = the block tile's sum over the reduction steps [k_begin, k_end). The loader
// provides, for this thread:
//   void gather(std::int64_t k0, std::int64_t k_end): a[kALoads] and b[kBLoads] (members of
//       Math::Storage)
//       = its elements of the slice starting at step k0; zero past k_end or outside the GEMM
//   int a_offset(int load), b_offset(int load): where a[load] and b[load] go in a slice,
//       (k, m) with leading dimension kLdA and (n, k) with kLdB
// Ends with a barrier: the slices' bytes are free for write_block_tile.
template <typename Math, typename Loader>
__device__ __forceinline__ void accumulate_block_tile(Loader& loader, std::int64_t k_begin, std::int64_t k_end,
                                                      unsigned char* shared, WarpAccumulators<Math>& accumulators) {
  using Element = typename Math::Element;
  using AFragment = wmma::fragment<wmma::matrix_a, 16, 16, Math::mma_k, typename Math::FragmentElement,
                                   wmma::col_major>;
  using BFragment = wmma::fragment<wmma::matrix_b, 16, 16, Math::mma_k, typename Math::FragmentElement,
                                   wmma::col_major>;
  Element* a_slices = reinterpret_cast<Element*>(shared);  // [2] of (kStepK, kLdA): (k, m)
  Element* b_slices = a_slices + 2 * kASlice;              // [2] of (kBlockN, kLdB): (n, k)
  const int tile_m = warp_m();
  const int tile_n = warp_n();

  // The registers, converted to the math type (f32 storage) or copied, into buffer `buffer`.
  const auto stage = [&](int buffer) {
    Element* a_slice = a_slices + buffer * kASlice;
    Element* b_slice = b_slices + buffer * kBSlice;
    STRATA_UNROLL
    for (int load = 0; load < kALoads; ++load) a_slice[loader.a_offset(load)] = Math::convert(loader.a[load]);
    STRATA_UNROLL
    for (int load = 0; load < kBLoads; ++load) b_slice[loader.b_offset(load)] = Math::convert(loader.b[load]);
  };

  accumulators.zero();

  const std::int64_t slices = ceil_div(k_end - k_begin, static_cast<std::int64_t>(kStepK));
  loader.gather(k_begin, k_end);
  stage(0);
  __syncthreads();
  for (std::int64_t slice = 0; slice < slices; ++slice) {
    const int buffer = static_cast<int>(slice & 1);
    const bool more = slice + 1 < slices;
    if (more) loader.gather(k_begin + (slice + 1) * kStepK, k_end);  // global loads in flight during the mma
    const Element* a_slice = a_slices + buffer * kASlice;
    const Element* b_slice = b_slices + buffer * kBSlice;
    STRATA_UNROLL
    for (int k = 0; k < kStepK; k += Math::mma_k) {
      AFragment a_fragments[2];
      BFragment b_fragments[2];
      STRATA_UNROLL
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a_fragments[i], a_slice + k * kLdA + tile_m + 16 * i, kLdA);
      STRATA_UNROLL
      for (int j = 0; j < 2; ++j) {
        wmma::load_matrix_sync(b_fragments[j], b_slice + (tile_n + 16 * j) * kLdB + k, kLdB);
      }
      STRATA_UNROLL
      for (int i = 0; i < 2; ++i) {
        STRATA_UNROLL
        for (int j = 0; j < 2; ++j) {
          wmma::mma_sync(accumulators.fragments[i][j], a_fragments[i], b_fragments[j], accumulators.fragments[i][j]);
        }
      }
    }
    // The other buffer was last read in the previous slice, before the barrier that ended it.
    if (more) stage(buffer ^ 1);
    __syncthreads();
  }
}

// Which index of the block tile neighbouring threads take in write_block_tile: the one that
// is contiguous in the kernel's output (m: pixels of an NCHW activation; n: channels of a
// channels-last one, or columns of the filter gradient). Only the order of the stores
// changes, never a value.
enum class Contiguous { m, n };

// The Contiguous of an activation output (y or dL_dx) by its layout.
__device__ __forceinline__ Contiguous contiguous_for(bool channels_last) {
  return channels_last ? Contiguous::n : Contiguous::m;
}

// Calls write(m_local, n_local, value) for every element of the block tile within rows x
// columns (the valid part of an edge tile), after accumulate_block_tile, neighbouring threads
// on neighbouring indices of `contiguous`.
// The block tile's accumulators stored to shared memory as (n, m), leading dimension
// Block::ld_c; returns them after the barrier that makes them whole.
template <typename Math, typename Block>
__device__ __forceinline__ float* store_block_tile(const WarpAccumulators<Math, Block>& accumulators,
                                                   unsigned char* shared) {
  float* c_tile = reinterpret_cast<float*>(shared);  // (Block::n, Block::ld_c): (n, m)
  const int tile_m = warp_m<Block>();
  const int tile_n = warp_n<Block>();
  STRATA_UNROLL
  for (int i = 0; i < Block::fragments_m; ++i) {
    STRATA_UNROLL
    for (int j = 0; j < Block::fragments_n; ++j) {
      wmma::store_matrix_sync(c_tile + (tile_n + 16 * j) * Block::ld_c + tile_m + 16 * i,
                              accumulators.fragments[i][j], Block::ld_c, wmma::mem_col_major);
    }
  }
  __syncthreads();
  return c_tile;
}

template <typename Accumulators, typename Write, typename Block = typename Accumulators::BlockType>
__device__ __forceinline__ void write_block_tile(const Accumulators& accumulators,
                                                 unsigned char* shared, std::int64_t rows, std::int64_t columns,
                                                 Contiguous contiguous, Write&& write) {
  const float* c_tile = store_block_tile(accumulators, shared);
  for (int e = static_cast<int>(threadIdx.x); e < Block::m * Block::n; e += Block::threads) {
    const int m_local = contiguous == Contiguous::m ? e % Block::m : e / Block::n;
    const int n_local = contiguous == Contiguous::m ? e / Block::m : e % Block::n;
    if (m_local >= rows || n_local >= columns) continue;
    write(m_local, n_local, c_tile[n_local * Block::ld_c + m_local]);
  }
}

// write_block_tile for a kernel that also wants the statistics of each column (n) of what it
// stored: store(m_local, n_local, value) writes the element and returns it as stored (rounded
// to the output's type, as float); then column(row_group, n_local, sums) is called once per
// valid column of each group of kStatisticsRows rows that holds valid rows (row_group 0 for the
// small block, 0 or 1 for the large one) with the sums of its valid rows, in a fixed order
// (channel_stats.cuh). Each warp takes every (warps)th column of a group, its lanes two rows
// each, and combines them by a butterfly: a group's sums are the same bits in either block.
template <typename Accumulators, typename Store, typename Column, typename Block = typename Accumulators::BlockType>
__device__ __forceinline__ void write_block_tile_with_column_sums(const Accumulators& accumulators,
                                                                    unsigned char* shared, std::int64_t rows,
                                                                    std::int64_t columns, Contiguous contiguous,
                                                                    Store&& store, Column&& column) {
  static_assert(Block::m % kStatisticsRows == 0, "whole statistics slots per block tile");
  constexpr int kRowGroups = Block::m / kStatisticsRows;
  float* c_tile = reinterpret_cast<float*>(shared);  // (Block::n, Block::ld_c): (n, m), as write_block_tile's
  write_block_tile(accumulators, shared, rows, columns, contiguous, [&](int m_local, int n_local, float value) {
    c_tile[n_local * Block::ld_c + m_local] = store(m_local, n_local, value);  // the element this thread read
  });
  __syncthreads();
  constexpr int kWarps = Block::threads / kWarpSize;
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  for (int item = static_cast<int>(threadIdx.x) / kWarpSize; item < kRowGroups * Block::n; item += kWarps) {
    const int row_group = item / Block::n;
    const int n_local = item % Block::n;
    const int first_row = row_group * kStatisticsRows;
    if (first_row >= rows) break;  // the same for the whole warp; later items are in later groups
    channel_stats::ShiftedSums sums = channel_stats::empty_sums();
    for (int m_local = first_row + lane; m_local < first_row + kStatisticsRows; m_local += kWarpSize) {
      if (m_local < rows && n_local < columns) {
        channel_stats::add_value(sums, c_tile[n_local * Block::ld_c + m_local]);
      }
    }
    sums = channel_stats::combine_lanes<kWarpSize>(sums);
    if (lane == 0 && n_local < columns) column(row_group, n_local, sums);
  }
}

// The loader of a GEMM whose A rows are pixels gathered one patch per thread (forward: the
// output pixel's im2col row; backward_data: the input pixel's gathered dL_dy): each thread
// keeps row tid % kBlockM of A and reads every (kThreads / kBlockM)-th step of a slice from
// a_row(k); B (n, k) is read k fastest, as its rows are contiguous in k, from b_element(n, k)
// with n local to the block tile. Both return an element of the storage type, zero outside
// the GEMM and the convolution; gather returns zero past k_end itself.
template <typename ARow, typename BElement>
struct PixelRowLoader {
  using Storage = std::invoke_result_t<ARow, int>;
  static constexpr int kRowsOfKPerPass = kThreads / kBlockM;
  static_assert(kThreads % kBlockM == 0, "each thread gathers the patch of one fixed pixel");

  ARow a_row;
  BElement b_element;
  Storage a[kALoads];
  Storage b[kBLoads];

  __device__ __forceinline__ void gather(std::int64_t k0, std::int64_t k_end) {
    const int tid = static_cast<int>(threadIdx.x);
    STRATA_UNROLL
    for (int load = 0; load < kALoads; ++load) {
      const std::int64_t k = k0 + tid / kBlockM + load * kRowsOfKPerPass;
      a[load] = k < k_end ? a_row(static_cast<int>(k)) : zero<Storage>();
    }
    STRATA_UNROLL
    for (int load = 0; load < kBLoads; ++load) {
      const int index = tid + load * kThreads;
      const std::int64_t k = k0 + index % kStepK;
      b[load] = k < k_end ? b_element(index / kStepK, static_cast<int>(k)) : zero<Storage>();
    }
  }
  __device__ __forceinline__ int a_offset(int load) const {
    const int tid = static_cast<int>(threadIdx.x);
    return (tid / kBlockM + load * kRowsOfKPerPass) * kLdA + tid % kBlockM;
  }
  __device__ __forceinline__ int b_offset(int load) const {
    const int index = static_cast<int>(threadIdx.x) + load * kThreads;
    return index / kStepK * kLdB + index % kStepK;
  }
};

// The pixel (row of A) whose patch this thread gathers for a PixelRowLoader: row m0 + tid %
// kBlockM, or pixel 0 and not valid past the GEMM's gemm_m rows.
struct GatheredPixel {
  bool valid;
  int pixel;
};

__device__ __forceinline__ GatheredPixel gathered_pixel(std::int64_t m0, std::int64_t gemm_m) {
  const std::int64_t m = m0 + static_cast<int>(threadIdx.x) % kBlockM;
  return m < gemm_m ? GatheredPixel{true, static_cast<int>(m)} : GatheredPixel{false, 0};
}

template <typename ARow, typename BElement>
__device__ __forceinline__ PixelRowLoader<ARow, BElement> pixel_row_loader(ARow a_row, BElement b_element) {
  return PixelRowLoader<ARow, BElement>{a_row, b_element, {}, {}};
}

// The forward GEMM's reduction index k = (r, s, c): the channel fastest, so that a run of
// channels at one filter tap is contiguous in a channels-last x (the vectors that
// conv2d_tensor_core_async.cuh copies). Every forward loader orders k so, whatever it reads
// from, and thus sums the same products in the same order in either format.
struct ForwardReductionIndex {
  int r, s, c;
};

__device__ __forceinline__ ForwardReductionIndex forward_reduction_index(const conv2d_detail::Conv2dGeometry& g,
                                                                         int k) {
  const auto [rs, c] = g.dividers.in_channels_per_group.divide_with_remainder(k);
  const auto [r, s] = g.dividers.kernel_width.divide_with_remainder(rs);
  return {r, s, c};
}

// The PixelRowLoader of the forward's GEMM for the output pixel (image, p, q) that this thread
// gathers (valid false: a row past the GEMM, all zeros): A = im2col(x) at that pixel (padding
// reads as zero), B = the weight rows of the block tile's channels of its group, both over
// k = (r, s, c) (forward_reduction_index). The loader of conv2d_forward_tensor_core.cu and of
// the kernels that order the forward's rows otherwise (conv2d_max_pool2d_tensor_core.cu: by
// pooling window) but must sum each pixel's products exactly as it does.
template <typename T>
__device__ __forceinline__ auto forward_pixel_loader(const T* x,       // (N, C, H, W), g.input's format
                                                     const T* weight,  // (K, C/groups, R, S)
                                                     const conv2d_detail::Conv2dGeometry& g,
                                                     const conv2d_detail::GemmSizes& gemm,
                                                     const conv2d_detail::GemmBlockTile& tile, bool valid, int image,
                                                     int p, int q) {
  const int reduction = static_cast<int>(gemm.reduction);
  const int h_origin = p * g.stride_h - g.pad_h;
  const int w_origin = q * g.stride_w - g.pad_w;
  const std::int64_t group = tile.block.group;
  const T* x_group = x + g.input.offset(image, group * g.in_channels_per_group, 0);  // (C/groups, H, W)
  const T* weight_group = weight + group * g.out_channels_per_group * reduction;  // (K/groups, C/groups, R, S)
  const std::int64_t n0 = tile.n0;
  const std::int64_t columns = gemm.n;
  return pixel_row_loader(
      [=](int k) {  // im2col(x) at (this pixel, k = (r, s, c))
        if (!valid) return zero<T>();
        const ForwardReductionIndex index = forward_reduction_index(g, k);
        const int h = h_origin + index.r * g.dilation_h;
        const int w = w_origin + index.s * g.dilation_w;
        const bool inside = h >= 0 && h < g.in_height && w >= 0 && w < g.in_width;
        return inside ? x_group[g.input.offset(0, index.c, h * g.in_width + w)] : zero<T>();
      },
      [=](int n_local, int k) {  // weight (n0 + n_local, c, r, s)
        const std::int64_t channel = n0 + n_local;
        if (channel >= columns) return zero<T>();
        const ForwardReductionIndex index = forward_reduction_index(g, k);
        return weight_group[channel * reduction + (index.c * g.kernel_height + index.r) * g.kernel_width + index.s];
      });
}

}  // namespace strata::kernels::conv2d_tensor_core
