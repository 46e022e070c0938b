// F::softmax, F::log_softmax and F::cross_entropy: forwards that save what their backward
// kernels read (the output; the per-row log-sum-exp), and the nodes that run them. Every
// kernel runs in an op (strata/core/op.h) named after it; outputs are allocated outside.
// softmax and log_softmax run on the custom kernels or on cuDNN (strata/core/engine.h),
// chosen once when the forward is queued: the backward follows the forward's engine.
// cross_entropy is the custom fused kernel under any engine (cuDNN has no cross-entropy).
// dtypes: softmax and log_softmax run in their input's dtype, in f32 under autocast (layers/
// autocast_policy.h); cross_entropy reads logits of any floating dtype, as given, and its
// loss is f32, its dL_dlogits of the logits' dtype.
#include <optional>
#include <string_view>

#include <fmt/format.h>

#include "core/check.h"
#include "core/format.h"
#include "kernels/cudnn/softmax_cudnn.h"
#include "kernels/tensor_checks.h"
#include "layers/autocast_policy.h"
#include "layers/engine_choice.h"
#include "strata/core/autograd.h"
#include "strata/core/errors.h"
#include "strata/core/op.h"
#include "strata/core/stream.h"
#include "strata/kernels/softmax.h"
#include "strata/kernels/softmax_cross_entropy.h"
#include "strata/layers/functional.h"

namespace strata::F {

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
// grad_fn, a cycle that never frees the graph) runs on the same engine. Over the last
// dimension in NCHW order: a channels-last x is converted with F::contiguous first (y and
// the op's own gradient are contiguous; x's gradient comes back in x's format).
Tensor softmax_like(const SoftmaxOp& op, const Tensor& x_given, std::optional<Engine> engine) {
  const Tensor x = strata::detail::autocast_f32(contiguous(x_given));
  kernels::expect_floating_device_tensor(x, op.name, "x");
  STRATA_CHECK(x.dim() >= 1 && x.numel() >= 1, "{}: x needs at least one dimension and one element, got shape {}",
               op.name, x.shape());
  const bool on_cudnn = detail::runs_on_cudnn(resolve_engine(engine), op.name, fmt::format("x {}", x.shape()),
                                              [&] { return kernels::softmax_cudnn_refusal(x.shape()); });
  const SoftmaxLauncher forward = on_cudnn ? op.forward_cudnn : op.forward_custom;
  const SoftmaxBackwardLauncher backward = on_cudnn ? op.backward_cudnn : op.backward_custom;
  Tensor y = Tensor::empty(x.shape(), x.dtype(), current_stream());  // (..., C)
  graph::run_op(op.forward_op, {x}, {y}, [x = x.detach(), y, forward](cudaStream_t s) mutable { forward(x, y, s); });
  if (autograd::needs_grad({x})) {
    autograd::record(op.node, {x}, y,
                     [y_saved = y.detach(), backward_op = op.backward_op, backward](autograd::Gradients dL_dy,
                                                                                   cudaStream_t stream) {
                       Tensor dL_dx = Tensor::empty(y_saved.shape(), y_saved.dtype(), stream);  // (..., C)
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
  kernels::expect_floating_device_tensor(logits, "softmax_cross_entropy", "logits");
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
                       Tensor dL_dlogits = Tensor::empty(logits_saved.shape(), logits_saved.dtype(), backward_stream);
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
