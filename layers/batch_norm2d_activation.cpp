// BatchNorm2dActivation: BatchNorm2d's state (BatchNorm2dBase: parameters, running
// statistics, batch counter, under BatchNorm2d's names) over the fused
// F::batch_norm2d_activation.
#include <fmt/format.h>

#include "strata/layers/functional.h"
#include "strata/layers/modules.h"

namespace strata::nn {

BatchNorm2dActivation::BatchNorm2dActivation(std::int64_t num_features, const BatchNorm2dActivationOptions& options)
    : BatchNorm2dBase("BatchNorm2dActivation", num_features,
                      {.eps = options.eps, .momentum = options.momentum, .affine = options.affine},
                      options.track_running_stats),
      activation_(options.activation) {}

std::string BatchNorm2dActivation::extra_repr() const {
  return fmt::format("{}, activation='{}'", norm_repr(), kernels::fused_activation_name(activation_));
}

std::string BatchNorm2dActivation::summary() const {
  return fmt::format("BatchNorm2dActivation {}, {}", num_features(), kernels::fused_activation_name(activation_));
}

Tensor BatchNorm2dActivation::forward_impl(const Tensor& x) {
  const kernels::BatchNormActivationParams params{.norm = norm_params(), .activation = activation_};
  return F::batch_norm2d_activation(x, weight(), bias(), running(), uses_batch_statistics(), params);
}

}  // namespace strata::nn
