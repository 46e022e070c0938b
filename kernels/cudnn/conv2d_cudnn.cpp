// conv2d on cuDNN (kernels/cudnn/conv2d_cudnn.h): the argument checks, the custom launchers'
// own (kernels/conv2d_checks.h), and the refusal, shared by both builds; cuDNN itself is
// behind kernels/cudnn/conv2d_cudnn_backend.h.
#include "kernels/cudnn/conv2d_cudnn.h"

#include <string>
#include <string_view>

#include <fmt/format.h>

#include "core/nvtx.h"
#include "kernels/conv2d_checks.h"
#include "kernels/cudnn/conv2d_cudnn_backend.h"
#include "strata/core/determinism.h"
#include "strata/core/errors.h"

namespace strata::kernels {

namespace {

// Throws NotSupported "<op> on cuDNN (input ..., weight ... with ...): <reason>" when cuDNN
// cannot run this convolution.
void require_accepted(const Conv2dShape& shape, DType dtype, std::string_view op, cudaStream_t stream) {
  const std::string reason = conv2d_cudnn_refusal(shape, dtype, stream);
  if (!reason.empty()) {
    throw NotSupported(fmt::format("{} on cuDNN (input {}, weight {}, {}, {}): {}", op, shape.input().to_string(),
                                   shape.weight().to_string(), to_string(shape.params), dtype_name(dtype), reason));
  }
}

}  // namespace

std::string conv2d_cudnn_refusal(const Conv2dShape& shape, DType dtype, cudaStream_t stream) {
  return cudnn_backend::refusal(shape, dtype, stream);
}

void conv2d_cudnn_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y,
                          const Conv2dParams& params, cudaStream_t stream) {
  NvtxRange range("conv2d_forward (cuDNN)");
  const Conv2dShape shape = expect_conv2d_forward_arguments(x, weight, bias, y, params);
  require_accepted(shape, x.dtype(), "conv2d_forward", stream);
  cudnn_backend::forward(shape, x.dtype(), x.data_ptr(), weight.data_ptr(), bias.defined() ? bias.data_ptr() : nullptr,
                         y.data_ptr(), stream);
}

void conv2d_cudnn_backward_data(const Tensor& dL_dy, const Tensor& weight, Tensor& dL_dx, const Conv2dParams& params,
                                cudaStream_t stream) {
  NvtxRange range("conv2d_backward_data (cuDNN)");
  const Conv2dShape shape = expect_conv2d_backward_data_arguments(dL_dy, weight, dL_dx, params);
  require_accepted(shape, dL_dy.dtype(), "conv2d_backward_data", stream);
  cudnn_backend::backward_data(shape, dL_dy.dtype(), dL_dy.data_ptr(), weight.data_ptr(), dL_dx.data_ptr(), stream);
}

void conv2d_cudnn_backward_filter(const Tensor& x, const Tensor& dL_dy, Tensor& dL_dweight, const Conv2dParams& params,
                                  cudaStream_t stream) {
  NvtxRange range("conv2d_backward_filter (cuDNN)");
  const Conv2dShape shape = expect_conv2d_backward_filter_arguments(x, dL_dy, dL_dweight, params);
  require_accepted(shape, x.dtype(), "conv2d_backward_filter", stream);
  cudnn_backend::backward_filter(shape, x.dtype(), x.data_ptr(), dL_dy.data_ptr(), dL_dweight.data_ptr(), stream);
}

void conv2d_cudnn_backward_bias(const Tensor& dL_dy, Tensor& dL_dbias, cudaStream_t stream) {
  // The switch asks for a guarantee cuDNN does not document for its bias reduction.
  if (is_deterministic()) {
    conv2d_backward_bias(dL_dy, dL_dbias, stream);
    return;
  }
  NvtxRange range("conv2d_backward_bias (cuDNN)");
  expect_conv2d_backward_bias_arguments(dL_dy, dL_dbias);
  cudnn_backend::backward_bias(dL_dy.shape(), dL_dy.dtype(), dL_dy.data_ptr(), dL_dbias.data_ptr(), stream);
}

}  // namespace strata::kernels
