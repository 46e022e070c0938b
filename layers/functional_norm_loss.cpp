// F::batch_norm2d, F::softmax, F::log_softmax and F::cross_entropy: forwards that save what
// their backward kernels read (batch statistics; the output; the per-row log-sum-exp), and
// the nodes that run them. Every kernel runs in an op (strata/core/op.h) named after it;
// outputs are allocated outside. batch_norm2d, softmax and log_softmax run on the custom
// kernels or on cuDNN (strata/core/engine.h), chosen once when the forward is queued: the
// backward follows the forward's engine. cross_entropy is the custom fused kernel under
// any engine (cuDNN has no cross-entropy).
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "core/check.h"
#include "core/format.h"
#include "kernels/cudnn/batch_norm2d_cudnn.h"
#include "kernels/cudnn/softmax_cudnn.h"
#include "kernels/tensor_checks.h"
#include "layers/engine_choice.h"
#include "strata/core/autograd.h"
#include "strata/core/errors.h"
#include "strata/core/op.h"
#include "strata/core/stream.h"
#include "strata/kernels/batch_norm2d.h"
#include "strata/kernels/softmax.h"
#include "strata/kernels/softmax_cross_entropy.h"
#include "strata/layers/functional.h"

namespace strata::F {

namespace {

using kernels::BatchNormAffine;

// Whether a batch norm of x with params runs on cuDNN (layers/engine_choice.h).
bool batch_norm2d_on_cudnn(Engine engine, const Shape& x, bool training, const BatchNormParams& params) {
  return detail::runs_on_cudnn(engine, "batch_norm2d",
                               fmt::format("x {}, {}, eps {}", x, training ? "training" : "eval", params.eps),
                               [&] { return kernels::batch_norm2d_cudnn_refusal(x, params); });
}

Tensor batch_norm2d_training(const Tensor& x, const Tensor& weight, const Tensor& bias,
                             BatchNormRunningStats& running, const BatchNormParams& params, bool on_cudnn,
                             cudaStream_t stream) {
  const Shape channels = kernels::batch_norm2d_channel_shape(x.shape(), kernels::BatchNormMode::training);
  Tensor y = Tensor::empty(x.shape(), DType::f32, stream);  // (N, C, H, W)
  kernels::BatchNormSaved saved{Tensor::empty(channels, DType::f32, stream),   // (C)
                                Tensor::empty(channels, DType::f32, stream)};  // (C)
  // The running statistics are updated in place: read and written.
  graph::run_op("batch_norm2d_forward", {x, weight, bias, running.mean, running.var},
                {y, saved.mean, saved.invstd, running.mean, running.var},
                [x = x.detach(), weight = weight.detach(), bias = bias.detach(), running, y, saved, params,
                 on_cudnn](cudaStream_t s) mutable {
                  if (on_cudnn) {
                    kernels::batch_norm2d_cudnn_forward_training(x, weight, bias, running, y, saved, params, s);
                  } else {
                    kernels::batch_norm2d_forward_training(x, weight, bias, running, y, saved, params, s);
                  }
                });
  if (autograd::needs_grad({x, weight, bias})) {
    const bool dx = x.requires_grad();
    const bool dw = weight.defined() && weight.requires_grad();
    const bool db = bias.defined() && bias.requires_grad();
    autograd::record("BatchNorm2dBackward", {x, weight, bias}, y,
                     [x_saved = x.detach(), weight_saved = weight.detach(), saved, channels, params, dx, dw, db,
                      on_cudnn](autograd::Gradients dL_dy, cudaStream_t backward_stream) {
                       kernels::BatchNormGradients gradients;
                       if (dx) gradients.dL_dx = Tensor::empty(x_saved.shape(), DType::f32, backward_stream);
                       if (dw) gradients.dL_dweight = Tensor::empty(channels, DType::f32, backward_stream);
                       if (db) gradients.dL_dbias = Tensor::empty(channels, DType::f32, backward_stream);
                       graph::run_op_on(backward_stream, "batch_norm2d_backward",
                                        {dL_dy[0], x_saved, weight_saved, saved.mean, saved.invstd},
                                        {gradients.dL_dx, gradients.dL_dweight, gradients.dL_dbias},
                                        [dL_dy = dL_dy[0].detach(), x_saved, weight_saved, saved, gradients,
                                         params, on_cudnn](cudaStream_t s) mutable {
                                          if (on_cudnn) {
                                            kernels::batch_norm2d_cudnn_backward(dL_dy, x_saved, weight_saved, saved,
                                                                                 gradients, params, s);
                                          } else {
                                            kernels::batch_norm2d_backward(dL_dy, x_saved, weight_saved, saved,
                                                                           gradients, params, s);
                                          }
                                        });
                       return autograd::Gradients{gradients.dL_dx, gradients.dL_dweight, gradients.dL_dbias};
                     });
  }
  return y;
}

Tensor batch_norm2d_eval(const Tensor& x, const Tensor& weight, const Tensor& bias,
                         const BatchNormRunningStats& running, const BatchNormParams& params, bool on_cudnn,
                         cudaStream_t stream) {
  Tensor y = Tensor::empty(x.shape(), DType::f32, stream);
  graph::run_op("batch_norm2d_forward_eval", {x, weight, bias, running.mean, running.var}, {y},
                [x = x.detach(), weight = weight.detach(), bias = bias.detach(), running, y, params,
                 on_cudnn](cudaStream_t s) mutable {
                  if (on_cudnn) {
                    kernels::batch_norm2d_cudnn_forward_eval(x, weight, bias, running, y, params, s);
                  } else {
                    kernels::batch_norm2d_forward_eval(x, weight, bias, running, y, params, s);
                  }
                });
  if (autograd::needs_grad({x, weight, bias})) {
    // The running statistics are constants here (as in PyTorch's eval mode): fine-tuning
    // with frozen batch norm. The node keeps them; a training forward between this forward
    // and its backward would change them. cuDNN has no backward of its inference forward,
    // so this is the custom kernel whichever engine ran the forward: the same function of
    // the same inputs.
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
                    bool training, const BatchNormParams& params, std::optional<Engine> engine) {
  // Argument errors before the engine's refusal: InvalidArgument whatever the engine.
  kernels::expect_device_tensor(x, "batch_norm2d", "x");
  kernels::batch_norm2d_channel_shape(x.shape(),
                                      training ? kernels::BatchNormMode::training : kernels::BatchNormMode::eval);
  const bool on_cudnn = batch_norm2d_on_cudnn(resolve_engine(engine), x.shape(), training, params);
  const cudaStream_t stream = current_stream();
  return training ? batch_norm2d_training(x, weight, bias, running, params, on_cudnn, stream)
                  : batch_norm2d_eval(x, weight, bias, running, params, on_cudnn, stream);
}

namespace {

using SoftmaxLauncher = void (*)(const Tensor&, Tensor&, cudaStream_t);
using SoftmaxBackwardLauncher = void (*)(const Tensor&, const Tensor&, Tensor&, cudaStream_t);

// The launchers of one of softmax and log_softmax, on each engine.
struct SoftmaxOp {
  std::string_view name;  // "softmax" or "log_softmax"
  const char* forward_op;
  const char* backward_op;
  const char* node;
  SoftmaxLauncher forward_custom, forward_cudnn;
  SoftmaxBackwardLauncher backward_custom, backward_cudnn;
};

// y = op(x) over the last dimension on the engine chosen now, and the node whose backward
// (from y, which it keeps detached: a saved y with its autograd meta would hold its own
// grad_fn, a cycle that never frees the graph) runs on the same engine.
Tensor softmax_like(const SoftmaxOp& op, const Tensor& x, std::optional<Engine> engine) {
  kernels::expect_device_tensor(x, op.name, "x");
  STRATA_CHECK(x.dim() >= 1 && x.numel() >= 1, "{}: x needs at least one dimension and one element, got shape {}",
               op.name, x.shape());
  const bool on_cudnn = detail::runs_on_cudnn(resolve_engine(engine), op.name, fmt::format("x {}", x.shape()),
                                              [&] { return kernels::softmax_cudnn_refusal(x.shape()); });
  const SoftmaxLauncher forward = on_cudnn ? op.forward_cudnn : op.forward_custom;
  const SoftmaxBackwardLauncher backward = on_cudnn ? op.backward_cudnn : op.backward_custom;
  Tensor y = Tensor::empty(x.shape(), DType::f32, current_stream());  // (..., C)
  graph::run_op(op.forward_op, {x}, {y}, [x = x.detach(), y, forward](cudaStream_t s) mutable { forward(x, y, s); });
  if (autograd::needs_grad({x})) {
    autograd::record(op.node, {x}, y,
                     [y_saved = y.detach(), backward_op = op.backward_op, backward](autograd::Gradients dL_dy,
                                                                                   cudaStream_t stream) {
                       Tensor dL_dx = Tensor::empty(y_saved.shape(), DType::f32, stream);  // (..., C)
                       graph::run_op_on(stream, backward_op, {dL_dy[0], y_saved}, {dL_dx},
                                        [dL_dy = dL_dy[0].detach(), y_saved, dL_dx, backward](cudaStream_t s) mutable {
                                          backward(dL_dy, y_saved, dL_dx, s);
                                        });
                       return autograd::Gradients{dL_dx};
                     });
  }
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x, std::optional<Engine> engine) {
  static constexpr SoftmaxOp kSoftmax{.name = "softmax",
                                      .forward_op = "softmax_forward",
                                      .backward_op = "softmax_backward",
                                      .node = "SoftmaxBackward",
                                      .forward_custom = kernels::softmax_forward,
                                      .forward_cudnn = kernels::softmax_cudnn_forward,
                                      .backward_custom = kernels::softmax_backward,
                                      .backward_cudnn = kernels::softmax_cudnn_backward};
  return softmax_like(kSoftmax, x, engine);
}

Tensor log_softmax(const Tensor& x, std::optional<Engine> engine) {
  static constexpr SoftmaxOp kLogSoftmax{.name = "log_softmax",
                                         .forward_op = "log_softmax_forward",
                                         .backward_op = "log_softmax_backward",
                                         .node = "LogSoftmaxBackward",
                                         .forward_custom = kernels::log_softmax_forward,
                                         .forward_cudnn = kernels::log_softmax_cudnn_forward,
                                         .backward_custom = kernels::log_softmax_backward,
                                         .backward_cudnn = kernels::log_softmax_cudnn_backward};
  return softmax_like(kLogSoftmax, x, engine);
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
