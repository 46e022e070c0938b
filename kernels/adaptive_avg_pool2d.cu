// adaptive_avg_pool2d forward and backward with PyTorch's bins (pool2d_windows.cuh). The
// forward gives each output element one thread, which averages its bin; the backward gives
// each input element one thread, which gathers from the bins that contain it (a range
// computed in closed form): no atomics, a fixed summation order, deterministic.
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

template <typename T>
__global__ void adaptive_avg_pool2d_forward_kernel(const T* x /* (planes, H, W) */, T* y /* (planes, Ho, Wo) */,
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
    const IndexRange rows = pool2d::adaptive_bin(oh, geometry.rows.input, geometry.rows.output);
    const IndexRange cols = pool2d::adaptive_bin(ow, geometry.cols.input, geometry.cols.output);
    const T* x_plane = x + plane * plane_inputs;  // (H, W)
    float sum = 0.0f;
    for (std::int64_t h = rows.begin; h < rows.end; ++h) {
      for (std::int64_t w = cols.begin; w < cols.end; ++w) sum += static_cast<float>(x_plane[h * in_w + w]);
    }
    // Divided by the bin's height, then its width, as PyTorch does.
    y[i] = static_cast<T>(sum / static_cast<float>(rows.end - rows.begin) / static_cast<float>(cols.end - cols.begin));
  }
}

template <typename T>
__global__ void adaptive_avg_pool2d_backward_kernel(const T* dL_dy /* (planes, Ho, Wo) */,
                                                    T* dL_dx /* (planes, H, W) */, PoolGeometry geometry) {
  const std::int64_t in_w = geometry.cols.input;
  const std::int64_t out_w = geometry.cols.output;
  const std::int64_t plane_inputs = geometry.rows.input * in_w;
  const std::int64_t plane_outputs = geometry.rows.output * out_w;
  const std::int64_t count = geometry.planes * plane_inputs;
  for (std::int64_t i = global_thread_index(); i < count; i += global_thread_count()) {
    const std::int64_t plane = i / plane_inputs;
    const std::int64_t h = (i - plane * plane_inputs) / in_w;
    const std::int64_t w = i - plane * plane_inputs - h * in_w;
    const IndexRange out_rows = pool2d::bins_containing(h, geometry.rows.input, geometry.rows.output);
    const IndexRange out_cols = pool2d::bins_containing(w, geometry.cols.input, geometry.cols.output);
    const T* dL_dy_plane = dL_dy + plane * plane_outputs;  // (Ho, Wo)
    float sum = 0.0f;
    for (std::int64_t oh = out_rows.begin; oh < out_rows.end; ++oh) {
      const IndexRange rows = pool2d::adaptive_bin(oh, geometry.rows.input, geometry.rows.output);
      for (std::int64_t ow = out_cols.begin; ow < out_cols.end; ++ow) {
        const IndexRange cols = pool2d::adaptive_bin(ow, geometry.cols.input, geometry.cols.output);
        sum += static_cast<float>(dL_dy_plane[oh * out_w + ow]) / static_cast<float>(rows.end - rows.begin) /
               static_cast<float>(cols.end - cols.begin);
      }
    }
    dL_dx[i] = static_cast<T>(sum);
  }
}

LaunchConfig config_for(std::int64_t threads, cudaStream_t stream, const char* name) {
  return LaunchConfig{.grid = grid_stride_blocks(threads, kThreadsPerBlock), .block = kThreadsPerBlock,
                      .stream = stream, .name = name};
}

}  // namespace

// f32 only for now; the kernels are templates on the element type for bf16/fp16 later.
void adaptive_avg_pool2d_forward(const Tensor& x, Tensor& y, const AdaptivePool2dParams& params,
                                 cudaStream_t stream) {
  constexpr const char* op = "adaptive_avg_pool2d_forward";
  const NvtxRange range(op);
  expect_device_tensor(x, op, "x");
  const PoolGeometry geometry = pool2d::adaptive_pool2d_geometry(op, x.shape(), params);
  expect_device_tensor(y, op, "y", x.dtype());
  expect_shape(y, pool2d::output_shape(x.shape(), geometry), op, "y");
  expect_distinct(y, x, op, "y", "x");
  if (y.numel() == 0) return;
  launch(adaptive_avg_pool2d_forward_kernel<float>, config_for(y.numel(), stream, op), x.data<float>(),
         y.data<float>(), geometry);
}

Tensor adaptive_avg_pool2d_forward(const Tensor& x, const AdaptivePool2dParams& params, cudaStream_t stream) {
  const Shape y_shape = pool2d::output_shape(
      x.shape(), pool2d::adaptive_pool2d_geometry("adaptive_avg_pool2d_forward", x.shape(), params));
  Tensor y = Tensor::empty(y_shape, x.dtype(), stream);
  adaptive_avg_pool2d_forward(x, y, params, stream);
  return y;
}

void adaptive_avg_pool2d_backward(const Tensor& dL_dy, Tensor& dL_dx, const AdaptivePool2dParams& params,
                                  cudaStream_t stream) {
  constexpr const char* op = "adaptive_avg_pool2d_backward";
  const NvtxRange range(op);
  expect_device_tensor(dL_dx, op, "dL_dx");
  const PoolGeometry geometry = pool2d::adaptive_pool2d_geometry(op, dL_dx.shape(), params);
  expect_device_tensor(dL_dy, op, "dL_dy", dL_dx.dtype());
  expect_shape(dL_dy, pool2d::output_shape(dL_dx.shape(), geometry), op, "dL_dy");
  expect_distinct(dL_dx, dL_dy, op, "dL_dx", "dL_dy");
  if (dL_dx.numel() == 0) return;
  launch(adaptive_avg_pool2d_backward_kernel<float>, config_for(dL_dx.numel(), stream, op), dL_dy.data<float>(),
         dL_dx.data<float>(), geometry);
}

Tensor adaptive_avg_pool2d_backward(const Tensor& dL_dy, const Shape& x_shape, const AdaptivePool2dParams& params,
                                    cudaStream_t stream) {
  // Validates x_shape before allocating.
  pool2d::adaptive_pool2d_geometry("adaptive_avg_pool2d_backward", x_shape, params);
  Tensor dL_dx = Tensor::empty(x_shape, dL_dy.defined() ? dL_dy.dtype() : DType::f32, stream);
  adaptive_avg_pool2d_backward(dL_dy, dL_dx, params, stream);
  return dL_dx;
}

}  // namespace strata::kernels
