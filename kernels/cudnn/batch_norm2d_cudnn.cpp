// batch_norm2d on cuDNN (kernels/cudnn/batch_norm2d_cudnn.h): the argument checks, as the
// custom launchers make them (with the same messages), and the refusal, shared by both
// builds; cuDNN itself is behind kernels/cudnn/batch_norm2d_cudnn_backend.h.
#include "kernels/cudnn/batch_norm2d_cudnn.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "core/check.h"
#include "core/format.h"
#include "core/nvtx.h"
#include "kernels/cudnn/batch_norm2d_cudnn_backend.h"
#include "kernels/tensor_checks.h"
#include "strata/core/errors.h"

namespace strata::kernels {

namespace {

constexpr const char* kOp = "batch_norm2d";

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

void expect_channel_tensor(const Tensor& tensor, const Shape& channels, const char* name) {
  expect_device_tensor(tensor, kOp, name);
  expect_shape(tensor, channels, kOp, name);
}

void check_weight(const Tensor& weight, const BatchNormParams& params) {
  STRATA_CHECK(weight.defined() == has_weight(params), "{}: affine {} {}, got {}", kOp, affine_name(params.affine),
               has_weight(params) ? "needs a weight" : "takes no weight (it is fixed at 1)",
               weight.defined() ? weight.to_string() : "none");
}

void check_affine(const Tensor& weight, const Tensor& bias, const Shape& channels, const BatchNormParams& params) {
  check_weight(weight, params);
  STRATA_CHECK(bias.defined() == has_bias(params), "{}: affine {} {}, got {}", kOp, affine_name(params.affine),
               has_bias(params) ? "needs a bias" : "takes no bias", bias.defined() ? bias.to_string() : "none");
  if (weight.defined()) expect_channel_tensor(weight, channels, "weight");
  if (bias.defined()) expect_channel_tensor(bias, channels, "bias");
}

void check_params(const BatchNormParams& params, const Shape& x) {
  STRATA_CHECK(std::isfinite(params.eps) && params.eps >= 0.0f, "{}: eps must be finite and >= 0, got {} (x {})", kOp,
               params.eps, x);
  STRATA_CHECK(std::isfinite(params.momentum), "{}: momentum must be finite, got {} (x {})", kOp, params.momentum, x);
}

// Throws NotSupported "<op> on cuDNN (x ..., eps ...): <reason>" when cuDNN cannot run it.
void require_accepted(const Shape& x, const BatchNormParams& params, std::string_view op) {
  const std::string reason = batch_norm2d_cudnn_refusal(x, params);
  if (!reason.empty()) throw NotSupported(fmt::format("{} on cuDNN (x {}, eps {}): {}", op, x, params.eps, reason));
}

}  // namespace

std::string batch_norm2d_cudnn_refusal(const Shape& x, const BatchNormParams& /*params*/) {
  // No eps refusal: cuDNN 9's minimum is 0 (see the header), below which the launchers throw
  // InvalidArgument on either engine.
  if (x.numel() > std::numeric_limits<std::int32_t>::max()) {
    return fmt::format("x {} has 2^31 elements or more, beyond cuDNN's 32-bit descriptors", x);
  }
  return cudnn_backend::batch_norm2d_refusal();
}

void batch_norm2d_cudnn_forward_training(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                         BatchNormRunningStats& running, Tensor& y, BatchNormSaved& saved,
                                         const BatchNormParams& params, cudaStream_t stream) {
  NvtxRange range("batch_norm2d_forward_training (cuDNN)");
  expect_device_tensor(x, kOp, "x");
  const Shape channels = batch_norm2d_channel_shape(x.shape(), BatchNormMode::training);
  check_params(params, x.shape());
  check_affine(weight, bias, channels, params);
  STRATA_CHECK(running.mean.defined() == running.var.defined(),
               "{}: running mean and variance must both be given or both be omitted (x {})", kOp, x.shape());
  if (running.mean.defined()) {
    expect_channel_tensor(running.mean, channels, "running mean");
    expect_channel_tensor(running.var, channels, "running var");
    expect_distinct(running.var, running.mean, kOp, "running var", "running mean");
  }
  expect_device_tensor(y, kOp, "y");
  expect_shape(y, x.shape(), kOp, "y");
  expect_distinct(y, x, kOp, "y", "x");
  expect_channel_tensor(saved.mean, channels, "saved mean");
  expect_channel_tensor(saved.invstd, channels, "saved invstd");
  expect_distinct(saved.invstd, saved.mean, kOp, "saved invstd", "saved mean");
  require_accepted(x.shape(), params, "batch_norm2d_forward_training");
  cudnn_backend::batch_norm2d_forward_training(x, weight, bias, running, y, saved, params, stream);
}

void batch_norm2d_cudnn_forward_eval(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                     const BatchNormRunningStats& running, Tensor& y, const BatchNormParams& params,
                                     cudaStream_t stream) {
  NvtxRange range("batch_norm2d_forward_eval (cuDNN)");
  expect_device_tensor(x, kOp, "x");
  const Shape channels = batch_norm2d_channel_shape(x.shape(), BatchNormMode::eval);
  check_params(params, x.shape());
  check_affine(weight, bias, channels, params);
  STRATA_CHECK(running.mean.defined() && running.var.defined(), "{}: eval needs the running mean and variance (x {})",
               kOp, x.shape());
  expect_channel_tensor(running.mean, channels, "running mean");
  expect_channel_tensor(running.var, channels, "running var");
  expect_device_tensor(y, kOp, "y");
  expect_shape(y, x.shape(), kOp, "y");
  expect_distinct(y, x, kOp, "y", "x");
  require_accepted(x.shape(), params, "batch_norm2d_forward_eval");
  cudnn_backend::batch_norm2d_forward_eval(x, weight, bias, running, y, params, stream);
}

void batch_norm2d_cudnn_backward(const Tensor& dL_dy, const Tensor& x, const Tensor& weight,
                                 const BatchNormSaved& saved, BatchNormGradients& gradients,
                                 const BatchNormParams& params, cudaStream_t stream) {
  NvtxRange range("batch_norm2d_backward (cuDNN)");
  expect_device_tensor(x, kOp, "x");
  const Shape channels = batch_norm2d_channel_shape(x.shape(), BatchNormMode::training);
  check_params(params, x.shape());
  expect_device_tensor(dL_dy, kOp, "dL_dy");
  expect_shape(dL_dy, x.shape(), kOp, "dL_dy");
  check_weight(weight, params);
  if (weight.defined()) expect_channel_tensor(weight, channels, "weight");
  STRATA_CHECK(!gradients.dL_dweight.defined() || has_weight(params),
               "{}: affine {} has no weight, so no dL_dweight (got {})", kOp, affine_name(params.affine),
               gradients.dL_dweight.to_string());
  STRATA_CHECK(!gradients.dL_dbias.defined() || has_bias(params), "{}: affine {} has no bias, so no dL_dbias (got {})",
               kOp, affine_name(params.affine), gradients.dL_dbias.to_string());
  if (gradients.dL_dx.defined()) {
    expect_device_tensor(gradients.dL_dx, kOp, "dL_dx");
    expect_shape(gradients.dL_dx, x.shape(), kOp, "dL_dx");
    expect_distinct(gradients.dL_dx, x, kOp, "dL_dx", "x");
    expect_distinct(gradients.dL_dx, dL_dy, kOp, "dL_dx", "dL_dy");
  }
  if (gradients.dL_dweight.defined()) expect_channel_tensor(gradients.dL_dweight, channels, "dL_dweight");
  if (gradients.dL_dbias.defined()) expect_channel_tensor(gradients.dL_dbias, channels, "dL_dbias");
  if (gradients.dL_dweight.defined() && gradients.dL_dbias.defined()) {
    expect_distinct(gradients.dL_dbias, gradients.dL_dweight, kOp, "dL_dbias", "dL_dweight");
  }
  expect_channel_tensor(saved.mean, channels, "saved mean");
  expect_channel_tensor(saved.invstd, channels, "saved invstd");
  if (!gradients.dL_dx.defined() && !gradients.dL_dweight.defined() && !gradients.dL_dbias.defined()) return;
  require_accepted(x.shape(), params, "batch_norm2d_backward");
  cudnn_backend::batch_norm2d_backward(dL_dy, x, weight, saved, gradients, params, stream);
}

}  // namespace strata::kernels
