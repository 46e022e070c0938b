// conv2d on cuDNN (kernels/conv2d_cudnn.h): the argument checks, as the custom launchers
// make them, and the refusal, shared by both builds; cuDNN itself is behind
// kernels/conv2d_cudnn_backend.h.
#include "kernels/cudnn/conv2d_cudnn.h"

#include <string>
#include <string_view>

#include <fmt/format.h>

#include "core/check.h"
#include "core/nvtx.h"
#include "kernels/cudnn/conv2d_cudnn_backend.h"
#include "kernels/tensor_checks.h"
#include "strata/core/determinism.h"
#include "strata/core/errors.h"

namespace strata::kernels {

namespace {

// Throws NotSupported "<op> on cuDNN (input ..., weight ... with ...): <reason>" when cuDNN
// cannot run this convolution.
void require_accepted(const Conv2dShape& shape, std::string_view op, cudaStream_t stream) {
  const std::string reason = conv2d_cudnn_refusal(shape, stream);
  if (!reason.empty()) {
    throw NotSupported(fmt::format("{} on cuDNN (input {}, weight {}, {}): {}", op, shape.input().to_string(),
                                   shape.weight().to_string(), to_string(shape.params), reason));
  }
}

}  // namespace

std::string conv2d_cudnn_refusal(const Conv2dShape& shape, cudaStream_t stream) {
  return cudnn_backend::refusal(shape, stream);
}

void conv2d_cudnn_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y,
                          const Conv2dParams& params, cudaStream_t stream) {
  constexpr std::string_view kOp = "conv2d_forward";
  NvtxRange range("conv2d_forward (cuDNN)");
  expect_device_tensor(x, kOp, "x");
  expect_device_tensor(weight, kOp, "weight");
  const Conv2dShape shape = conv2d_shape(x.shape(), weight.shape(), params, kOp);
  if (bias.defined()) {
    expect_device_tensor(bias, kOp, "bias");
    expect_shape(bias, shape.bias(), kOp, "bias");
  }
  expect_device_tensor(y, kOp, "y");
  expect_shape(y, shape.output(), kOp, "y");
  expect_distinct(y, x, kOp, "y", "x");
  expect_distinct(y, weight, kOp, "y", "weight");
  if (bias.defined()) expect_distinct(y, bias, kOp, "y", "bias");
  require_accepted(shape, kOp, stream);
  cudnn_backend::forward(shape, x.data<float>(), weight.data<float>(), bias.defined() ? bias.data<float>() : nullptr,
                         y.data<float>(), stream);
}

void conv2d_cudnn_backward_data(const Tensor& dL_dy, const Tensor& weight, Tensor& dL_dx, const Conv2dParams& params,
                                cudaStream_t stream) {
  constexpr std::string_view kOp = "conv2d_backward_data";
  NvtxRange range("conv2d_backward_data (cuDNN)");
  expect_device_tensor(dL_dy, kOp, "dL_dy");
  expect_device_tensor(weight, kOp, "weight");
  expect_device_tensor(dL_dx, kOp, "dL_dx");
  const Conv2dShape shape = conv2d_shape(dL_dx.shape(), weight.shape(), params, kOp);
  expect_shape(dL_dy, shape.output(), kOp, "dL_dy");
  expect_distinct(dL_dx, dL_dy, kOp, "dL_dx", "dL_dy");
  expect_distinct(dL_dx, weight, kOp, "dL_dx", "weight");
  require_accepted(shape, kOp, stream);
  cudnn_backend::backward_data(shape, dL_dy.data<float>(), weight.data<float>(), dL_dx.data<float>(), stream);
}

void conv2d_cudnn_backward_filter(const Tensor& x, const Tensor& dL_dy, Tensor& dL_dweight, const Conv2dParams& params,
                                  cudaStream_t stream) {
  constexpr std::string_view kOp = "conv2d_backward_filter";
  NvtxRange range("conv2d_backward_filter (cuDNN)");
  expect_device_tensor(x, kOp, "x");
  expect_device_tensor(dL_dy, kOp, "dL_dy");
  expect_device_tensor(dL_dweight, kOp, "dL_dweight");
  const Conv2dShape shape = conv2d_shape(x.shape(), dL_dweight.shape(), params, kOp);
  expect_shape(dL_dy, shape.output(), kOp, "dL_dy");
  expect_distinct(dL_dweight, x, kOp, "dL_dweight", "x");
  expect_distinct(dL_dweight, dL_dy, kOp, "dL_dweight", "dL_dy");
  require_accepted(shape, kOp, stream);
  cudnn_backend::backward_filter(shape, x.data<float>(), dL_dy.data<float>(), dL_dweight.data<float>(), stream);
}

void conv2d_cudnn_backward_bias(const Tensor& dL_dy, Tensor& dL_dbias, cudaStream_t stream) {
  constexpr std::string_view kOp = "conv2d_backward_bias";
  // The switch asks for a guarantee cuDNN does not document for its bias reduction.
  if (is_deterministic()) {
    conv2d_backward_bias(dL_dy, dL_dbias, stream);
    return;
  }
  NvtxRange range("conv2d_backward_bias (cuDNN)");
  expect_device_tensor(dL_dy, kOp, "dL_dy");
  expect_device_tensor(dL_dbias, kOp, "dL_dbias");
  expect_rank(dL_dy, 4, kOp, "dL_dy");
  for (int dim = 0; dim < 4; ++dim) {
    STRATA_CHECK(dL_dy.size(dim) >= 1, "{}: dL_dy {} must not be empty", kOp, dL_dy.shape().to_string());
  }
  expect_shape(dL_dbias, Shape{dL_dy.size(1)}, kOp, "dL_dbias");
  expect_distinct(dL_dbias, dL_dy, kOp, "dL_dbias", "dL_dy");
  cudnn_backend::backward_bias(dL_dy.shape(), dL_dy.data<float>(), dL_dbias.data<float>(), stream);
}

}  // namespace strata::kernels
