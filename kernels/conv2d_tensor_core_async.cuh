// The tensor-core conv2d block tile fed by asynchronous copies (cp.async, core/pipeline.cuh):
// the reduction of conv2d_tensor_core.cuh's accumulate_block_tile, but each slice (32 steps for
// f16/bf16, 16 for f32) goes straight from global to shared memory in 16-byte vectors, kStages
// slices in flight, without passing through registers, in a block of any of three shapes
// (SmallBlock, LargeBlock or TallBlock: the host's choice, select_conv2d_tensor_core_tile;
// the filter gradient's loader takes the square ones only). A vector is a run of
// channels at one pixel of a channels-last activation (or at one filter tap of the weights
// stored (K, R, S, C/groups)), so each pass orders its GEMM indices with the channel fastest,
// and needs the channels per group to be a multiple of the vector (8 f16/bf16 or 4 f32
// elements); and math that multiplies the stored values (f16/bf16 storage, or f32 storage with
// tf32 math: each fragment element is rounded to tf32 after its load, where the register path
// rounds it before the store; the same rounding of the same values). The loaders are here
// (forward) and in the backward passes' files; so is the launcher of every tensor-core conv2d
// kernel, either path (launch_block_tiles).
//
// The slices hold the values of the register path's (the same A and B over the same k), only
// stored in the layout that makes the vectors contiguous (SliceLayout); the fragments, and so
// the sums, are the same bits: conv2d_channels_last_test.cpp compares the two paths bit for bit
// (and conv2d_tensor_core_tile_test.cpp both blocks).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "core/elementwise_map.cuh"
#include "core/pipeline.cuh"
#include "core/tma.cuh"
#include "core/wgmma.cuh"
#include "kernels/conv2d_slice_vectors.h"
#include "kernels/conv2d_tensor_core.cuh"
#include "kernels/conv2d_weight_layout.h"
#include "strata/core/device.h"

namespace strata::kernels::conv2d_tensor_core {

constexpr int kStages = 3;  // slices in shared memory: one multiplied, two in flight
// A wgmma block's: one more, which holds the slice whose MMAs are still in flight while the
// next slice's are issued (conv2d_tensor_core_wgmma.cuh).
template <typename Block>
constexpr int kStagesOf = Block::wgmma ? kStages + 1 : kStages;

// Where element (row, column) of a slice of A (m, k) or of B (k, n) lies in shared memory:
// wmma's row-major or column-major layout (Major) with leading dimension kLd, the vectors of a
// loader along its contiguous index.
template <typename Major, int kLd>
struct SliceLayout {
  using major = Major;
  static constexpr int ld = kLd;
  static constexpr bool kRowMajor = std::is_same_v<Major, wmma::row_major>;
  __device__ __forceinline__ static int offset(int row, int column) {
    return kRowMajor ? row * kLd + column : column * kLd + row;
  }
};

// The reduction steps of an asynchronous slice: 32 for f16/bf16 (two m16n16k16 chunks a slice,
// half the waits and barriers of the register path's 16), 16 for f32 (whose three stages of 32
// would pass the 48 KiB of static shared memory). The chunks are multiplied in the register
// path's order, and a chunk the register path would not multiply (past its last 16-step slice)
// is skipped, so the sums stay the same bits.
template <typename T>
constexpr int kAsyncStepK = sizeof(T) == 2 ? 2 * kStepK : kStepK;

// The slice layouts of the async loaders, padded by 8 as conv2d_tensor_core.cuh's (ldm a
// multiple of 16 bytes, fragments 32-byte aligned): vectors along k or along m / n.
template <typename T>
using AVectorsAlongK = SliceLayout<wmma::row_major, kAsyncStepK<T> + 8>;  // (m, k), k contiguous
template <typename Block>
using AVectorsAlongM = SliceLayout<wmma::col_major, Block::m + 8>;        // (m, k), m contiguous
template <typename T>
using BVectorsAlongK = SliceLayout<wmma::col_major, kAsyncStepK<T> + 8>;  // (k, n), k contiguous
template <typename Block>
using BVectorsAlongN = SliceLayout<wmma::row_major, Block::n + 8>;        // (k, n), n contiguous
// The slices of a wgmma block (BlockShape::wgmma), f16/bf16 only, in the swizzled layouts
// (core/wgmma.cuh) that spread each of wgmma's reads of 8 rows over all banks: K-major, a row's
// 32 k values (a whole slice) in one 64-byte swizzled row (Swizzle::bytes64), groups of 8 rows
// 512 bytes apart; MN-major, 64 rows at one k in one 128-byte swizzled row (Swizzle::bytes128),
// groups of 8 k (1 KiB patterns) 1 KiB apart and the two groups of 64 rows a slice's 4 KiB of
// k apart. A slice of 128 rows is 8 KiB of whole patterns, starting at a pattern's boundary; a
// loader's 16-byte vector along the lines' index is one swizzled 16-byte chunk.
template <typename T, wgmma::Major kMajor>
struct SwizzledSlice {
  // K-major: a slice's steps fill one swizzled row.
  static constexpr wgmma::Swizzle kKMajorSwizzle = wgmma::Swizzle::bytes64;
  static_assert(sizeof(T) == 2 && kAsyncStepK<T> * sizeof(T) == wgmma::swizzle_row_bytes(kKMajorSwizzle),
                "wgmma slices hold 32 steps of f16 or bf16");
  static constexpr wgmma::Major major = kMajor;
  static constexpr std::uint32_t kPatternRows = 8;
  __host__ __device__ static constexpr wgmma::OperandLayout layout() {
    constexpr std::uint32_t kPattern = wgmma::kSwizzlePatternBytes;
    constexpr std::uint32_t kKMajorPattern = kPatternRows * wgmma::swizzle_row_bytes(kKMajorSwizzle);
    return kMajor == wgmma::Major::k
               ? wgmma::OperandLayout{kMajor, kKMajorSwizzle, 0, kKMajorPattern}
               : wgmma::OperandLayout{kMajor, wgmma::Swizzle::bytes128, kAsyncStepK<T> / 8 * kPattern, kPattern};
  }
  // Element (row, k): where a loader stores it, and the unswizzled place a descriptor names.
  __device__ __forceinline__ static int offset_of(int row, int k) {
    return static_cast<int>(layout().offset(row, k) / sizeof(T));
  }
  __device__ __forceinline__ static int start_of(int row, int k) {
    return static_cast<int>(layout().start_offset(row, k) / sizeof(T));
  }
};
template <typename T, wgmma::Major kMajor = wgmma::Major::k>
struct ASwizzledSlice : SwizzledSlice<T, kMajor> {  // (m, k)
  __device__ __forceinline__ static int offset(int m, int k) { return SwizzledSlice<T, kMajor>::offset_of(m, k); }
  __device__ __forceinline__ static int start(int m, int k) { return SwizzledSlice<T, kMajor>::start_of(m, k); }
};
template <typename T, wgmma::Major kMajor = wgmma::Major::k>
struct BSwizzledSlice : SwizzledSlice<T, kMajor> {  // (k, n)
  __device__ __forceinline__ static int offset(int k, int n) { return SwizzledSlice<T, kMajor>::offset_of(n, k); }
  __device__ __forceinline__ static int start(int k, int n) { return SwizzledSlice<T, kMajor>::start_of(n, k); }
};
// The slice layouts of a block, K-major (vectors along k) or MN-major (along m or n): swizzled
// for a wgmma block, else padded.
template <typename T, typename Block>
using AAlongK = std::conditional_t<Block::wgmma, ASwizzledSlice<T>, AVectorsAlongK<T>>;
template <typename T, typename Block>
using BAlongK = std::conditional_t<Block::wgmma, BSwizzledSlice<T>, BVectorsAlongK<T>>;
template <typename T, typename Block>
using AAlongM = std::conditional_t<Block::wgmma, ASwizzledSlice<T, wgmma::Major::mn>, AVectorsAlongM<Block>>;
template <typename T, typename Block>
using BAlongN = std::conditional_t<Block::wgmma, BSwizzledSlice<T, wgmma::Major::mn>, BVectorsAlongN<Block>>;

// A stage holds an A slice (Block::m rows) and a B slice (Block::n columns), each in either of
// its layouts: padded, or a wgmma block's dense swizzled ones.
template <typename T, int kExtent, bool kSwizzled>
constexpr int kAsyncSliceOf = kSwizzled ? kExtent * kAsyncStepK<T>
                                        : std::max(kExtent * (kAsyncStepK<T> + 8), kAsyncStepK<T> * (kExtent + 8));
template <typename T, typename Block>
constexpr int kAsyncASlice = kAsyncSliceOf<T, Block::m, Block::wgmma>;
template <typename T, typename Block>
constexpr int kAsyncStage = kAsyncASlice<T, Block> + kAsyncSliceOf<T, Block::n, Block::wgmma>;

// Whether Math multiplies its storage type's values (so a slice can be copied as stored).
template <typename Math>
constexpr bool kCopiesStorage = !std::is_same_v<Math, Bf16Math>;

// The stages, then (after the last barrier) the results in the same bytes: a block's dynamic
// shared memory (68 KiB for f16/bf16 and 72 KiB for f32 in the large block, beyond the 48 KiB
// of static shared memory); a wgmma block's four stages (64 KiB) start at a swizzle pattern's
// boundary, up to 1 KiB in (wgmma::align_to_swizzle_pattern), and its results take 68 KiB.
template <typename Math, typename Block>
constexpr std::size_t kAsyncSharedBytes =
    std::max(kStagesOf<Block> * kAsyncStage<typename Math::Storage, Block> * sizeof(typename Math::Storage) +
                 (Block::wgmma ? wgmma::kSwizzlePatternBytes : 0),
             Block::result_bytes);

// Elements of a 16-byte vector of T, and the vectors each thread copies of a slice of A
// (Block::m rows) and of B (Block::n columns).
template <typename T>
constexpr int kVector = 16 / static_cast<int>(sizeof(T));
template <typename T, typename Block, int kExtent>
constexpr int kVectorLoadsOf = kExtent * kAsyncStepK<T> / kVector<T> / Block::threads;
template <typename T, typename Block>
constexpr int kAVectorLoads = kVectorLoadsOf<T, Block, Block::m>;
template <typename T, typename Block>
constexpr int kBVectorLoads = kVectorLoadsOf<T, Block, Block::n>;
template <typename Block, int kExtent>
constexpr bool kWholeVectorsPerThread =
    kVectorLoadsOf<float, Block, kExtent> * kVector<float> * Block::threads == kExtent * kAsyncStepK<float> &&
    kVectorLoadsOf<__half, Block, kExtent> * kVector<__half> * Block::threads == kExtent * kAsyncStepK<__half>;
template <typename Block>
constexpr bool kWholeVectorsOfBoth = kWholeVectorsPerThread<Block, Block::m> && kWholeVectorsPerThread<Block, Block::n>;
static_assert(kWholeVectorsOfBoth<SmallBlock> && kWholeVectorsOfBoth<LargeBlock> && kWholeVectorsOfBoth<TallBlock>,
              "whole vectors per thread");

// The host's side of kCopiesStorage, and of the vectors: whether a pass on storage T with
// shape's math multiplies the stored values, and whether channels (per group) fill whole
// 16-byte vectors of T.
template <typename T>
bool math_copies_storage(const Conv2dShape& shape) {
  return !std::is_same_v<T, float> || shape.params.math == ConvMath::tf32;
}
template <typename T>
bool whole_vectors_of(std::int64_t channels) {
  return channels % kVector<T> == 0;
}
using detail::is_16_byte_aligned;

// This thread's vector `load` of a slice whose contiguous index spans kExtent elements
// (kAsyncStepK<T> along k, Block::m or Block::n along m or n): `outer`, the other index, and
// `inner`, the first element along the contiguous one. Neighbouring threads take neighbouring
// vectors of a row, whose stores a wgmma block's swizzled slices take free of bank conflicts
// (conv2d_slice_vectors.h).
template <typename T, int kExtent, typename Block>
__device__ __forceinline__ SliceVector slice_vector(int load) {
  const int v = static_cast<int>(threadIdx.x) + load * Block::threads;
  return vector_along_rows(v, kExtent / kVector<T>, kVector<T>);
}

// The conv output pixel of a forward GEMM row.
struct OutputPixel {
  int image;
  int p;
  int q;
};

// The forward's row order: row m is output pixel m of (N, P, Q).
__device__ __forceinline__ OutputPixel forward_output_pixel(const conv2d_detail::Conv2dGeometry& g, int m) {
  const auto [image, pq] = g.dividers.out_plane.divide_with_remainder(m);
  const auto [p, q] = g.dividers.out_width.divide_with_remainder(pq);
  return {image, p, q};
}

// The forward GEMM's copies (A = im2col(x), B = the weights, both over k = (r, s, c)): A's
// vector `load` of a slice is row slice_vector(load).outer (a pixel) at step .inner, B's the
// column (an output channel) of that index. Padding, rows past the GEMM and steps past the
// reduction are zero-filled (whole vectors: C/groups is a multiple of the vector). In a block
// with Block::tma_weights the B slices come by TMA instead (kBulkB): one thread copies the box
// of Block::n filters x kAsyncStepK steps of forward_weight_map, which lands in
// BSwizzledSlice's layout with the same zeros (issue_bulk_b).
template <typename T, typename Block>
struct ChannelsLastForwardLoader {
  using ALayout = AAlongK<T, Block>;
  using BLayout = BAlongK<T, Block>;
  static constexpr int kALoads = kAVectorLoads<T, Block>;
  static constexpr int kBLoads = kBVectorLoads<T, Block>;
  static constexpr bool kBulkB = Block::tma_weights;
  static constexpr std::uint32_t kBulkBBytes = Block::n * kAsyncStepK<T> * sizeof(T);

  const T* x;         // (N, H, W, C) in memory
  const T* weight;    // the block tile's first row of (K, R, S, C/groups)
  const tma::TensorMap* weight_map;  // forward_weight_map's, with kBulkB
  int filter0;        // the block tile's first filter in its group (tile.n0) and its group
  int group;
  conv2d_detail::Conv2dGeometry g;
  std::int64_t columns;  // valid rows of the B slice: K/groups - n0
  int reduction;
  bool a_valid[kALoads];
  std::int64_t a_origin[kALoads];  // the offset in x of (image, h_origin, w_origin, the group's first channel)
  int h_origin[kALoads];
  int w_origin[kALoads];

  // Issues the copies of the slice starting at step k0 (< k_end) into a_slice and b_slice.
  __device__ __forceinline__ void issue(std::int64_t k0, std::int64_t k_end, T* a_slice, T* b_slice) const {
    STRATA_UNROLL
    for (int load = 0; load < kALoads; ++load) {
      const SliceVector vector = slice_vector<T, kAsyncStepK<T>, Block>(load);
      const std::int64_t k = k0 + vector.inner;
      const ForwardReductionIndex index = forward_reduction_index(g, static_cast<int>(k));
      const int h = h_origin[load] + index.r * g.dilation_h;
      const int w = w_origin[load] + index.s * g.dilation_w;
      const bool a_inside = a_valid[load] && k < k_end && h >= 0 && h < g.in_height && w >= 0 && w < g.in_width;
      const T* a_source =
          a_inside ? x + a_origin[load] +
                         (index.r * g.dilation_h * g.in_width + index.s * g.dilation_w) * g.input.pixel + index.c
                   : x;
      async_copy<16>(a_slice + ALayout::offset(vector.outer, vector.inner), a_source, a_inside);
    }
    if constexpr (!kBulkB) {  // else issue_bulk_b's
      STRATA_UNROLL
      for (int load = 0; load < kBLoads; ++load) {
        const SliceVector vector = slice_vector<T, kAsyncStepK<T>, Block>(load);
        const std::int64_t k = k0 + vector.inner;
        const bool b_inside = vector.outer < columns && k < k_end;
        async_copy<16>(b_slice + BLayout::offset(vector.inner, vector.outer),
                       b_inside ? weight + vector.outer * std::int64_t{reduction} + k : weight, b_inside);
      }
    }
  }

  // One thread's copy of the B slice starting at step k0 (k_end is the reduction's end, where
  // the map's zeros start), arriving on `landed` with its bytes.
  __device__ __forceinline__ void issue_bulk_b(std::int64_t k0, T* b_slice, tma::Mbarrier& landed) const {
    tma::arrive_expect_tx(landed, kBulkBBytes);
    tma::copy_tile(b_slice, *weight_map, landed, static_cast<int>(k0), filter0, group);
  }
};

// Whether Loader's B slices come by TMA (ChannelsLastForwardLoader::kBulkB).
template <typename Loader>
constexpr bool kLoadsBulkB = requires { requires Loader::kBulkB; };

// The tensor map of the weights (K, R, S, C/groups) that a wgmma block's forward reads its B
// slices through (ChannelsLastForwardLoader::issue_bulk_b), for a pass on storage T in `tile`:
// three dimensions (reduction, K/groups, groups), so that a box past a group's last filter or
// past the reduction lands zeros, as the cp.async loader writes them; boxes of
// kAsyncStepK<T> steps x WgmmaTmaLargeBlock::n filters in 64-byte swizzled rows
// (BSwizzledSlice's K-major layout). An empty map for every other tile and type, whose kernels
// do not read it.
template <typename T>
tma::TensorMap forward_weight_map(Conv2dTensorCoreTile tile, const conv2d_detail::GemmSizes& gemm,
                                  std::int64_t groups, const T* weight_krsc, const char* name) {
  if constexpr (sizeof(T) != 2) {
    return tma::TensorMap{};
  } else {
    if (tile != Conv2dTensorCoreTile::m128n128_wgmma_tma) return tma::TensorMap{};
    const auto reduction = static_cast<std::uint64_t>(gemm.reduction);
    const auto filters = static_cast<std::uint64_t>(gemm.n);
    return tma::encode_tiled(
        tma::TiledMap{.element = std::is_same_v<T, __half> ? tma::Element::f16 : tma::Element::bf16,
                      .global = weight_krsc,
                      .rank = 3,
                      .extents = {reduction, filters, static_cast<std::uint64_t>(groups)},
                      .strides = {reduction * sizeof(T), filters * reduction * sizeof(T)},
                      .box = {static_cast<std::uint32_t>(kAsyncStepK<T>),
                              static_cast<std::uint32_t>(WgmmaTmaLargeBlock::n), 1},
                      .swizzle = BSwizzledSlice<T>::layout().swizzle},
        name);
  }
}

// The loader for the block tile `tile` of a forward GEMM (x channels-last; weight_rsc the
// weights as (K, R, S, C/groups), weight_map forward_weight_map's of them, a kernel parameter)
// whose row m < gemm.m is the pixel pixel_of(m): the forward's rows in pixel order
// (forward_output_pixel), or conv2d_max_pool2d's by window.
template <typename Block, typename T, typename PixelOf>
__device__ __forceinline__ ChannelsLastForwardLoader<T, Block> channels_last_forward_loader(
    const T* x, const T* weight_rsc, const tma::TensorMap& weight_map, const conv2d_detail::Conv2dGeometry& g,
    const conv2d_detail::GemmSizes& gemm, const conv2d_detail::GemmBlockTile& tile, PixelOf pixel_of) {
  ChannelsLastForwardLoader<T, Block> loader{};
  loader.x = x;
  loader.reduction = static_cast<int>(gemm.reduction);
  loader.weight = weight_rsc + (tile.block.group * g.out_channels_per_group + tile.n0) * gemm.reduction;
  loader.weight_map = &weight_map;
  loader.filter0 = static_cast<int>(tile.n0);
  loader.group = static_cast<int>(tile.block.group);
  loader.g = g;
  loader.columns = gemm.n - tile.n0;
  const std::int64_t first_channel = tile.block.group * g.in_channels_per_group;
  STRATA_UNROLL
  for (int load = 0; load < ChannelsLastForwardLoader<T, Block>::kALoads; ++load) {
    const std::int64_t m = tile.m0 + slice_vector<T, kAsyncStepK<T>, Block>(load).outer;
    const bool valid = m < gemm.m;
    const OutputPixel pixel = valid ? pixel_of(static_cast<int>(m)) : OutputPixel{0, 0, 0};
    const int h_origin = pixel.p * g.stride_h - g.pad_h;
    const int w_origin = pixel.q * g.stride_w - g.pad_w;
    loader.a_valid[load] = valid;
    loader.h_origin[load] = h_origin;
    loader.w_origin[load] = w_origin;
    // An offset, not a pointer: the origin may lie outside the image (only taps inside it are read).
    loader.a_origin[load] = g.input.offset(pixel.image, first_channel, 0) +
                            (static_cast<std::int64_t>(h_origin) * g.in_width + w_origin) * g.input.pixel;
  }
  return loader;
}

// accumulate_block_tile's result (the same bits) from an asynchronous loader, which provides
//   ALayout, BLayout: the SliceLayouts of its A (m, k) and B (k, n) slices
//   void issue(std::int64_t k0, std::int64_t k_end, T* a_slice, T* b_slice) const: this
//       thread's copies of the kAsyncStepK<T> steps from k0 (zeros past k_end)
// Slice s is copied into stage s % kStages, kStages - 1 slices ahead of the one being
// multiplied. Ends with a barrier: the stages' bytes are free for write_block_tile.
template <typename Math, typename Block, typename Loader>
__device__ __forceinline__ void accumulate_block_tile_async(const Loader& loader, std::int64_t k_begin,
                                                            std::int64_t k_end, unsigned char* shared,
                                                            WarpAccumulators<Math, Block>& accumulators) {
  static_assert(kCopiesStorage<Math>, "the slices hold the stored values: Math must multiply them");
  using T = typename Math::Storage;
  using ALayout = typename Loader::ALayout;
  using BLayout = typename Loader::BLayout;
  using AFragment = wmma::fragment<wmma::matrix_a, 16, 16, Math::mma_k, typename Math::FragmentElement,
                                   typename ALayout::major>;
  using BFragment = wmma::fragment<wmma::matrix_b, 16, 16, Math::mma_k, typename Math::FragmentElement,
                                   typename BLayout::major>;
  constexpr int kStep = kAsyncStepK<T>;
  T* stages = reinterpret_cast<T*>(shared);  // [kStages] of an A slice, then a B slice
  const auto a_slice = [&](std::int64_t slice) { return stages + slice % kStages * kAsyncStage<T, Block>; };
  const auto b_slice = [&](std::int64_t slice) { return a_slice(slice) + kAsyncASlice<T, Block>; };
  // f32 storage: the copied values rounded to tf32 in the fragment (Math::convert of each
  // element), as the register path rounds them before storing; f16/bf16: nothing to do.
  const auto round = [](auto& fragment) {
    if constexpr (std::is_same_v<T, float>) {
      for (int e = 0; e < fragment.num_elements; ++e) fragment.x[e] = Math::convert(fragment.x[e]);
    }
  };
  const int tile_m = warp_m<Block>();
  const int tile_n = warp_n<Block>();
  accumulators.zero();

  const std::int64_t slices = ceil_div(k_end - k_begin, static_cast<std::int64_t>(kStep));
  // The end of the register path's last 16-step slice: chunks from there on are skipped.
  const std::int64_t k_multiplied =
      k_begin + ceil_div(k_end - k_begin, static_cast<std::int64_t>(kStepK)) * kStepK;
  // One group per slice, empty past the last, so that the wait below always means "all but
  // the newest kStages - 2 slices have landed".
  STRATA_UNROLL
  for (int slice = 0; slice < kStages - 1; ++slice) {
    if (slice < slices) loader.issue(k_begin + slice * kStep, k_end, a_slice(slice), b_slice(slice));
    __pipeline_commit();
  }
  for (std::int64_t slice = 0; slice < slices; ++slice) {
    __pipeline_wait_prior(kStages - 2);
    __syncthreads();  // every thread's copies of this slice landed; the stage refilled next was read last slice
    const std::int64_t ahead = slice + kStages - 1;
    if (ahead < slices) loader.issue(k_begin + ahead * kStep, k_end, a_slice(ahead), b_slice(ahead));
    __pipeline_commit();
    const T* a = a_slice(slice);
    const T* b = b_slice(slice);
    const std::int64_t k0 = k_begin + slice * kStep;
    STRATA_UNROLL
    for (int k = 0; k < kStep; k += Math::mma_k) {
      if (k0 + k >= k_multiplied) break;  // the same for the whole block
      AFragment a_fragments[Block::fragments_m];
      BFragment b_fragments[Block::fragments_n];
      STRATA_UNROLL
      for (int i = 0; i < Block::fragments_m; ++i) {
        wmma::load_matrix_sync(a_fragments[i], a + ALayout::offset(tile_m + 16 * i, k), ALayout::ld);
        round(a_fragments[i]);
      }
      STRATA_UNROLL
      for (int j = 0; j < Block::fragments_n; ++j) {
        wmma::load_matrix_sync(b_fragments[j], b + BLayout::offset(k, tile_n + 16 * j), BLayout::ld);
        round(b_fragments[j]);
      }
      STRATA_UNROLL
      for (int i = 0; i < Block::fragments_m; ++i) {
        STRATA_UNROLL
        for (int j = 0; j < Block::fragments_n; ++j) {
          wmma::mma_sync(accumulators.fragments[i][j], a_fragments[i], b_fragments[j], accumulators.fragments[i][j]);
        }
      }
    }
  }
  __pipeline_wait_prior(0);
  __syncthreads();
}

// Calls run(std::bool_constant<copies_asynchronously>{}, weights) with the weights a pass's
// loaders read: as (K, R, S, C/groups), 16-byte aligned, when its slices are copied
// asynchronously, else as (K, C/groups, R, S) (conv2d_weight_layout.h: weight itself when it is
// laid out so already, else a stream-ordered copy).
template <typename T, typename Run>
void run_with_weights(bool copies_asynchronously, const Tensor& weight, cudaStream_t stream, Run&& run) {
  if (copies_asynchronously) {
    const Tensor weight_krsc = weight_in_krsc_order(weight, stream);
    run(std::true_type{}, static_cast<const T*>(weight_krsc.memory_ptr()));
  } else {
    const Tensor weight_kcrs = weight_in_kcrs_order(weight, stream);
    run(std::false_type{}, weight_kcrs.data<T>());
  }
}

// What a tensor-core kernel is instantiated for: its math, its block shape and whether its
// slices are copied asynchronously (the register path has the small block only), and the
// dynamic shared memory its block takes.
template <typename MathType, typename BlockType, bool kAsyncCopies>
struct KernelPath {
  using Math = MathType;
  using Block = BlockType;
  static constexpr bool async = kAsyncCopies;
  static constexpr std::size_t shared_bytes = async ? kAsyncSharedBytes<Math, Block> : kSharedBytes<Math>;
  static_assert(async || std::is_same_v<Block, SmallBlock>, "the register path has the small block only");
};

// The tile of a pass over gemm computed `batches` times (groups x chunks of the reduction):
// the small one on the register path, select_conv2d_tensor_core_tile's for the current device
// and setting on the asynchronous one (`shapes`: TileShapes::square for a loader that takes
// the square blocks only, any_and_wgmma or square_and_wgmma for one that also fills wgmma's
// slices).
inline Conv2dTensorCoreTile pass_tile(bool copies_asynchronously, const conv2d_detail::GemmSizes& gemm,
                                      std::int64_t batches, TileShapes shapes = TileShapes::any) {
  if (!copies_asynchronously) return Conv2dTensorCoreTile::m64n64;
  return select_conv2d_tensor_core_tile(conv2d_tensor_core_tile(), gemm.m, gemm.n, batches,
                                        device_properties().multiprocessor_count, shapes);
}

// Launches kernel_of(std::type_identity<Path>{}) (the kernel instantiated for a KernelPath) for
// storage type T and shape.params.math, one block per block tile of gemm, group and chunk of
// the reduction (`splits`), with args, in the block's dynamic shared memory. The path copies
// asynchronously when kAsync and the math multiplies the stored values, in `tile` (pass_tile's:
// m128n128, m128n64 and, with kShapes with_wgmma and f16/bf16 storage, m128n128_wgmma only
// there, m128n128_wgmma_tma where kShapes also has with_tma_weights, else as m128n128_wgmma;
// the register path has the small block). f32 storage with tf32
// or bf16 math rounds to that type; f16 and bf16 storage multiply in their own type whether
// math says tf32 or bf16 (the stored values are exact in it). Throws for math fp32: the
// callers route it to the fp32 kernels. kShapes square_only: the kernel is never instantiated
// for the tall block (its loader takes square ones only).
//   launch_block_tiles<T, kAsync>(shape, gemm, 1, pass_tile(kAsync, gemm, groups), stream,
//                                 "conv2d_forward_tensor_core",
//                                 []<typename Path>(std::type_identity<Path>) { return kernel<Path>; }, x, ...);
template <typename T, bool kAsync, TileShapes kShapes = TileShapes::any, typename KernelOf, typename... Args>
void launch_block_tiles(const Conv2dShape& shape, const conv2d_detail::GemmSizes& gemm, std::int64_t splits,
                        Conv2dTensorCoreTile tile, cudaStream_t stream, const char* name, KernelOf kernel_of,
                        const Args&... args) {
  STRATA_CHECK(shape.params.math != ConvMath::fp32, "{}: called with math fp32 ({})", name, to_string(shape.params));
  STRATA_CHECK(tile != Conv2dTensorCoreTile::automatic, "{}: the tile must be chosen (pass_tile)", name);
  const auto launch_path = [&]<typename Path>(std::type_identity<Path> path) {
    using Block = typename Path::Block;
    const unsigned blocks = conv2d_detail::gemm_grid(ceil_div(gemm.m, Block::m), ceil_div(gemm.n, Block::n),
                                                     shape.params.groups, splits, name);
    const auto kernel = kernel_of(path);
    allow_dynamic_shared_memory(kernel, Path::shared_bytes, name);
    launch(kernel,
           LaunchConfig{.grid = blocks, .block = Block::threads, .shared_bytes = Path::shared_bytes, .stream = stream,
                        .name = name},
           args...);
  };
  const auto launch_math = [&]<typename Math>(std::type_identity<Math>) {
    constexpr bool kCopies = kAsync && kCopiesStorage<Math>;
    if constexpr (kCopies) {
      if constexpr (with_wgmma(kShapes) && sizeof(typename Math::Storage) == 2) {
        if constexpr (with_tma_weights(kShapes)) {
          if (tile == Conv2dTensorCoreTile::m128n128_wgmma_tma) {
            return launch_path(std::type_identity<KernelPath<Math, WgmmaTmaLargeBlock, true>>{});
          }
        }
        if (is_wgmma(tile)) return launch_path(std::type_identity<KernelPath<Math, WgmmaLargeBlock, true>>{});
      }
      // f32 storage (tf32 or bf16 math), which wgmma's f16/bf16 slices cannot hold: 128x128.
      if (tile == Conv2dTensorCoreTile::m128n128 || is_wgmma(tile)) {
        return launch_path(std::type_identity<KernelPath<Math, LargeBlock, true>>{});
      }
      if constexpr (!square_only(kShapes)) {
        if (tile == Conv2dTensorCoreTile::m128n64) {
          return launch_path(std::type_identity<KernelPath<Math, TallBlock, true>>{});
        }
      }
    }
    STRATA_CHECK(tile == Conv2dTensorCoreTile::m64n64, "{}: the {} tile without asynchronous copies", name,
                 to_string(tile));
    launch_path(std::type_identity<KernelPath<Math, SmallBlock, kCopies>>{});
  };
  if constexpr (std::is_same_v<T, float>) {
    if (shape.params.math == ConvMath::tf32) {
      launch_math(std::type_identity<Tf32Math>{});
    } else {
      launch_math(std::type_identity<Bf16Math>{});
    }
  } else {
    launch_math(std::type_identity<StorageMath<T>>{});
  }
}

}  // namespace strata::kernels::conv2d_tensor_core
