// batch_norm2d on cuDNN (kernels/cudnn/batch_norm2d_cudnn.h): the argument checks (the custom
// launchers', kernels/batch_norm2d_checks.h) and the refusal, shared by both builds; cuDNN
// itself is behind kernels/cudnn/batch_norm2d_cudnn_backend.h.
#include "kernels/cudnn/batch_norm2d_cudnn.h"

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "core/format.h"
#include "core/nvtx.h"
#include "kernels/batch_norm2d_checks.h"
#include "kernels/batch_norm2d_counter.h"
#include "kernels/cudnn/batch_norm2d_cudnn_backend.h"
#include "strata/core/errors.h"

namespace strata::kernels {

namespace {

constexpr const char* kOp = "batch_norm2d";

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
  batch_norm::check_forward_training(kOp, x, weight, bias, running, y, saved, params);
  require_accepted(x.shape(), params, "batch_norm2d_forward_training");
  cudnn_backend::batch_norm2d_forward_training(x, weight, bias, running, y, saved, params, stream);
  if (running.num_batches_tracked.defined()) {
    batch_norm::launch_increment_counter(running.num_batches_tracked.data<std::int64_t>(), stream);
  }
}

void batch_norm2d_cudnn_forward_eval(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                     const BatchNormRunningStats& running, Tensor& y, const BatchNormParams& params,
                                     cudaStream_t stream) {
  NvtxRange range("batch_norm2d_forward_eval (cuDNN)");
  batch_norm::check_forward_eval(kOp, x, weight, bias, running, y, params);
  require_accepted(x.shape(), params, "batch_norm2d_forward_eval");
  cudnn_backend::batch_norm2d_forward_eval(x, weight, bias, running, y, params, stream);
}

void batch_norm2d_cudnn_backward(const Tensor& dL_dy, const Tensor& x, const Tensor& weight,
                                 const BatchNormSaved& saved, BatchNormGradients& gradients,
                                 const BatchNormParams& params, cudaStream_t stream) {
  NvtxRange range("batch_norm2d_backward (cuDNN)");
  const Shape channels =
      batch_norm::check_backward(kOp, dL_dy, x, weight, gradients, params, BatchNormMode::training);
  batch_norm::check_saved(kOp, saved, channels);
  if (!gradients.dL_dx.defined() && !gradients.dL_dweight.defined() && !gradients.dL_dbias.defined()) return;
  require_accepted(x.shape(), params, "batch_norm2d_backward");
  cudnn_backend::batch_norm2d_backward(dL_dy, x, weight, saved, gradients, params, stream);
}

}  // namespace strata::kernels
