// Per-channel sums in double over the count = N * H * W values of each channel of an
// activation, in one fixed order whatever its layout: kChains chains per channel, chain t
// adding values k = t, t + kChains, ... in sequence, then the chains combined as block_sum
// combines a block's threads (a butterfly within each warp of 32 chains, then one over the 8
// warp totals). Deterministic, accurate, and the same bits in both layouts:
//
// - contiguous (N, C, H, W): one block per channel, thread t running chain t, then block_sum;
//   a warp's loads are neighbouring values of one channel.
// - channels-last (N, H, W, C), where a channel's values are C apart: blocks of 32 channels x
//   32 chains, neighbouring threads on neighbouring channels at the same k, so that each warp's
//   loads are coalesced; the chains of a warp's worth pass through shared memory to the warp
//   that runs block_sum's butterfly on them, and a second kernel combines each channel's 8
//   warp totals as block_sum's last step does. The same operations on the same values.
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

constexpr int kChains = 256;                             // per channel: the per-channel kernel's threads
constexpr int kWarpsOfChains = kChains / kWarpSize;      // block_sum's warp totals per channel
constexpr int kTileChannels = kWarpSize;                 // channels-last: channels per block
constexpr int kTileThreads = kTileChannels * kWarpSize;  // 32 channels x 32 chains

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

// Channels-last, first step: block (x, y) runs chains y * 32 + threadIdx.x / 32 of channels
// x * 32 + threadIdx.x % 32, then each warp w takes channel x * 32 + w, its lane l chain
// y * 32 + l (as thread y * 32 + l of the per-channel kernel), and its warp_sum is block_sum's
// warp total y of that channel: warp_totals (kSums, kWarpsOfChains, channels).
template <typename Reduction>
__global__ void __launch_bounds__(kTileThreads)
    chain_warp_totals_kernel(Reduction reduction, std::int64_t channels, std::int64_t count, double* warp_totals) {
  constexpr int kSums = Reduction::kSums;
  __shared__ double chain_sums[kSums][kWarpSize][kTileChannels + 1];  // [sum][chain of the warp][channel]
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const int row = static_cast<int>(threadIdx.x) / kWarpSize;
  const std::int64_t first_channel = static_cast<std::int64_t>(blockIdx.x) * kTileChannels;
  const std::int64_t c = first_channel + lane;
  double sums[kSums] = {};
  if (c < channels) {
    const typename Reduction::Channel channel = reduction.channel(c);
    for (std::int64_t k = blockIdx.y * kWarpSize + row; k < count; k += kChains) reduction.add(channel, k, c, sums);
  }
  STRATA_UNROLL
  for (int s = 0; s < kSums; ++s) chain_sums[s][row][lane] = sums[s];
  __syncthreads();
  const std::int64_t warp_channel = first_channel + row;
  STRATA_UNROLL
  for (int s = 0; s < kSums; ++s) {
    const double total = warp_sum(chain_sums[s][lane][row]);
    if (lane == 0 && warp_channel < channels) {
      warp_totals[(s * kWarpsOfChains + blockIdx.y) * channels + warp_channel] = total;
    }
  }
}

// Channels-last, second step: a warp per channel adds its warp totals as block_sum's last
// step does (lane l < kWarpsOfChains holds total l, the others zero) and finishes it.
template <typename Reduction>
__global__ void chain_finish_kernel(Reduction reduction, std::int64_t channels, const double* warp_totals) {
  const std::int64_t c = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize;
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  if (c >= channels) return;  // the whole warp
  double sums[Reduction::kSums];
  STRATA_UNROLL
  for (int s = 0; s < Reduction::kSums; ++s) {
    sums[s] = warp_sum(lane < kWarpsOfChains ? warp_totals[(s * kWarpsOfChains + lane) * channels + c] : 0.0);
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
  Tensor warp_totals = Tensor::empty({Reduction::kSums, kWarpsOfChains, channels}, DType::i64, stream);
  auto* totals = static_cast<double*>(warp_totals.memory_ptr());
  const auto tiles = static_cast<unsigned>(ceil_div(channels, static_cast<std::int64_t>(kTileChannels)));
  strata::launch(chain_warp_totals_kernel<Reduction>,
                 LaunchConfig{.grid = dim3(tiles, kWarpsOfChains), .block = kTileThreads, .stream = stream,
                              .name = name},
                 reduction, channels, count, totals);
  constexpr int kFinishThreads = 256;
  const auto finish_blocks =
      static_cast<unsigned>(ceil_div(channels * kWarpSize, static_cast<std::int64_t>(kFinishThreads)));
  strata::launch(chain_finish_kernel<Reduction>,
                 LaunchConfig{.grid = finish_blocks, .block = kFinishThreads, .stream = stream, .name = name},
                 reduction, channels, static_cast<const double*>(totals));
}

}  // namespace strata::kernels::channel_reduction
