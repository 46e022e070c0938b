// The kernels of avg_pool2d and adaptive_avg_pool2d, which differ only in how an output maps
// to its window of inputs (fixed windows with padding, or PyTorch's adaptive bins) and in
// how a window's sum is divided. A Windows policy, passed by value since avg_pool2d's divisor
// rule is a runtime argument, supplies both, one spatial axis at a time:
//   AvgWindow window(const PoolAxis&, int64 o)          the inputs output o averages
//   IndexRange covering(const PoolAxis&, int64 i)       the outputs whose windows hold input i
//   float average(float sum, const AvgWindow& rows, const AvgWindow& cols)   sum / divisor
// average does its own division so that each op rounds as PyTorch does (one division by a
// count, or by the bin's height and then its width). The element type T is float, __half or
// __nv_bfloat16: sums and divisions run in float and the result is rounded once to T.
// Both layouts run these kernels (the geometry's PlaneLayout and the PlaneIndexer of the tensor
// a kernel walks, kernels/plane_indexer.h), each thread summing the same window in the same
// order: bit for bit the same results in either.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <type_traits>

#include "core/dtype_dispatch.h"
#include "core/elementwise_map.cuh"
#include "kernels/common.cuh"
#include "kernels/pool2d_windows.cuh"
#include "strata/core/tensor.h"

namespace strata::kernels::pool2d {

// One thread per output, in y's memory order, sums its window in row-major order.
template <typename Windows, typename T>
__global__ void avg_pool2d_forward_kernel(const T* x /* (N, C, H, W), geometry.layout */,
                                          T* y /* (N, C, Ho, Wo), geometry.layout */, PoolGeometry geometry,
                                          PlaneIndexer outputs /* y's */, Windows windows) {
  const std::int64_t step = outputs.element_step();
  const std::int64_t in_w = geometry.cols.input;
  const std::int64_t plane_inputs = geometry.rows.input * in_w;
  const std::int64_t count = geometry.planes * geometry.rows.output * geometry.cols.output;
  for (std::int64_t i = global_thread_index(); i < count; i += global_thread_count()) {
    const PlanePixel at = outputs.pixel(i);
    const AvgWindow rows = windows.window(geometry.rows, at.row);
    const AvgWindow cols = windows.window(geometry.cols, at.column);
    const T* x_plane = x + outputs.plane_start(at.plane, plane_inputs);  // (H, W), elements step apart
    float sum = 0.0f;
    for (std::int64_t h = rows.inputs.begin; h < rows.inputs.end; ++h) {
      for (std::int64_t w = cols.inputs.begin; w < cols.inputs.end; ++w) {
        sum += detail::convert_element<float>(x_plane[(h * in_w + w) * step]);
      }
    }
    y[i] = detail::convert_element<T>(windows.average(sum, rows, cols));
  }
}

// One thread per input, in dL_dx's memory order, gathers dL_dy / divisor from the outputs
// whose windows hold it: no atomics and a fixed summation order, so the result is
// deterministic.
template <typename Windows, typename T>
__global__ void avg_pool2d_backward_kernel(const T* dL_dy /* (N, C, Ho, Wo), geometry.layout */,
                                           T* dL_dx /* (N, C, H, W), geometry.layout */, PoolGeometry geometry,
                                           PlaneIndexer inputs /* dL_dx's */, Windows windows) {
  const std::int64_t step = inputs.element_step();
  const std::int64_t out_w = geometry.cols.output;
  const std::int64_t plane_outputs = geometry.rows.output * out_w;
  const std::int64_t count = geometry.planes * geometry.rows.input * geometry.cols.input;
  for (std::int64_t i = global_thread_index(); i < count; i += global_thread_count()) {
    const PlanePixel at = inputs.pixel(i);
    const IndexRange out_rows = windows.covering(geometry.rows, at.row);
    const IndexRange out_cols = windows.covering(geometry.cols, at.column);
    const T* dL_dy_plane = dL_dy + inputs.plane_start(at.plane, plane_outputs);  // (Ho, Wo), elements step apart
    float sum = 0.0f;
    for (std::int64_t oh = out_rows.begin; oh < out_rows.end; ++oh) {
      const AvgWindow rows = windows.window(geometry.rows, oh);
      for (std::int64_t ow = out_cols.begin; ow < out_cols.end; ++ow) {
        const AvgWindow cols = windows.window(geometry.cols, ow);
        sum += windows.average(detail::convert_element<float>(dL_dy_plane[(oh * out_w + ow) * step]), rows, cols);
      }
    }
    dL_dx[i] = detail::convert_element<T>(sum);
  }
}

inline constexpr int kAvgPoolThreadsPerBlock = 256;

inline LaunchConfig avg_pool2d_launch_config(std::int64_t threads, cudaStream_t stream, const char* op) {
  return LaunchConfig{.grid = grid_stride_blocks(threads, kAvgPoolThreadsPerBlock), .block = kAvgPoolThreadsPerBlock,
                      .stream = stream, .name = op};
}

// The launches of the checked launchers, op naming them: y from x, dL_dx from dL_dy, where
// geometry is of x's (dL_dx's) shape, in the tensors' dtype (f32, f16 or bf16).
template <typename Windows>
void launch_avg_pool2d_forward(const char* op, const Tensor& x, Tensor& y, const PoolGeometry& geometry,
                               const Windows& windows, cudaStream_t stream) {
  if (y.numel() == 0) return;
  detail::dispatch_floating_dtype(x.dtype(), op, [&]<typename T>(std::type_identity<T>) {
    launch(avg_pool2d_forward_kernel<Windows, T>, avg_pool2d_launch_config(y.numel(), stream, op), memory_elements<T>(x),
           memory_elements<T>(y), geometry, output_indexer(geometry), windows);
  });
}

template <typename Windows>
void launch_avg_pool2d_backward(const char* op, const Tensor& dL_dy, Tensor& dL_dx, const PoolGeometry& geometry,
                                const Windows& windows, cudaStream_t stream) {
  if (dL_dx.numel() == 0) return;
  detail::dispatch_floating_dtype(dL_dx.dtype(), op, [&]<typename T>(std::type_identity<T>) {
    launch(avg_pool2d_backward_kernel<Windows, T>, avg_pool2d_launch_config(dL_dx.numel(), stream, op),
           memory_elements<T>(dL_dy), memory_elements<T>(dL_dx), geometry, input_indexer(geometry), windows);
  });
}

}  // namespace strata::kernels::pool2d
