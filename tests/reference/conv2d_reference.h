// CPU reference of conv2d and its three backward passes: plain loops over every (image,
// output channel, output pixel, input channel of the group, kernel tap), in double.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "strata/kernels/conv2d.h"

namespace strata::reference {

// The sizes of one convolution; the output size is computed here, independently of the
// library's shape function.
struct Conv2dProblem {
  std::int64_t batch = 1;          // N
  std::int64_t in_channels = 1;    // C
  std::int64_t in_height = 1;      // H
  std::int64_t in_width = 1;       // W
  std::int64_t out_channels = 1;   // K
  std::int64_t kernel_height = 1;  // R
  std::int64_t kernel_width = 1;   // S
  kernels::Conv2dParams params;

  std::int64_t out_height() const;  // P
  std::int64_t out_width() const;   // Q
  std::int64_t input_count() const { return batch * in_channels * in_height * in_width; }
  std::int64_t weight_count() const {
    return out_channels * (in_channels / params.groups) * kernel_height * kernel_width;
  }
  std::int64_t output_count() const { return batch * out_channels * out_height() * out_width(); }
};

// y (N, K, P, Q) from x (N, C, H, W), weight (K, C/groups, R, S) and bias (K, or empty).
std::vector<double> conv2d_forward(const Conv2dProblem& problem, std::span<const double> x,
                                   std::span<const double> weight, std::span<const double> bias);
// dL_dx (N, C, H, W) from dL_dy (N, K, P, Q) and weight.
std::vector<double> conv2d_backward_data(const Conv2dProblem& problem, std::span<const double> dL_dy,
                                         std::span<const double> weight);
// dL_dweight (K, C/groups, R, S) from x and dL_dy.
std::vector<double> conv2d_backward_filter(const Conv2dProblem& problem, std::span<const double> x,
                                           std::span<const double> dL_dy);
// dL_dbias (K) from dL_dy.
std::vector<double> conv2d_backward_bias(const Conv2dProblem& problem, std::span<const double> dL_dy);

}  // namespace strata::reference
