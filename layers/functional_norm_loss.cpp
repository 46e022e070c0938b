// F::batch_norm2d and F::cross_entropy: forwards that save what their fused backward
// kernels read (batch statistics; the per-row log-sum-exp), and the nodes that run them.
#include <optional>
#include <string>

#include "core/check.h"
#include "core/format.h"
#include "strata/core/autograd.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/kernels/batch_norm2d.h"
#include "strata/kernels/softmax_cross_entropy.h"
#include "strata/layers/functional.h"

namespace strata::F {

namespace {

using kernels::BatchNormAffine;

Tensor batch_norm2d_training(const Tensor& x, const Tensor& weight, const Tensor& bias,
                             BatchNormRunningStats& running, const BatchNormParams& params, cudaStream_t stream) {
  const Shape channels = kernels::batch_norm2d_channel_shape(x.shape(), kernels::BatchNormMode::training);
  Tensor y = Tensor::empty(x.shape(), DType::f32, stream);  // (N, C, H, W)
  kernels::BatchNormSaved saved{Tensor::empty(channels, DType::f32, stream),   // (C)
                                Tensor::empty(channels, DType::f32, stream)};  // (C)
  kernels::batch_norm2d_forward_training(x, weight, bias, running, y, saved, params, stream);
  if (autograd::needs_grad({x, weight, bias})) {
    const bool dx = x.requires_grad();
    const bool dw = weight.defined() && weight.requires_grad();
    const bool db = bias.defined() && bias.requires_grad();
    autograd::record("BatchNorm2dBackward", {x, weight, bias}, y,
                     [x_saved = x.detach(), weight_saved = weight.detach(), saved, channels, params, dx, dw,
                      db](autograd::Gradients dL_dy, cudaStream_t s) {
                       kernels::BatchNormGradients gradients;
                       if (dx) gradients.dL_dx = Tensor::empty(x_saved.shape(), DType::f32, s);
                       if (dw) gradients.dL_dweight = Tensor::empty(channels, DType::f32, s);
                       if (db) gradients.dL_dbias = Tensor::empty(channels, DType::f32, s);
                       kernels::batch_norm2d_backward(dL_dy[0], x_saved, weight_saved, saved, gradients, params, s);
                       return autograd::Gradients{gradients.dL_dx, gradients.dL_dweight, gradients.dL_dbias};
                     });
  }
  return y;
}

Tensor batch_norm2d_eval(const Tensor& x, const Tensor& weight, const Tensor& bias,
                         const BatchNormRunningStats& running, const BatchNormParams& params, cudaStream_t stream) {
  Tensor y = Tensor::empty(x.shape(), DType::f32, stream);
  kernels::batch_norm2d_forward_eval(x, weight, bias, running, y, params, stream);
  if (autograd::needs_grad({x, weight, bias})) {
    // Evaluating without a NoGradGuard is common and must work; only differentiating through
    // the running statistics is missing (no kernel yet), so the node fails if it ever runs.
    autograd::record("BatchNorm2dEvalBackward", {x, weight, bias}, y,
                     [](autograd::Gradients, cudaStream_t) -> autograd::Gradients {
                       throw NotSupported(
                           "batch_norm2d: the backward of eval mode (normalising with the running statistics) is "
                           "not implemented; train in training mode, or evaluate under a NoGradGuard");
                     });
  }
  return y;
}

}  // namespace

Tensor batch_norm2d(const Tensor& x, const Tensor& weight, const Tensor& bias, BatchNormRunningStats& running,
                    bool training, const BatchNormParams& params) {
  const cudaStream_t stream = current_stream();
  return training ? batch_norm2d_training(x, weight, bias, running, params, stream)
                  : batch_norm2d_eval(x, weight, bias, running, params, stream);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, const CrossEntropyParams& params,
                     TargetCheck* target_check) {
  kernels::softmax_cross_entropy_loss_shape(logits.shape(), targets.shape(), params);  // validates
  const cudaStream_t stream = current_stream();
  std::optional<TargetCheck> local_check;
  if (target_check == nullptr) target_check = &local_check.emplace(stream);
  kernels::CrossEntropyForward forward =
      kernels::softmax_cross_entropy_forward(logits, targets, *target_check, params, stream);
  Tensor loss = forward.loss;  // () or (N)
  if (autograd::needs_grad({logits})) {
    autograd::record("CrossEntropyBackward", {logits}, loss,
                     [logits_saved = logits.detach(), targets_saved = targets.detach(), saved = forward,
                      params](autograd::Gradients dL_dloss, cudaStream_t s) {
                       return autograd::Gradients{kernels::softmax_cross_entropy_backward(
                           dL_dloss[0], logits_saved, targets_saved, saved, params, s)};
                     });
  }
  return loss;
}

}  // namespace strata::F
