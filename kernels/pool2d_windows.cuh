// Window and bin arithmetic of the pooling ops, shared by the host shape functions
// (pool2d_shape.cpp, whose tests check it on the host) and the kernels, so that both run
// the same code. Everything here follows PyTorch's definitions, one spatial axis at a time.
// Its host side also holds the argument checks that the four pooling launchers share.
#pragma once

#include <cuda_runtime_api.h>  // __host__ __device__ in both builds

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "kernels/index_divider.h"
#include "kernels/memory_elements.h"
#include "kernels/plane_indexer.h"
#include "kernels/tensor_checks.h"
#include "strata/core/shape.h"
#include "strata/kernels/adaptive_pool2d.h"
#include "strata/kernels/pool2d.h"

namespace strata::kernels::pool2d {

// The divisions of an axis's window arithmetic, set up on the host (with_dividers), so that a
// kernel finds the windows of an element with multiplies (kernels/index_divider.h): by the
// stride and the dilation (fixed windows), by the output and input sizes (adaptive bins).
struct AxisDividers {
  IndexDivider stride;
  IndexDivider dilation;
  IndexDivider input;
  IndexDivider output;
};

// One spatial axis (rows or columns) of a pooling geometry. Adaptive pools use only input
// and output. The window functions below divide with dividers, which with_dividers sets from
// the sizes (the geometry functions do; until then they divide by 1).
struct PoolAxis {
  std::int64_t input = 0;   // H or W
  std::int64_t output = 0;  // Ho or Wo
  std::int64_t kernel = 1;
  std::int64_t stride = 1;
  std::int64_t padding = 0;
  std::int64_t dilation = 1;
  AxisDividers dividers{};
};

// axis with its dividers set from its stride, dilation, input and output (a size of 0, which
// no geometry divides by, is divided by 1). Host only.
PoolAxis with_dividers(PoolAxis axis);

// Both axes, the number of (H, W) planes, N * C, and their layout: what every pooling kernel
// is given. The geometry functions below give the contiguous layout; a launcher sets layout
// from its tensors (plane_layout).
struct PoolGeometry {
  PoolAxis rows;
  PoolAxis cols;
  std::int64_t planes = 0;
  PlaneLayout layout{};
};

// The indexers of a geometry's input (x, dL_dx) and output (y, dL_dy, argmax). Host only; for
// a launch with elements (an empty tensor has nothing to divide by).
inline PlaneIndexer input_indexer(const PoolGeometry& geometry) {
  return PlaneIndexer(geometry.layout, geometry.rows.input, geometry.cols.input);
}
inline PlaneIndexer output_indexer(const PoolGeometry& geometry) {
  return PlaneIndexer(geometry.layout, geometry.rows.output, geometry.cols.output);
}

// Indices [begin, end) along one axis; empty when begin >= end.
struct IndexRange {
  std::int64_t begin = 0;
  std::int64_t end = 0;
};

__host__ __device__ constexpr std::int64_t smaller(std::int64_t a, std::int64_t b) { return a < b ? a : b; }
__host__ __device__ constexpr std::int64_t larger(std::int64_t a, std::int64_t b) { return a > b ? a : b; }

// Division rounding toward negative infinity (PyTorch's div_rtn), for divisor > 0.
__host__ __device__ constexpr std::int64_t floor_div(std::int64_t dividend, std::int64_t divisor) {
  const std::int64_t quotient = dividend / divisor;
  return (dividend % divisor != 0 && dividend < 0) ? quotient - 1 : quotient;
}

// Input positions covered by a window, from its first to its last tap: (k - 1) * d + 1.
__host__ __device__ constexpr std::int64_t window_span(const PoolAxis& axis) {
  return axis.dilation * (axis.kernel - 1) + 1;
}

// PyTorch's pooling_output_shape: floor (or ceil) of (in + 2p - span) / s, plus one; with
// ceil_mode the last window must start inside the input or the left padding.
__host__ __device__ constexpr std::int64_t pooled_size(const PoolAxis& axis, bool ceil_mode) {
  const std::int64_t round_up = ceil_mode ? axis.stride - 1 : 0;
  std::int64_t size = floor_div(axis.input + 2 * axis.padding - window_span(axis) + round_up, axis.stride) + 1;
  if (ceil_mode && (size - 1) * axis.stride >= axis.input + axis.padding) --size;
  return size;
}

// The input indices of output o's max window: the taps begin, begin + d, ... below end, all
// inside the input. Empty only when dilation steps over the whole input part of the window.
__host__ __device__ inline IndexRange dilated_window(const PoolAxis& axis, std::int64_t o) {
  std::int64_t begin = o * axis.stride - axis.padding;
  const std::int64_t end = smaller(begin + window_span(axis), axis.input);
  // The first tap at or past 0.
  if (begin < 0) begin += axis.dividers.dilation.divide(-begin + axis.dilation - 1) * axis.dilation;
  return {begin, end};
}

// Whether an axis's windows tile it: kernel == stride, no padding, no dilation (MaxPool2d(k)'s
// default), so that each input lies in at most one window (ceil mode only clips the last one;
// floor mode may leave inputs past the last window in none).
__host__ __device__ constexpr bool windows_tile(const PoolAxis& axis) {
  return axis.kernel == axis.stride && axis.padding == 0 && axis.dilation == 1;
}

// The inputs of a tiled axis that the tiled backward gives output o: its window, and for the
// last output also the inputs past it (floor mode leaves them in no window). In order, the
// outputs' ranges partition [0, input).
__host__ __device__ constexpr IndexRange tiled_inputs(const PoolAxis& axis, std::int64_t o) {
  const std::int64_t begin = o * axis.stride;
  return {begin, o == axis.output - 1 ? axis.input : begin + axis.kernel};
}

// Output o's avg window: the input indices it averages, and its extent clipped to the padded
// input [-p, in + p), which is the divisor's factor with count_include_pad (PyTorch clips the
// end to in + p before counting, so a ceil_mode window hanging past it counts less).
struct AvgWindow {
  IndexRange inputs;
  std::int64_t padded_extent = 0;
};

__host__ __device__ constexpr AvgWindow avg_window(const PoolAxis& axis, std::int64_t o) {
  const std::int64_t start = o * axis.stride - axis.padding;
  const std::int64_t padded_end = smaller(start + axis.kernel, axis.input + axis.padding);
  return {{larger(start, 0), smaller(padded_end, axis.input)}, padded_end - start};
}

// avg_pool2d's divisor rule.
struct AvgDivisorRule {
  bool count_include_pad = true;
  std::int64_t divisor_override = 0;  // 0: none
};

__host__ __device__ constexpr std::int64_t avg_divisor(const AvgDivisorRule& rule, const AvgWindow& rows,
                                                       const AvgWindow& cols) {
  if (rule.divisor_override != 0) return rule.divisor_override;
  if (rule.count_include_pad) return rows.padded_extent * cols.padded_extent;
  return (rows.inputs.end - rows.inputs.begin) * (cols.inputs.end - cols.inputs.begin);
}

// The outputs whose window span [o*s - p, o*s - p + span) contains input index i: exactly the
// avg windows holding i, and a superset of the max windows holding it (with dilation a span
// may step over i; the backward's argmax test sorts that out).
__host__ __device__ inline IndexRange outputs_covering(const PoolAxis& axis, std::int64_t i) {
  const std::int64_t padded = i + axis.padding;
  const std::int64_t span = window_span(axis);
  const IndexDivider& stride = axis.dividers.stride;
  const std::int64_t begin = padded < span ? 0 : stride.divide(padded - span) + 1;
  return {begin, smaller(stride.divide(padded) + 1, axis.output)};
}

// [floor(o * size / parts), ceil((o + 1) * size / parts)): bin o when an axis of size
// elements is cut into parts bins.
__host__ __device__ inline IndexRange floor_ceil_bin(std::int64_t o, std::int64_t size, const IndexDivider& parts) {
  return {parts.divide(o * size), parts.divide((o + 1) * size + parts.divisor() - 1)};
}

// Adaptive bin o of an axis: [floor(o * in / out), ceil((o + 1) * in / out)).
__host__ __device__ inline IndexRange adaptive_bin(const PoolAxis& axis, std::int64_t o) {
  return floor_ceil_bin(o, axis.input, axis.dividers.output);
}

// The bins that contain input index i: bin o starts at or before i exactly when
// o < ceil((i + 1) * out / in), and ends after i exactly when o >= floor(i * out / in), so
// they are the adaptive bin of i with input and output swapped.
__host__ __device__ inline IndexRange bins_containing(const PoolAxis& axis, std::int64_t i) {
  return floor_ceil_bin(i, axis.output, axis.dividers.input);
}

// max wins over a running maximum as in PyTorch: greater, or NaN (so a NaN wins, and a later
// NaN replaces an earlier one).
__host__ __device__ constexpr bool replaces_max(float value, float running_max) {
  return value > running_max || value != value;
}

// Host side. "(h, w)", and the description of a fixed-window pool in its messages: "x (N, C,
// H, W), kernel (kh, kw), stride ..., padding ..., dilation ..., ceil_mode on|off".
std::string to_string(const Size2d& pair);
std::string describe(const Shape& x, const Pool2dParams& params);

// The validated geometry of each op for an input shape (N, C, H, W). Failures
// throw InvalidArgument naming op, the input shape and the parameters.
PoolGeometry max_pool2d_geometry(std::string_view op, const Shape& x, const Pool2dParams& params);
PoolGeometry avg_pool2d_geometry(std::string_view op, const Shape& x, const AvgPool2dParams& params);
PoolGeometry adaptive_pool2d_geometry(std::string_view op, const Shape& x, const AdaptivePool2dParams& params);
Shape output_shape(const Shape& x, const PoolGeometry& geometry);

// An activation tensor of a pooling op and its name in messages.
struct NamedTensor {
  const Tensor& tensor;
  std::string_view name;
};

// The layout of an op's activation tensors (x and y, or dL_dy and dL_dx, and an argmax),
// shaped (N, C, ., .): channels-last when one of them is channels-last and not is_contiguous()
// (a tensor whose layouts coincide matches either), contiguous otherwise. Undefined tensors
// are skipped. A mix throws InvalidArgument naming op, both tensors and their formats.
PlaneLayout plane_layout(std::string_view op, std::initializer_list<NamedTensor> tensors);

// The checks every pooling launcher makes and the allocations of its allocating form, given
// the op's geometry function (max_pool2d_geometry, avg_pool2d_geometry or
// adaptive_pool2d_geometry).
template <typename Params>
using GeometryOf = PoolGeometry (*)(std::string_view op, const Shape& x, const Params& params);

// Forward: x an f32, f16 or bf16 device tensor whose shape geometry_of accepts with params;
// y a device tensor of x's dtype and the output shape, not overlapping x, and in x's layout.
// Returns the geometry, its layout x's and y's (a max pool's launcher adds its argmax's).
template <typename Params>
PoolGeometry checked_forward(std::string_view op, GeometryOf<Params> geometry_of, const Tensor& x, const Tensor& y,
                             const Params& params) {
  expect_floating_device_tensor(x, op, "x");
  PoolGeometry geometry = geometry_of(op, x.shape(), params);
  expect_floating_device_tensor(y, op, "y");
  expect_same_dtype(y, x, op, "y", "x");
  expect_shape(y, output_shape(x.shape(), geometry), op, "y");
  expect_distinct(y, x, op, "y", "x");
  geometry.layout = plane_layout(op, {{x, "x"}, {y, "y"}});
  return geometry;
}

// Backward: dL_dx an f32, f16 or bf16 device tensor whose shape geometry_of accepts with
// params; dL_dy a device tensor of dL_dx's dtype and the output shape, not overlapping dL_dx,
// and in dL_dx's layout. Returns the geometry, its layout theirs.
template <typename Params>
PoolGeometry checked_backward(std::string_view op, GeometryOf<Params> geometry_of, const Tensor& dL_dy,
                              const Tensor& dL_dx, const Params& params) {
  expect_floating_device_tensor(dL_dx, op, "dL_dx");
  PoolGeometry geometry = geometry_of(op, dL_dx.shape(), params);
  expect_floating_device_tensor(dL_dy, op, "dL_dy");
  expect_same_dtype(dL_dy, dL_dx, op, "dL_dy", "dL_dx");
  expect_shape(dL_dy, output_shape(dL_dx.shape(), geometry), op, "dL_dy");
  expect_distinct(dL_dx, dL_dy, op, "dL_dx", "dL_dy");
  geometry.layout = plane_layout(op, {{dL_dy, "dL_dy"}, {dL_dx, "dL_dx"}});
  return geometry;
}

// The output y for x, of x's dtype and memory format.
template <typename Params>
Tensor empty_output(std::string_view op, GeometryOf<Params> geometry_of, const Tensor& x, const Params& params,
                    cudaStream_t stream) {
  return Tensor::empty(output_shape(x.shape(), geometry_of(op, x.shape(), params)), x.dtype(), stream,
                       x.memory_format());
}

// The gradient dL_dx for an input of x_shape, which is validated before allocating, of
// dL_dy's dtype and memory format (f32 when dL_dy is undefined, which the launcher then
// reports).
template <typename Params>
Tensor empty_input_gradient(std::string_view op, GeometryOf<Params> geometry_of, const Tensor& dL_dy,
                            const Shape& x_shape, const Params& params, cudaStream_t stream) {
  geometry_of(op, x_shape, params);
  if (!dL_dy.defined()) return Tensor::empty(x_shape, DType::f32, stream);
  return Tensor::empty(x_shape, dL_dy.dtype(), stream, dL_dy.memory_format());
}

// A max pool's argmax, checked after checked_forward or checked_backward: a device tensor of
// dtype i64 or i32 (then the planes must be indexable in 32 bits) and of the output shape.
// The forward's is optional (undefined: not saved) and must overlap neither x nor y; the
// backward's must not overlap dL_dx.
void expect_forward_argmax(const Tensor& argmax, const Tensor& x, const Tensor& y, const PoolGeometry& geometry,
                           std::string_view op);
void expect_backward_argmax(const Tensor& argmax, const Tensor& dL_dy, const Tensor& dL_dx,
                            const PoolGeometry& geometry, std::string_view op);

}  // namespace strata::kernels::pool2d
