// F::batch_norm2d_activation: batch norm and its activation in one forward op and one
// backward op (strata/kernels/batch_norm2d_activation.h). The nodes save x, weight, bias and
// the statistics, never the pre-activation: the backward kernels recompute it. Custom
// kernels only, whatever the engine: cuDNN's legacy API has no such fused op, so, as for
// cross_entropy, there is no engine to choose and none to refuse. It runs in x's dtype (f32,
// f16 or bf16): y and dL_dx in that dtype, the statistics and parameter gradients in f32.
// In training it can take x's statistics from x's producer (F::conv2d, F::max_pool2d): their
// partials are then read by the forward op instead of a pass over x.
#include "kernels/tensor_checks.h"
#include "strata/core/autograd.h"
#include "strata/core/op.h"
#include "strata/core/stream.h"
#include "strata/kernels/batch_norm2d_activation.h"
#include "strata/layers/functional.h"

namespace strata::F {

namespace {

constexpr const char* kOp = "batch_norm2d_activation";

// dL_dy as the backward kernels read it, in x's memory layout: a gradient may arrive in the
// other format (converted on stream, outside the op, as autograd's sums of gradients are).
Tensor in_layout_of(const Tensor& dL_dy, const Tensor& x, cudaStream_t stream) {
  return dL_dy.is_contiguous() == x.is_contiguous() ? dL_dy : dL_dy.to_memory_format(x.memory_format(), stream);
}

// The gradients the node's inputs need, allocated on stream; the others undefined.
struct GradientsWanted {
  bool dx = false;
  bool dweight = false;
  bool dbias = false;

  static GradientsWanted of(const Tensor& x, const Tensor& weight, const Tensor& bias) {
    return {.dx = x.requires_grad(),
            .dweight = weight.defined() && weight.requires_grad(),
            .dbias = bias.defined() && bias.requires_grad()};
  }

  kernels::BatchNormGradients allocate(const Tensor& x, const Shape& channels, cudaStream_t stream) const {
    kernels::BatchNormGradients gradients;
    if (dx) gradients.dL_dx = Tensor::empty(x.shape(), x.dtype(), stream, x.memory_format());  // (N, C, H, W)
    if (dweight) gradients.dL_dweight = Tensor::empty(channels, DType::f32, stream);            // (C)
    if (dbias) gradients.dL_dbias = Tensor::empty(channels, DType::f32, stream);                // (C)
    return gradients;
  }
};

// channels: (C), checked against x. partials: x's producer statistics, or undefined.
Tensor training_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, BatchNormRunningStats& running,
                        const Shape& channels, const BatchNormActivationParams& params, const Tensor& partials,
                        cudaStream_t stream) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), stream, x.memory_format());  // (N, C, H, W)
  kernels::BatchNormSaved saved{Tensor::empty(channels, DType::f32, stream),   // (C)
                                Tensor::empty(channels, DType::f32, stream)};  // (C)
  // The running statistics and the batch count are updated in place: read and written.
  graph::run_op("batch_norm2d_activation_forward", {x, weight, bias, running.mean, running.var, running.num_batches_tracked, partials},
                {y, saved.mean, saved.invstd, running.mean, running.var, running.num_batches_tracked},
                [x = x.detach(), weight = weight.detach(), bias = bias.detach(), running, y, saved, params,
                 partials](cudaStream_t s) mutable {
                  const kernels::ChannelStatistics given{partials};
                  kernels::batch_norm2d_activation_forward_training(x, weight, bias, running, y, saved, params, s,
                                                                    partials.defined() ? &given : nullptr);
                });
  if (autograd::needs_grad({x, weight, bias})) {
    autograd::record(
        "BatchNorm2dActivationBackward", {x, weight, bias}, y,
        [x_saved = x.detach(), weight_saved = weight.detach(), bias_saved = bias.detach(), saved, channels, params,
         wanted = GradientsWanted::of(x, weight, bias)](autograd::Gradients dL_dy, cudaStream_t backward_stream) {
          kernels::BatchNormGradients gradients = wanted.allocate(x_saved, channels, backward_stream);
          const Tensor dL_dy_x = in_layout_of(dL_dy[0], x_saved, backward_stream);  // (N, C, H, W)
          graph::run_op_on(backward_stream, "batch_norm2d_activation_backward",
                           {dL_dy_x, x_saved, weight_saved, bias_saved, saved.mean, saved.invstd},
                           {gradients.dL_dx, gradients.dL_dweight, gradients.dL_dbias},
                           [dL_dy = dL_dy_x.detach(), x_saved, weight_saved, bias_saved, saved, gradients,
                            params](cudaStream_t s) mutable {
                             kernels::batch_norm2d_activation_backward(dL_dy, x_saved, weight_saved, bias_saved,
                                                                       saved, gradients, params, s);
                           });
          return autograd::Gradients{gradients.dL_dx, gradients.dL_dweight, gradients.dL_dbias};
        });
  }
  return y;
}

Tensor eval_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const BatchNormRunningStats& running,
                    const Shape& channels, const BatchNormActivationParams& params, cudaStream_t stream) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), stream, x.memory_format());  // (N, C, H, W)
  graph::run_op("batch_norm2d_activation_forward_eval", {x, weight, bias, running.mean, running.var}, {y},
                [x = x.detach(), weight = weight.detach(), bias = bias.detach(), running, y,
                 params](cudaStream_t s) mutable {
                  kernels::batch_norm2d_activation_forward_eval(x, weight, bias, running, y, params, s);
                });
  if (autograd::needs_grad({x, weight, bias})) {
    // The running statistics are constants here (frozen batch norm, as F::batch_norm2d's eval
    // mode); the node keeps them, so a training forward before this backward changes them.
    autograd::record(
        "BatchNorm2dActivationEvalBackward", {x, weight, bias}, y,
        [x_saved = x.detach(), weight_saved = weight.detach(), bias_saved = bias.detach(), running, channels, params,
         wanted = GradientsWanted::of(x, weight, bias)](autograd::Gradients dL_dy, cudaStream_t backward_stream) {
          kernels::BatchNormGradients gradients = wanted.allocate(x_saved, channels, backward_stream);
          const Tensor dL_dy_x = in_layout_of(dL_dy[0], x_saved, backward_stream);  // (N, C, H, W)
          graph::run_op_on(backward_stream, "batch_norm2d_activation_backward_eval",
                           {dL_dy_x, x_saved, weight_saved, bias_saved, running.mean, running.var},
                           {gradients.dL_dx, gradients.dL_dweight, gradients.dL_dbias},
                           [dL_dy = dL_dy_x.detach(), x_saved, weight_saved, bias_saved, running, gradients,
                            params](cudaStream_t s) mutable {
                             kernels::batch_norm2d_activation_backward_eval(dL_dy, x_saved, weight_saved, bias_saved,
                                                                            running, gradients, params, s);
                           });
          return autograd::Gradients{gradients.dL_dx, gradients.dL_dweight, gradients.dL_dbias};
        });
  }
  return y;
}

}  // namespace

Tensor batch_norm2d_activation(const Tensor& x, const Tensor& weight, const Tensor& bias,
                               BatchNormRunningStats& running, bool training,
                               const BatchNormActivationParams& params, const ChannelStatistics* statistics) {
  // Shape errors before anything is allocated or queued; the launchers check the rest.
  kernels::expect_floating_device_tensor(x, kOp, "x");
  const Shape channels = kernels::batch_norm2d_activation_channel_shape(
      x.shape(), training ? kernels::BatchNormMode::training : kernels::BatchNormMode::eval);
  const cudaStream_t stream = current_stream();
  const Tensor partials = statistics != nullptr ? statistics->partials : Tensor();  // (6, slots, C) or undefined
  return training ? training_forward(x, weight, bias, running, channels, params, partials, stream)
                  : eval_forward(x, weight, bias, running, channels, params, stream);
}

}  // namespace strata::F
