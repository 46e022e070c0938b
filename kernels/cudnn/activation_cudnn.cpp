// ReLU and GELU on cuDNN (kernels/cudnn/activation_cudnn.h): the argument checks, as the
// custom launchers make them, and the refusals, shared by both builds; cuDNN itself is
// behind kernels/cudnn/activation_cudnn_backend.h.
#include "kernels/cudnn/activation_cudnn.h"

#include <fmt/format.h>

#include <string>
#include <string_view>

#include "core/nvtx.h"
#include "kernels/cudnn/activation_cudnn_backend.h"
#include "kernels/tensor_checks.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"

namespace strata::kernels {

namespace {

std::string_view form_name(GeluApproximation approximation) {
  return approximation == GeluApproximation::tanh ? "tanh" : "none";
}

// Throws NotSupported "<op> on cuDNN (x <shape><detail>): <reason>" unless reason is empty.
void require_accepted(const std::string& reason, std::string_view op, const Shape& shape, std::string_view detail) {
  if (!reason.empty())
    throw NotSupported(fmt::format("{} on cuDNN (x {}{}): {}", op, shape.to_string(), detail, reason));
}

// output may be input itself (an in-place op, which cuDNN's legacy activations allow) but
// must not overlap it otherwise.
void expect_same_or_distinct(const Tensor& output, const Tensor& input, std::string_view op,
                             std::string_view output_name, std::string_view input_name) {
  if (output.data_ptr() == input.data_ptr() && output.nbytes() == input.nbytes()) return;
  expect_distinct(output, input, op, output_name, input_name);
}

}  // namespace

std::string relu_cudnn_refusal(const Shape& x) {
  if (!cudnn_available()) return std::string(cudnn_unavailable_reason());
  if (x.numel() == 0) return {};  // nothing to compute
  return cudnn_activation_backend::relu_refusal(x);
}

std::string gelu_cudnn_refusal(const Shape& x, const GeluParams& params, cudaStream_t stream) {
  if (!cudnn_available()) return std::string(cudnn_unavailable_reason());
  if (x.numel() == 0) return {};
  return cudnn_activation_backend::gelu_refusal(x, params.approximation, stream);
}

void relu_cudnn_forward(const Tensor& x, Tensor& y, cudaStream_t stream) {
  constexpr std::string_view kOp = "relu_forward";
  const NvtxRange range("relu_forward (cuDNN)");
  expect_device_tensor(x, kOp, "x");
  expect_device_tensor(y, kOp, "y");
  expect_shape(y, x.shape(), kOp, "y");
  expect_same_or_distinct(y, x, kOp, "y", "x");
  require_accepted(relu_cudnn_refusal(x.shape()), kOp, x.shape(), "");
  if (x.numel() == 0) return;
  cudnn_activation_backend::relu_forward(x.shape(), x.data<float>(), y.data<float>(), stream);
}

void relu_cudnn_backward(const Tensor& dL_dy, const Tensor& y, Tensor& dL_dx, cudaStream_t stream) {
  constexpr std::string_view kOp = "relu_backward";
  const NvtxRange range("relu_backward (cuDNN)");
  expect_device_tensor(dL_dy, kOp, "dL_dy");
  expect_device_tensor(y, kOp, "y");
  expect_device_tensor(dL_dx, kOp, "dL_dx");
  expect_shape(y, dL_dy.shape(), kOp, "y");
  expect_shape(dL_dx, dL_dy.shape(), kOp, "dL_dx");
  expect_same_or_distinct(dL_dx, dL_dy, kOp, "dL_dx", "dL_dy");
  expect_distinct(dL_dx, y, kOp, "dL_dx", "y");
  require_accepted(relu_cudnn_refusal(y.shape()), kOp, y.shape(), "");
  if (y.numel() == 0) return;
  cudnn_activation_backend::relu_backward(y.shape(), dL_dy.data<float>(), y.data<float>(), dL_dx.data<float>(), stream);
}

void gelu_cudnn_forward(const Tensor& x, Tensor& y, const GeluParams& params, cudaStream_t stream) {
  constexpr std::string_view kOp = "gelu_forward";
  const NvtxRange range("gelu_forward (cuDNN)");
  expect_device_tensor(x, kOp, "x");
  expect_device_tensor(y, kOp, "y");
  expect_shape(y, x.shape(), kOp, "y");
  expect_distinct(y, x, kOp, "y", "x");
  require_accepted(gelu_cudnn_refusal(x.shape(), params, stream), kOp, x.shape(),
                   fmt::format(", approximate {}", form_name(params.approximation)));
  if (x.numel() == 0) return;
  cudnn_activation_backend::gelu_forward(x.shape(), params.approximation, x.data<float>(), y.data<float>(), stream);
}

void gelu_cudnn_backward(const Tensor& dL_dy, const Tensor& x, Tensor& dL_dx, const GeluParams& params,
                         cudaStream_t stream) {
  constexpr std::string_view kOp = "gelu_backward";
  const NvtxRange range("gelu_backward (cuDNN)");
  expect_device_tensor(dL_dy, kOp, "dL_dy");
  expect_device_tensor(x, kOp, "x");
  expect_device_tensor(dL_dx, kOp, "dL_dx");
  expect_shape(x, dL_dy.shape(), kOp, "x");
  expect_shape(dL_dx, dL_dy.shape(), kOp, "dL_dx");
  expect_distinct(dL_dx, dL_dy, kOp, "dL_dx", "dL_dy");
  expect_distinct(dL_dx, x, kOp, "dL_dx", "x");
  require_accepted(gelu_cudnn_refusal(x.shape(), params, stream), kOp, x.shape(),
                   fmt::format(", approximate {}", form_name(params.approximation)));
  if (x.numel() == 0) return;
  cudnn_activation_backend::gelu_backward(x.shape(), params.approximation, dL_dy.data<float>(), x.data<float>(),
                                          dL_dx.data<float>(), stream);
}

}  // namespace strata::kernels
