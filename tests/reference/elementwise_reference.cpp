#include "tests/reference/elementwise_reference.h"

#include <cmath>
#include <cstddef>
#include <numbers>

#include "strata/core/philox.h"

namespace strata::reference {

namespace {

constexpr double kKappa = 0.044715;

// Product of shape[begin .. end).
std::int64_t product(const std::vector<std::int64_t>& shape, int begin, int end) {
  std::int64_t result = 1;
  for (int d = begin; d < end; ++d) result *= shape[static_cast<std::size_t>(d)];
  return result;
}

}  // namespace

std::vector<double> relu_forward(std::span<const double> x) {
  std::vector<double> y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] < 0 ? 0.0 : x[i];  // NaN passes, as in PyTorch
  return y;
}

std::vector<double> relu_backward(std::span<const double> dL_dy, std::span<const double> x) {
  std::vector<double> dL_dx(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) dL_dx[i] = x[i] <= 0 ? 0.0 : dL_dy[i];
  return dL_dx;
}

std::vector<double> gelu_forward(std::span<const double> x, bool tanh_form) {
  const double sqrt_two_over_pi = std::sqrt(2.0 / std::numbers::pi);
  std::vector<double> y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v = x[i];
    if (tanh_form) {
      y[i] = 0.5 * v * (1.0 + std::tanh(sqrt_two_over_pi * (v + kKappa * v * v * v)));
    } else {
      y[i] = 0.5 * v * std::erfc(-v / std::numbers::sqrt2);  // 1 + erf(t) = erfc(-t)
    }
  }
  return y;
}

std::vector<double> gelu_backward(std::span<const double> dL_dy, std::span<const double> x, bool tanh_form) {
  const double sqrt_two_over_pi = std::sqrt(2.0 / std::numbers::pi);
  std::vector<double> dL_dx(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v = x[i];
    double derivative;
    if (tanh_form) {
      const double t = std::tanh(sqrt_two_over_pi * (v + kKappa * v * v * v));
      derivative = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * sqrt_two_over_pi * (1.0 + 3.0 * kKappa * v * v);
    } else {
      const double cdf = 0.5 * std::erfc(-v / std::numbers::sqrt2);
      const double pdf = std::exp(-0.5 * v * v) / std::sqrt(2.0 * std::numbers::pi);
      derivative = cdf + v * pdf;
    }
    dL_dx[i] = dL_dy[i] * derivative;
  }
  return dL_dx;
}

std::vector<std::uint8_t> dropout_mask(std::uint64_t seed, std::uint64_t offset, std::size_t count, float p) {
  const float keep_probability = 1.0f - p;
  std::vector<std::uint8_t> mask(count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint64_t word = offset + i;
    const std::uint32_t bits = philox_group(seed, word / 4).x[word % 4];
    mask[i] = uniform_from_bits(bits) < keep_probability ? 1 : 0;
  }
  return mask;
}

std::vector<double> dropout_forward(std::span<const double> x, std::span<const std::uint8_t> mask, double p) {
  std::vector<double> y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = p == 1.0 || mask[i] == 0 ? 0.0 : x[i] / (1.0 - p);
  return y;
}

std::vector<double> dropout_backward(std::span<const double> dL_dy, std::span<const std::uint8_t> mask, double p) {
  return dropout_forward(dL_dy, mask, p);  // the forward is linear in x with the mask fixed
}

std::vector<double> add(std::span<const double> a, std::span<const double> b, double alpha) {
  std::vector<double> y(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) y[i] = a[i] + alpha * b[i];
  return y;
}

std::vector<double> concat(const std::vector<std::vector<double>>& xs,
                           const std::vector<std::vector<std::int64_t>>& shapes, int dim) {
  const int rank = static_cast<int>(shapes[0].size());
  const std::int64_t outer = product(shapes[0], 0, dim);
  std::vector<double> y;
  for (std::int64_t o = 0; o < outer; ++o) {
    for (std::size_t piece = 0; piece < xs.size(); ++piece) {
      const std::int64_t row = product(shapes[piece], dim, rank);  // this piece's part of one outer index
      for (std::int64_t j = 0; j < row; ++j) y.push_back(xs[piece][static_cast<std::size_t>(o * row + j)]);
    }
  }
  return y;
}

std::vector<std::vector<double>> split(std::span<const double> y, const std::vector<std::vector<std::int64_t>>& shapes,
                                       int dim) {
  const int rank = static_cast<int>(shapes[0].size());
  const std::int64_t outer = product(shapes[0], 0, dim);
  std::vector<std::vector<double>> xs(shapes.size());
  std::size_t next = 0;
  for (std::int64_t o = 0; o < outer; ++o) {
    for (std::size_t piece = 0; piece < shapes.size(); ++piece) {
      const std::int64_t row = product(shapes[piece], dim, rank);
      for (std::int64_t j = 0; j < row; ++j) xs[piece].push_back(y[next++]);
    }
  }
  return xs;
}

}  // namespace strata::reference
