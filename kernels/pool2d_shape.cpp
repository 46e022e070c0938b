// Host-side shape math and parameter validation of the pooling ops: what each launcher runs
// before it launches anything, and the public *_output_shape functions.
#include <cstdint>
#include <limits>
#include <string>

#include "core/check.h"
#include "core/format.h"
#include "kernels/pool2d_windows.cuh"
#include "kernels/tensor_checks.h"
#include "strata/kernels/adaptive_pool2d.h"
#include "strata/kernels/pool2d.h"

namespace strata::kernels {

namespace pool2d {

PoolAxis with_dividers(PoolAxis axis) {
  const auto divider = [](std::int64_t size) { return IndexDivider(size > 0 ? size : 1); };
  axis.dividers = AxisDividers{.stride = divider(axis.stride), .dilation = divider(axis.dilation),
                               .input = divider(axis.input), .output = divider(axis.output)};
  return axis;
}

std::string to_string(const Size2d& pair) { return fmt::format("({}, {})", pair.h, pair.w); }

std::string describe(const Shape& x, const Pool2dParams& params) {
  return fmt::format("x {}, kernel {}, stride {}, padding {}, dilation {}, ceil_mode {}", x.to_string(),
                     to_string(params.kernel), to_string(params.effective_stride()), to_string(params.padding),
                     to_string(params.dilation), params.ceil_mode ? "on" : "off");
}

namespace {

void expect_pool_input(std::string_view op, const Shape& x) {
  STRATA_CHECK(x.rank() == 4, "{}: x must have 4 dimensions (N, C, H, W), got shape {}", op, x.to_string());
  STRATA_CHECK(x[1] > 0 && x[2] > 0 && x[3] > 0,
               "{}: x must have non-empty channel and spatial dimensions (only N may be 0), got shape {}", op,
               x.to_string());
}

// Whether test holds for both entries of pair.
bool both(const Size2d& pair, bool (*test)(std::int64_t)) { return test(pair.h) && test(pair.w); }

PoolGeometry window_geometry(std::string_view op, const Shape& x, const Pool2dParams& params) {
  expect_pool_input(op, x);
  const Size2d stride = params.effective_stride();
  const auto positive = [](std::int64_t v) { return v > 0; };
  const auto non_negative = [](std::int64_t v) { return v >= 0; };
  STRATA_CHECK(both(params.kernel, positive), "{}: kernel size must be positive ({})", op, describe(x, params));
  STRATA_CHECK(both(stride, positive), "{}: stride must be positive ({})", op, describe(x, params));
  STRATA_CHECK(both(params.dilation, positive), "{}: dilation must be positive ({})", op, describe(x, params));
  STRATA_CHECK(both(params.padding, non_negative), "{}: padding must be non-negative ({})", op, describe(x, params));
  // Keeps every product in the window math far from overflow.
  const auto below_2_31 = [](std::int64_t v) { return v <= std::numeric_limits<std::int32_t>::max(); };
  STRATA_CHECK(both(params.kernel, below_2_31) && both(stride, below_2_31) && both(params.padding, below_2_31) &&
                   both(params.dilation, below_2_31) && below_2_31(x[2]) && below_2_31(x[3]),
               "{}: spatial sizes and parameters must be below 2^31 ({})", op, describe(x, params));
  STRATA_CHECK(params.padding.h <= params.kernel.h / 2 && params.padding.w <= params.kernel.w / 2,
               "{}: padding should be at most half of the kernel size ({})", op, describe(x, params));

  PoolGeometry geometry;
  geometry.planes = x[0] * x[1];
  geometry.rows = PoolAxis{.input = x[2], .kernel = params.kernel.h, .stride = stride.h,
                           .padding = params.padding.h, .dilation = params.dilation.h};
  geometry.cols = PoolAxis{.input = x[3], .kernel = params.kernel.w, .stride = stride.w,
                           .padding = params.padding.w, .dilation = params.dilation.w};
  geometry.rows.output = pooled_size(geometry.rows, params.ceil_mode);
  geometry.cols.output = pooled_size(geometry.cols, params.ceil_mode);
  STRATA_CHECK(geometry.rows.output >= 1 && geometry.cols.output >= 1,
               "{}: output size ({}, {}) is too small, it must be at least (1, 1) ({})", op, geometry.rows.output,
               geometry.cols.output, describe(x, params));
  geometry.rows = with_dividers(geometry.rows);
  geometry.cols = with_dividers(geometry.cols);
  return geometry;
}

}  // namespace

PoolGeometry max_pool2d_geometry(std::string_view op, const Shape& x, const Pool2dParams& params) {
  return window_geometry(op, x, params);
}

PoolGeometry avg_pool2d_geometry(std::string_view op, const Shape& x, const AvgPool2dParams& params) {
  STRATA_CHECK(params.window.dilation == (Size2d{1, 1}), "{}: avg_pool2d has no dilation, it must be (1, 1) ({})",
               op, describe(x, params.window));
  STRATA_CHECK(params.divisor_override.value_or(1) != 0, "{}: divisor_override must not be 0 ({})", op,
               describe(x, params.window));
  return window_geometry(op, x, params.window);
}

PoolGeometry adaptive_pool2d_geometry(std::string_view op, const Shape& x, const AdaptivePool2dParams& params) {
  expect_pool_input(op, x);
  STRATA_CHECK(params.output_size.h >= 1 && params.output_size.w >= 1,
               "{}: output_size must be at least (1, 1), got {} for x {}", op, to_string(params.output_size),
               x.to_string());
  PoolGeometry geometry;
  geometry.planes = x[0] * x[1];
  geometry.rows = with_dividers(PoolAxis{.input = x[2], .output = params.output_size.h});
  geometry.cols = with_dividers(PoolAxis{.input = x[3], .output = params.output_size.w});
  return geometry;
}

Shape output_shape(const Shape& x, const PoolGeometry& geometry) {
  return Shape{x[0], x[1], geometry.rows.output, geometry.cols.output};
}

PlaneLayout plane_layout(std::string_view op, std::initializer_list<NamedTensor> tensors) {
  const NamedTensor* decided = nullptr;  // the first tensor whose layouts differ
  for (const NamedTensor& named : tensors) {
    if (!named.tensor.defined() || layouts_coincide(named.tensor.shape())) continue;
    if (decided == nullptr) {
      decided = &named;
      continue;
    }
    STRATA_CHECK(named.tensor.memory_format() == decided->tensor.memory_format(),
                 "{}: {} is {} {} but {} is {} {}: the tensors of one pooling op share one memory format (convert "
                 "with to_memory_format)",
                 op, decided->name, memory_format_name(decided->tensor.memory_format()), decided->tensor.shape(),
                 named.name, memory_format_name(named.tensor.memory_format()), named.tensor.shape());
  }
  if (decided == nullptr) return PlaneLayout{};
  return PlaneLayout{.channels = decided->tensor.size(1),
                     .channels_last = decided->tensor.memory_format() == MemoryFormat::channels_last};
}

namespace {

void expect_argmax_tensor(const Tensor& argmax, const Shape& expected, const PoolGeometry& geometry,
                          std::string_view op) {
  STRATA_CHECK(argmax.defined(), "{}: argmax is an undefined tensor", op);
  STRATA_CHECK(argmax.is_device(), "{}: argmax must be a device tensor, got {}", op, argmax.to_string());
  STRATA_CHECK(argmax.dtype() == DType::i64 || argmax.dtype() == DType::i32,
               "{}: argmax must have dtype i64 or i32, got {}", op, argmax.to_string());
  STRATA_CHECK(argmax.dtype() == DType::i64 ||
                   geometry.rows.input * geometry.cols.input <= std::numeric_limits<std::int32_t>::max(),
               "{}: an i32 argmax cannot index input planes of {} x {} elements; use i64", op, geometry.rows.input,
               geometry.cols.input);
  expect_shape(argmax, expected, op, "argmax");
}

}  // namespace

void expect_forward_argmax(const Tensor& argmax, const Tensor& x, const Tensor& y, const PoolGeometry& geometry,
                           std::string_view op) {
  if (!argmax.defined()) return;
  expect_argmax_tensor(argmax, y.shape(), geometry, op);
  expect_distinct(argmax, x, op, "argmax", "x");
  expect_distinct(argmax, y, op, "argmax", "y");
}

void expect_backward_argmax(const Tensor& argmax, const Tensor& dL_dy, const Tensor& dL_dx,
                            const PoolGeometry& geometry, std::string_view op) {
  expect_argmax_tensor(argmax, dL_dy.shape(), geometry, op);
  expect_distinct(dL_dx, argmax, op, "dL_dx", "argmax");
}

}  // namespace pool2d

Shape max_pool2d_output_shape(const Shape& x, const Pool2dParams& params) {
  return pool2d::output_shape(x, pool2d::max_pool2d_geometry("max_pool2d", x, params));
}

Shape avg_pool2d_output_shape(const Shape& x, const AvgPool2dParams& params) {
  return pool2d::output_shape(x, pool2d::avg_pool2d_geometry("avg_pool2d", x, params));
}

Shape adaptive_avg_pool2d_output_shape(const Shape& x, const AdaptivePool2dParams& params) {
  return pool2d::output_shape(x, pool2d::adaptive_pool2d_geometry("adaptive_avg_pool2d", x, params));
}

Shape adaptive_max_pool2d_output_shape(const Shape& x, const AdaptivePool2dParams& params) {
  return pool2d::output_shape(x, pool2d::adaptive_pool2d_geometry("adaptive_max_pool2d", x, params));
}

}  // namespace strata::kernels
