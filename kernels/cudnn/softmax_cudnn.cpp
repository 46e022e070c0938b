// softmax and log-softmax on cuDNN (kernels/cudnn/softmax_cudnn.h): the argument checks, the
// custom launchers' own (kernels/softmax_checks.h), and the refusal, shared by both builds;
// cuDNN itself is behind kernels/cudnn/softmax_cudnn_backend.h.
#include "kernels/cudnn/softmax_cudnn.h"

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "core/format.h"
#include "core/nvtx.h"
#include "kernels/cudnn/softmax_cudnn_backend.h"
#include "kernels/softmax_checks.h"
#include "strata/core/errors.h"

namespace strata::kernels {

namespace {

using cudnn_backend::SoftmaxKind;

constexpr std::string_view op_name(SoftmaxKind kind) {
  return kind == SoftmaxKind::softmax ? "softmax" : "log_softmax";
}

// Throws NotSupported "<op> on cuDNN (x ...): <reason>" when cuDNN cannot run it.
void require_accepted(const Shape& x, std::string_view op) {
  const std::string reason = softmax_cudnn_refusal(x);
  if (!reason.empty()) throw NotSupported(fmt::format("{} on cuDNN (x {}): {}", op, x, reason));
}

void launch_forward(SoftmaxKind kind, const Tensor& x, Tensor& y, cudaStream_t stream) {
  const std::string_view op = op_name(kind);
  const std::int64_t rows = expect_softmax_forward_arguments(x, y, op);
  require_accepted(x.shape(), op);
  cudnn_backend::softmax_forward(kind, x.dtype(), rows, x.size(x.dim() - 1), x.data_ptr(), y.data_ptr(), stream);
}

void launch_backward(SoftmaxKind kind, const Tensor& dL_dy, const Tensor& y, Tensor& dL_dx, cudaStream_t stream) {
  const std::string_view op = op_name(kind);
  const std::int64_t rows = expect_softmax_backward_arguments(dL_dy, y, dL_dx, op);
  require_accepted(y.shape(), op);
  cudnn_backend::softmax_backward(kind, y.dtype(), rows, y.size(y.dim() - 1), dL_dy.data_ptr(), y.data_ptr(),
                                  dL_dx.data_ptr(), stream);
}

}  // namespace

std::string softmax_cudnn_refusal(const Shape& x) {
  if (x.numel() > std::numeric_limits<std::int32_t>::max()) {
    return fmt::format("x {} has 2^31 elements or more, beyond cuDNN's 32-bit descriptors", x);
  }
  return cudnn_backend::softmax_refusal();
}

void softmax_cudnn_forward(const Tensor& x, Tensor& y, cudaStream_t stream) {
  NvtxRange range("softmax_forward (cuDNN)");
  launch_forward(SoftmaxKind::softmax, x, y, stream);
}

void softmax_cudnn_backward(const Tensor& dL_dy, const Tensor& y, Tensor& dL_dx, cudaStream_t stream) {
  NvtxRange range("softmax_backward (cuDNN)");
  launch_backward(SoftmaxKind::softmax, dL_dy, y, dL_dx, stream);
}

void log_softmax_cudnn_forward(const Tensor& x, Tensor& y, cudaStream_t stream) {
  NvtxRange range("log_softmax_forward (cuDNN)");
  launch_forward(SoftmaxKind::log_softmax, x, y, stream);
}

void log_softmax_cudnn_backward(const Tensor& dL_dy, const Tensor& y, Tensor& dL_dx, cudaStream_t stream) {
  NvtxRange range("log_softmax_backward (cuDNN)");
  launch_backward(SoftmaxKind::log_softmax, dL_dy, y, dL_dx, stream);
}

}  // namespace strata::kernels
