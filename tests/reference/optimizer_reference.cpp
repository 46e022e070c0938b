#include "tests/reference/optimizer_reference.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

namespace strata::reference {

void sgd_step(std::vector<double>& parameter, std::span<const double> gradient, std::vector<double>& buffer,
              const kernels::SgdParams& params, bool first_step) {
  for (std::size_t i = 0; i < parameter.size(); ++i) {
    double g = params.maximize ? -gradient[i] : gradient[i];
    if (params.weight_decay != 0.0) g += params.weight_decay * parameter[i];
    if (params.momentum != 0.0) {
      buffer[i] = first_step ? g : params.momentum * buffer[i] + (1.0 - params.dampening) * g;
      g = params.nesterov ? g + params.momentum * buffer[i] : buffer[i];
    }
    parameter[i] -= params.lr * g;
  }
}

void adamw_step(std::vector<double>& parameter, std::span<const double> gradient, AdamWState& state,
                const kernels::AdamWParams& params, std::int64_t step) {
  const auto t = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(params.beta1, t);
  const double bias_correction2 = 1.0 - std::pow(params.beta2, t);
  for (std::size_t i = 0; i < parameter.size(); ++i) {
    const double g = params.maximize ? -gradient[i] : gradient[i];
    parameter[i] *= 1.0 - params.lr * params.weight_decay;
    double& m = state.exp_avg[i];
    double& v = state.exp_avg_sq[i];
    m = params.beta1 * m + (1.0 - params.beta1) * g;
    v = params.beta2 * v + (1.0 - params.beta2) * g * g;
    double v_used = v;
    if (params.amsgrad) {
      double& v_max = state.max_exp_avg_sq[i];
      v_max = std::isnan(v_max) || std::isnan(v) ? std::numeric_limits<double>::quiet_NaN() : std::max(v_max, v);
      v_used = v_max;
    }
    const double denominator = std::sqrt(v_used) / std::sqrt(bias_correction2) + params.eps;
    parameter[i] -= params.lr / bias_correction1 * m / denominator;
  }
}

double l2_norm(const std::vector<std::vector<double>>& tensors) {
  double sum = 0.0;
  for (const std::vector<double>& tensor : tensors) {
    for (const double value : tensor) sum += value * value;
  }
  return std::sqrt(sum);
}

double infinity_norm(const std::vector<std::vector<double>>& tensors) {
  double largest = 0.0;
  for (const std::vector<double>& tensor : tensors) {
    for (const double value : tensor) {
      if (std::isnan(value)) return std::numeric_limits<double>::quiet_NaN();
      largest = std::max(largest, std::abs(value));
    }
  }
  return largest;
}

double clip_grad_norm(std::vector<std::vector<double>>& gradients, double max_norm, bool infinity_norm_type) {
  const double norm = infinity_norm_type ? infinity_norm(gradients) : l2_norm(gradients);
  const double coefficient = max_norm / (norm + 1e-6);
  const double clamped = std::isnan(coefficient) ? coefficient : std::min(coefficient, 1.0);
  for (std::vector<double>& gradient : gradients) {
    for (double& value : gradient) value *= clamped;
  }
  return norm;
}

void ema_update(std::vector<double>& average, std::span<const double> parameter, double decay) {
  for (std::size_t i = 0; i < average.size(); ++i) average[i] = decay * average[i] + (1.0 - decay) * parameter[i];
}

}  // namespace strata::reference
