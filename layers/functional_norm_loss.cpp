// F::batch_norm2d and F::cross_entropy: forwards that save what their fused backward
// kernels read (batch statistics; the per-row log-sum-exp), and the nodes that run them. Every
// kernel runs in an op (strata/core/op.h) named after it; outputs are allocated outside.
#include <optional>
#include <string>

#include "core/check.h"
#include "core/format.h"
#include "strata/core/autograd.h"
#include "strata/core/errors.h"
#include "strata/core/op.h"
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
  // The running statistics are updated in place: read and written.
  graph::run_op("batch_norm2d_forward", {x, weight, bias, running.mean, running.var},
                {y, saved.mean, saved.invstd, running.mean, running.var},
                [x = x.detach(), weight = weight.detach(), bias = bias.detach(), running, y, saved,
                 params](cudaStream_t s) mutable {
                  kernels::batch_norm2d_forward_training(x, weight, bias, running, y, saved, params, s);
                });
  if (autograd::needs_grad({x, weight, bias})) {
    const bool dx = x.requires_grad();
    const bool dw = weight.defined() && weight.requires_grad();
    const bool db = bias.defined() && bias.requires_grad();
    autograd::record("BatchNorm2dBackward", {x, weight, bias}, y,
                     [x_saved = x.detach(), weight_saved = weight.detach(), saved, channels, params, dx, dw,
                      db](autograd::Gradients dL_dy, cudaStream_t backward_stream) {
                       kernels::BatchNormGradients gradients;
                       if (dx) gradients.dL_dx = Tensor::empty(x_saved.shape(), DType::f32, backward_stream);
                       if (dw) gradients.dL_dweight = Tensor::empty(channels, DType::f32, backward_stream);
                       if (db) gradients.dL_dbias = Tensor::empty(channels, DType::f32, backward_stream);
                       graph::run_op_on(backward_stream, "batch_norm2d_backward",
                                        {dL_dy[0], x_saved, weight_saved, saved.mean, saved.invstd},
                                        {gradients.dL_dx, gradients.dL_dweight, gradients.dL_dbias},
                                        [dL_dy = dL_dy[0].detach(), x_saved, weight_saved, saved, gradients,
                                         params](cudaStream_t s) mutable {
                                          kernels::batch_norm2d_backward(dL_dy, x_saved, weight_saved, saved,
                                                                         gradients, params, s);
                                        });
                       return autograd::Gradients{gradients.dL_dx, gradients.dL_dweight, gradients.dL_dbias};
                     });
  }
  return y;
}

Tensor batch_norm2d_eval(const Tensor& x, const Tensor& weight, const Tensor& bias,
                         const BatchNormRunningStats& running, const BatchNormParams& params, cudaStream_t stream) {
  Tensor y = Tensor::empty(x.shape(), DType::f32, stream);
  graph::run_op("batch_norm2d_forward_eval", {x, weight, bias, running.mean, running.var}, {y},
                [x = x.detach(), weight = weight.detach(), bias = bias.detach(), running, y,
                 params](cudaStream_t s) mutable {
                  kernels::batch_norm2d_forward_eval(x, weight, bias, running, y, params, s);
                });
  if (autograd::needs_grad({x, weight, bias})) {
    // The running statistics are constants here (as in PyTorch's eval mode): fine-tuning
    // with frozen batch norm. The node keeps them; a training forward between this forward
    // and its backward would change them.
    const Shape channels = running.mean.shape();
    const bool dx = x.requires_grad();
    const bool dw = weight.defined() && weight.requires_grad();
    const bool db = bias.defined() && bias.requires_grad();
    autograd::record("BatchNorm2dEvalBackward", {x, weight, bias}, y,
                     [x_saved = x.detach(), weight_saved = weight.detach(), running, channels, params, dx, dw,
                      db](autograd::Gradients dL_dy, cudaStream_t backward_stream) {
                       kernels::BatchNormGradients gradients;
                       if (dx) gradients.dL_dx = Tensor::empty(x_saved.shape(), DType::f32, backward_stream);
                       if (dw) gradients.dL_dweight = Tensor::empty(channels, DType::f32, backward_stream);
                       if (db) gradients.dL_dbias = Tensor::empty(channels, DType::f32, backward_stream);
                       graph::run_op_on(backward_stream, "batch_norm2d_backward_eval",
                                        {dL_dy[0], x_saved, weight_saved, running.mean, running.var},
                                        {gradients.dL_dx, gradients.dL_dweight, gradients.dL_dbias},
                                        [dL_dy = dL_dy[0].detach(), x_saved, weight_saved, running, gradients,
                                         params](cudaStream_t s) mutable {
                                          kernels::batch_norm2d_backward_eval(dL_dy, x_saved, weight_saved, running,
                                                                              gradients, params, s);
                                        });
                       return autograd::Gradients{gradients.dL_dx, gradients.dL_dweight, gradients.dL_dbias};
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
  const Shape loss_shape = kernels::softmax_cross_entropy_loss_shape(logits.shape(), targets.shape(), params);
  const cudaStream_t stream = current_stream();
  std::optional<TargetCheck> local_check;
  if (target_check == nullptr) target_check = &local_check.emplace(stream);
  kernels::CrossEntropyForward forward{.loss = Tensor::empty(loss_shape, DType::f32, stream),  // () or (N)
                                       .log_sum_exp = Tensor::empty({logits.size(0), 2}, DType::f32, stream),
                                       .target_count = Tensor::empty({}, DType::i64, stream)};
  // The forward records a bad target in the check's record, unless one is there already.
  const Tensor& check_record = target_check->record();
  graph::run_op("softmax_cross_entropy_forward", {logits, targets, check_record},
                {forward.loss, forward.log_sum_exp, forward.target_count, check_record},
                [logits = logits.detach(), targets = targets.detach(), forward, check = *target_check,
                 params](cudaStream_t s) mutable {
                  kernels::softmax_cross_entropy_forward(logits, targets, forward, check, params, s);
                });
  Tensor loss = forward.loss;  // () or (N)
  if (autograd::needs_grad({logits})) {
    autograd::record("CrossEntropyBackward", {logits}, loss,
                     [logits_saved = logits.detach(), targets_saved = targets.detach(), saved = forward,
                      params](autograd::Gradients dL_dloss, cudaStream_t backward_stream) {
                       Tensor dL_dlogits = Tensor::empty(logits_saved.shape(), DType::f32, backward_stream);
                       graph::run_op_on(backward_stream, "softmax_cross_entropy_backward",
                                        {dL_dloss[0], logits_saved, targets_saved, saved.log_sum_exp,
                                         saved.target_count},
                                        {dL_dlogits},
                                        [dL_dloss = dL_dloss[0].detach(), logits_saved, targets_saved, saved,
                                         dL_dlogits, params](cudaStream_t s) mutable {
                                          kernels::softmax_cross_entropy_backward(dL_dloss, logits_saved,
                                                                                  targets_saved, saved, dL_dlogits,
                                                                                  params, s);
                                        });
                       return autograd::Gradients{dL_dlogits};
                     });
  }
  return loss;
}

}  // namespace strata::F
