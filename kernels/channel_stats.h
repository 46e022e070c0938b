// The internal side of ChannelStatistics (strata/kernels/channel_stats.h): the raw view of
// the partials that producer and consumer kernels take, and the host checks that give a
// producer its workspace and let a consumer accept one. Host code, both builds; the device
// code is channel_stats.cuh.
#pragma once

#include <cstdint>
#include <string_view>

#include <cuda_runtime_api.h>

#include "strata/kernels/channel_stats.h"

namespace strata::kernels {

// partials (6, slots, C) f32 as a kernel sees it; data null when no statistics are wanted.
struct ChannelPartials {
  float* data;
  std::int64_t slots;
  std::int64_t channels;
};

// The partials of nobody: a producer's kernels skip the statistics.
inline ChannelPartials no_channel_partials() { return ChannelPartials{nullptr, 0, 0}; }

// For a producer with slots slots over channels channels: allocates statistics->partials
// (6, slots, C) when undefined, else checks that it is an f32 device tensor of that shape
// (InvalidArgument naming op and both shapes). statistics null: no_channel_partials().
ChannelPartials prepare_channel_statistics(ChannelStatistics* statistics, std::int64_t slots,
                                           std::int64_t channels, std::string_view op, cudaStream_t stream);

// For a consumer over channels channels: statistics.partials must be an f32 device tensor
// (6, slots, C) with slots >= 1 (InvalidArgument naming op otherwise).
ChannelPartials expect_channel_statistics(const ChannelStatistics& statistics, std::int64_t channels,
                                          std::string_view op);

}  // namespace strata::kernels
