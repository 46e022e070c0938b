#include "tests/reference/conv2d_reference.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace strata::reference {

namespace {

std::int64_t output_size(std::int64_t in, std::int64_t kernel, std::int64_t stride, std::int64_t padding,
                         std::int64_t dilation) {
  const double span = static_cast<double>(in + 2 * padding - dilation * (kernel - 1) - 1);
  return static_cast<std::int64_t>(std::floor(span / static_cast<double>(stride))) + 1;
}

// Calls visit(x_index, weight_index, y_index) for every product term of the convolution:
// y[y_index] += x[x_index] * weight[weight_index]. Padding taps are skipped.
template <typename Visit>
void for_each_term(const Conv2dProblem& pr, Visit&& visit) {
  const std::int64_t P = pr.out_height(), Q = pr.out_width();
  const std::int64_t groups = pr.params.groups;
  const std::int64_t channels_per_group = pr.in_channels / groups;
  const std::int64_t out_per_group = pr.out_channels / groups;
  for (std::int64_t n = 0; n < pr.batch; ++n) {
    for (std::int64_t k = 0; k < pr.out_channels; ++k) {
      const std::int64_t group = k / out_per_group;
      for (std::int64_t p = 0; p < P; ++p) {
        for (std::int64_t q = 0; q < Q; ++q) {
          const std::int64_t y_index = ((n * pr.out_channels + k) * P + p) * Q + q;
          for (std::int64_t c = 0; c < channels_per_group; ++c) {
            const std::int64_t input_channel = group * channels_per_group + c;
            for (std::int64_t r = 0; r < pr.kernel_height; ++r) {
              const std::int64_t h = p * pr.params.stride.h - pr.params.padding.h + r * pr.params.dilation.h;
              if (h < 0 || h >= pr.in_height) continue;
              for (std::int64_t s = 0; s < pr.kernel_width; ++s) {
                const std::int64_t w = q * pr.params.stride.w - pr.params.padding.w + s * pr.params.dilation.w;
                if (w < 0 || w >= pr.in_width) continue;
                const std::int64_t x_index = ((n * pr.in_channels + input_channel) * pr.in_height + h) * pr.in_width + w;
                const std::int64_t weight_index =
                    ((k * channels_per_group + c) * pr.kernel_height + r) * pr.kernel_width + s;
                visit(x_index, weight_index, y_index);
              }
            }
          }
        }
      }
    }
  }
}

void expect_size(std::span<const double> values, std::int64_t count, const char* what) {
  if (static_cast<std::int64_t>(values.size()) != count) {
    throw std::invalid_argument(std::string("conv2d reference: ") + what + " has " + std::to_string(values.size()) +
                                " values, expected " + std::to_string(count));
  }
}

}  // namespace

std::int64_t Conv2dProblem::out_height() const {
  return output_size(in_height, kernel_height, params.stride.h, params.padding.h, params.dilation.h);
}

std::int64_t Conv2dProblem::out_width() const {
  return output_size(in_width, kernel_width, params.stride.w, params.padding.w, params.dilation.w);
}

std::vector<double> conv2d_forward(const Conv2dProblem& problem, std::span<const double> x,
                                   std::span<const double> weight, std::span<const double> bias) {
  expect_size(x, problem.input_count(), "x");
  expect_size(weight, problem.weight_count(), "weight");
  if (!bias.empty()) expect_size(bias, problem.out_channels, "bias");
  std::vector<double> y(static_cast<std::size_t>(problem.output_count()), 0.0);
  for_each_term(problem, [&](std::int64_t xi, std::int64_t wi, std::int64_t yi) { y[yi] += x[xi] * weight[wi]; });
  if (!bias.empty()) {
    const std::int64_t plane = problem.out_height() * problem.out_width();
    for (std::size_t i = 0; i < y.size(); ++i) y[i] += bias[(static_cast<std::int64_t>(i) / plane) % problem.out_channels];
  }
  return y;
}

std::vector<double> conv2d_backward_data(const Conv2dProblem& problem, std::span<const double> dL_dy,
                                         std::span<const double> weight) {
  expect_size(dL_dy, problem.output_count(), "dL_dy");
  expect_size(weight, problem.weight_count(), "weight");
  std::vector<double> dL_dx(static_cast<std::size_t>(problem.input_count()), 0.0);
  for_each_term(problem, [&](std::int64_t xi, std::int64_t wi, std::int64_t yi) { dL_dx[xi] += dL_dy[yi] * weight[wi]; });
  return dL_dx;
}

std::vector<double> conv2d_backward_filter(const Conv2dProblem& problem, std::span<const double> x,
                                           std::span<const double> dL_dy) {
  expect_size(x, problem.input_count(), "x");
  expect_size(dL_dy, problem.output_count(), "dL_dy");
  std::vector<double> dL_dweight(static_cast<std::size_t>(problem.weight_count()), 0.0);
  for_each_term(problem, [&](std::int64_t xi, std::int64_t wi, std::int64_t yi) { dL_dweight[wi] += dL_dy[yi] * x[xi]; });
  return dL_dweight;
}

std::vector<double> conv2d_backward_bias(const Conv2dProblem& problem, std::span<const double> dL_dy) {
  expect_size(dL_dy, problem.output_count(), "dL_dy");
  std::vector<double> dL_dbias(static_cast<std::size_t>(problem.out_channels), 0.0);
  const std::int64_t plane = problem.out_height() * problem.out_width();
  for (std::size_t i = 0; i < dL_dy.size(); ++i) {
    dL_dbias[(static_cast<std::int64_t>(i) / plane) % problem.out_channels] += dL_dy[i];
  }
  return dL_dbias;
}

}  // namespace strata::reference
