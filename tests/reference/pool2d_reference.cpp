#include "tests/reference/pool2d_reference.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

namespace strata::reference {

namespace {

using kernels::AdaptivePool2dParams;
using kernels::AvgPool2dParams;
using kernels::Pool2dParams;

std::size_t to_size(std::int64_t value) { return static_cast<std::size_t>(value); }

// Visits every (plane, oh, ow) of an output (N, C, Ho, Wo) in row-major order, with the
// flat output index.
template <typename Visit>
void for_each_output(const Shape& y_shape, Visit&& visit) {
  const std::int64_t planes = y_shape[0] * y_shape[1];
  std::int64_t o = 0;
  for (std::int64_t plane = 0; plane < planes; ++plane) {
    for (std::int64_t oh = 0; oh < y_shape[2]; ++oh) {
      for (std::int64_t ow = 0; ow < y_shape[3]; ++ow) visit(plane, oh, ow, o++);
    }
  }
}

// PyTorch's adaptive bins: [floor(o * in / out), ceil((o + 1) * in / out)).
std::int64_t bin_start(std::int64_t o, std::int64_t in, std::int64_t out) {
  return static_cast<std::int64_t>(std::floor(static_cast<double>(o * in) / static_cast<double>(out)));
}
std::int64_t bin_end(std::int64_t o, std::int64_t in, std::int64_t out) {
  return static_cast<std::int64_t>(std::ceil(static_cast<double>((o + 1) * in) / static_cast<double>(out)));
}

}  // namespace

std::int64_t pooling_output_shape(std::int64_t input_size, std::int64_t kernel_size, std::int64_t pad,
                                  std::int64_t stride, std::int64_t dilation, bool ceil_mode) {
  // div_rtn: division rounding toward negative infinity.
  const std::int64_t numerator = input_size + 2 * pad - dilation * (kernel_size - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  std::int64_t quotient = numerator / stride;
  if (numerator % stride != 0 && (numerator < 0) != (stride < 0)) --quotient;
  std::int64_t output_size = quotient + 1;
  if (ceil_mode) {
    // ensure that the last pooling starts inside the image
    if ((output_size - 1) * stride >= input_size + pad) --output_size;
  }
  return output_size;
}

Shape max_pool2d_output_shape(const Shape& x_shape, const Pool2dParams& params) {
  const kernels::Size2d stride = params.stride.value_or(params.kernel);
  return Shape{x_shape[0], x_shape[1],
               pooling_output_shape(x_shape[2], params.kernel.h, params.padding.h, stride.h, params.dilation.h,
                                    params.ceil_mode),
               pooling_output_shape(x_shape[3], params.kernel.w, params.padding.w, stride.w, params.dilation.w,
                                    params.ceil_mode)};
}

Shape avg_pool2d_output_shape(const Shape& x_shape, const AvgPool2dParams& params) {
  return reference::max_pool2d_output_shape(x_shape, params.window);
}

Shape adaptive_pool2d_output_shape(const Shape& x_shape, const AdaptivePool2dParams& params) {
  return Shape{x_shape[0], x_shape[1], params.output_size.h, params.output_size.w};
}

MaxPoolResult max_pool2d_forward(std::span<const double> x, const Shape& x_shape, const Pool2dParams& params) {
  const Shape y_shape = reference::max_pool2d_output_shape(x_shape, params);
  const kernels::Size2d stride = params.stride.value_or(params.kernel);
  const std::int64_t height = x_shape[2];
  const std::int64_t width = x_shape[3];
  MaxPoolResult result{std::vector<double>(to_size(y_shape.numel())),
                       std::vector<std::int64_t>(to_size(y_shape.numel()))};
  for_each_output(y_shape, [&](std::int64_t plane, std::int64_t oh, std::int64_t ow, std::int64_t o) {
    const double* x_plane = x.data() + plane * height * width;
    double best = -std::numeric_limits<double>::infinity();
    std::int64_t best_index = -1;  // stays -1 when no tap lands inside the input
    for (std::int64_t kh = 0; kh < params.kernel.h; ++kh) {
      for (std::int64_t kw = 0; kw < params.kernel.w; ++kw) {
        const std::int64_t h = oh * stride.h - params.padding.h + kh * params.dilation.h;
        const std::int64_t w = ow * stride.w - params.padding.w + kw * params.dilation.w;
        if (h < 0 || h >= height || w < 0 || w >= width) continue;
        const double value = x_plane[h * width + w];
        // The first tap always counts; later ones when greater, or NaN (PyTorch's rule).
        if (best_index < 0 || value > best || std::isnan(value)) {
          best = value;
          best_index = h * width + w;
        }
      }
    }
    result.y[to_size(o)] = best;
    result.argmax[to_size(o)] = best_index;
  });
  return result;
}

MaxPoolResult adaptive_max_pool2d_forward(std::span<const double> x, const Shape& x_shape,
                                          const AdaptivePool2dParams& params) {
  const Shape y_shape = reference::adaptive_pool2d_output_shape(x_shape, params);
  const std::int64_t height = x_shape[2];
  const std::int64_t width = x_shape[3];
  MaxPoolResult result{std::vector<double>(to_size(y_shape.numel())),
                       std::vector<std::int64_t>(to_size(y_shape.numel()))};
  for_each_output(y_shape, [&](std::int64_t plane, std::int64_t oh, std::int64_t ow, std::int64_t o) {
    const double* x_plane = x.data() + plane * height * width;
    double best = 0;
    std::int64_t best_index = -1;
    for (std::int64_t h = bin_start(oh, height, y_shape[2]); h < bin_end(oh, height, y_shape[2]); ++h) {
      for (std::int64_t w = bin_start(ow, width, y_shape[3]); w < bin_end(ow, width, y_shape[3]); ++w) {
        const double value = x_plane[h * width + w];
        if (best_index < 0 || value > best || std::isnan(value)) {
          best = value;
          best_index = h * width + w;
        }
      }
    }
    result.y[to_size(o)] = best;
    result.argmax[to_size(o)] = best_index;
  });
  return result;
}

std::vector<double> max_pool_backward(std::span<const double> dL_dy, std::span<const std::int64_t> argmax,
                                      const Shape& x_shape) {
  std::vector<double> dL_dx(to_size(x_shape.numel()), 0.0);
  const std::int64_t planes = x_shape[0] * x_shape[1];
  const std::int64_t plane_inputs = x_shape[2] * x_shape[3];
  const std::int64_t plane_outputs = planes == 0 ? 0 : static_cast<std::int64_t>(dL_dy.size()) / planes;
  for (std::int64_t plane = 0; plane < planes; ++plane) {
    for (std::int64_t i = 0; i < plane_outputs; ++i) {
      const std::int64_t o = plane * plane_outputs + i;
      if (argmax[to_size(o)] >= 0) dL_dx[to_size(plane * plane_inputs + argmax[to_size(o)])] += dL_dy[to_size(o)];
    }
  }
  return dL_dx;
}

namespace {

// The taps of avg window (oh, ow) inside the input, and its divisor.
struct AvgTaps {
  std::int64_t h_begin, h_end, w_begin, w_end;
  double divisor;
};

AvgTaps avg_taps(const Shape& x_shape, const AvgPool2dParams& params, std::int64_t oh, std::int64_t ow) {
  const Pool2dParams& window = params.window;
  const kernels::Size2d stride = window.stride.value_or(window.kernel);
  const std::int64_t h_start = oh * stride.h - window.padding.h;
  const std::int64_t w_start = ow * stride.w - window.padding.w;
  // Positions of the window inside the padded input [-p, size + p), and inside the input.
  std::int64_t padded_rows = 0;
  std::int64_t padded_cols = 0;
  for (std::int64_t kh = 0; kh < window.kernel.h; ++kh) padded_rows += h_start + kh < x_shape[2] + window.padding.h;
  for (std::int64_t kw = 0; kw < window.kernel.w; ++kw) padded_cols += w_start + kw < x_shape[3] + window.padding.w;
  AvgTaps taps{std::max<std::int64_t>(h_start, 0), std::min(h_start + window.kernel.h, x_shape[2]),
               std::max<std::int64_t>(w_start, 0), std::min(w_start + window.kernel.w, x_shape[3]), 0.0};
  if (params.divisor_override) {
    taps.divisor = static_cast<double>(*params.divisor_override);
  } else if (params.count_include_pad) {
    taps.divisor = static_cast<double>(padded_rows * padded_cols);
  } else {
    taps.divisor = static_cast<double>((taps.h_end - taps.h_begin) * (taps.w_end - taps.w_begin));
  }
  return taps;
}

}  // namespace

std::vector<double> avg_pool2d_forward(std::span<const double> x, const Shape& x_shape,
                                       const AvgPool2dParams& params) {
  const Shape y_shape = reference::avg_pool2d_output_shape(x_shape, params);
  std::vector<double> y(to_size(y_shape.numel()));
  for_each_output(y_shape, [&](std::int64_t plane, std::int64_t oh, std::int64_t ow, std::int64_t o) {
    const double* x_plane = x.data() + plane * x_shape[2] * x_shape[3];
    const AvgTaps taps = avg_taps(x_shape, params, oh, ow);
    double sum = 0;
    for (std::int64_t h = taps.h_begin; h < taps.h_end; ++h) {
      for (std::int64_t w = taps.w_begin; w < taps.w_end; ++w) sum += x_plane[h * x_shape[3] + w];
    }
    y[to_size(o)] = sum / taps.divisor;
  });
  return y;
}

std::vector<double> avg_pool2d_backward(std::span<const double> dL_dy, const Shape& x_shape,
                                        const AvgPool2dParams& params) {
  const Shape y_shape = reference::avg_pool2d_output_shape(x_shape, params);
  std::vector<double> dL_dx(to_size(x_shape.numel()), 0.0);
  for_each_output(y_shape, [&](std::int64_t plane, std::int64_t oh, std::int64_t ow, std::int64_t o) {
    double* dL_dx_plane = dL_dx.data() + plane * x_shape[2] * x_shape[3];
    const AvgTaps taps = avg_taps(x_shape, params, oh, ow);
    for (std::int64_t h = taps.h_begin; h < taps.h_end; ++h) {
      for (std::int64_t w = taps.w_begin; w < taps.w_end; ++w) {
        dL_dx_plane[h * x_shape[3] + w] += dL_dy[to_size(o)] / taps.divisor;
      }
    }
  });
  return dL_dx;
}

std::vector<double> adaptive_avg_pool2d_forward(std::span<const double> x, const Shape& x_shape,
                                                const AdaptivePool2dParams& params) {
  const Shape y_shape = reference::adaptive_pool2d_output_shape(x_shape, params);
  std::vector<double> y(to_size(y_shape.numel()));
  for_each_output(y_shape, [&](std::int64_t plane, std::int64_t oh, std::int64_t ow, std::int64_t o) {
    const double* x_plane = x.data() + plane * x_shape[2] * x_shape[3];
    const std::int64_t h0 = bin_start(oh, x_shape[2], y_shape[2]), h1 = bin_end(oh, x_shape[2], y_shape[2]);
    const std::int64_t w0 = bin_start(ow, x_shape[3], y_shape[3]), w1 = bin_end(ow, x_shape[3], y_shape[3]);
    double sum = 0;
    for (std::int64_t h = h0; h < h1; ++h) {
      for (std::int64_t w = w0; w < w1; ++w) sum += x_plane[h * x_shape[3] + w];
    }
    y[to_size(o)] = sum / static_cast<double>((h1 - h0) * (w1 - w0));
  });
  return y;
}

std::vector<double> adaptive_avg_pool2d_backward(std::span<const double> dL_dy, const Shape& x_shape,
                                                 const AdaptivePool2dParams& params) {
  const Shape y_shape = reference::adaptive_pool2d_output_shape(x_shape, params);
  std::vector<double> dL_dx(to_size(x_shape.numel()), 0.0);
  for_each_output(y_shape, [&](std::int64_t plane, std::int64_t oh, std::int64_t ow, std::int64_t o) {
    double* dL_dx_plane = dL_dx.data() + plane * x_shape[2] * x_shape[3];
    const std::int64_t h0 = bin_start(oh, x_shape[2], y_shape[2]), h1 = bin_end(oh, x_shape[2], y_shape[2]);
    const std::int64_t w0 = bin_start(ow, x_shape[3], y_shape[3]), w1 = bin_end(ow, x_shape[3], y_shape[3]);
    const double share = dL_dy[to_size(o)] / static_cast<double>((h1 - h0) * (w1 - w0));
    for (std::int64_t h = h0; h < h1; ++h) {
      for (std::int64_t w = w0; w < w1; ++w) dL_dx_plane[h * x_shape[3] + w] += share;
    }
  });
  return dL_dx;
}

}  // namespace strata::reference
