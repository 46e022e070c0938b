// ReLU and GELU on cuDNN (kernels/cudnn/activation_cudnn.h): the argument checks, as the
// custom launchers make them, and the refusals, shared by both builds; cuDNN itself is
// behind kernels/cudnn/activation_cudnn_backend.h. Both ops are element-wise, so the
// backends' packed description of the memory fits either memory format: the operands only
// need to share one (strata/kernels/elementwise.h), and outputs take x's.
#include "kernels/cudnn/activation_cudnn.h"

#include <fmt/format.h>

#include <string>
#include <string_view>

#include "core/nvtx.h"
#include "kernels/cudnn/activation_cudnn_backend.h"
#include "kernels/tensor_checks.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"
#include "strata/kernels/elementwise.h"

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

// Whether an output may be its input itself, an in-place op (cuDNN's legacy activations, so
// ReLU, allow it; GELU's graph does not), or must not overlap it at all.
enum class InPlace : bool { refused, allowed };

void expect_output_apart(const Tensor& output, const Tensor& input, std::string_view op, std::string_view output_name,
                         std::string_view input_name, InPlace in_place) {
  if (in_place == InPlace::allowed) {
    expect_same_or_distinct(output, input, op, output_name, input_name);
  } else {
    expect_distinct(output, input, op, output_name, input_name);
  }
}

// The forward's checks: x and y device tensors of one floating dtype, shape and memory order,
// y apart from x.
void expect_forward_arguments(const Tensor& x, const Tensor& y, std::string_view op, InPlace in_place) {
  expect_floating_device_tensor(x, op, "x");
  expect_floating_device_tensor(y, op, "y");
  expect_same_dtype(y, x, op, "y", "x");
  expect_shape(y, x.shape(), op, "y");
  expect_same_memory_order(y, x, op, "y", "x");
  expect_output_apart(y, x, op, "y", "x", in_place);
}

// The backward's checks: dL_dy, the saved tensor (ReLU's y, GELU's x) and dL_dx device
// tensors of dL_dy's dtype (f32, f16 or bf16), shape and memory order; dL_dx apart from
// dL_dy, and distinct from the saved tensor.
void expect_backward_arguments(const Tensor& dL_dy, const Tensor& saved, std::string_view saved_name,
                               const Tensor& dL_dx, std::string_view op, InPlace in_place) {
  expect_floating_device_tensor(dL_dy, op, "dL_dy");
  expect_floating_device_tensor(saved, op, saved_name);
  expect_floating_device_tensor(dL_dx, op, "dL_dx");
  expect_same_dtype(saved, dL_dy, op, saved_name, "dL_dy");
  expect_same_dtype(dL_dx, dL_dy, op, "dL_dx", "dL_dy");
  expect_shape(saved, dL_dy.shape(), op, saved_name);
  expect_shape(dL_dx, dL_dy.shape(), op, "dL_dx");
  expect_same_memory_order(saved, dL_dy, op, saved_name, "dL_dy");
  expect_same_memory_order(dL_dx, dL_dy, op, "dL_dx", "dL_dy");
  expect_output_apart(dL_dx, dL_dy, op, "dL_dx", "dL_dy", in_place);
  expect_distinct(dL_dx, saved, op, "dL_dx", saved_name);
}

// Why cuDNN cannot run an activation of x: its unavailability, nothing for an empty x
// (nothing to compute), else what ask_cudnn() says.
template <typename Ask>
std::string refusal_for(const Shape& x, Ask ask_cudnn) {
  if (!cudnn_available()) return std::string(cudnn_unavailable_reason());
  if (x.numel() == 0) return {};
  return ask_cudnn();
}

}  // namespace

std::string relu_cudnn_refusal(const Shape& x) {
  return refusal_for(x, [&] { return cudnn_activation_backend::relu_refusal(x); });
}

std::string gelu_cudnn_refusal(const Shape& x, const GeluParams& params, cudaStream_t stream, DType dtype) {
  return refusal_for(x,
                     [&] { return cudnn_activation_backend::gelu_refusal(x, params.approximation, dtype, stream); });
}

void relu_cudnn_forward(const Tensor& x, Tensor& y, cudaStream_t stream) {
  constexpr std::string_view kOp = "relu_forward";
  const NvtxRange range("relu_forward (cuDNN)");
  expect_forward_arguments(x, y, kOp, InPlace::allowed);
  require_accepted(relu_cudnn_refusal(x.shape()), kOp, x.shape(), "");
  if (x.numel() == 0) return;
  cudnn_activation_backend::relu_forward(x.shape(), x.dtype(), x.memory_ptr(), y.memory_ptr(), stream);
}

void relu_cudnn_backward(const Tensor& dL_dy, const Tensor& y, Tensor& dL_dx, cudaStream_t stream) {
  constexpr std::string_view kOp = "relu_backward";
  const NvtxRange range("relu_backward (cuDNN)");
  expect_backward_arguments(dL_dy, y, "y", dL_dx, kOp, InPlace::allowed);
  require_accepted(relu_cudnn_refusal(y.shape()), kOp, y.shape(), "");
  if (y.numel() == 0) return;
  cudnn_activation_backend::relu_backward(y.shape(), y.dtype(), dL_dy.memory_ptr(), y.memory_ptr(), dL_dx.memory_ptr(),
                                          stream);
}

void gelu_cudnn_forward(const Tensor& x, Tensor& y, const GeluParams& params, cudaStream_t stream) {
  constexpr std::string_view kOp = "gelu_forward";
  const NvtxRange range("gelu_forward (cuDNN)");
  expect_forward_arguments(x, y, kOp, InPlace::refused);
  require_accepted(gelu_cudnn_refusal(x.shape(), params, stream, x.dtype()), kOp, x.shape(),
                   fmt::format(", approximate {}", form_name(params.approximation)));
  if (x.numel() == 0) return;
  cudnn_activation_backend::gelu_forward(x.shape(), params.approximation, x.dtype(), x.memory_ptr(), y.memory_ptr(),
                                         stream);
}

void gelu_cudnn_backward(const Tensor& dL_dy, const Tensor& x, Tensor& dL_dx, const GeluParams& params,
                         cudaStream_t stream) {
  constexpr std::string_view kOp = "gelu_backward";
  const NvtxRange range("gelu_backward (cuDNN)");
  expect_backward_arguments(dL_dy, x, "x", dL_dx, kOp, InPlace::refused);
  require_accepted(gelu_cudnn_refusal(x.shape(), params, stream, x.dtype()), kOp, x.shape(),
                   fmt::format(", approximate {}", form_name(params.approximation)));
  if (x.numel() == 0) return;
  cudnn_activation_backend::gelu_backward(x.shape(), params.approximation, x.dtype(), dL_dy.memory_ptr(),
                                          x.memory_ptr(), dL_dx.memory_ptr(), stream);
}

}  // namespace strata::kernels
