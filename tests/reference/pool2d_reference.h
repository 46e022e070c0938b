// CPU references of max_pool2d, avg_pool2d, adaptive_avg_pool2d and adaptive_max_pool2d,
// forward and backward: plain loops over every output and every kernel tap, in double, with
// PyTorch's rules written out directly (nothing shared with the library's window math).
// Backward passes scatter, the obvious way, where the kernels gather.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "strata/core/shape.h"
#include "strata/kernels/adaptive_pool2d.h"
#include "strata/kernels/pool2d.h"

namespace strata::reference {

// PyTorch's pooling_output_shape (aten/src/ATen/native/Pool.h), transcribed with its own
// argument order, for one spatial dimension.
std::int64_t pooling_output_shape(std::int64_t input_size, std::int64_t kernel_size, std::int64_t pad,
                                  std::int64_t stride, std::int64_t dilation, bool ceil_mode);

// (N, C, Ho, Wo) of each op for x (N, C, H, W); parameters are assumed valid.
Shape max_pool2d_output_shape(const Shape& x_shape, const kernels::Pool2dParams& params);
Shape avg_pool2d_output_shape(const Shape& x_shape, const kernels::AvgPool2dParams& params);
Shape adaptive_pool2d_output_shape(const Shape& x_shape, const kernels::AdaptivePool2dParams& params);

struct MaxPoolResult {
  std::vector<double> y;              // (N, C, Ho, Wo)
  std::vector<std::int64_t> argmax;   // (N, C, Ho, Wo), h * W + w in the plane; -1 for an empty window
};

MaxPoolResult max_pool2d_forward(std::span<const double> x, const Shape& x_shape, const kernels::Pool2dParams& params);
MaxPoolResult adaptive_max_pool2d_forward(std::span<const double> x, const Shape& x_shape,
                                          const kernels::AdaptivePool2dParams& params);
// dL_dx (N, C, H, W): every dL_dy element added to the input element its argmax names (for
// max_pool2d and adaptive_max_pool2d alike).
std::vector<double> max_pool_backward(std::span<const double> dL_dy, std::span<const std::int64_t> argmax,
                                      const Shape& x_shape);

std::vector<double> avg_pool2d_forward(std::span<const double> x, const Shape& x_shape,
                                       const kernels::AvgPool2dParams& params);
std::vector<double> avg_pool2d_backward(std::span<const double> dL_dy, const Shape& x_shape,
                                        const kernels::AvgPool2dParams& params);

std::vector<double> adaptive_avg_pool2d_forward(std::span<const double> x, const Shape& x_shape,
                                                const kernels::AdaptivePool2dParams& params);
std::vector<double> adaptive_avg_pool2d_backward(std::span<const double> dL_dy, const Shape& x_shape,
                                                 const kernels::AdaptivePool2dParams& params);

}  // namespace strata::reference
