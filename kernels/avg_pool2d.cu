// avg_pool2d forward and backward. The forward gives each output element one thread, which
// sums its window; the backward gives each input element one thread, which gathers
// dL_dy / divisor from the outputs whose windows hold it: no atomics, a fixed summation
// order, so the result is deterministic. The divisor follows PyTorch (pool2d_windows.cuh).
#include <cstdint>

#include "core/nvtx.h"
#include "kernels/common.cuh"
#include "kernels/pool2d_windows.cuh"
#include "kernels/tensor_checks.h"
#include "strata/kernels/pool2d.h"

namespace strata::kernels {

namespace {

using pool2d::AvgDivisorRule;
using pool2d::AvgWindow;
using pool2d::IndexRange;
using pool2d::PoolGeometry;

constexpr int kThreadsPerBlock = 256;

// A window never lies wholly in the padding: padding <= kernel / 2 and the ceil_mode rule
// keep at least one input element in each (pool2d_shape_test checks this on a sweep), so
// the count_include_pad = false divisor is never 0.
template <typename T>
__global__ void avg_pool2d_forward_kernel(const T* x /* (planes, H, W) */, T* y /* (planes, Ho, Wo) */,
                                          PoolGeometry geometry, AvgDivisorRule rule) {
  const std::int64_t in_w = geometry.cols.input;
  const std::int64_t out_w = geometry.cols.output;
  const std::int64_t plane_inputs = geometry.rows.input * in_w;
  const std::int64_t plane_outputs = geometry.rows.output * out_w;
  const std::int64_t count = geometry.planes * plane_outputs;
  for (std::int64_t i = global_thread_index(); i < count; i += global_thread_count()) {
    const std::int64_t plane = i / plane_outputs;
    const std::int64_t oh = (i - plane * plane_outputs) / out_w;
    const std::int64_t ow = i - plane * plane_outputs - oh * out_w;
    const AvgWindow rows = pool2d::avg_window(geometry.rows, oh);
    const AvgWindow cols = pool2d::avg_window(geometry.cols, ow);
    const T* x_plane = x + plane * plane_inputs;  // (H, W)
    float sum = 0.0f;
    for (std::int64_t h = rows.inputs.begin; h < rows.inputs.end; ++h) {
      for (std::int64_t w = cols.inputs.begin; w < cols.inputs.end; ++w) {
        sum += static_cast<float>(x_plane[h * in_w + w]);
      }
    }
    y[i] = static_cast<T>(sum / static_cast<float>(pool2d::avg_divisor(rule, rows, cols)));
  }
}

template <typename T>
__global__ void avg_pool2d_backward_kernel(const T* dL_dy /* (planes, Ho, Wo) */, T* dL_dx /* (planes, H, W) */,
                                           PoolGeometry geometry, AvgDivisorRule rule) {
  const std::int64_t in_w = geometry.cols.input;
  const std::int64_t out_w = geometry.cols.output;
  const std::int64_t plane_inputs = geometry.rows.input * in_w;
  const std::int64_t plane_outputs = geometry.rows.output * out_w;
  const std::int64_t count = geometry.planes * plane_inputs;
  for (std::int64_t i = global_thread_index(); i < count; i += global_thread_count()) {
    const std::int64_t plane = i / plane_inputs;
    const std::int64_t h = (i - plane * plane_inputs) / in_w;
    const std::int64_t w = i - plane * plane_inputs - h * in_w;
    const IndexRange out_rows = pool2d::outputs_covering(geometry.rows, h);
    const IndexRange out_cols = pool2d::outputs_covering(geometry.cols, w);
    const T* dL_dy_plane = dL_dy + plane * plane_outputs;  // (Ho, Wo)
    float sum = 0.0f;
    for (std::int64_t oh = out_rows.begin; oh < out_rows.end; ++oh) {
      const AvgWindow rows = pool2d::avg_window(geometry.rows, oh);
      for (std::int64_t ow = out_cols.begin; ow < out_cols.end; ++ow) {
        const AvgWindow cols = pool2d::avg_window(geometry.cols, ow);
        sum += static_cast<float>(dL_dy_plane[oh * out_w + ow]) /
               static_cast<float>(pool2d::avg_divisor(rule, rows, cols));
      }
    }
    dL_dx[i] = static_cast<T>(sum);
  }
}

LaunchConfig config_for(std::int64_t threads, cudaStream_t stream, const char* name) {
  return LaunchConfig{.grid = grid_stride_blocks(threads, kThreadsPerBlock), .block = kThreadsPerBlock,
                      .stream = stream, .name = name};
}

AvgDivisorRule divisor_rule(const AvgPool2dParams& params) {
  return AvgDivisorRule{.count_include_pad = params.count_include_pad,
                        .divisor_override = params.divisor_override.value_or(0)};
}

}  // namespace

// f32 only for now; the kernels are templates on the element type for bf16/fp16 later.
void avg_pool2d_forward(const Tensor& x, Tensor& y, const AvgPool2dParams& params, cudaStream_t stream) {
  constexpr const char* op = "avg_pool2d_forward";
  const NvtxRange range(op);
  expect_device_tensor(x, op, "x");
  const PoolGeometry geometry = pool2d::avg_pool2d_geometry(op, x.shape(), params);
  expect_device_tensor(y, op, "y", x.dtype());
  expect_shape(y, pool2d::output_shape(x.shape(), geometry), op, "y");
  expect_distinct(y, x, op, "y", "x");
  if (y.numel() == 0) return;
  launch(avg_pool2d_forward_kernel<float>, config_for(y.numel(), stream, op), x.data<float>(), y.data<float>(),
         geometry, divisor_rule(params));
}

Tensor avg_pool2d_forward(const Tensor& x, const AvgPool2dParams& params, cudaStream_t stream) {
  const Shape y_shape =
      pool2d::output_shape(x.shape(), pool2d::avg_pool2d_geometry("avg_pool2d_forward", x.shape(), params));
  Tensor y = Tensor::empty(y_shape, x.dtype(), stream);
  avg_pool2d_forward(x, y, params, stream);
  return y;
}

void avg_pool2d_backward(const Tensor& dL_dy, Tensor& dL_dx, const AvgPool2dParams& params, cudaStream_t stream) {
  constexpr const char* op = "avg_pool2d_backward";
  const NvtxRange range(op);
  expect_device_tensor(dL_dx, op, "dL_dx");
  const PoolGeometry geometry = pool2d::avg_pool2d_geometry(op, dL_dx.shape(), params);
  expect_device_tensor(dL_dy, op, "dL_dy", dL_dx.dtype());
  expect_shape(dL_dy, pool2d::output_shape(dL_dx.shape(), geometry), op, "dL_dy");
  expect_distinct(dL_dx, dL_dy, op, "dL_dx", "dL_dy");
  if (dL_dx.numel() == 0) return;
  launch(avg_pool2d_backward_kernel<float>, config_for(dL_dx.numel(), stream, op), dL_dy.data<float>(),
         dL_dx.data<float>(), geometry, divisor_rule(params));
}

Tensor avg_pool2d_backward(const Tensor& dL_dy, const Shape& x_shape, const AvgPool2dParams& params,
                           cudaStream_t stream) {
  pool2d::avg_pool2d_geometry("avg_pool2d_backward", x_shape, params);  // validates x_shape before allocating
  Tensor dL_dx = Tensor::empty(x_shape, dL_dy.defined() ? dL_dy.dtype() : DType::f32, stream);
  avg_pool2d_backward(dL_dy, dL_dx, params, stream);
  return dL_dx;
}

}  // namespace strata::kernels
