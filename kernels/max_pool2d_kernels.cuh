// The kernels of max_pool2d and adaptive_max_pool2d, which differ only in how an output
// maps to its window of inputs (fixed, dilated windows or PyTorch's adaptive bins). A
// Windows policy supplies that mapping:
//   static IndexRange rows(const PoolGeometry&, int64 oh), cols(..., ow)   the window
//   static int64 row_step(const PoolGeometry&), col_step(...)             tap spacing
//   static IndexRange rows_covering(const PoolGeometry&, int64 h), cols_covering(..., w)
//                                       the outputs whose windows may contain input (h, w)
// The element type T is float, __half or __nv_bfloat16: values are compared in float (exact:
// every f16/bf16 value is a float), so y is a copy of an input element in any dtype; the
// backward sums dL_dy in float and rounds once. The forward has a second form that also
// computes the per-channel statistics of y for batch norm (channel_stats.cuh).
//
// Both layouts run these kernels (the geometry's PlaneLayout and the PlaneIndexer of the tensor
// a kernel walks, kernels/plane_indexer.h): a plane's elements are step = 1 (contiguous) or C
// (channels-last) apart, each thread walks the same window in the same order, so y, argmax
// (h * W + w in the input plane either way), dL_dx and the statistics are bit for bit the same
// in both.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/dtype_dispatch.h"
#include "kernels/channel_stats.cuh"
#include "kernels/common.cuh"
#include "kernels/pool2d_windows.cuh"

namespace strata::kernels::pool2d {

// The maximum of one output's window and its index h * W + w in the (H, W) plane.
struct WindowMax {
  float value;
  std::int64_t index;
};

// Scans output (oh, ow)'s window of x_plane (H, W), whose elements are step apart in memory,
// in row-major order: NaN wins, ties keep the first maximum, and an empty window (all padding)
// gives -inf with index -1.
template <typename Windows, typename T>
__device__ WindowMax max_of_window(const T* x_plane, std::int64_t step, const PoolGeometry& geometry, std::int64_t oh,
                                   std::int64_t ow) {
  const std::int64_t in_w = geometry.cols.input;
  const std::int64_t row_step = Windows::row_step(geometry);
  const std::int64_t col_step = Windows::col_step(geometry);
  const IndexRange rows = Windows::rows(geometry, oh);
  const IndexRange cols = Windows::cols(geometry, ow);
  // PyTorch starts from -inf at the first tap, so an all -inf window reports its first tap.
  const bool empty = rows.begin >= rows.end || cols.begin >= cols.end;
  WindowMax best{-INFINITY, empty ? -1 : rows.begin * in_w + cols.begin};
  for (std::int64_t h = rows.begin; h < rows.end; h += row_step) {
    for (std::int64_t w = cols.begin; w < cols.end; w += col_step) {
      const float value = detail::convert_element<float>(x_plane[(h * in_w + w) * step]);
      if (replaces_max(value, best.value)) best = WindowMax{value, h * in_w + w};
    }
  }
  return best;
}

// One thread per output, in y's memory order, scans its window (max_of_window).
template <typename Windows, typename T, typename Index>
__global__ void max_pool2d_forward_kernel(const T* x /* (N, C, H, W), geometry.layout */,
                                          T* y /* (N, C, Ho, Wo), geometry.layout */,
                                          Index* argmax /* (N, C, Ho, Wo) as y, or null */, PoolGeometry geometry,
                                          PlaneIndexer outputs /* y's */) {
  const std::int64_t plane_inputs = geometry.rows.input * geometry.cols.input;
  const std::int64_t count = geometry.planes * geometry.rows.output * geometry.cols.output;
  for (std::int64_t i = global_thread_index(); i < count; i += global_thread_count()) {
    const PlanePixel at = outputs.pixel(i);
    const WindowMax best = max_of_window<Windows>(x + outputs.plane_start(at.plane, plane_inputs),
                                                  outputs.element_step(), geometry, at.row, at.column);
    y[i] = detail::convert_element<T>(best.value);
    if (argmax != nullptr) argmax[i] = static_cast<Index>(best.index);
  }
}

// The forward with per-channel statistics of y (channel_stats.cuh). The outputs of channel c,
// numbered k = n * Ho * Wo + (oh * Wo + ow) over the batch, are cut into chunks of
// values_per_slot; block (slot, c) computes chunk slot of channel c (the same outputs and
// values as max_pool2d_forward_kernel), and writes their shifted sums to that slot of the partials.
// blockDim.x is kMaxPoolStatisticsThreads.
inline constexpr int kMaxPoolStatisticsThreads = 256;

template <typename Windows, typename T, typename Index>
__global__ void __launch_bounds__(kMaxPoolStatisticsThreads)
    max_pool2d_forward_statistics_kernel(const T* x /* (N, C, H, W), geometry.layout */,
                                         T* y /* (N, C, Ho, Wo), geometry.layout */,
                                         Index* argmax /* (N, C, Ho, Wo) as y, or null */, PoolGeometry geometry,
                                         PlaneIndexer outputs /* y's */, std::int64_t values_per_slot,
                                         ChannelPartials partials /* (6, slots, C) */) {
  __shared__ channel_stats::ShiftedSums scratch[kMaxPoolStatisticsThreads];
  const std::int64_t channels = partials.channels;
  const std::int64_t c = blockIdx.x % channels;
  const std::int64_t slot = blockIdx.x / channels;
  const std::int64_t step = outputs.element_step();
  const std::int64_t out_w = geometry.cols.output;
  const std::int64_t plane_inputs = geometry.rows.input * geometry.cols.input;
  const std::int64_t plane_outputs = geometry.rows.output * out_w;
  const std::int64_t channel_outputs = geometry.planes / channels * plane_outputs;
  const std::int64_t begin = slot * values_per_slot;
  const std::int64_t end = begin + values_per_slot < channel_outputs ? begin + values_per_slot : channel_outputs;
  channel_stats::ShiftedSums sums = channel_stats::empty_sums();
  for (std::int64_t k = begin + threadIdx.x; k < end; k += blockDim.x) {
    const PlanePixel at = outputs.channel_pixel(k, c);
    const WindowMax best =
        max_of_window<Windows>(x + outputs.plane_start(at.plane, plane_inputs), step, geometry, at.row, at.column);
    const T stored = detail::convert_element<T>(best.value);
    const std::int64_t i = outputs.plane_start(at.plane, plane_outputs) + (at.row * out_w + at.column) * step;
    y[i] = stored;
    if (argmax != nullptr) argmax[i] = static_cast<Index>(best.index);
    channel_stats::add_value(sums, detail::convert_element<float>(stored));
  }
  sums = channel_stats::combine_block(sums, scratch);
  if (threadIdx.x == 0) channel_stats::store_partial(partials, slot, c, sums);
}

// One thread per input, in dL_dx's memory order, gathers dL_dy from the outputs whose argmax
// is it: no atomics and a fixed summation order, so the result is deterministic.
template <typename Windows, typename T, typename Index>
__global__ void max_pool2d_backward_kernel(const T* dL_dy /* (N, C, Ho, Wo), geometry.layout */,
                                           const Index* argmax /* (N, C, Ho, Wo) as dL_dy */,
                                           T* dL_dx /* (N, C, H, W), geometry.layout */, PoolGeometry geometry,
                                           PlaneIndexer inputs /* dL_dx's */) {
  const std::int64_t step = inputs.element_step();
  const std::int64_t in_w = geometry.cols.input;
  const std::int64_t out_w = geometry.cols.output;
  const std::int64_t plane_inputs = geometry.rows.input * in_w;
  const std::int64_t plane_outputs = geometry.rows.output * out_w;
  const std::int64_t count = geometry.planes * plane_inputs;
  for (std::int64_t i = global_thread_index(); i < count; i += global_thread_count()) {
    const PlanePixel at = inputs.pixel(i);
    const std::int64_t within = at.row * in_w + at.column;  // as argmax stores it
    const IndexRange rows = Windows::rows_covering(geometry, at.row);
    const IndexRange cols = Windows::cols_covering(geometry, at.column);
    const std::int64_t plane_offset = inputs.plane_start(at.plane, plane_outputs);
    float sum = 0.0f;
    for (std::int64_t oh = rows.begin; oh < rows.end; ++oh) {
      for (std::int64_t ow = cols.begin; ow < cols.end; ++ow) {
        const std::int64_t o = plane_offset + (oh * out_w + ow) * step;
        if (static_cast<std::int64_t>(argmax[o]) == within) sum += detail::convert_element<float>(dL_dy[o]);
      }
    }
    dL_dx[i] = detail::convert_element<T>(sum);
  }
}

// The backward where the windows tile both axes (windows_tile): one thread per output, in
// dL_dy's memory order, writes every input of its window, dL_dy where argmax names it and zero
// elsewhere, and in the last row or column of outputs also the inputs past the last window
// (zero: no window holds them). Every input is written once with the gather's value (its sum,
// 0 + dL_dy, so -0 turns +0 there too), for a few index divisions per window instead of per
// input.
template <typename T, typename Index>
__global__ void max_pool2d_backward_tiled_kernel(const T* dL_dy /* (N, C, Ho, Wo), geometry.layout */,
                                                 const Index* argmax /* (N, C, Ho, Wo) as dL_dy */,
                                                 T* dL_dx /* (N, C, H, W), geometry.layout */,
                                                 PoolGeometry geometry, PlaneIndexer outputs /* dL_dy's */) {
  const std::int64_t step = outputs.element_step();
  const std::int64_t in_w = geometry.cols.input;
  const std::int64_t count = geometry.planes * geometry.rows.output * geometry.cols.output;
  for (std::int64_t o = global_thread_index(); o < count; o += global_thread_count()) {
    const PlanePixel at = outputs.pixel(o);
    const IndexRange rows = tiled_inputs(geometry.rows, at.row);
    const IndexRange cols = tiled_inputs(geometry.cols, at.column);
    const std::int64_t winner = static_cast<std::int64_t>(argmax[o]);  // h * W + w
    const float gradient = 0.0f + detail::convert_element<float>(dL_dy[o]);
    T* dL_dx_plane = dL_dx + outputs.plane_start(at.plane, geometry.rows.input * in_w);
    for (std::int64_t h = rows.begin; h < rows.end; ++h) {
      for (std::int64_t w = cols.begin; w < cols.end; ++w) {
        const std::int64_t within = h * in_w + w;
        dL_dx_plane[within * step] = detail::convert_element<T>(within == winner ? gradient : 0.0f);
      }
    }
  }
}

}  // namespace strata::kernels::pool2d
