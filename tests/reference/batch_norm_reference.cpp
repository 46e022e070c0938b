#include "tests/reference/batch_norm_reference.h"

#include <cmath>
#include <cstddef>

namespace strata::reference {

namespace {

std::size_t at(const BatchNormSizes& s, std::int64_t n, std::int64_t c, std::int64_t hw) {
  return static_cast<std::size_t>((n * s.channels + c) * s.height * s.width + hw);
}

struct ChannelMoments {
  double mean;
  double variance;  // biased
};

// Two passes: the mean, then the mean squared deviation.
ChannelMoments moments(std::span<const double> x, const BatchNormSizes& s, std::int64_t c) {
  const std::int64_t plane = s.height * s.width;
  const auto count = static_cast<double>(s.batch * plane);
  double sum = 0.0;
  for (std::int64_t n = 0; n < s.batch; ++n)
    for (std::int64_t hw = 0; hw < plane; ++hw) sum += x[at(s, n, c, hw)];
  const double mean = sum / count;
  double squares = 0.0;
  for (std::int64_t n = 0; n < s.batch; ++n)
    for (std::int64_t hw = 0; hw < plane; ++hw) squares += (x[at(s, n, c, hw)] - mean) * (x[at(s, n, c, hw)] - mean);
  return {mean, squares / count};
}

double weight_of(std::span<const double> weight, std::int64_t c) {
  return weight.empty() ? 1.0 : weight[static_cast<std::size_t>(c)];
}
double bias_of(std::span<const double> bias, std::int64_t c) {
  return bias.empty() ? 0.0 : bias[static_cast<std::size_t>(c)];
}

}  // namespace

BatchNormTrainingResult batch_norm2d_training(std::span<const double> x, std::span<const double> weight,
                                              std::span<const double> bias, std::span<const double> running_mean,
                                              std::span<const double> running_var, const BatchNormSizes& sizes,
                                              double eps, double momentum) {
  const std::int64_t plane = sizes.height * sizes.width;
  const auto count = static_cast<double>(sizes.batch * plane);
  BatchNormTrainingResult result;
  result.y.resize(x.size());
  for (std::int64_t c = 0; c < sizes.channels; ++c) {
    const ChannelMoments m = moments(x, sizes, c);
    const double invstd = 1.0 / std::sqrt(m.variance + eps);
    result.mean.push_back(m.mean);
    result.invstd.push_back(invstd);
    if (!running_mean.empty()) {
      const auto ci = static_cast<std::size_t>(c);
      result.running_mean.push_back((1.0 - momentum) * running_mean[ci] + momentum * m.mean);
      result.running_var.push_back((1.0 - momentum) * running_var[ci] + momentum * m.variance * count / (count - 1.0));
    }
    for (std::int64_t n = 0; n < sizes.batch; ++n) {
      for (std::int64_t hw = 0; hw < plane; ++hw) {
        const std::size_t i = at(sizes, n, c, hw);
        result.y[i] = (x[i] - m.mean) * invstd * weight_of(weight, c) + bias_of(bias, c);
      }
    }
  }
  return result;
}

std::vector<double> batch_norm2d_eval(std::span<const double> x, std::span<const double> weight,
                                      std::span<const double> bias, std::span<const double> running_mean,
                                      std::span<const double> running_var, const BatchNormSizes& sizes, double eps) {
  const std::int64_t plane = sizes.height * sizes.width;
  std::vector<double> y(x.size());
  for (std::int64_t c = 0; c < sizes.channels; ++c) {
    const auto ci = static_cast<std::size_t>(c);
    const double invstd = 1.0 / std::sqrt(running_var[ci] + eps);
    for (std::int64_t n = 0; n < sizes.batch; ++n) {
      for (std::int64_t hw = 0; hw < plane; ++hw) {
        const std::size_t i = at(sizes, n, c, hw);
        y[i] = (x[i] - running_mean[ci]) * invstd * weight_of(weight, c) + bias_of(bias, c);
      }
    }
  }
  return y;
}

BatchNormGradientsResult batch_norm2d_backward(std::span<const double> dL_dy, std::span<const double> x,
                                               std::span<const double> weight, const BatchNormSizes& sizes,
                                               double eps) {
  const std::int64_t plane = sizes.height * sizes.width;
  const auto count = static_cast<double>(sizes.batch * plane);
  BatchNormGradientsResult result;
  result.dL_dx.resize(x.size());
  for (std::int64_t c = 0; c < sizes.channels; ++c) {
    const ChannelMoments m = moments(x, sizes, c);
    const double invstd = 1.0 / std::sqrt(m.variance + eps);
    double sum_dy = 0.0;
    double sum_dy_x_hat = 0.0;
    for (std::int64_t n = 0; n < sizes.batch; ++n) {
      for (std::int64_t hw = 0; hw < plane; ++hw) {
        const std::size_t i = at(sizes, n, c, hw);
        sum_dy += dL_dy[i];
        sum_dy_x_hat += dL_dy[i] * (x[i] - m.mean) * invstd;
      }
    }
    result.dL_dweight.push_back(sum_dy_x_hat);
    result.dL_dbias.push_back(sum_dy);
    for (std::int64_t n = 0; n < sizes.batch; ++n) {
      for (std::int64_t hw = 0; hw < plane; ++hw) {
        const std::size_t i = at(sizes, n, c, hw);
        const double x_hat = (x[i] - m.mean) * invstd;
        result.dL_dx[i] = weight_of(weight, c) * invstd *
                          (dL_dy[i] - sum_dy / count - x_hat * sum_dy_x_hat / count);
      }
    }
  }
  return result;
}

}  // namespace strata::reference
