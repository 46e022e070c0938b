// The kernels of max_pool2d and adaptive_max_pool2d, which differ only in how an output
// maps to its window of inputs (fixed, dilated windows or PyTorch's adaptive bins). A
// Windows policy supplies that mapping:
//   static IndexRange rows(const PoolGeometry&, int64 oh), cols(..., ow)   the window
//   static int64 row_step(const PoolGeometry&), col_step(...)             tap spacing
//   static IndexRange rows_covering(const PoolGeometry&, int64 h), cols_covering(..., w)
//                                       the outputs whose windows may contain input (h, w)
// The element type T is float, __half or __nv_bfloat16: values are compared in float (exact:
// every f16/bf16 value is a float), so y is a copy of an input element in any dtype; the
// backward sums dL_dy in float and rounds once.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/dtype_dispatch.h"
#include "kernels/common.cuh"
#include "kernels/pool2d_windows.cuh"

namespace strata::kernels::pool2d {

// One thread per output scans its window in row-major order: NaN wins, ties keep the first
// maximum, and an empty window (all padding) gives -inf with index -1.
template <typename Windows, typename T, typename Index>
__global__ void max_pool2d_forward_kernel(const T* x /* (planes, H, W) */, T* y /* (planes, Ho, Wo) */,
                                          Index* argmax /* (planes, Ho, Wo), or null */, PoolGeometry geometry) {
  const std::int64_t in_w = geometry.cols.input;
  const std::int64_t out_w = geometry.cols.output;
  const std::int64_t plane_inputs = geometry.rows.input * in_w;
  const std::int64_t plane_outputs = geometry.rows.output * out_w;
  const std::int64_t count = geometry.planes * plane_outputs;
  const std::int64_t row_step = Windows::row_step(geometry);
  const std::int64_t col_step = Windows::col_step(geometry);
  for (std::int64_t i = global_thread_index(); i < count; i += global_thread_count()) {
    const std::int64_t plane = i / plane_outputs;
    const std::int64_t oh = (i - plane * plane_outputs) / out_w;
    const std::int64_t ow = i - plane * plane_outputs - oh * out_w;
    const IndexRange rows = Windows::rows(geometry, oh);
    const IndexRange cols = Windows::cols(geometry, ow);
    const T* x_plane = x + plane * plane_inputs;  // (H, W)
    // PyTorch starts from -inf at the first tap, so an all -inf window reports its first tap.
    float best = -INFINITY;
    const bool empty = rows.begin >= rows.end || cols.begin >= cols.end;
    std::int64_t best_index = empty ? -1 : rows.begin * in_w + cols.begin;
    for (std::int64_t h = rows.begin; h < rows.end; h += row_step) {
      for (std::int64_t w = cols.begin; w < cols.end; w += col_step) {
        const float value = detail::convert_element<float>(x_plane[h * in_w + w]);
        if (replaces_max(value, best)) {
          best = value;
          best_index = h * in_w + w;
        }
      }
    }
    y[i] = detail::convert_element<T>(best);
    if (argmax != nullptr) argmax[i] = static_cast<Index>(best_index);
  }
}

// One thread per input gathers dL_dy from the outputs whose argmax is it: no atomics and a
// fixed summation order, so the result is deterministic.
template <typename Windows, typename T, typename Index>
__global__ void max_pool2d_backward_kernel(const T* dL_dy /* (planes, Ho, Wo) */,
                                           const Index* argmax /* (planes, Ho, Wo) */,
                                           T* dL_dx /* (planes, H, W) */, PoolGeometry geometry) {
  const std::int64_t in_w = geometry.cols.input;
  const std::int64_t out_w = geometry.cols.output;
  const std::int64_t plane_inputs = geometry.rows.input * in_w;
  const std::int64_t plane_outputs = geometry.rows.output * out_w;
  const std::int64_t count = geometry.planes * plane_inputs;
  for (std::int64_t i = global_thread_index(); i < count; i += global_thread_count()) {
    const std::int64_t plane = i / plane_inputs;
    const std::int64_t within = i - plane * plane_inputs;  // h * W + w, as argmax stores it
    const std::int64_t h = within / in_w;
    const std::int64_t w = within - h * in_w;
    const IndexRange rows = Windows::rows_covering(geometry, h);
    const IndexRange cols = Windows::cols_covering(geometry, w);
    const std::int64_t plane_offset = plane * plane_outputs;
    float sum = 0.0f;
    for (std::int64_t oh = rows.begin; oh < rows.end; ++oh) {
      for (std::int64_t ow = cols.begin; ow < cols.end; ++ow) {
        const std::int64_t o = plane_offset + oh * out_w + ow;
        if (static_cast<std::int64_t>(argmax[o]) == within) sum += detail::convert_element<float>(dL_dy[o]);
      }
    }
    dL_dx[i] = detail::convert_element<T>(sum);
  }
}

}  // namespace strata::kernels::pool2d
