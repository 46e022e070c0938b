// Per-channel sums in double over the count = N * H * W values of each channel of an
// activation, in one fixed order whatever its layout: kChains chains per channel, chain t
// adding values k = t, t + kChains, ... in sequence, then the chains combined as block_sum
// combines a block's threads (a butterfly within each warp of 32 chains, then one over the 8
// warp totals). Deterministic, accurate, and the same bits in both layouts:
//
// - contiguous (N, C, H, W): one block per channel, thread t running chain t, then block_sum;
//   a warp's loads are neighbouring values of one channel.
// - channels-last (N, H, W, C), where a channel's values are C apart: blocks of 32 channels x
//   8 chains, neighbouring threads on neighbouring channels at the same k, so that each warp's
//   loads are coalesced, and 32 such blocks per 32 channels (channels * 256 threads in all,
//   spread over many multiprocessors even for few channels); each chain's sum goes to global
//   memory, and a second kernel runs block_sum's two butterflies on a channel's 256 chain sums
//   with one warp: the same operations on the same values.
//
// A Reduction (passed by value to the kernels) provides
//   static constexpr int kSums;                  // sums per channel
//   struct Channel;                              // per-channel constants
//   Channel channel(std::int64_t c) const;
//   void add(const Channel&, std::int64_t k, std::int64_t c, double (&sums)[kSums]) const;
//   void finish(const Channel&, std::int64_t c, const double (&sums)[kSums]) const;
// where add adds value k of channel c (k in the contiguous order n * H * W + h * W + w) and
// finish stores the channel's totals.
#pragma once

#include <cstdint>

#include "core/launch.cuh"
#include "kernels/common.cuh"
#include "strata/core/tensor.h"

namespace strata::kernels::channel_reduction {

constexpr int kChains = 256;                         // per channel: the per-channel kernel's threads
constexpr int kWarpsOfChains = kChains / kWarpSize;  // block_sum's warp totals per channel
constexpr int kTileChannels = kWarpSize;             // channels-last: channels per block
constexpr int kTileChains = 8;                       // channels-last: chains per block
constexpr int kTileThreads = kTileChannels * kTileChains;

// Contiguous: block c runs chain threadIdx.x of channel c.
template <typename Reduction>
__global__ void __launch_bounds__(kChains) per_channel_kernel(Reduction reduction, std::int64_t count) {
  __shared__ double scratch[kWarpSize];
  const std::int64_t c = blockIdx.x;
  const typename Reduction::Channel channel = reduction.channel(c);
  double sums[Reduction::kSums] = {};
  // A chain's adds are sequential; unrolled, its loads are not.
  STRATA_UNROLL_BY(4)
  for (std::int64_t k = threadIdx.x; k < count; k += kChains) reduction.add(channel, k, c, sums);
  STRATA_UNROLL
  for (int s = 0; s < Reduction::kSums; ++s) sums[s] = block_sum(sums[s], scratch);
  if (threadIdx.x == 0) reduction.finish(channel, c, sums);
}

// Channels-last, first step: block (x, y) runs chains y * 8 + threadIdx.x / 32 of channels
// x * 32 + threadIdx.x % 32 and stores each chain's sums: chain_sums (kSums, kChains, channels).
template <typename Reduction>
__global__ void __launch_bounds__(kTileThreads)
    chain_sums_kernel(Reduction reduction, std::int64_t channels, std::int64_t count, double* chain_sums) {
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const std::int64_t chain = static_cast<std::int64_t>(blockIdx.y) * kTileChains + threadIdx.x / kWarpSize;
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * kTileChannels + lane;
  if (c >= channels) return;
  const typename Reduction::Channel channel = reduction.channel(c);
  double sums[Reduction::kSums] = {};
  STRATA_UNROLL_BY(4)
  for (std::int64_t k = chain; k < count; k += kChains) reduction.add(channel, k, c, sums);
  STRATA_UNROLL
  for (int s = 0; s < Reduction::kSums; ++s) chain_sums[(s * kChains + chain) * channels + c] = sums[s];
}

// Channels-last, second step: a warp per channel runs block_sum on its chain sums: the warp
// sum of chains 32 w + lane for each warp w of the per-channel kernel, then the warp sum of
// those 8 totals (lane l < kWarpsOfChains holding total l, the others zero), and finishes it.
template <typename Reduction>
__global__ void chain_finish_kernel(Reduction reduction, std::int64_t channels, const double* chain_sums) {
  const std::int64_t c = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize;
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  if (c >= channels) return;  // the whole warp
  double sums[Reduction::kSums];
  STRATA_UNROLL
  for (int s = 0; s < Reduction::kSums; ++s) {
    double warp_total = 0.0;  // lane w: warp w's total
    STRATA_UNROLL
    for (int w = 0; w < kWarpsOfChains; ++w) {
      const double total = warp_sum(chain_sums[(s * kChains + w * kWarpSize + lane) * channels + c]);
      if (lane == w) warp_total = total;
    }
    sums[s] = warp_sum(warp_total);
  }
  if (lane == 0) reduction.finish(reduction.channel(c), c, sums);
}

// Runs reduction over `channels` channels of `count` values each, stored channels-last or
// not; name names the launches.
template <typename Reduction>
void launch(const Reduction& reduction, std::int64_t channels, std::int64_t count, bool channels_last,
            cudaStream_t stream, const char* name) {
  if (!channels_last) {
    strata::launch(per_channel_kernel<Reduction>,
                   LaunchConfig{.grid = static_cast<unsigned>(channels), .block = kChains, .stream = stream,
                                .name = name},
                   reduction, count);
    return;
  }
  // Doubles, in an i64 tensor (Strata has no f64 dtype); stream-ordered, freed after use.
  Tensor chain_sums = Tensor::empty({Reduction::kSums, kChains, channels}, DType::i64, stream);
  auto* sums = static_cast<double*>(chain_sums.memory_ptr());
  const auto tiles = static_cast<unsigned>(ceil_div(channels, static_cast<std::int64_t>(kTileChannels)));
  strata::launch(chain_sums_kernel<Reduction>,
                 LaunchConfig{.grid = dim3(tiles, kChains / kTileChains), .block = kTileThreads, .stream = stream,
                              .name = name},
                 reduction, channels, count, sums);
  constexpr int kFinishThreads = 256;
  const auto finish_blocks =
      static_cast<unsigned>(ceil_div(channels * kWarpSize, static_cast<std::int64_t>(kFinishThreads)));
  strata::launch(chain_finish_kernel<Reduction>,
                 LaunchConfig{.grid = finish_blocks, .block = kFinishThreads, .stream = stream, .name = name},
                 reduction, channels, static_cast<const double*>(sums));
}

}  // namespace strata::kernels::channel_reduction
