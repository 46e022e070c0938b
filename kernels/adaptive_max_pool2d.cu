// adaptive_max_pool2d forward and backward with PyTorch's bins (pool2d_windows.cuh). The
// forward gives each output element one thread, which scans its bin in row-major order; the
// backward gives each input element one thread, which gathers dL_dy from the bins that
// contain it and whose argmax is it: no atomics, a fixed summation order, deterministic.
#include <cmath>
#include <cstdint>

#include "core/nvtx.h"
#include "kernels/common.cuh"
#include "kernels/pool2d_windows.cuh"
#include "kernels/tensor_checks.h"
#include "strata/kernels/adaptive_pool2d.h"

namespace strata::kernels {

namespace {

using pool2d::IndexRange;
using pool2d::PoolGeometry;

constexpr int kThreadsPerBlock = 256;

template <typename T, typename Index>
__global__ void adaptive_max_pool2d_forward_kernel(const T* x /* (planes, H, W) */, T* y /* (planes, Ho, Wo) */,
                                                   Index* argmax /* (planes, Ho, Wo), or null */,
                                                   PoolGeometry geometry) {
  const std::int64_t in_w = geometry.cols.input;
  const std::int64_t out_w = geometry.cols.output;
  const std::int64_t plane_inputs = geometry.rows.input * in_w;
  const std::int64_t plane_outputs = geometry.rows.output * out_w;
  const std::int64_t count = geometry.planes * plane_outputs;
  for (std::int64_t i = global_thread_index(); i < count; i += global_thread_count()) {
    const std::int64_t plane = i / plane_outputs;
    const std::int64_t oh = (i - plane * plane_outputs) / out_w;
    const std::int64_t ow = i - plane * plane_outputs - oh * out_w;
    // Bins are never empty: each holds at least one row and one column.
    const IndexRange rows = pool2d::adaptive_bin(oh, geometry.rows.input, geometry.rows.output);
    const IndexRange cols = pool2d::adaptive_bin(ow, geometry.cols.input, geometry.cols.output);
    const T* x_plane = x + plane * plane_inputs;  // (H, W)
    float best = -INFINITY;
    std::int64_t best_index = rows.begin * in_w + cols.begin;  // PyTorch's choice for an all -inf bin
    for (std::int64_t h = rows.begin; h < rows.end; ++h) {
      for (std::int64_t w = cols.begin; w < cols.end; ++w) {
        const float value = static_cast<float>(x_plane[h * in_w + w]);
        if (pool2d::replaces_max(value, best)) {
          best = value;
          best_index = h * in_w + w;
        }
      }
    }
    y[i] = static_cast<T>(best);
    if (argmax != nullptr) argmax[i] = static_cast<Index>(best_index);
  }
}

template <typename T, typename Index>
__global__ void adaptive_max_pool2d_backward_kernel(const T* dL_dy /* (planes, Ho, Wo) */,
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
    const IndexRange out_rows = pool2d::bins_containing(h, geometry.rows.input, geometry.rows.output);
    const IndexRange out_cols = pool2d::bins_containing(w, geometry.cols.input, geometry.cols.output);
    const std::int64_t plane_offset = plane * plane_outputs;
    float sum = 0.0f;
    for (std::int64_t oh = out_rows.begin; oh < out_rows.end; ++oh) {
      for (std::int64_t ow = out_cols.begin; ow < out_cols.end; ++ow) {
        const std::int64_t o = plane_offset + oh * out_w + ow;
        if (static_cast<std::int64_t>(argmax[o]) == within) sum += static_cast<float>(dL_dy[o]);
      }
    }
    dL_dx[i] = static_cast<T>(sum);
  }
}

LaunchConfig config_for(std::int64_t threads, cudaStream_t stream, const char* name) {
  return LaunchConfig{.grid = grid_stride_blocks(threads, kThreadsPerBlock), .block = kThreadsPerBlock,
                      .stream = stream, .name = name};
}

// f32 only for now; the kernels are templates on the element type for bf16/fp16 later.
template <typename Index>
void launch_forward(const Tensor& x, Tensor& y, Index* argmax, const PoolGeometry& geometry, cudaStream_t stream) {
  launch(adaptive_max_pool2d_forward_kernel<float, Index>,
         config_for(y.numel(), stream, "adaptive_max_pool2d_forward"), x.data<float>(), y.data<float>(), argmax,
         geometry);
}

template <typename Index>
void launch_backward(const Tensor& dL_dy, const Index* argmax, Tensor& dL_dx, const PoolGeometry& geometry,
                     cudaStream_t stream) {
  launch(adaptive_max_pool2d_backward_kernel<float, Index>,
         config_for(dL_dx.numel(), stream, "adaptive_max_pool2d_backward"), dL_dy.data<float>(), argmax,
         dL_dx.data<float>(), geometry);
}

}  // namespace

void adaptive_max_pool2d_forward(const Tensor& x, Tensor& y, Tensor& argmax, const AdaptivePool2dParams& params,
                                 cudaStream_t stream) {
  constexpr const char* op = "adaptive_max_pool2d_forward";
  const NvtxRange range(op);
  expect_device_tensor(x, op, "x");
  const PoolGeometry geometry = pool2d::adaptive_pool2d_geometry(op, x.shape(), params);
  const Shape y_shape = pool2d::output_shape(x.shape(), geometry);
  expect_device_tensor(y, op, "y", x.dtype());
  expect_shape(y, y_shape, op, "y");
  expect_distinct(y, x, op, "y", "x");
  if (argmax.defined()) {
    pool2d::expect_argmax_tensor(argmax, y_shape, geometry, op);
    expect_distinct(argmax, x, op, "argmax", "x");
    expect_distinct(argmax, y, op, "argmax", "y");
  }
  if (y.numel() == 0) return;
  if (!argmax.defined()) {
    launch_forward<std::int64_t>(x, y, nullptr, geometry, stream);
  } else if (argmax.dtype() == DType::i64) {
    launch_forward(x, y, argmax.data<std::int64_t>(), geometry, stream);
  } else {
    launch_forward(x, y, argmax.data<std::int32_t>(), geometry, stream);
  }
}

MaxPool2dResult adaptive_max_pool2d_forward(const Tensor& x, const AdaptivePool2dParams& params,
                                            cudaStream_t stream) {
  const Shape y_shape = pool2d::output_shape(
      x.shape(), pool2d::adaptive_pool2d_geometry("adaptive_max_pool2d_forward", x.shape(), params));
  MaxPool2dResult result{Tensor::empty(y_shape, x.dtype(), stream), Tensor::empty(y_shape, DType::i64, stream)};
  adaptive_max_pool2d_forward(x, result.y, result.argmax, params, stream);
  return result;
}

void adaptive_max_pool2d_backward(const Tensor& dL_dy, const Tensor& argmax, Tensor& dL_dx,
                                  const AdaptivePool2dParams& params, cudaStream_t stream) {
  constexpr const char* op = "adaptive_max_pool2d_backward";
  const NvtxRange range(op);
  expect_device_tensor(dL_dx, op, "dL_dx");
  const PoolGeometry geometry = pool2d::adaptive_pool2d_geometry(op, dL_dx.shape(), params);
  const Shape y_shape = pool2d::output_shape(dL_dx.shape(), geometry);
  expect_device_tensor(dL_dy, op, "dL_dy", dL_dx.dtype());
  expect_shape(dL_dy, y_shape, op, "dL_dy");
  pool2d::expect_argmax_tensor(argmax, y_shape, geometry, op);
  expect_distinct(dL_dx, dL_dy, op, "dL_dx", "dL_dy");
  expect_distinct(dL_dx, argmax, op, "dL_dx", "argmax");
  if (dL_dx.numel() == 0) return;
  if (argmax.dtype() == DType::i64) {
    launch_backward(dL_dy, argmax.data<std::int64_t>(), dL_dx, geometry, stream);
  } else {
    launch_backward(dL_dy, argmax.data<std::int32_t>(), dL_dx, geometry, stream);
  }
}

Tensor adaptive_max_pool2d_backward(const Tensor& dL_dy, const Tensor& argmax, const Shape& x_shape,
                                    const AdaptivePool2dParams& params, cudaStream_t stream) {
  // Validates x_shape before allocating.
  pool2d::adaptive_pool2d_geometry("adaptive_max_pool2d_backward", x_shape, params);
  Tensor dL_dx = Tensor::empty(x_shape, dL_dy.defined() ? dL_dy.dtype() : DType::f32, stream);
  adaptive_max_pool2d_backward(dL_dy, argmax, dL_dx, params, stream);
  return dL_dx;
}

}  // namespace strata::kernels
