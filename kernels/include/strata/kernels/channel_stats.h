// Per-channel statistics that a producer (conv2d_forward, max_pool2d_forward) computes while
// it writes its output y (N, C, H, W), so that training-mode batch norm on y (batch_norm2d,
// batch_norm2d_activation) reads y once, to normalise it, instead of twice.
//
// The producer's blocks each cover a part of some channels; every block writes, for each
// channel it wrote, the partial statistics of its values into its own fixed slot:
//   partials (6, slots, C) f32, row q of slot s, channel c:
//     q = 0     count of values
//     q = 1     shift: one of the values (exact)
//     q = 2, 3  the sum of value - shift, as hi + lo (two floats, about 48 bits)
//     q = 4, 5  the sum of (value - shift)^2, as hi + lo
// Sums about a value of the channel itself keep the variance's digits when the mean is far
// from zero, as batch_norm2d's own pass over x does (it shifts by x's first value). Each block
// adds in double and combines its threads' sums in a fixed order. The consumer moves every slot's sums to the first slot's shift and adds them in double
// in a fixed order: deterministic, no atomics. The values are those of y as stored, after
// rounding to y's dtype (f32, f16, bf16), so the statistics are what batch norm computes from
// y itself up to the summation order (docs/kernels.md). The partials are per (slot, channel),
// whatever y's memory format: max_pool2d's slots cover the same outputs in the same order in
// either layout, so a channels-last y gives the same partials bit for bit.
//
//   ChannelStatistics stats;                       // partials allocated by the producer
//   conv2d_forward(x, weight, bias, y, params, stream, &stats);
//   batch_norm2d_forward_training(y, w, b, running, z, saved, bn_params, stream, &stats);
#pragma once

#include <cstdint>

#include "strata/core/shape.h"
#include "strata/core/tensor.h"

namespace strata::kernels {

// Rows of ChannelStatistics::partials: count, shift, sum (hi, lo), sum of squares (hi, lo).
inline constexpr std::int64_t kChannelStatisticsRows = 6;

struct ChannelStatistics {
  // (6, slots, C) f32 device tensor. A producer allocates it when undefined; when defined it
  // must already have the producer's shape (a workspace reused between steps), and every
  // element is overwritten.
  Tensor partials{};
};

// The shape of partials for slots slots of channels channels: (6, slots, C).
inline Shape channel_statistics_shape(std::int64_t slots, std::int64_t channels) {
  return Shape{kChannelStatisticsRows, slots, channels};
}

}  // namespace strata::kernels
