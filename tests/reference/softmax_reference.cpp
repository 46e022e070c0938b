#include "tests/reference/softmax_reference.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

namespace strata::reference {

namespace {

std::size_t index(std::int64_t row, std::int64_t columns, std::int64_t column) {
  return static_cast<std::size_t>(row * columns + column);
}

std::int64_t rows_of(std::size_t size, std::int64_t columns) { return static_cast<std::int64_t>(size) / columns; }

// log sum_j exp(x_j) of one row, with the maximum subtracted first.
double log_sum_exp(std::span<const double> x, std::int64_t row, std::int64_t columns) {
  double row_max = -std::numeric_limits<double>::infinity();
  for (std::int64_t j = 0; j < columns; ++j) row_max = std::max(row_max, x[index(row, columns, j)]);
  double sum = 0.0;
  for (std::int64_t j = 0; j < columns; ++j) sum += std::exp(x[index(row, columns, j)] - row_max);
  return row_max + std::log(sum);
}

}  // namespace

std::vector<double> softmax(std::span<const double> x, std::int64_t columns) {
  std::vector<double> y = log_softmax(x, columns);
  for (double& value : y) value = std::exp(value);
  return y;
}

std::vector<double> log_softmax(std::span<const double> x, std::int64_t columns) {
  std::vector<double> y(x.size());
  for (std::int64_t row = 0; row < rows_of(x.size(), columns); ++row) {
    const double lse = log_sum_exp(x, row, columns);
    for (std::int64_t j = 0; j < columns; ++j) y[index(row, columns, j)] = x[index(row, columns, j)] - lse;
  }
  return y;
}

std::vector<double> softmax_backward(std::span<const double> dL_dy, std::span<const double> y, std::int64_t columns) {
  std::vector<double> dL_dx(y.size());
  for (std::int64_t row = 0; row < rows_of(y.size(), columns); ++row) {
    double dot = 0.0;
    for (std::int64_t j = 0; j < columns; ++j) dot += dL_dy[index(row, columns, j)] * y[index(row, columns, j)];
    for (std::int64_t j = 0; j < columns; ++j) {
      const std::size_t i = index(row, columns, j);
      dL_dx[i] = y[i] * (dL_dy[i] - dot);
    }
  }
  return dL_dx;
}

std::vector<double> log_softmax_backward(std::span<const double> dL_dy, std::span<const double> y,
                                         std::int64_t columns) {
  std::vector<double> dL_dx(y.size());
  for (std::int64_t row = 0; row < rows_of(y.size(), columns); ++row) {
    double sum = 0.0;
    for (std::int64_t j = 0; j < columns; ++j) sum += dL_dy[index(row, columns, j)];
    for (std::int64_t j = 0; j < columns; ++j) {
      const std::size_t i = index(row, columns, j);
      dL_dx[i] = dL_dy[i] - std::exp(y[i]) * sum;
    }
  }
  return dL_dx;
}

std::vector<double> cross_entropy(std::span<const double> logits, std::span<const std::int64_t> targets,
                                  std::int64_t classes, const kernels::CrossEntropyParams& params) {
  const double eps = params.label_smoothing;
  const std::vector<double> log_p = log_softmax(logits, classes);
  std::vector<double> row_loss(targets.size(), 0.0);
  double sum = 0.0;
  std::int64_t counted = 0;
  for (std::size_t row = 0; row < targets.size(); ++row) {
    const std::int64_t target = targets[row];
    if (target == params.ignore_index) continue;
    const auto r = static_cast<std::int64_t>(row);
    double loss = -(1.0 - eps) * log_p[index(r, classes, target)];
    if (eps != 0.0) {
      for (std::int64_t j = 0; j < classes; ++j) {
        loss -= eps / static_cast<double>(classes) * log_p[index(r, classes, j)];
      }
    }
    row_loss[row] = loss;
    sum += loss;
    ++counted;
  }
  switch (params.reduction) {
    case kernels::Reduction::none: return row_loss;
    case kernels::Reduction::sum: return {sum};
    case kernels::Reduction::mean:
      return {counted == 0 ? std::numeric_limits<double>::quiet_NaN() : sum / static_cast<double>(counted)};
  }
  return {};
}

std::vector<double> cross_entropy_backward(std::span<const double> dL_dloss, std::span<const double> logits,
                                           std::span<const std::int64_t> targets, std::int64_t classes,
                                           const kernels::CrossEntropyParams& params) {
  const double eps = params.label_smoothing;
  const std::vector<double> p = softmax(logits, classes);
  const auto counted = static_cast<double>(std::ranges::count_if(targets, [&](std::int64_t t) {
    return t != params.ignore_index;
  }));
  std::vector<double> dL_dlogits(logits.size(), 0.0);
  for (std::size_t row = 0; row < targets.size(); ++row) {
    const std::int64_t target = targets[row];
    if (target == params.ignore_index) continue;
    double scale = params.reduction == kernels::Reduction::none ? dL_dloss[row] : dL_dloss[0];
    if (params.reduction == kernels::Reduction::mean) scale /= counted;
    const auto r = static_cast<std::int64_t>(row);
    for (std::int64_t j = 0; j < classes; ++j) {
      const double target_probability = (j == target ? 1.0 - eps : 0.0) + eps / static_cast<double>(classes);
      dL_dlogits[index(r, classes, j)] = scale * (p[index(r, classes, j)] - target_probability);
    }
  }
  return dL_dlogits;
}

}  // namespace strata::reference
