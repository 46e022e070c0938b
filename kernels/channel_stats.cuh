// Device code of the per-channel statistics (strata/kernels/channel_stats.h): a channel's
// shifted sums in double, the update by one value, the combination of two, and their
// fixed-order combinations across the lanes of a warp and across a block; the store and load
// of one slot of the (6, slots, C) f32 partials. Every combination runs in an order that
// depends on the thread indices only, so producers and consumers are deterministic.
#pragma once

#include <cstdint>

#include "kernels/channel_stats.h"
#include "kernels/common.cuh"

namespace strata::kernels::channel_stats {

// The statistics of some values of one channel as sums about a shift, one of the values (the
// first added): robust to a mean far from zero, as batch_norm2d's own pass (which shifts by x's
// first value), and free of divisions, whose double slow path would cost the producers'
// kernels registers. An aggregate (no initialisers), so that it may live in __shared__ memory;
// empty_sums() is the statistics of no values.
struct ShiftedSums {
  double count;
  double shift;
  double sum;             // of value - shift
  double sum_of_squares;  // of (value - shift)^2
};

__host__ __device__ inline ShiftedSums empty_sums() { return ShiftedSums{0.0, 0.0, 0.0, 0.0}; }

__host__ __device__ inline void add_value(ShiftedSums& sums, double value) {
  if (sums.count == 0.0) sums.shift = value;
  const double shifted = value - sums.shift;
  sums.count += 1.0;
  sums.sum += shifted;
  sums.sum_of_squares += shifted * shifted;
}

// The sums of two disjoint sets of values, about first's shift: second's sums moved by
// d = second.shift - first.shift (sum + n d, sum of squares + 2 d sum + n d^2). Callers pass
// the lower-indexed part first, so every combination is one fixed order.
__host__ __device__ inline ShiftedSums combine(const ShiftedSums& first, const ShiftedSums& second) {
  if (second.count == 0.0) return first;
  if (first.count == 0.0) return second;
  const double d = second.shift - first.shift;
  return ShiftedSums{first.count + second.count, first.shift, first.sum + second.sum + second.count * d,
                     first.sum_of_squares + second.sum_of_squares + d * (2.0 * second.sum + second.count * d)};
}

// The sums of aligned groups of kLanes lanes (a power of two, at most 32) combined by a
// butterfly: every lane of a group gets the same, the group's sums. All 32 lanes call it.
template <int kLanes>
__device__ __forceinline__ ShiftedSums combine_lanes(ShiftedSums sums) {
  static_assert(kLanes >= 1 && kLanes <= kWarpSize && (kLanes & (kLanes - 1)) == 0, "a power of two up to 32");
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  for (int offset = kLanes / 2; offset > 0; offset /= 2) {
    const ShiftedSums other{__shfl_xor_sync(0xffffffffu, sums.count, offset),
                            __shfl_xor_sync(0xffffffffu, sums.shift, offset),
                            __shfl_xor_sync(0xffffffffu, sums.sum, offset),
                            __shfl_xor_sync(0xffffffffu, sums.sum_of_squares, offset)};
    sums = (lane & offset) == 0 ? combine(sums, other) : combine(other, sums);
  }
  return sums;
}

// The sums of the whole block (blockDim.x a power of two), combined as a binary tree over the
// thread indices in scratch (blockDim.x entries in shared memory); every thread gets them.
__device__ inline ShiftedSums combine_block(ShiftedSums sums, ShiftedSums* scratch) {
  const int tid = static_cast<int>(threadIdx.x);
  __syncthreads();  // scratch may still be read from a previous call
  scratch[tid] = sums;
  __syncthreads();
  for (int stride = static_cast<int>(blockDim.x) / 2; stride > 0; stride /= 2) {
    if (tid < stride) scratch[tid] = combine(scratch[tid], scratch[tid + stride]);
    __syncthreads();
  }
  return scratch[0];
}

// value as two floats, hi + lo: about 48 bits, so that a slot's sums lose nothing that matters
// to the variance even when the shift lies far from the slot's mean.
__device__ inline void store_split(float* hi, float* lo, double value) {
  *hi = static_cast<float>(value);
  *lo = static_cast<float>(value - static_cast<double>(*hi));
}

// Slot slot of channel c: count, shift (both exact in float), sum and sum of squares as hi + lo.
__device__ inline void store_partial(const ChannelPartials& partials, std::int64_t slot, std::int64_t c,
                                     const ShiftedSums& sums) {
  const std::int64_t row = partials.slots * partials.channels;
  float* at = partials.data + slot * partials.channels + c;
  at[0] = static_cast<float>(sums.count);
  at[row] = static_cast<float>(sums.shift);
  store_split(at + 2 * row, at + 3 * row, sums.sum);
  store_split(at + 4 * row, at + 5 * row, sums.sum_of_squares);
}

__device__ inline ShiftedSums load_partial(const ChannelPartials& partials, std::int64_t slot, std::int64_t c) {
  const std::int64_t row = partials.slots * partials.channels;
  const float* at = partials.data + slot * partials.channels + c;
  return ShiftedSums{at[0], at[row], static_cast<double>(at[2 * row]) + static_cast<double>(at[3 * row]),
                     static_cast<double>(at[4 * row]) + static_cast<double>(at[5 * row])};
}

}  // namespace strata::kernels::channel_stats
