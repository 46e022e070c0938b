// Pooling on cuDNN (kernels/cudnn/pool2d_cudnn.h): which cuDNN window computes each op, the
// argument checks, as the custom launchers make them, and the refusal, shared by both
// builds; cuDNN itself is behind kernels/cudnn/pool2d_cudnn_backend.h.
#include "kernels/cudnn/pool2d_cudnn.h"

#include <fmt/format.h>

#include <string>
#include <string_view>

#include "core/nvtx.h"
#include "kernels/cudnn/cudnn_layout.h"
#include "kernels/cudnn/pool2d_cudnn_backend.h"
#include "kernels/pool2d_windows.cuh"
#include "kernels/tensor_checks.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"

namespace strata::kernels {

namespace {

using pool2d::describe;
using pool2d::to_string;

// The floor-rule output of a validated window geometry: what cuDNN computes.
Shape floor_output(const Shape& x, pool2d::PoolGeometry geometry) {
  geometry.rows.output = pool2d::pooled_size(geometry.rows, /*ceil_mode=*/false);
  geometry.cols.output = pool2d::pooled_size(geometry.cols, /*ceil_mode=*/false);
  return pool2d::output_shape(x, geometry);
}

// The mapping of a fixed-window pool (max or average) whose geometry the custom kernels
// accept; mode says which. Refuses dilation and a ceil_mode that grows the output.
CudnnPoolMapping window_mapping(const Shape& x, const Pool2dParams& params, const pool2d::PoolGeometry& geometry,
                                CudnnPoolMode mode, std::string description) {
  CudnnPoolMapping mapping;
  mapping.output = pool2d::output_shape(x, geometry);
  mapping.description = std::move(description);
  mapping.window = CudnnPoolWindow{.input = x,
                                   .output = floor_output(x, geometry),
                                   .kernel = params.kernel,
                                   .stride = params.effective_stride(),
                                   .padding = params.padding,
                                   .mode = mode};
  if (params.dilation != Size2d{1, 1}) {
    mapping.refusal = fmt::format("cuDNN pooling has no dilation (dilation {})", to_string(params.dilation));
  } else if (mapping.window.output != mapping.output) {
    mapping.refusal = fmt::format(
        "ceil_mode gives an output of {}, where cuDNN's rule (rounding down) gives {}; cuDNN cannot pool the "
        "partial last window",
        mapping.output.to_string(), mapping.window.output.to_string());
  }
  return mapping;
}

// The mapping of an adaptive pool: one fixed window when every bin has the same size and
// none overlap, which is when the input size is a multiple of the output size on both axes.
CudnnPoolMapping adaptive_mapping(std::string_view op, const Shape& x, const AdaptivePool2dParams& params,
                                  CudnnPoolMode mode) {
  const pool2d::PoolGeometry geometry = pool2d::adaptive_pool2d_geometry(op, x, params);
  const Size2d out = params.output_size;
  CudnnPoolMapping mapping;
  mapping.output = pool2d::output_shape(x, geometry);
  mapping.description = fmt::format("x {}, output_size {}", x.to_string(), to_string(out));
  const bool fixed_window = x[2] % out.h == 0 && x[3] % out.w == 0;
  const Size2d window{fixed_window ? x[2] / out.h : 1, fixed_window ? x[3] / out.w : 1};
  mapping.window = CudnnPoolWindow{
      .input = x, .output = mapping.output, .kernel = window, .stride = window, .padding = {0, 0}, .mode = mode};
  if (!fixed_window) {
    mapping.refusal = fmt::format(
        "the input's spatial size ({}, {}) is not a multiple of the output size {}, so the adaptive bins differ in "
        "size or overlap; cuDNN pools with one fixed window",
        x[2], x[3], to_string(out));
  }
  return mapping;
}

std::string refusal_of(const CudnnPoolMapping& mapping) {
  if (!cudnn_available()) return std::string(cudnn_unavailable_reason());
  if (!mapping.refusal.empty()) return mapping.refusal;
  if (mapping.window.input.numel() == 0) return {};  // nothing to compute, nothing for cuDNN to refuse
  return cudnn_pool_backend::refusal(mapping.window);
}

// Throws NotSupported "<op> on cuDNN (<description>): <reason>" when cuDNN cannot run it.
void require_accepted(const CudnnPoolMapping& mapping, std::string_view op) {
  const std::string reason = refusal_of(mapping);
  if (!reason.empty()) throw NotSupported(fmt::format("{} on cuDNN ({}): {}", op, mapping.description, reason));
}

// The mapping of one op for an input shape (x's, or dL_dx's in the backward), with params.
template <typename Params>
using WindowOf = CudnnPoolMapping (*)(const Shape& x, const Params& params);

// The checks and the launch of every forward: y (N, C, Ho, Wo) from x (N, C, H, W).
template <typename Params>
void run_forward(std::string_view op, WindowOf<Params> window_of, const Tensor& x, Tensor& y, const Params& params,
                 cudaStream_t stream) {
  expect_floating_device_tensor(x, op, "x");
  const CudnnPoolMapping mapping = window_of(x.shape(), params);
  expect_floating_device_tensor(y, op, "y");
  expect_same_dtype(y, x, op, "y", "x");
  expect_shape(y, mapping.output, op, "y");
  expect_same_memory_order(y, x, op, "y", "x");
  expect_distinct(y, x, op, "y", "x");
  require_accepted(mapping, op);
  if (y.numel() == 0) return;
  CudnnPoolWindow window = mapping.window;
  window.format = cudnn_memory_format(x);
  cudnn_pool_backend::forward(window, x.dtype(), x.memory_ptr(), y.memory_ptr(), stream);
}

// The checks and the launch of every backward: dL_dx (N, C, H, W) from the forward's x and
// y and dL_dy (N, C, Ho, Wo), with the mapping of dL_dx's shape.
template <typename Params>
void run_backward(std::string_view op, WindowOf<Params> window_of, const Tensor& x, const Tensor& y,
                  const Tensor& dL_dy, Tensor& dL_dx, const Params& params, cudaStream_t stream) {
  expect_floating_device_tensor(dL_dx, op, "dL_dx");
  const CudnnPoolMapping mapping = window_of(dL_dx.shape(), params);
  expect_floating_device_tensor(x, op, "x");
  expect_floating_device_tensor(y, op, "y");
  expect_floating_device_tensor(dL_dy, op, "dL_dy");
  expect_same_dtype(x, dL_dx, op, "x", "dL_dx");
  expect_same_dtype(y, dL_dx, op, "y", "dL_dx");
  expect_same_dtype(dL_dy, dL_dx, op, "dL_dy", "dL_dx");
  expect_shape(x, mapping.window.input, op, "x");
  expect_shape(y, mapping.output, op, "y");
  expect_shape(dL_dy, mapping.output, op, "dL_dy");
  expect_same_memory_order(y, x, op, "y", "x");
  expect_same_memory_order(dL_dy, x, op, "dL_dy", "x");
  expect_same_memory_order(dL_dx, x, op, "dL_dx", "x");
  expect_distinct(dL_dx, x, op, "dL_dx", "x");
  expect_distinct(dL_dx, y, op, "dL_dx", "y");
  expect_distinct(dL_dx, dL_dy, op, "dL_dx", "dL_dy");
  require_accepted(mapping, op);
  if (dL_dx.numel() == 0) return;
  CudnnPoolWindow window = mapping.window;
  window.format = cudnn_memory_format(x);
  cudnn_pool_backend::backward(window, dL_dx.dtype(), x.memory_ptr(), y.memory_ptr(), dL_dy.memory_ptr(),
                               dL_dx.memory_ptr(), stream);
}

}  // namespace

CudnnPoolMapping max_pool2d_cudnn_window(const Shape& x, const Pool2dParams& params) {
  const pool2d::PoolGeometry geometry = pool2d::max_pool2d_geometry("max_pool2d", x, params);
  return window_mapping(x, params, geometry, CudnnPoolMode::max, describe(x, params));
}

CudnnPoolMapping avg_pool2d_cudnn_window(const Shape& x, const AvgPool2dParams& params) {
  const pool2d::PoolGeometry geometry = pool2d::avg_pool2d_geometry("avg_pool2d", x, params);
  const CudnnPoolMode mode = params.count_include_pad ? CudnnPoolMode::average_count_include_padding
                                                      : CudnnPoolMode::average_count_exclude_padding;
  std::string description =
      fmt::format("{}, count_include_pad {}", describe(x, params.window), params.count_include_pad ? "on" : "off");
  if (params.divisor_override) description += fmt::format(", divisor_override {}", *params.divisor_override);
  CudnnPoolMapping mapping = window_mapping(x, params.window, geometry, mode, std::move(description));
  if (mapping.refusal.empty() && params.divisor_override) {
    mapping.refusal = "cuDNN pooling has no divisor_override: it divides by the window's (padded or unpadded) size";
  }
  return mapping;
}

CudnnPoolMapping adaptive_avg_pool2d_cudnn_window(const Shape& x, const AdaptivePool2dParams& params) {
  // No padding: including it or not gives the same divisor, the bin's area.
  return adaptive_mapping("adaptive_avg_pool2d", x, params, CudnnPoolMode::average_count_include_padding);
}

CudnnPoolMapping adaptive_max_pool2d_cudnn_window(const Shape& x, const AdaptivePool2dParams& params) {
  return adaptive_mapping("adaptive_max_pool2d", x, params, CudnnPoolMode::max);
}

std::string max_pool2d_cudnn_refusal(const Shape& x, const Pool2dParams& params) {
  return refusal_of(max_pool2d_cudnn_window(x, params));
}

std::string avg_pool2d_cudnn_refusal(const Shape& x, const AvgPool2dParams& params) {
  return refusal_of(avg_pool2d_cudnn_window(x, params));
}

std::string adaptive_avg_pool2d_cudnn_refusal(const Shape& x, const AdaptivePool2dParams& params) {
  return refusal_of(adaptive_avg_pool2d_cudnn_window(x, params));
}

std::string adaptive_max_pool2d_cudnn_refusal(const Shape& x, const AdaptivePool2dParams& params) {
  return refusal_of(adaptive_max_pool2d_cudnn_window(x, params));
}

void max_pool2d_cudnn_forward(const Tensor& x, Tensor& y, const Pool2dParams& params, cudaStream_t stream) {
  const NvtxRange range("max_pool2d_forward (cuDNN)");
  run_forward("max_pool2d_forward", max_pool2d_cudnn_window, x, y, params, stream);
}

void max_pool2d_cudnn_backward(const Tensor& x, const Tensor& y, const Tensor& dL_dy, Tensor& dL_dx,
                               const Pool2dParams& params, cudaStream_t stream) {
  const NvtxRange range("max_pool2d_backward (cuDNN)");
  run_backward("max_pool2d_backward", max_pool2d_cudnn_window, x, y, dL_dy, dL_dx, params, stream);
}

void avg_pool2d_cudnn_forward(const Tensor& x, Tensor& y, const AvgPool2dParams& params, cudaStream_t stream) {
  const NvtxRange range("avg_pool2d_forward (cuDNN)");
  run_forward("avg_pool2d_forward", avg_pool2d_cudnn_window, x, y, params, stream);
}

void avg_pool2d_cudnn_backward(const Tensor& x, const Tensor& y, const Tensor& dL_dy, Tensor& dL_dx,
                               const AvgPool2dParams& params, cudaStream_t stream) {
  const NvtxRange range("avg_pool2d_backward (cuDNN)");
  run_backward("avg_pool2d_backward", avg_pool2d_cudnn_window, x, y, dL_dy, dL_dx, params, stream);
}

void adaptive_avg_pool2d_cudnn_forward(const Tensor& x, Tensor& y, const AdaptivePool2dParams& params,
                                       cudaStream_t stream) {
  const NvtxRange range("adaptive_avg_pool2d_forward (cuDNN)");
  run_forward("adaptive_avg_pool2d_forward", adaptive_avg_pool2d_cudnn_window, x, y, params, stream);
}

void adaptive_avg_pool2d_cudnn_backward(const Tensor& x, const Tensor& y, const Tensor& dL_dy, Tensor& dL_dx,
                                        const AdaptivePool2dParams& params, cudaStream_t stream) {
  const NvtxRange range("adaptive_avg_pool2d_backward (cuDNN)");
  run_backward("adaptive_avg_pool2d_backward", adaptive_avg_pool2d_cudnn_window, x, y, dL_dy, dL_dx, params, stream);
}

void adaptive_max_pool2d_cudnn_forward(const Tensor& x, Tensor& y, const AdaptivePool2dParams& params,
                                       cudaStream_t stream) {
  const NvtxRange range("adaptive_max_pool2d_forward (cuDNN)");
  run_forward("adaptive_max_pool2d_forward", adaptive_max_pool2d_cudnn_window, x, y, params, stream);
}

void adaptive_max_pool2d_cudnn_backward(const Tensor& x, const Tensor& y, const Tensor& dL_dy, Tensor& dL_dx,
                                        const AdaptivePool2dParams& params, cudaStream_t stream) {
  const NvtxRange range("adaptive_max_pool2d_backward (cuDNN)");
  run_backward("adaptive_max_pool2d_backward", adaptive_max_pool2d_cudnn_window, x, y, dL_dy, dL_dx, params, stream);
}

}  // namespace strata::kernels
