// batch_norm2d: per-channel statistics and backward sums with one block per channel
// (reduced in a fixed order, in double: deterministic and accurate), and element-wise
// kernels that normalise and compute dL/dx. The kernels other than the statistics live in
// batch_norm2d_kernels.cuh, shared with the fused batch norm + activation, and run here with
// the identity activation; so do the argument checks, defined here.
#include "strata/kernels/batch_norm2d.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include "core/check.h"
#include "core/format.h"
#include "core/nvtx.h"
#include "kernels/batch_norm2d_kernels.cuh"
#include "kernels/common.cuh"
#include "kernels/tensor_checks.h"

namespace strata::kernels {

namespace batch_norm {

namespace {

// Block c: mean and biased variance of channel c, saved as mean and 1 / sqrt(var + eps), and
// the running statistics updated (unbiased variance). The sums are of x - x[0, c, 0, 0] in
// double, so that a mean far from zero does not cancel the variance away.
__global__ void batch_norm_statistics_kernel(const float* x /* (N, C, H, W) */, ChannelLayout layout, float eps,
                                             float momentum, float* saved_mean /* (C) */,
                                             float* saved_invstd /* (C) */, float* running_mean /* (C) or null */,
                                             float* running_var /* (C) or null */) {
  __shared__ double scratch[kWarpSize];
  const std::int64_t c = blockIdx.x;
  const std::int64_t count = layout.values_per_channel();
  const double shift = x[layout.element(0, c)];
  double sum = 0.0;
  double sum_of_squares = 0.0;
  for (std::int64_t k = threadIdx.x; k < count; k += blockDim.x) {
    const double shifted = static_cast<double>(x[layout.element(k, c)]) - shift;
    sum += shifted;
    sum_of_squares += shifted * shifted;
  }
  sum = block_sum(sum, scratch);
  sum_of_squares = block_sum(sum_of_squares, scratch);
  if (threadIdx.x != 0) return;
  const double n = static_cast<double>(count);
  const double shifted_mean = sum / n;
  const double variance = fmax(sum_of_squares / n - shifted_mean * shifted_mean, 0.0);  // biased
  const double mean = shift + shifted_mean;
  saved_mean[c] = static_cast<float>(mean);
  saved_invstd[c] = static_cast<float>(1.0 / sqrt(variance + static_cast<double>(eps)));
  if (running_mean != nullptr) {
    const double m = momentum;
    running_mean[c] = static_cast<float>((1.0 - m) * running_mean[c] + m * mean);
    running_var[c] = static_cast<float>((1.0 - m) * running_var[c] + m * variance * n / (n - 1.0));
  }
}

const char* affine_name(BatchNormAffine affine) {
  switch (affine) {
    case BatchNormAffine::none: return "none";
    case BatchNormAffine::bias_only: return "bias_only";
    case BatchNormAffine::weight_and_bias: return "weight_and_bias";
  }
  return "invalid";
}

bool has_weight(const BatchNormParams& params) { return params.affine == BatchNormAffine::weight_and_bias; }
bool has_bias(const BatchNormParams& params) { return params.affine != BatchNormAffine::none; }

float* data_or_null(Tensor& tensor) { return tensor.defined() ? tensor.data<float>() : nullptr; }

// A (C) f32 device tensor.
void expect_channel_tensor(std::string_view op, const Tensor& tensor, const Shape& channels, const char* name) {
  expect_device_tensor(tensor, op, name);
  expect_shape(tensor, channels, op, name);
}

// A weight exactly when params.affine has one, (C) then.
void check_weight(std::string_view op, const Tensor& weight, const Shape& channels, const BatchNormParams& params) {
  STRATA_CHECK(weight.defined() == has_weight(params), "{}: affine {} {}, got {}", op, affine_name(params.affine),
               has_weight(params) ? "needs a weight" : "takes no weight (it is fixed at 1)",
               weight.defined() ? weight.to_string() : "none");
  if (weight.defined()) expect_channel_tensor(op, weight, channels, "weight");
}

void check_params(std::string_view op, const BatchNormParams& params, const Shape& x) {
  STRATA_CHECK(std::isfinite(params.eps) && params.eps >= 0.0f, "{}: eps must be finite and >= 0, got {} (x {})",
               op, params.eps, x);
  STRATA_CHECK(std::isfinite(params.momentum), "{}: momentum must be finite, got {} (x {})", op, params.momentum, x);
}

}  // namespace

void check_bias(std::string_view op, const Tensor& bias, const Shape& channels, const BatchNormParams& params) {
  STRATA_CHECK(bias.defined() == has_bias(params), "{}: affine {} {}, got {}", op, affine_name(params.affine),
               has_bias(params) ? "needs a bias" : "takes no bias", bias.defined() ? bias.to_string() : "none");
  if (bias.defined()) expect_channel_tensor(op, bias, channels, "bias");
}

Shape channel_shape(std::string_view op, const Shape& x, BatchNormMode mode) {
  STRATA_CHECK(x.rank() == 4, "{}: x must be (N, C, H, W), got {}", op, x);
  STRATA_CHECK(x.numel() >= 1, "{}: sizes must be at least 1, got x {}", op, x);
  STRATA_CHECK(x[1] <= std::numeric_limits<int>::max(), "{}: more channels than a grid has blocks, got x {}", op, x);
  STRATA_CHECK(mode != BatchNormMode::training || x[0] * x[2] * x[3] > 1,
               "{}: expected more than 1 value per channel when training, got x {}", op, x);
  return Shape{x[1]};
}

Shape check_forward_training(std::string_view op, const Tensor& x, const Tensor& weight, const Tensor& bias,
                             const BatchNormRunningStats& running, const Tensor& y, const BatchNormSaved& saved,
                             const BatchNormParams& params) {
  expect_device_tensor(x, op, "x");
  const Shape channels = channel_shape(op, x.shape(), BatchNormMode::training);
  check_params(op, params, x.shape());
  check_weight(op, weight, channels, params);
  check_bias(op, bias, channels, params);
  STRATA_CHECK(running.mean.defined() == running.var.defined(),
               "{}: running mean and variance must both be given or both be omitted (x {})", op, x.shape());
  if (running.mean.defined()) {
    expect_channel_tensor(op, running.mean, channels, "running mean");
    expect_channel_tensor(op, running.var, channels, "running var");
    expect_distinct(running.var, running.mean, op, "running var", "running mean");
  }
  expect_device_tensor(y, op, "y");
  expect_shape(y, x.shape(), op, "y");
  expect_distinct(y, x, op, "y", "x");
  expect_channel_tensor(op, saved.mean, channels, "saved mean");
  expect_channel_tensor(op, saved.invstd, channels, "saved invstd");
  expect_distinct(saved.invstd, saved.mean, op, "saved invstd", "saved mean");
  return channels;
}

Shape check_forward_eval(std::string_view op, const Tensor& x, const Tensor& weight, const Tensor& bias,
                         const BatchNormRunningStats& running, const Tensor& y, const BatchNormParams& params) {
  expect_device_tensor(x, op, "x");
  const Shape channels = channel_shape(op, x.shape(), BatchNormMode::eval);
  check_params(op, params, x.shape());
  check_weight(op, weight, channels, params);
  check_bias(op, bias, channels, params);
  STRATA_CHECK(running.mean.defined() && running.var.defined(),
               "{}: eval needs the running mean and variance (x {})", op, x.shape());
  expect_channel_tensor(op, running.mean, channels, "running mean");
  expect_channel_tensor(op, running.var, channels, "running var");
  expect_device_tensor(y, op, "y");
  expect_shape(y, x.shape(), op, "y");
  expect_distinct(y, x, op, "y", "x");
  return channels;
}

Shape check_backward(std::string_view op, const Tensor& dL_dy, const Tensor& x, const Tensor& weight,
                     const BatchNormGradients& gradients, const BatchNormParams& params, BatchNormMode mode) {
  expect_device_tensor(x, op, "x");
  const Shape channels = channel_shape(op, x.shape(), mode);
  expect_device_tensor(dL_dy, op, "dL_dy");
  expect_shape(dL_dy, x.shape(), op, "dL_dy");
  check_weight(op, weight, channels, params);
  STRATA_CHECK(!gradients.dL_dweight.defined() || has_weight(params),
               "{}: affine {} has no weight, so no dL_dweight (got {})", op, affine_name(params.affine),
               gradients.dL_dweight.to_string());
  STRATA_CHECK(!gradients.dL_dbias.defined() || has_bias(params), "{}: affine {} has no bias, so no dL_dbias (got {})",
               op, affine_name(params.affine), gradients.dL_dbias.to_string());
  if (gradients.dL_dx.defined()) {
    expect_device_tensor(gradients.dL_dx, op, "dL_dx");
    expect_shape(gradients.dL_dx, x.shape(), op, "dL_dx");
    expect_distinct(gradients.dL_dx, x, op, "dL_dx", "x");
    expect_distinct(gradients.dL_dx, dL_dy, op, "dL_dx", "dL_dy");
  }
  if (gradients.dL_dweight.defined()) expect_channel_tensor(op, gradients.dL_dweight, channels, "dL_dweight");
  if (gradients.dL_dbias.defined()) expect_channel_tensor(op, gradients.dL_dbias, channels, "dL_dbias");
  if (gradients.dL_dweight.defined() && gradients.dL_dbias.defined()) {
    expect_distinct(gradients.dL_dbias, gradients.dL_dweight, op, "dL_dbias", "dL_dweight");
  }
  return channels;
}

void check_saved(std::string_view op, const BatchNormSaved& saved, const Shape& channels) {
  expect_channel_tensor(op, saved.mean, channels, "saved mean");
  expect_channel_tensor(op, saved.invstd, channels, "saved invstd");
}

void check_running_for_eval(std::string_view op, const BatchNormRunningStats& running, const Shape& channels,
                            const BatchNormParams& params, const Shape& x) {
  check_params(op, params, x);
  STRATA_CHECK(running.mean.defined() && running.var.defined(),
               "{}: the eval backward needs the running mean and variance (x {})", op, x);
  expect_channel_tensor(op, running.mean, channels, "running mean");
  expect_channel_tensor(op, running.var, channels, "running var");
}

void launch_statistics(const Tensor& x, const BatchNormParams& params, BatchNormSaved& saved,
                       BatchNormRunningStats& running, cudaStream_t stream) {
  const ChannelLayout layout = layout_of(x);
  launch(batch_norm_statistics_kernel,
         LaunchConfig{.grid = static_cast<unsigned>(layout.channels), .block = kChannelThreads, .stream = stream,
                      .name = "batch_norm2d_statistics"},
         x.data<float>(), layout, params.eps, params.momentum, saved.mean.data<float>(), saved.invstd.data<float>(),
         data_or_null(running.mean), data_or_null(running.var));
}

}  // namespace batch_norm

namespace {

constexpr const char* kOp = "batch_norm2d";
constexpr batch_norm::BackwardKernelNames kBackwardNames{.reduce = "batch_norm2d_backward_reduce",
                                                         .data = "batch_norm2d_backward_data"};
constexpr batch_norm::BackwardKernelNames kEvalBackwardNames{.reduce = "batch_norm2d_backward_reduce",
                                                             .data = "batch_norm2d_backward_eval_data"};

}  // namespace

Shape batch_norm2d_channel_shape(const Shape& x, BatchNormMode mode) { return batch_norm::channel_shape(kOp, x, mode); }

void batch_norm2d_forward_training(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                   BatchNormRunningStats& running, Tensor& y, BatchNormSaved& saved,
                                   const BatchNormParams& params, cudaStream_t stream) {
  NvtxRange range("batch_norm2d_forward_training");
  batch_norm::check_forward_training(kOp, x, weight, bias, running, y, saved, params);
  batch_norm::launch_statistics(x, params, saved, running, stream);
  const batch_norm::ChannelTransform transform{.mean = saved.mean.data<float>(),
                                               .spread = saved.invstd.data<float>(),
                                               .spread_is_variance = false,
                                               .eps = params.eps,
                                               .weight = batch_norm::data_or_null(weight),
                                               .bias = batch_norm::data_or_null(bias)};
  batch_norm::launch_apply(x, transform, batch_norm::IdentityActivation{}, y, "batch_norm2d_normalize", stream);
}

void batch_norm2d_forward_eval(const Tensor& x, const Tensor& weight, const Tensor& bias,
                               const BatchNormRunningStats& running, Tensor& y, const BatchNormParams& params,
                               cudaStream_t stream) {
  NvtxRange range("batch_norm2d_forward_eval");
  batch_norm::check_forward_eval(kOp, x, weight, bias, running, y, params);
  const batch_norm::ChannelTransform transform{.mean = running.mean.data<float>(),
                                               .spread = running.var.data<float>(),
                                               .spread_is_variance = true,
                                               .eps = params.eps,
                                               .weight = batch_norm::data_or_null(weight),
                                               .bias = batch_norm::data_or_null(bias)};
  batch_norm::launch_apply(x, transform, batch_norm::IdentityActivation{}, y, "batch_norm2d_normalize", stream);
}

void batch_norm2d_backward(const Tensor& dL_dy, const Tensor& x, const Tensor& weight, const BatchNormSaved& saved,
                           BatchNormGradients& gradients, const BatchNormParams& params, cudaStream_t stream) {
  NvtxRange range("batch_norm2d_backward");
  const Shape channels =
      batch_norm::check_backward(kOp, dL_dy, x, weight, gradients, params, BatchNormMode::training);
  batch_norm::check_saved(kOp, saved, channels);
  // The identity activation never reads the pre-activation, so the bias is not needed.
  const batch_norm::ChannelTransform transform{.mean = saved.mean.data<float>(),
                                               .spread = saved.invstd.data<float>(),
                                               .spread_is_variance = false,
                                               .eps = params.eps,
                                               .weight = batch_norm::data_or_null(weight),
                                               .bias = nullptr};
  batch_norm::launch_backward(dL_dy, x, transform, batch_norm::IdentityActivation{}, gradients, kBackwardNames,
                              stream);
}

void batch_norm2d_backward_eval(const Tensor& dL_dy, const Tensor& x, const Tensor& weight,
                                const BatchNormRunningStats& running, BatchNormGradients& gradients,
                                const BatchNormParams& params, cudaStream_t stream) {
  NvtxRange range("batch_norm2d_backward_eval");
  const Shape channels = batch_norm::check_backward(kOp, dL_dy, x, weight, gradients, params, BatchNormMode::eval);
  batch_norm::check_running_for_eval(kOp, running, channels, params, x.shape());
  const batch_norm::ChannelTransform transform{.mean = running.mean.data<float>(),
                                               .spread = running.var.data<float>(),
                                               .spread_is_variance = true,
                                               .eps = params.eps,
                                               .weight = batch_norm::data_or_null(weight),
                                               .bias = nullptr};
  batch_norm::launch_backward(dL_dy, x, transform, batch_norm::IdentityActivation{}, gradients, kEvalBackwardNames,
                              stream);
}

}  // namespace strata::kernels
