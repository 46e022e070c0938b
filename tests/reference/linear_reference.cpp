#include "tests/reference/linear_reference.h"

#include <cstddef>

namespace strata::reference {

namespace {
std::size_t at(std::int64_t row, std::int64_t columns, std::int64_t column) {
  return static_cast<std::size_t>(row * columns + column);
}
}  // namespace

std::vector<double> linear(std::span<const double> x, std::span<const double> weight, std::span<const double> bias,
                           const LinearSizes& sizes) {
  std::vector<double> y(static_cast<std::size_t>(sizes.rows * sizes.out_features));
  for (std::int64_t i = 0; i < sizes.rows; ++i) {
    for (std::int64_t o = 0; o < sizes.out_features; ++o) {
      double sum = bias.empty() ? 0.0 : bias[static_cast<std::size_t>(o)];
      for (std::int64_t k = 0; k < sizes.in_features; ++k) {
        sum += x[at(i, sizes.in_features, k)] * weight[at(o, sizes.in_features, k)];
      }
      y[at(i, sizes.out_features, o)] = sum;
    }
  }
  return y;
}

std::vector<double> linear_backward_data(std::span<const double> dL_dy, std::span<const double> weight,
                                         const LinearSizes& sizes) {
  std::vector<double> dL_dx(static_cast<std::size_t>(sizes.rows * sizes.in_features), 0.0);
  for (std::int64_t i = 0; i < sizes.rows; ++i) {
    for (std::int64_t k = 0; k < sizes.in_features; ++k) {
      double sum = 0.0;
      for (std::int64_t o = 0; o < sizes.out_features; ++o) {
        sum += dL_dy[at(i, sizes.out_features, o)] * weight[at(o, sizes.in_features, k)];
      }
      dL_dx[at(i, sizes.in_features, k)] = sum;
    }
  }
  return dL_dx;
}

std::vector<double> linear_backward_weight(std::span<const double> dL_dy, std::span<const double> x,
                                           const LinearSizes& sizes) {
  std::vector<double> dL_dweight(static_cast<std::size_t>(sizes.out_features * sizes.in_features), 0.0);
  for (std::int64_t o = 0; o < sizes.out_features; ++o) {
    for (std::int64_t k = 0; k < sizes.in_features; ++k) {
      double sum = 0.0;
      for (std::int64_t i = 0; i < sizes.rows; ++i) {
        sum += dL_dy[at(i, sizes.out_features, o)] * x[at(i, sizes.in_features, k)];
      }
      dL_dweight[at(o, sizes.in_features, k)] = sum;
    }
  }
  return dL_dweight;
}

std::vector<double> linear_backward_bias(std::span<const double> dL_dy, const LinearSizes& sizes) {
  std::vector<double> dL_dbias(static_cast<std::size_t>(sizes.out_features), 0.0);
  for (std::int64_t i = 0; i < sizes.rows; ++i) {
    for (std::int64_t o = 0; o < sizes.out_features; ++o) {
      dL_dbias[static_cast<std::size_t>(o)] += dL_dy[at(i, sizes.out_features, o)];
    }
  }
  return dL_dbias;
}

}  // namespace strata::reference
