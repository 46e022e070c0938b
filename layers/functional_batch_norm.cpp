// F::batch_norm2d: the training forward saves the batch statistics its backward reads, the
// eval forward uses the running statistics; the nodes run the matching backward. Every
// kernel runs in an op (strata/core/op.h) named after it; outputs are allocated outside.
// It runs on the custom kernels or on cuDNN (strata/core/engine.h), chosen once when the
// forward is queued: the backward follows the forward's engine. It runs in x's dtype (f32,
// f16 or bf16, autocast or not): y and dL_dx in that dtype, the statistics, running
// statistics and parameter gradients in f32. In training on the custom kernels it can take
// x's statistics from x's producer (F::conv2d, F::max_pool2d) instead of a pass over x.
#include <optional>

#include <fmt/format.h>

#include <string>

#include "core/check.h"
#include "core/format.h"
#include "kernels/cudnn/batch_norm2d_cudnn.h"
#include "kernels/tensor_checks.h"
#include "layers/engine_choice.h"
#include "strata/core/autograd.h"
#include "strata/core/errors.h"
#include "strata/core/op.h"
#include "strata/core/stream.h"
#include "strata/kernels/batch_norm2d.h"
#include "strata/layers/functional.h"

namespace strata::F {

namespace {

using kernels::BatchNormAffine;

// dL_dy as the backward kernels read it, in x's memory layout: a gradient may arrive in the
// other format (converted on stream, outside the op, as autograd's sums of gradients are).
Tensor in_layout_of(const Tensor& dL_dy, const Tensor& x, cudaStream_t stream) {
  return dL_dy.is_contiguous() == x.is_contiguous() ? dL_dy : dL_dy.to_memory_format(x.memory_format(), stream);
}

// Whether a batch norm of x with params runs on cuDNN (layers/engine_choice.h).
bool batch_norm2d_on_cudnn(Engine engine, const Tensor& x, bool training, const BatchNormParams& params) {
  return detail::runs_on_cudnn(engine, "batch_norm2d",
                               fmt::format("x {}, {}, eps {}", x.shape(), training ? "training" : "eval", params.eps),
                               [&] { return kernels::batch_norm2d_cudnn_refusal(x.shape(), params); });
}

// partials: x's producer statistics for the custom kernel, or undefined.
Tensor batch_norm2d_training(const Tensor& x, const Tensor& weight, const Tensor& bias,
                             BatchNormRunningStats& running, const BatchNormParams& params, bool on_cudnn,
                             const Tensor& partials, cudaStream_t stream) {
  const Shape channels = kernels::batch_norm2d_channel_shape(x.shape(), kernels::BatchNormMode::training);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), stream, x.memory_format());  // (N, C, H, W)
  kernels::BatchNormSaved saved{Tensor::empty(channels, DType::f32, stream),   // (C)
                                Tensor::empty(channels, DType::f32, stream)};  // (C)
  // The running statistics and the batch count are updated in place: read and written.
  graph::run_op("batch_norm2d_forward", {x, weight, bias, running.mean, running.var, running.num_batches_tracked, partials},
                {y, saved.mean, saved.invstd, running.mean, running.var, running.num_batches_tracked},
                [x = x.detach(), weight = weight.detach(), bias = bias.detach(), running, y, saved, params, on_cudnn,
                 partials](cudaStream_t s) mutable {
                  if (on_cudnn) {
                    kernels::batch_norm2d_cudnn_forward_training(x, weight, bias, running, y, saved, params, s);
                  } else {
                    const kernels::ChannelStatistics given{partials};
                    kernels::batch_norm2d_forward_training(x, weight, bias, running, y, saved, params, s,
                                                           partials.defined() ? &given : nullptr);
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
                       if (dx) gradients.dL_dx = Tensor::empty(x_saved.shape(), x_saved.dtype(), backward_stream,
                                                                x_saved.memory_format());
                       if (dw) gradients.dL_dweight = Tensor::empty(channels, DType::f32, backward_stream);
                       if (db) gradients.dL_dbias = Tensor::empty(channels, DType::f32, backward_stream);
                       const Tensor dL_dy_x = in_layout_of(dL_dy[0], x_saved, backward_stream);  // (N, C, H, W)
                       graph::run_op_on(backward_stream, "batch_norm2d_backward",
                                        {dL_dy_x, x_saved, weight_saved, saved.mean, saved.invstd},
                                        {gradients.dL_dx, gradients.dL_dweight, gradients.dL_dbias},
                                        [dL_dy = dL_dy_x.detach(), x_saved, weight_saved, saved, gradients,
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
  Tensor y = Tensor::empty(x.shape(), x.dtype(), stream, x.memory_format());  // (N, C, H, W)
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
                       if (dx) gradients.dL_dx = Tensor::empty(x_saved.shape(), x_saved.dtype(), backward_stream,
                                                                x_saved.memory_format());
                       if (dw) gradients.dL_dweight = Tensor::empty(channels, DType::f32, backward_stream);
                       if (db) gradients.dL_dbias = Tensor::empty(channels, DType::f32, backward_stream);
                       const Tensor dL_dy_x = in_layout_of(dL_dy[0], x_saved, backward_stream);  // (N, C, H, W)
                       graph::run_op_on(backward_stream, "batch_norm2d_backward_eval",
                                        {dL_dy_x, x_saved, weight_saved, running.mean, running.var},
                                        {gradients.dL_dx, gradients.dL_dweight, gradients.dL_dbias},
                                        [dL_dy = dL_dy_x.detach(), x_saved, weight_saved, running, gradients,
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
                    bool training, const BatchNormParams& params, std::optional<Engine> engine,
                    const ChannelStatistics* statistics) {
  // Argument errors before the engine's refusal: InvalidArgument whatever the engine.
  kernels::expect_floating_device_tensor(x, "batch_norm2d", "x");
  kernels::batch_norm2d_channel_shape(x.shape(),
                                      training ? kernels::BatchNormMode::training : kernels::BatchNormMode::eval);
  const bool on_cudnn = batch_norm2d_on_cudnn(resolve_engine(engine), x, training, params);
  const cudaStream_t stream = current_stream();
  // cuDNN computes its own statistics: the producer's are for the custom kernel only.
  const Tensor partials = statistics != nullptr && !on_cudnn ? statistics->partials : Tensor();  // (6, slots, C)
  return training ? batch_norm2d_training(x, weight, bias, running, params, on_cudnn, partials, stream)
                  : batch_norm2d_eval(x, weight, bias, running, params, on_cudnn, stream);
}

}  // namespace strata::F
