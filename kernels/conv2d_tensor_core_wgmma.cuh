// The asynchronous block tile multiplied by Hopper's warpgroup MMA (core/wgmma.cuh) instead of
// wmma: the same loaders (their slices in swizzled layouts, AAlongK / BAlongK of a wgmma
// block), the same stages, cp.async groups and barriers as accumulate_block_tile_async, and
// the same 16-step chunks in the same order; warpgroup g of the block multiplies rows
// 64 g .. 64 g + 63 of every slice by all Block::n columns (wgmma m64nNk16, f32 accumulators
// in registers), then stores them to the (n, m) result tile that write_block_tile reads. So the
// kernels of a pass instantiate one more Path (KernelPath<Math, WgmmaLargeBlock, true>; the
// forwards' also KernelPath<Math, WgmmaTmaLargeBlock, true>) and
// declare BlockAccumulators<Math, Block>; nothing else changes.
//
// Every pass's loader, on f16/bf16 storage: the forward's (conv2d and conv2d + max pool) fill
// K-major slices, the filter pass's MN-major ones (its vectors run along the output channels
// and the input channels, both GEMM rows), the data pass's a K-major A and an MN-major B (the
// weights along the input channels); MN-major slices are multiplied with wgmma's transposes.
// In the 128x128-wgmma-tma tile (WgmmaTmaLargeBlock, the forwards' loader only) the B slices
// (the weights) come by TMA (core/tma.cuh): thread 0 copies each slice's box, counted on its
// stage's mbarrier, which every thread waits for beside its cp.async copies of A. The pipeline has one stage more than the wmma one's (kStagesOf): the copies run
// as far ahead (two slices), and a slice's MMAs stay in flight while the next slice's are
// issued (wgmma.wait_group 1), so the tensor cores need not drain at every slice; a stage is
// refilled only after the barrier that follows the wait for its MMAs in every warpgroup.
//
// In the simulator a wgmma chunk sums exactly as a wmma chunk does (k order from the
// accumulator), so this path gives the wmma paths' bits there; on the GPU the hardware's
// summation order may differ by f32 roundings.
#pragma once

#include <cstdint>
#include <type_traits>

#include "core/tma.cuh"
#include "core/wgmma.cuh"
#include "kernels/conv2d_tensor_core.cuh"
#include "kernels/conv2d_tensor_core_async.cuh"

namespace strata::kernels::conv2d_tensor_core {

// A wgmma block's accumulators: this thread's share of its warpgroup's 64 x Block::n rows
// (wgmma::accumulator_row / accumulator_column).
template <typename Block>
struct WarpgroupAccumulators {
  using BlockType = Block;
  static_assert(Block::wgmma && Block::threads == Block::m / wgmma::kRows * wgmma::kWarpgroupThreads,
                "a warpgroup for every 64 rows");
  float d[Block::n / 2];

  __device__ __forceinline__ void zero() {
    STRATA_UNROLL
    for (int i = 0; i < Block::n / 2; ++i) d[i] = 0.0f;
  }
};

// What a kernel of Path declares: warpgroup accumulators in a wgmma block, else wmma's.
template <typename Math, typename Block>
using BlockAccumulators =
    std::conditional_t<Block::wgmma, WarpgroupAccumulators<Block>, WarpAccumulators<Math, Block>>;

// accumulate_block_tile_async for a wgmma block: the same slices from the same loader. Its
// pipeline repeats accumulate_block_tile_async's rather than sharing it: the wmma kernels sit
// at the 255-register limit, and a shared skeleton with the multiply as a functor (tried)
// moved their allocation enough for ptxas to spill in two of them.
template <typename Math, typename Block, typename Loader>
__device__ __forceinline__ void accumulate_block_tile_async(const Loader& loader, std::int64_t k_begin,
                                                            std::int64_t k_end, unsigned char* shared,
                                                            WarpgroupAccumulators<Block>& accumulators) {
  using T = typename Math::Storage;
  using ALayout = typename Loader::ALayout;
  using BLayout = typename Loader::BLayout;
  static_assert(kCopiesStorage<Math> && sizeof(T) == 2, "wgmma multiplies stored f16 or bf16 values");
  static_assert(std::is_same_v<ALayout, ASwizzledSlice<T, ALayout::major>> &&
                    std::is_same_v<BLayout, BSwizzledSlice<T, BLayout::major>>,
                "the loader fills swizzled slices");
  static_assert(kAsyncASlice<T, Block> * sizeof(T) % wgmma::kSwizzlePatternBytes == 0 &&
                    kAsyncStage<T, Block> * sizeof(T) % wgmma::kSwizzlePatternBytes == 0,
                "every slice starts at a swizzle pattern's boundary");
  constexpr int kStep = kAsyncStepK<T>;
  static_assert(kStep == 2 * kStepK, "a slice is whole or, the last, ends within its first chunk");
  constexpr int kStagesHere = kStagesOf<Block>;
  // Slices copied ahead: the other two stages hold the slice multiplied and the one whose MMAs
  // are still in flight.
  constexpr int kAhead = kStagesHere - 2;
  // [kStagesHere] of an A slice, then a B slice, from the first swizzle pattern boundary.
  T* stages = reinterpret_cast<T*>(wgmma::align_to_swizzle_pattern(shared));
  const auto a_slice = [&](std::int64_t slice) { return stages + slice % kStagesHere * kAsyncStage<T, Block>; };
  const auto b_slice = [&](std::int64_t slice) { return a_slice(slice) + kAsyncASlice<T, Block>; };
  const int first_row = static_cast<int>(threadIdx.x) / wgmma::kWarpgroupThreads * wgmma::kRows;
  accumulators.zero();
  wgmma::fence_operands(accumulators.d);

  // A loader whose B slices come by TMA: thread 0 copies each, arriving on its stage's
  // mbarrier, whose phase for slice s is the (s / kStagesHere)-th.
  constexpr bool kBulkB = kLoadsBulkB<Loader>;
  tma::Mbarrier* b_landed = nullptr;
  if constexpr (kBulkB) {
    __shared__ tma::Mbarrier stage_barriers[kStagesHere];
    b_landed = stage_barriers;
    if (threadIdx.x == 0) {
      STRATA_UNROLL
      for (int stage = 0; stage < kStagesHere; ++stage) tma::init(stage_barriers[stage], 1);
    }
    __syncthreads();
  }
  const auto issue = [&](std::int64_t slice) {
    loader.issue(k_begin + slice * kStep, k_end, a_slice(slice), b_slice(slice));
    if constexpr (kBulkB) {
      if (threadIdx.x == 0) loader.issue_bulk_b(k_begin + slice * kStep, b_slice(slice), b_landed[slice % kStagesHere]);
    }
  };

  const std::int64_t slices = ceil_div(k_end - k_begin, static_cast<std::int64_t>(kStep));
  // The end of the register path's last 16-step slice: chunks from there on are skipped.
  const std::int64_t k_multiplied =
      k_begin + ceil_div(k_end - k_begin, static_cast<std::int64_t>(kStepK)) * kStepK;
  STRATA_UNROLL
  for (int slice = 0; slice < kAhead; ++slice) {
    if (slice < slices) issue(slice);
    __pipeline_commit();
  }
  for (std::int64_t slice = 0; slice < slices; ++slice) {
    __pipeline_wait_prior(kAhead - 1);
    if constexpr (kBulkB) {
      tma::wait(b_landed[slice % kStagesHere], static_cast<std::uint32_t>(slice / kStagesHere) & 1u);
    }
    wgmma::fence_shared_to_async_proxy();  // this thread's landed copies, before wgmma reads them
    // Every thread's copies of this slice landed; every warpgroup's MMAs of slice - 2 are done
    // (the wait at the end of the last iteration): their stage is the one refilled next.
    __syncthreads();
    const std::int64_t ahead = slice + kAhead;
    if (ahead < slices) issue(ahead);
    __pipeline_commit();
    const T* a = a_slice(slice);
    const T* b = b_slice(slice);
    const auto multiply_chunk = [&](int k) {
      const std::uint64_t a_descriptor = wgmma::descriptor(a + ALayout::start(first_row, k), ALayout::layout());
      const std::uint64_t b_descriptor = wgmma::descriptor(b + BLayout::start(k, 0), BLayout::layout());
      wgmma::mma_async<T, Block::n, ALayout::major, BLayout::major>(accumulators.d, a_descriptor, b_descriptor,
                                                                     /*accumulate=*/true);
    };
    // Each form runs its MMAs back to back from the fence to the commit: control flow among
    // them, or joining before the commit, makes ptxas inject a warpgroup.arrive (note C7519).
    if (k_begin + slice * kStep + kStep <= k_multiplied) {  // the same for the whole block
      wgmma::fence();
      STRATA_UNROLL
      for (int k = 0; k < kStep; k += kStepK) multiply_chunk(k);
      wgmma::commit_group();
    } else {
      wgmma::fence();
      multiply_chunk(0);  // the last slice, whose k ends within its first chunk
      wgmma::commit_group();
    }
    wgmma::wait_group<1>();  // the last slice's MMAs done, this one's in flight
    wgmma::fence_operands(accumulators.d);
  }
  wgmma::wait_group<0>();
  wgmma::fence_operands(accumulators.d);
  __pipeline_wait_prior(0);
  __syncthreads();
}

// store_block_tile for a wgmma block: the accumulators to the (n, m) result tile, leading
// dimension Block::ld_c, element by element through wgmma's mapping.
template <typename Block>
__device__ __forceinline__ float* store_block_tile(const WarpgroupAccumulators<Block>& accumulators,
                                                   unsigned char* shared) {
  float* c_tile = reinterpret_cast<float*>(shared);  // (Block::n, Block::ld_c): (n, m)
  const int t = static_cast<int>(threadIdx.x) % wgmma::kWarpgroupThreads;
  const int first_row = static_cast<int>(threadIdx.x) / wgmma::kWarpgroupThreads * wgmma::kRows;
  STRATA_UNROLL
  for (int index = 0; index < Block::n / 2; ++index) {
    c_tile[wgmma::accumulator_column(t, index) * Block::ld_c + first_row + wgmma::accumulator_row(t, index)] =
        accumulators.d[index];
  }
  __syncthreads();
  return c_tile;
}

}  // namespace strata::kernels::conv2d_tensor_core
