// Per-channel sums in double over the count = N * H * W values of each channel of an
// activation, in one fixed order whatever its layout: P chains per channel, chain t adding
// values k = t, t + P, ... in sequence (k = n * H * W + h * W + w), then, per channel, lane l
// of one warp adding chain sums l, l + 32, ... in sequence and a butterfly over the 32 lanes
// (warp_sum). Deterministic, accurate (no chain adds more than count / P values), and the same
// bits in both layouts, since both run the same chains and the same finish.
//
// P (chains_for, channel_reduction.h) grows with the work: a power of two from 256 up to
// where channels * P threads fill an H200 twice over, or chains would add fewer than 32 values
// each. A memory-bound pass needs every multiprocessor streaming; a fixed 256 chains per
// channel gave 64 channels 16 K threads, a tenth of what the memory system needs in flight.
//
// Two kernels: the first runs the chains and stores each chain's sums (kSums, C, P) in global
// memory, the second finishes each channel with one warp. The first has a block per layout:
// - contiguous (N, C, H, W): blocks of 256 neighbouring chains of one channel, so that a warp
//   loads neighbouring values of the channel;
// - channels-last (N, H, W, C), a channel's values C apart: blocks of 32 channels x 8 chains,
//   neighbouring threads on neighbouring channels at the same k, so that a warp's loads are
//   coalesced.
// Both step their memory index from value to value without dividing.
//
// A Reduction (passed by value to the kernels) provides
//   static constexpr int kSums;                  // sums per channel
//   struct Channel;                              // per-channel constants
//   Channel channel(std::int64_t c) const;
//   void add(const Channel&, std::int64_t index, std::int64_t c, double (&sums)[kSums]) const;
//   void finish(const Channel&, std::int64_t c, const double (&sums)[kSums]) const;
// where add adds the value at memory index index (a value of channel c) and finish stores the
// channel's totals.
#pragma once

#include <cstdint>

#include "core/launch.cuh"
#include "kernels/channel_reduction.h"
#include "kernels/common.cuh"
#include "strata/core/tensor.h"

namespace strata::kernels::channel_reduction {

constexpr int kContiguousThreads = 256;         // contiguous: chains per block
constexpr int kTileChannels = kWarpSize;        // channels-last: channels per block
constexpr int kTileChains = 8;                  // channels-last: chains per block
constexpr int kTileThreads = kTileChannels * kTileChains;
static_assert(kMinChains % kContiguousThreads == 0 && kMinChains % kTileChains == 0, "whole blocks of chains");

// Runs chain `chain` of channel c, whose first value lies at index and each next one step
// further, plus image_stride - plane more where the step crosses the end of a plane
// (first_pixel, pixel_step and image_stride zero for channels-last, where no step does), and
// stores its sums at chain_sums[(s, c, chain)].
template <typename Reduction>
__device__ __forceinline__ void run_chain(const Reduction& reduction, const Extent& extent, std::int64_t chains,
                                          std::int64_t chain, std::int64_t c, std::int64_t index,
                                          std::int64_t step, std::int64_t first_pixel, std::int64_t pixel_step,
                                          std::int64_t image_stride, double* chain_sums) {
  const typename Reduction::Channel channel = reduction.channel(c);
  double sums[Reduction::kSums] = {};
  std::int64_t pixel = first_pixel;
  const std::int64_t count = extent.count();
  // A chain's adds are sequential; unrolled, its loads are not.
  STRATA_UNROLL_BY(4)
  for (std::int64_t k = chain; k < count; k += chains) {
    reduction.add(channel, index, c, sums);
    index += step;
    pixel += pixel_step;
    if (pixel_step != 0 && pixel >= extent.plane) {
      pixel -= extent.plane;
      index += image_stride - extent.plane;
    }
  }
  STRATA_UNROLL
  for (int s = 0; s < Reduction::kSums; ++s) chain_sums[(s * extent.channels + c) * chains + chain] = sums[s];
}

// Contiguous: block (c, y) runs chains y * 256 + threadIdx.x of channel c.
template <typename Reduction>
__global__ void __launch_bounds__(kContiguousThreads)
    contiguous_chain_sums_kernel(Reduction reduction, Extent extent, std::int64_t chains, double* chain_sums) {
  const std::int64_t c = blockIdx.x;
  const std::int64_t chain = static_cast<std::int64_t>(blockIdx.y) * kContiguousThreads + threadIdx.x;
  const std::int64_t plane = extent.plane;
  const std::int64_t image_stride = extent.channels * plane;
  // Value k = n * plane + p of channel c lies at n * image_stride + c * plane + p; k + P is
  // P / plane images and P % plane pixels further, one image more where the pixels wrap.
  const std::int64_t image = chain / plane;
  const std::int64_t pixel = chain - image * plane;
  const std::int64_t images_per_step = chains / plane;
  const std::int64_t pixel_step = chains - images_per_step * plane;
  run_chain(reduction, extent, chains, chain, c, image * image_stride + c * plane + pixel,
            images_per_step * image_stride + pixel_step, pixel, pixel_step, image_stride, chain_sums);
}

// Channels-last: block (x, y) runs chains y * 8 + threadIdx.x / 32 of channels
// x * 32 + threadIdx.x % 32. Value k of channel c lies at k * C + c.
template <typename Reduction>
__global__ void __launch_bounds__(kTileThreads)
    channels_last_chain_sums_kernel(Reduction reduction, Extent extent, std::int64_t chains, double* chain_sums) {
  const std::int64_t chain = static_cast<std::int64_t>(blockIdx.y) * kTileChains + threadIdx.x / kWarpSize;
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * kTileChannels + threadIdx.x % kWarpSize;
  if (c >= extent.channels) return;
  run_chain(reduction, extent, chains, chain, c, chain * extent.channels + c, chains * extent.channels, 0, 0, 0,
            chain_sums);
}

// A warp per channel: lane l adds the channel's chain sums l, l + 32, ... in sequence, the
// lanes' totals combine by warp_sum, and lane 0 finishes the channel.
template <typename Reduction>
__global__ void chain_finish_kernel(Reduction reduction, std::int64_t channels, std::int64_t chains,
                                    const double* chain_sums) {
  const std::int64_t c = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize;
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  if (c >= channels) return;  // the whole warp
  double sums[Reduction::kSums];
  STRATA_UNROLL
  for (int s = 0; s < Reduction::kSums; ++s) {
    const double* channel_sums = chain_sums + (s * channels + c) * chains;
    double lane_total = 0.0;
    for (std::int64_t chain = lane; chain < chains; chain += kWarpSize) lane_total += channel_sums[chain];
    sums[s] = warp_sum(lane_total);
  }
  if (lane == 0) reduction.finish(reduction.channel(c), c, sums);
}

// Runs reduction over extent's channels; name names the launches.
template <typename Reduction>
void launch(const Reduction& reduction, const Extent& extent, cudaStream_t stream, const char* name) {
  const std::int64_t chains = chains_for(extent.channels, extent.count());
  // Doubles, in an i64 tensor (Strata has no f64 dtype); stream-ordered, freed after use.
  Tensor chain_sums = Tensor::empty({Reduction::kSums, extent.channels, chains}, DType::i64, stream);
  auto* sums = static_cast<double*>(chain_sums.memory_ptr());
  if (extent.channels_last) {
    const auto tiles = static_cast<unsigned>(ceil_div(extent.channels, static_cast<std::int64_t>(kTileChannels)));
    strata::launch(channels_last_chain_sums_kernel<Reduction>,
                   LaunchConfig{.grid = dim3(tiles, static_cast<unsigned>(chains / kTileChains)),
                                .block = kTileThreads,
                                .stream = stream,
                                .name = name},
                   reduction, extent, chains, sums);
  } else {
    strata::launch(contiguous_chain_sums_kernel<Reduction>,
                   LaunchConfig{.grid = dim3(static_cast<unsigned>(extent.channels),
                                             static_cast<unsigned>(chains / kContiguousThreads)),
                                .block = kContiguousThreads,
                                .stream = stream,
                                .name = name},
                   reduction, extent, chains, sums);
  }
  constexpr int kFinishThreads = 256;
  const auto finish_blocks =
      static_cast<unsigned>(ceil_div(extent.channels * kWarpSize, static_cast<std::int64_t>(kFinishThreads)));
  strata::launch(chain_finish_kernel<Reduction>,
                 LaunchConfig{.grid = finish_blocks, .block = kFinishThreads, .stream = stream, .name = name},
                 reduction, extent.channels, chains, static_cast<const double*>(sums));
}

}  // namespace strata::kernels::channel_reduction
