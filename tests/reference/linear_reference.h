// CPU references of linear (y = x W^T + b) and its gradients, in double, with x viewed as
// (rows, in_features).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace strata::reference {

struct LinearSizes {
  std::int64_t rows;
  std::int64_t in_features;
  std::int64_t out_features;
};

// y (rows, out) from x (rows, in), weight (out, in) and bias (out, or empty: none).
std::vector<double> linear(std::span<const double> x, std::span<const double> weight, std::span<const double> bias,
                           const LinearSizes& sizes);
// dL_dx (rows, in) = dL_dy (rows, out) W.
std::vector<double> linear_backward_data(std::span<const double> dL_dy, std::span<const double> weight,
                                         const LinearSizes& sizes);
// dL_dweight (out, in) = dL_dy^T x.
std::vector<double> linear_backward_weight(std::span<const double> dL_dy, std::span<const double> x,
                                           const LinearSizes& sizes);
// dL_dbias (out) = column sums of dL_dy.
std::vector<double> linear_backward_bias(std::span<const double> dL_dy, const LinearSizes& sizes);

}  // namespace strata::reference
