// The plan of the per-channel sums (kernels/channel_reduction.cuh): an activation's extent and
// the number of chains each channel's values are split into. Host and device code, both builds.
#pragma once

#include <cuda_runtime_api.h>  // __host__ __device__ in both builds

#include <cstdint>

namespace strata::kernels::channel_reduction {

// The activation's extent: batch * plane values per channel, stored channels-last or not.
struct Extent {
  std::int64_t batch;
  std::int64_t channels;
  std::int64_t plane;  // H * W
  bool channels_last;

  __host__ __device__ std::int64_t count() const { return batch * plane; }
};

constexpr std::int64_t kMinChains = 256;
constexpr std::int64_t kMaxChains = 8192;
constexpr std::int64_t kTargetThreads = std::int64_t{1} << 18;  // about 2 x (132 SMs x 2048 threads)
constexpr std::int64_t kMinValuesPerChain = 32;

// P, the chains per channel, from the shape only: a power of two, kMinChains <= P <=
// kMaxChains, doubled while channels * 2P <= kTargetThreads and count >= 2P * kMinValuesPerChain.
constexpr std::int64_t chains_for(std::int64_t channels, std::int64_t count) {
  std::int64_t chains = kMinChains;
  while (chains < kMaxChains && channels * chains * 2 <= kTargetThreads &&
         count >= chains * 2 * kMinValuesPerChain) {
    chains *= 2;
  }
  return chains;
}

}  // namespace strata::kernels::channel_reduction
