// The channel of an element of an (N, C, H, W) tensor from its memory index, for the kernels
// that walk a tensor linearly and need each element's per-channel constants (batch norm's
// element-wise passes, the conv epilogue): (index / (H * W)) % C contiguous, index % C
// channels-last, with both divisions set up on the host (IndexDivider).
#pragma once

#include <cuda_runtime_api.h>  // __host__ __device__ in both builds

#include <cstdint>

#include "kernels/index_divider.h"

namespace strata::kernels {

class ChannelIndexer {
 public:
  // Host only. An empty tensor (C or H * W of 0) gets dividers by 1: it has no index to map.
  ChannelIndexer(std::int64_t channels, std::int64_t plane /* H * W */, bool channels_last)
      : channels_(channels > 0 ? channels : 1), plane_(plane > 0 ? plane : 1), channels_last_(channels_last) {}

  __host__ __device__ std::int64_t channel_of(std::int64_t index) const {
    const std::int64_t pixel_or_plane = channels_last_ ? index : plane_.divide(index);
    return channels_.divide_with_remainder(pixel_or_plane).remainder;
  }

 private:
  IndexDivider channels_;
  IndexDivider plane_;
  bool channels_last_;
};

}  // namespace strata::kernels
