// The argument checks of the batch norm launchers (kernels/batch_norm2d_checks.h).
#include "kernels/batch_norm2d_checks.h"

#include <cmath>
#include <limits>

#include "core/check.h"
#include "core/format.h"
#include "kernels/tensor_checks.h"

namespace strata::kernels::batch_norm {

namespace {

bool has_weight(const BatchNormParams& params) { return params.affine == BatchNormAffine::weight_and_bias; }
bool has_bias(const BatchNormParams& params) { return params.affine != BatchNormAffine::none; }

// y, dL_dy or dL_dx: a device tensor of x's dtype (f32, f16 or bf16) and, once its shape is
// checked, of x's memory layout: the kernels index all four alike (a channels-last tensor
// whose layouts coincide is either).
void expect_like_x(std::string_view op, const Tensor& tensor, const char* name, const Tensor& x) {
  expect_floating_device_tensor(tensor, op, name);
  expect_same_dtype(tensor, x, op, name, "x");
  expect_shape(tensor, x.shape(), op, name);
  STRATA_CHECK(tensor.is_contiguous() == x.is_contiguous(),
               "{}: {} must have x's memory format, got {} {} and x {} {} (convert one with to_memory_format)", op,
               name, memory_format_name(tensor.memory_format()), tensor.shape(),
               memory_format_name(x.memory_format()), x.shape());
}

// A (C) f32 device tensor: the per-channel tensors stay f32 whatever x's dtype.
void expect_channel_tensor(std::string_view op, const Tensor& tensor, const Shape& channels, const char* name) {
  STRATA_CHECK(!tensor.defined() || tensor.dtype() == DType::f32,
               "{}: {} must have dtype f32 (batch norm's weight, bias and statistics stay f32 whatever x's dtype), "
               "got {}",
               op, name, tensor.to_string());
  expect_device_tensor(tensor, op, name);
  expect_shape(tensor, channels, op, name);
}

// A weight exactly when params.affine has one, (C) then.
void check_weight(std::string_view op, const Tensor& weight, const Shape& channels, const BatchNormParams& params) {
  STRATA_CHECK(weight.defined() == has_weight(params), "{}: affine {} {}, got {}", op,
               batch_norm_affine_name(params.affine),
               has_weight(params) ? "needs a weight" : "takes no weight (it is fixed at 1)",
               weight.defined() ? weight.to_string() : "none");
  if (weight.defined()) expect_channel_tensor(op, weight, channels, "weight");
}

void check_params(std::string_view op, const BatchNormParams& params, const Shape& x) {
  STRATA_CHECK(std::isfinite(params.eps) && params.eps >= 0.0f, "{}: eps must be finite and >= 0, got {} (x {})",
               op, params.eps, x);
  STRATA_CHECK(std::isfinite(params.momentum), "{}: momentum must be finite, got {} (x {})", op, params.momentum, x);
}

// x, params, weight and bias, as both forwards read them; returns (C).
Shape check_forward_inputs(std::string_view op, const Tensor& x, const Tensor& weight, const Tensor& bias,
                           const BatchNormParams& params, BatchNormMode mode) {
  expect_floating_device_tensor(x, op, "x");
  const Shape channels = channel_shape(op, x.shape(), mode);
  check_params(op, params, x.shape());
  check_weight(op, weight, channels, params);
  check_bias(op, bias, channels, params);
  return channels;
}

// y (N, C, H, W), as x (dtype included) and not overlapping it.
void check_forward_output(std::string_view op, const Tensor& x, const Tensor& y) {
  expect_like_x(op, y, "y", x);
  expect_distinct(y, x, op, "y", "x");
}

}  // namespace

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
  const Shape channels = check_forward_inputs(op, x, weight, bias, params, BatchNormMode::training);
  STRATA_CHECK(running.mean.defined() == running.var.defined(),
               "{}: running mean and variance must both be given or both be omitted (x {})", op, x.shape());
  if (running.mean.defined()) {
    expect_channel_tensor(op, running.mean, channels, "running mean");
    expect_channel_tensor(op, running.var, channels, "running var");
    expect_distinct(running.var, running.mean, op, "running var", "running mean");
  }
  if (running.num_batches_tracked.defined()) {
    expect_device_tensor(running.num_batches_tracked, op, "num_batches_tracked", DType::i64);
    expect_shape(running.num_batches_tracked, Shape(), op, "num_batches_tracked");
  }
  check_forward_output(op, x, y);
  check_saved(op, saved, channels);
  expect_distinct(saved.invstd, saved.mean, op, "saved invstd", "saved mean");
  return channels;
}

Shape check_forward_eval(std::string_view op, const Tensor& x, const Tensor& weight, const Tensor& bias,
                         const BatchNormRunningStats& running, const Tensor& y, const BatchNormParams& params) {
  const Shape channels = check_forward_inputs(op, x, weight, bias, params, BatchNormMode::eval);
  STRATA_CHECK(running.mean.defined() && running.var.defined(),
               "{}: eval needs the running mean and variance (x {})", op, x.shape());
  expect_channel_tensor(op, running.mean, channels, "running mean");
  expect_channel_tensor(op, running.var, channels, "running var");
  check_forward_output(op, x, y);
  return channels;
}

Shape check_backward(std::string_view op, const Tensor& dL_dy, const Tensor& x, const Tensor& weight,
                     const BatchNormGradients& gradients, const BatchNormParams& params, BatchNormMode mode) {
  expect_floating_device_tensor(x, op, "x");
  const Shape channels = channel_shape(op, x.shape(), mode);
  check_params(op, params, x.shape());
  expect_like_x(op, dL_dy, "dL_dy", x);
  check_weight(op, weight, channels, params);
  STRATA_CHECK(!gradients.dL_dweight.defined() || has_weight(params),
               "{}: affine {} has no weight, so no dL_dweight (got {})", op, batch_norm_affine_name(params.affine),
               gradients.dL_dweight.to_string());
  STRATA_CHECK(!gradients.dL_dbias.defined() || has_bias(params), "{}: affine {} has no bias, so no dL_dbias (got {})",
               op, batch_norm_affine_name(params.affine), gradients.dL_dbias.to_string());
  if (gradients.dL_dx.defined()) {
    expect_like_x(op, gradients.dL_dx, "dL_dx", x);
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

void check_bias(std::string_view op, const Tensor& bias, const Shape& channels, const BatchNormParams& params) {
  STRATA_CHECK(bias.defined() == has_bias(params), "{}: affine {} {}, got {}", op,
               batch_norm_affine_name(params.affine), has_bias(params) ? "needs a bias" : "takes no bias",
               bias.defined() ? bias.to_string() : "none");
  if (bias.defined()) expect_channel_tensor(op, bias, channels, "bias");
}

std::optional<ChannelPartials> precomputed_partials(std::string_view op, const ChannelStatistics* statistics,
                                                    const Shape& channels) {
  if (statistics == nullptr) return std::nullopt;
  return expect_channel_statistics(*statistics, channels[0], op);
}

void check_saved(std::string_view op, const BatchNormSaved& saved, const Shape& channels) {
  expect_channel_tensor(op, saved.mean, channels, "saved mean");
  expect_channel_tensor(op, saved.invstd, channels, "saved invstd");
}

void check_running_for_eval(std::string_view op, const BatchNormRunningStats& running, const Shape& channels,
                            const Shape& x) {
  STRATA_CHECK(running.mean.defined() && running.var.defined(),
               "{}: the eval backward needs the running mean and variance (x {})", op, x);
  expect_channel_tensor(op, running.mean, channels, "running mean");
  expect_channel_tensor(op, running.var, channels, "running var");
}

}  // namespace strata::kernels::batch_norm
