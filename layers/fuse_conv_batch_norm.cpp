// fuse_conv_batch_norm_eval (strata/layers/fusion.h): an eval-mode batch norm folded into
// the conv before it, on the host in double.
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/check.h"
#include "strata/core/stream.h"
#include "strata/layers/fusion.h"

namespace strata::nn {

namespace {

// The batch norm's eps, from its PyTorch-style repr ("64, eps=1e-05, momentum=0.1, ..."),
// which prints the float in its shortest round-trip form: BatchNorm2dBase keeps its
// parameters protected (see the report of issue 8: a public eps() accessor would replace this).
float batch_norm_eps(const BatchNorm2d& batch_norm) {
  const std::string repr = batch_norm.extra_repr();
  const std::size_t at = repr.find("eps=");
  STRATA_CHECK(at != std::string::npos, "fuse_conv_batch_norm_eval: no eps in BatchNorm2d({})", repr);
  return std::strtof(repr.c_str() + at + 4, nullptr);
}

std::vector<float> values_or(const Tensor& tensor, std::size_t count, float fallback, cudaStream_t stream) {
  return tensor.defined() ? tensor.to_vector<float>(stream) : std::vector<float>(count, fallback);
}

}  // namespace

Conv2d fuse_conv_batch_norm_eval(const Conv2d& conv, const BatchNorm2d& batch_norm, FusedActivation activation) {
  const std::string layers = fmt::format("Conv2d({}) and BatchNorm2d({})", conv.extra_repr(), batch_norm.extra_repr());
  STRATA_CHECK(!batch_norm.is_training(),
               "fuse_conv_batch_norm_eval: {}: the batch norm is in training mode; call eval() first (it then "
               "normalises with its running statistics, which are what is folded)",
               layers);
  STRATA_CHECK(batch_norm.running_mean().defined() && batch_norm.running_var().defined(),
               "fuse_conv_batch_norm_eval: {}: the batch norm has no running statistics to fold", layers);
  STRATA_CHECK(batch_norm.num_features() == conv.out_channels(),
               "fuse_conv_batch_norm_eval: {}: the batch norm has {} channels, the conv {} output channels", layers,
               batch_norm.num_features(), conv.out_channels());
  STRATA_CHECK(conv.activation() == FusedActivation::none,
               "fuse_conv_batch_norm_eval: {}: the conv applies {} before the batch norm, which cannot be folded",
               layers, kernels::fused_activation_name(conv.activation()));
  const cudaStream_t stream = current_stream();
  const auto channels = static_cast<std::size_t>(conv.out_channels());
  std::vector<float> weight = conv.weight().to_vector<float>(stream);  // (K, C/groups, R, S)
  const std::vector<float> bias = values_or(conv.bias(), channels, 0.0f, stream);
  const std::vector<float> mean = batch_norm.running_mean().to_vector<float>(stream);
  const std::vector<float> var = batch_norm.running_var().to_vector<float>(stream);
  const std::vector<float> gamma = values_or(batch_norm.weight(), channels, 1.0f, stream);
  const std::vector<float> beta = values_or(batch_norm.bias(), channels, 0.0f, stream);
  const double eps = batch_norm_eps(batch_norm);

  const std::size_t per_channel = weight.size() / channels;
  Conv2dOptions options = conv.options();
  options.bias = true;
  options.activation = activation;
  std::vector<float> folded_bias(channels);
  for (std::size_t k = 0; k < channels; ++k) {
    const double scale = static_cast<double>(gamma[k]) / std::sqrt(static_cast<double>(var[k]) + eps);
    for (std::size_t i = k * per_channel; i < (k + 1) * per_channel; ++i) {
      weight[i] = static_cast<float>(static_cast<double>(weight[i]) * scale);
    }
    folded_bias[k] = static_cast<float>((static_cast<double>(bias[k]) - mean[k]) * scale + beta[k]);
  }
  const Shape weight_shape = conv.weight().shape();
  return Conv2d(conv.in_channels(), conv.out_channels(), Pair(weight_shape[2], weight_shape[3]), options,
                Conv2d::WithValues{.weight = std::move(weight), .bias = std::move(folded_bias)});
}

}  // namespace strata::nn
