// batch_norm2d_activation: batch norm and the activation after it in one element-wise pass,
// forward and backward. The statistics kernel is batch_norm2d's; the element-wise and
// backward-sum kernels are those of batch_norm2d_kernels.cuh instantiated with the
// activation's functors from activation_ops.cuh (plain batch norm instantiates them with
// the identity), so the fused op rounds and sums exactly as the unfused kernels do.
#include "strata/kernels/batch_norm2d_activation.h"

#include <optional>

#include "core/check.h"
#include "core/nvtx.h"
#include "kernels/activation_ops.cuh"
#include "kernels/batch_norm2d_checks.h"
#include "kernels/batch_norm2d_kernels.cuh"

namespace strata::kernels {

namespace {

constexpr const char* kOp = "batch_norm2d_activation";
constexpr batch_norm::BackwardKernelNames kBackwardNames{.reduce = "batch_norm2d_activation_backward_reduce",
                                                         .data = "batch_norm2d_activation_backward_data"};
constexpr batch_norm::BackwardKernelNames kEvalBackwardNames{.reduce = "batch_norm2d_activation_backward_reduce",
                                                             .data = "batch_norm2d_activation_backward_eval_data"};

using ReluActivation = batch_norm::PointwiseActivation<ReluForwardOp, ReluBackwardOp>;
using GeluActivation = batch_norm::PointwiseActivation<GeluExactForwardOp, GeluExactBackwardOp>;
using GeluTanhActivation = batch_norm::PointwiseActivation<GeluTanhForwardOp, GeluTanhBackwardOp>;

// Calls f with the device activation of activation: the one switch from the enum to kernels.
template <typename F>
void dispatch_activation(FusedActivation activation, F&& f) {
  switch (activation) {
    case FusedActivation::none: f(batch_norm::IdentityActivation{}); return;
    case FusedActivation::relu: f(ReluActivation{}); return;
    case FusedActivation::gelu: f(GeluActivation{}); return;
    case FusedActivation::gelu_tanh: f(GeluTanhActivation{}); return;
  }
  STRATA_CHECK(false, "{}: unknown activation {}", kOp, static_cast<int>(activation));
}

batch_norm::ChannelTransform transform_of(const BatchNormSaved& saved, const Tensor& weight, const Tensor& bias,
                                          const BatchNormParams& params) {
  return {.mean = saved.mean.data<float>(),
          .spread = saved.invstd.data<float>(),
          .spread_is_variance = false,
          .eps = params.eps,
          .weight = batch_norm::data_or_null(weight),
          .bias = batch_norm::data_or_null(bias)};
}

batch_norm::ChannelTransform transform_of(const BatchNormRunningStats& running, const Tensor& weight,
                                          const Tensor& bias, const BatchNormParams& params) {
  return {.mean = running.mean.data<float>(),
          .spread = running.var.data<float>(),
          .spread_is_variance = true,
          .eps = params.eps,
          .weight = batch_norm::data_or_null(weight),
          .bias = batch_norm::data_or_null(bias)};
}

}  // namespace

const char* fused_activation_name(FusedActivation activation) {
  switch (activation) {
    case FusedActivation::none: return "none";
    case FusedActivation::relu: return "relu";
    case FusedActivation::gelu: return "gelu";
    case FusedActivation::gelu_tanh: return "gelu_tanh";
  }
  return "invalid";
}

Shape batch_norm2d_activation_channel_shape(const Shape& x, BatchNormMode mode) {
  return batch_norm::channel_shape(kOp, x, mode);
}

void batch_norm2d_activation_forward_training(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                              BatchNormRunningStats& running, Tensor& y, BatchNormSaved& saved,
                                              const BatchNormActivationParams& params, cudaStream_t stream,
                                              const ChannelStatistics* statistics) {
  NvtxRange range("batch_norm2d_activation_forward_training");
  const Shape channels = batch_norm::check_forward_training(kOp, x, weight, bias, running, y, saved, params.norm);
  const std::optional<ChannelPartials> partials = batch_norm::precomputed_partials(kOp, statistics, channels);
  batch_norm::launch_statistics(x, params.norm, partials ? &*partials : nullptr, saved, running, stream);
  const batch_norm::ChannelTransform transform = transform_of(saved, weight, bias, params.norm);
  dispatch_activation(params.activation, [&](auto activation) {
    batch_norm::launch_apply(x, transform, activation, y, "batch_norm2d_activation_apply", stream);
  });
}

void batch_norm2d_activation_forward_eval(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                          const BatchNormRunningStats& running, Tensor& y,
                                          const BatchNormActivationParams& params, cudaStream_t stream) {
  NvtxRange range("batch_norm2d_activation_forward_eval");
  batch_norm::check_forward_eval(kOp, x, weight, bias, running, y, params.norm);
  const batch_norm::ChannelTransform transform = transform_of(running, weight, bias, params.norm);
  dispatch_activation(params.activation, [&](auto activation) {
    batch_norm::launch_apply(x, transform, activation, y, "batch_norm2d_activation_apply", stream);
  });
}

void batch_norm2d_activation_backward(const Tensor& dL_dy, const Tensor& x, const Tensor& weight,
                                      const Tensor& bias, const BatchNormSaved& saved,
                                      BatchNormGradients& gradients, const BatchNormActivationParams& params,
                                      cudaStream_t stream) {
  NvtxRange range("batch_norm2d_activation_backward");
  const Shape channels =
      batch_norm::check_backward(kOp, dL_dy, x, weight, gradients, params.norm, BatchNormMode::training);
  batch_norm::check_bias(kOp, bias, channels, params.norm);
  batch_norm::check_saved(kOp, saved, channels);
  const batch_norm::ChannelTransform transform = transform_of(saved, weight, bias, params.norm);
  dispatch_activation(params.activation, [&](auto activation) {
    batch_norm::launch_backward(dL_dy, x, transform, activation, gradients, kBackwardNames, stream);
  });
}

void batch_norm2d_activation_backward_eval(const Tensor& dL_dy, const Tensor& x, const Tensor& weight,
                                           const Tensor& bias, const BatchNormRunningStats& running,
                                           BatchNormGradients& gradients, const BatchNormActivationParams& params,
                                           cudaStream_t stream) {
  NvtxRange range("batch_norm2d_activation_backward_eval");
  const Shape channels =
      batch_norm::check_backward(kOp, dL_dy, x, weight, gradients, params.norm, BatchNormMode::eval);
  batch_norm::check_bias(kOp, bias, channels, params.norm);
  batch_norm::check_running_for_eval(kOp, running, channels, x.shape());
  const batch_norm::ChannelTransform transform = transform_of(running, weight, bias, params.norm);
  dispatch_activation(params.activation, [&](auto activation) {
    batch_norm::launch_backward(dL_dy, x, transform, activation, gradients, kEvalBackwardNames, stream);
  });
}

}  // namespace strata::kernels
