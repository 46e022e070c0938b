// fuse_conv_batch_norm_eval (strata/layers/fusion.h): an eval-mode batch norm folded into
// the conv before it, on the host in double.
#include <cmath>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/check.h"
#include "strata/core/stream.h"
#include "strata/layers/fusion.h"

namespace strata::nn {

namespace {

std::vector<float> values_or(const Tensor& tensor, std::size_t count, float fallback, cudaStream_t stream) {
  return tensor.defined() ? tensor.to_vector<float>(stream) : std::vector<float>(count, fallback);
}

}  // namespace

Conv2d fuse_conv_batch_norm_eval(const Conv2d& conv, const BatchNorm2dBase& batch_norm, FusedActivation activation) {
  const std::string layers =
      fmt::format("Conv2d({}) and {}({})", conv.extra_repr(), batch_norm.type_name(), batch_norm.extra_repr());
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
  const double eps = batch_norm.norm_params().eps;

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

namespace {

// The activation of a layer that may follow a conv and its batch norm: ReLU, or GELU in
// either form; none for any other layer.
std::optional<FusedActivation> activation_of(const UnaryModule& layer) {
  if (dynamic_cast<const ReLU*>(&layer) != nullptr) return FusedActivation::relu;
  if (const auto* gelu = dynamic_cast<const GELU*>(&layer)) {
    return gelu->approximation() == GeluApproximation::tanh ? FusedActivation::gelu_tanh : FusedActivation::gelu;
  }
  return std::nullopt;
}

// Whether fuse_conv_batch_norm_eval folds this pair: a plain conv, a batch norm that
// normalises with running statistics it has.
bool folds(const Conv2d& conv, const BatchNorm2dBase& batch_norm) {
  return conv.activation() == FusedActivation::none && batch_norm.num_features() == conv.out_channels() &&
         batch_norm.running_mean().defined() && batch_norm.running_var().defined();
}

}  // namespace

Sequential fuse_for_inference(const Sequential& model) {
  STRATA_CHECK(!model.is_training(),
               "fuse_for_inference: the model is in training mode; call eval() first (the batch norms are folded "
               "with their running statistics, which only eval uses)");
  Sequential fused;
  for (std::size_t i = 0; i < model.size(); ++i) {
    const UnaryModule& layer = model[i];
    if (const auto* nested = dynamic_cast<const Sequential*>(&layer)) {
      fused.push_back(fuse_for_inference(*nested));
      continue;
    }
    const auto* conv = dynamic_cast<const Conv2d*>(&layer);
    const auto* norm = i + 1 < model.size() ? dynamic_cast<const BatchNorm2dBase*>(&model[i + 1]) : nullptr;
    if (conv == nullptr || norm == nullptr || !folds(*conv, *norm)) {
      fused.push_back(model.layer_ptr(i));  // shared, not copied
      continue;
    }
    if (const auto* norm_activation = dynamic_cast<const BatchNorm2dActivation*>(norm)) {
      fused.push_back(fuse_conv_batch_norm_eval(*conv, *norm, norm_activation->activation()));
      i += 1;
      continue;
    }
    const std::optional<FusedActivation> activation =
        i + 2 < model.size() ? activation_of(model[i + 2]) : std::nullopt;
    fused.push_back(fuse_conv_batch_norm_eval(*conv, *norm, activation.value_or(FusedActivation::none)));
    i += activation ? 2 : 1;
  }
  fused.eval();
  return fused;
}

}  // namespace strata::nn
