// F::conv2d: the forward kernel, and an autograd node that runs only the backward passes
// some input needs (no filter gradient for a frozen weight, no data gradient for the
// network's input). Each backward pass is an op of its own (strata/core/op.h), so that the
// data and filter gradients can run side by side. conv2d runs on the custom kernels or on
// cuDNN (strata/core/engine.h), chosen once when the forward is queued: its backward passes
// follow the forward's engine. Under autocast, x, weight and bias are cast to the autocast
// dtype first (layers/autocast_policy.h): the op and its gradients then run in that dtype
// (f32, f16 or bf16; outputs and gradients in it), and the node returns an f32 parameter's
// gradient in f32 itself, rounded to that dtype first (layers/conv2d_passes.h). Asked for
// statistics, the custom forward also writes the per-channel statistics of y for a batch norm
// on it (a tensor of the op's, so graphs order and plan it); cuDNN's writes none. F::fused_conv2d is the same op with the forward's
// epilogue (scale, shift, activation; kernels/conv2d.h): its node first takes the gradient
// through the epilogue (conv2d_epilogue_backward), then runs F::conv2d's backward passes.
// A channels-last x gives a channels-last y (and preactivation) and a channels-last dL/dx, as
// in PyTorch; the custom kernels read every activation in its own format, whatever format
// dL/dy arrives in.
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "core/check.h"
#include "core/format.h"
#include "kernels/conv2d_checks.h"
#include "kernels/cudnn/conv2d_cudnn.h"
#include "kernels/tensor_checks.h"
#include "layers/conv2d_passes.h"
#include "strata/core/autograd.h"
#include "strata/core/errors.h"
#include "strata/core/op.h"
#include "strata/core/stream.h"
#include "strata/kernels/conv2d.h"
#include "strata/layers/functional.h"

namespace strata::F {

namespace {

// The (6, slots, K) f32 statistics partials the custom forward writes when asked, else
// undefined (and none on cuDNN); statistics->partials is set to them.
Tensor statistics_partials(ChannelStatistics* statistics, const kernels::Conv2dShape& shape, bool on_cudnn) {
  if (statistics == nullptr) return Tensor();
  Tensor partials;
  if (!on_cudnn) {
    partials = Tensor::empty(
        kernels::channel_statistics_shape(kernels::conv2d_forward_statistics_slots(shape), shape.out_channels),
        DType::f32, current_stream());
  }
  statistics->partials = partials;
  return partials;
}

}  // namespace

Tensor conv2d(const Tensor& x_given, const Tensor& weight_given, const Tensor& bias_given, const Conv2dParams& params,
              std::optional<Engine> engine, ChannelStatistics* statistics) {
  const detail::Conv2dOperands operands =
      detail::lowered_conv2d_operands(x_given, weight_given, bias_given, params, engine, "conv2d");
  const Tensor& x = operands.x;
  const Tensor& weight = operands.weight;
  const Tensor& bias = operands.bias;
  const kernels::Conv2dShape& shape = operands.shape;
  const bool on_cudnn = operands.on_cudnn;
  Tensor y = Tensor::empty(shape.output(), x.dtype(), current_stream(), x.memory_format());  // (N, K, P, Q)
  // (6, slots, K) f32 when asked for on the custom kernels, else undefined.
  const Tensor partials = statistics_partials(statistics, shape, on_cudnn);
  graph::run_op("conv2d_forward", {x, weight, bias}, {y, partials},
                [x = x.detach(), weight = weight.detach(), bias = bias.detach(), y, partials, params,
                 on_cudnn](cudaStream_t s) mutable {
                  if (on_cudnn) {
                    kernels::conv2d_cudnn_forward(x, weight, bias, y, params, s);
                  } else {
                    kernels::ChannelStatistics written{partials};
                    kernels::conv2d_forward(x, weight, bias, y, params, s, partials.defined() ? &written : nullptr);
                  }
                });
  if (autograd::needs_grad({x, operands.weight_input, operands.bias_input})) {
    // The data and filter gradients use the forward's math (tf32 or bf16 on the tensor
    // cores where the shape qualifies, kernels/conv2d.h), as PyTorch's allow_tf32 does.
    autograd::record("Conv2dBackward", {x, operands.weight_input, operands.bias_input}, y,
                     [state = detail::conv2d_backward_of(operands)](autograd::Gradients dL_dy, cudaStream_t stream) {
                       return detail::conv2d_backward_passes(dL_dy[0].detach(), state, stream);
                     });
  }
  return y;
}

Tensor fused_conv2d(const Tensor& x_given, const Tensor& weight_given, const Tensor& bias_given,
                    const Conv2dParams& params, const Conv2dEpilogue& epilogue, std::optional<Engine> engine,
                    ChannelStatistics* statistics) {
  constexpr std::string_view kOp = "fused_conv2d";
  for (const Tensor* constant : {&epilogue.scale, &epilogue.shift}) {
    STRATA_CHECK(!constant->defined() || !constant->requires_grad(),
                 "{}: the epilogue's {} {} requires gradients, but scale and shift are constants here; detach "
                 "them, or fold a trained batch norm into the conv with nn::fuse_conv_batch_norm_eval",
                 kOp, constant == &epilogue.scale ? "scale" : "shift", constant->shape());
  }
  if (epilogue.is_identity()) return conv2d(x_given, weight_given, bias_given, params, engine, statistics);
  const detail::Conv2dOperands operands =
      detail::lowered_conv2d_operands(x_given, weight_given, bias_given, params, engine, kOp);
  const Tensor& x = operands.x;
  const Tensor& weight = operands.weight;
  const Tensor& bias = operands.bias;
  const kernels::Conv2dShape& shape = operands.shape;
  const bool on_cudnn = operands.on_cudnn;
  kernels::expect_conv2d_epilogue(epilogue, shape.output(), kOp, "y");
  const DType dtype = x.dtype();
  const bool needs_grad = autograd::needs_grad({x, operands.weight_input, operands.bias_input});
  // GELU's derivative needs v itself; ReLU's is read from y (y > 0 exactly where v > 0).
  const bool stores_preactivation = needs_grad && (epilogue.activation == FusedActivation::gelu ||
                                                   epilogue.activation == FusedActivation::gelu_tanh);
  const MemoryFormat format = x.memory_format();
  Tensor y = Tensor::empty(shape.output(), dtype, current_stream(), format);  // (N, K, P, Q)
  Tensor preactivation =                                                        // (N, K, P, Q) or undefined
      stores_preactivation ? Tensor::empty(shape.output(), dtype, current_stream(), format) : Tensor();
  const Tensor partials = statistics_partials(statistics, shape, on_cudnn);  // (6, slots, K) or undefined
  const Conv2dEpilogue constants{.scale = epilogue.scale.detach(), .shift = epilogue.shift.detach(),
                                 .activation = epilogue.activation};
  graph::run_op("conv2d_forward", {x, weight, bias, constants.scale, constants.shift}, {y, partials, preactivation},
                [x = x.detach(), weight = weight.detach(), bias = bias.detach(), y, partials, preactivation, params,
                 constants, on_cudnn](cudaStream_t s) mutable {
                  Tensor* preactivation_out = preactivation.defined() ? &preactivation : nullptr;
                  if (on_cudnn) {
                    // cuDNN's conv + bias into y, then the epilogue in place.
                    kernels::conv2d_cudnn_forward(x, weight, bias, y, params, s);
                    kernels::conv2d_epilogue_forward(y, constants, y, s, preactivation_out);
                  } else {
                    kernels::ChannelStatistics written{partials};
                    kernels::conv2d_forward(x, weight, bias, y, params, constants, s,
                                            partials.defined() ? &written : nullptr, preactivation_out);
                  }
                });
  if (needs_grad) {
    // What the epilogue's backward reads: y for ReLU, v for GELU, nothing without an activation.
    const Tensor saved = epilogue.activation == FusedActivation::relu ? y.detach() : preactivation.detach();
    autograd::record(
        "FusedConv2dBackward", {x, operands.weight_input, operands.bias_input}, y,
        [state = detail::conv2d_backward_of(operands), saved, constants](autograd::Gradients dL_dy,
                                                                         cudaStream_t stream) {
          const Tensor dL_dy_detached = dL_dy[0].detach();  // (N, K, P, Q)
          // (N, K, P, Q), y's format
          Tensor dL_dz = Tensor::empty(state.shape.output(), state.dtype, stream, state.format);
          graph::run_op_on(stream, "conv2d_epilogue_backward", {dL_dy_detached, saved, constants.scale}, {dL_dz},
                           [dL_dy_detached, saved, constants, dL_dz](cudaStream_t s) mutable {
                             // The element-wise kernel takes one layout: dL_dy in y's (and saved's).
                             const Tensor dL_dy_as_y = dL_dy_detached.to_memory_format(dL_dz.memory_format(), s);
                             kernels::conv2d_epilogue_backward(dL_dy_as_y, saved, constants, dL_dz, s);
                           });
          return detail::conv2d_backward_passes(dL_dz, state, stream);
        });
  }
  return y;
}

}  // namespace strata::F
