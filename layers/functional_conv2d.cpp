// F::conv2d: the forward kernel, and an autograd node that runs only the backward passes
// some input needs (no filter gradient for a frozen weight, no data gradient for the
// network's input). Each backward pass is an op of its own (strata/core/op.h), so that the
// data and filter gradients can run side by side. conv2d runs on the custom kernels or on
// cuDNN (strata/core/engine.h), chosen once when the forward is queued: its backward passes
// follow the forward's engine. Under autocast, x, weight and bias are cast to the autocast
// dtype first (layers/autocast_policy.h): the op and its gradients then run in that dtype
// (f32, f16 or bf16; outputs and gradients in it), and the casts' own nodes return f32
// gradients to f32 parameters. Asked for statistics, the custom forward also writes the
// per-channel statistics of y for a batch norm on it (a tensor of the op's, so graphs order
// and plan it); cuDNN's writes none. F::fused_conv2d is the same op with the forward's
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
#include "layers/autocast_policy.h"
#include "layers/engine_choice.h"
#include "strata/core/autograd.h"
#include "strata/core/errors.h"
#include "strata/core/op.h"
#include "strata/core/stream.h"
#include "strata/kernels/conv2d.h"
#include "strata/layers/functional.h"

namespace strata::F {

namespace {

// Saved only when the backward will read it, so a frozen layer keeps nothing alive.
Tensor saved_if(bool needed, const Tensor& tensor) { return needed ? tensor.detach() : Tensor(); }

// Whether a conv2d of this shape and dtype, its activations in format (x's), runs on cuDNN
// (layers/engine_choice.h).
bool conv2d_on_cudnn(Engine engine, const kernels::Conv2dShape& shape, DType dtype, MemoryFormat format) {
  return detail::runs_on_cudnn(engine, "conv2d",
                               fmt::format("input {}, weight {}, {}, {}, {}", shape.input(), shape.weight(),
                                           kernels::to_string(shape.params), dtype_name(dtype),
                                           memory_format_name(format)),
                               [&] { return kernels::conv2d_cudnn_refusal(shape, dtype, format, current_stream()); });
}

// The backward passes of a conv whose output gradient is dL_dy_detached (N, K, P, Q), in any
// format: those of the inputs that need one (dx, dw, db), on the forward's engine, dL_dx in
// x_format (x's). cuDNN was accepted (conv2d_on_cudnn) for every activation in x_format, so
// the data and filter passes read dL_dy in x_format (no copy when it already is, as it is
// when it comes from y's consumers); the bias pass and the custom kernels take any format.
autograd::Gradients conv2d_backward_passes(const Tensor& dL_dy_detached, const Tensor& x_saved,
                                           const Tensor& weight_saved, const kernels::Conv2dShape& shape, DType dtype,
                                           MemoryFormat x_format, bool dx, bool dw, bool db, bool on_cudnn,
                                           cudaStream_t stream) {
  autograd::Gradients dL_dinputs(3);
  if (dx) {
    Tensor dL_dx = Tensor::empty(shape.input(), dtype, stream, x_format);  // (N, C, H, W)
    graph::run_op_on(stream, "conv2d_backward_data", {dL_dy_detached, weight_saved}, {dL_dx},
                     [dL_dy_detached, weight_saved, dL_dx, params = shape.params, x_format,
                      on_cudnn](cudaStream_t s) mutable {
                       if (on_cudnn) {
                         kernels::conv2d_cudnn_backward_data(dL_dy_detached.to_memory_format(x_format, s),
                                                             weight_saved, dL_dx, params, s);
                       } else {
                         kernels::conv2d_backward_data(dL_dy_detached, weight_saved, dL_dx, params, s);
                       }
                     });
    dL_dinputs[0] = dL_dx;
  }
  if (dw) {
    Tensor dL_dweight = Tensor::empty(shape.weight(), dtype, stream);  // (K, C/groups, R, S)
    graph::run_op_on(stream, "conv2d_backward_filter", {x_saved, dL_dy_detached}, {dL_dweight},
                     [x_saved, dL_dy_detached, dL_dweight, params = shape.params, x_format,
                      on_cudnn](cudaStream_t s) mutable {
                       if (on_cudnn) {
                         kernels::conv2d_cudnn_backward_filter(x_saved, dL_dy_detached.to_memory_format(x_format, s),
                                                               dL_dweight, params, s);
                       } else {
                         kernels::conv2d_backward_filter(x_saved, dL_dy_detached, dL_dweight, params, s);
                       }
                     });
    dL_dinputs[1] = dL_dweight;
  }
  if (db) {
    Tensor dL_dbias = Tensor::empty(shape.bias(), dtype, stream);  // (K)
    graph::run_op_on(stream, "conv2d_backward_bias", {dL_dy_detached}, {dL_dbias},
                     [dL_dy_detached, dL_dbias, on_cudnn](cudaStream_t s) mutable {
                       if (on_cudnn) {
                         kernels::conv2d_cudnn_backward_bias(dL_dy_detached, dL_dbias, s);  // any format
                       } else {
                         kernels::conv2d_backward_bias(dL_dy_detached, dL_dbias, s);
                       }
                     });
    dL_dinputs[2] = dL_dbias;
  }
  return dL_dinputs;
}

// The operands of a conv2d as its kernels take them: x, weight and bias lowered by autocast,
// the weight laid out in the format the chosen engine reads (lower_conv2d_weight), and checked
// (one dtype for the op and its gradients), with op naming the caller, before anything is
// queued.
struct Conv2dOperands {
  Tensor x;
  Tensor weight;
  Tensor bias;
  kernels::Conv2dShape shape;
  bool on_cudnn = false;
};

Conv2dOperands lowered_conv2d_operands(const Tensor& x_given, const Tensor& weight_given, const Tensor& bias_given,
                                       const Conv2dParams& params, std::optional<Engine> engine, std::string_view op) {
  Conv2dOperands operands;
  operands.x = strata::detail::autocast_lower(x_given);
  const Tensor& x = operands.x;
  operands.shape = kernels::conv2d_shape(x.shape(), weight_given.shape(), params, op);
  kernels::expect_floating_device_tensor(x, op, "x");
  const kernels::Conv2dShape& shape = operands.shape;
  operands.on_cudnn = conv2d_on_cudnn(resolve_engine(engine), shape, x.dtype(), x.memory_format());
  operands.weight = strata::detail::lower_conv2d_weight(
      weight_given, operands.on_cudnn ? MemoryFormat::contiguous
                                      : kernels::conv2d_weight_format(shape, x.dtype(), x.memory_format()));
  kernels::expect_same_dtype(operands.weight, x, op, "weight", "x");
  operands.bias = strata::detail::autocast_lower(bias_given);
  if (operands.bias.defined()) {
    STRATA_CHECK(operands.bias.shape() == shape.bias(), "{}: bias {} does not match the weight {}: expected ({})", op,
                 operands.bias.shape(), weight_given.shape(), shape.out_channels);
    kernels::expect_same_dtype(operands.bias, x, op, "bias", "x");
  }
  return operands;
}

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
  const auto [x, weight, bias, shape, on_cudnn] =
      lowered_conv2d_operands(x_given, weight_given, bias_given, params, engine, "conv2d");
  const DType dtype = x.dtype();
  const MemoryFormat format = x.memory_format();
  Tensor y = Tensor::empty(shape.output(), dtype, current_stream(), format);  // (N, K, P, Q)
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
  if (autograd::needs_grad({x, weight, bias})) {
    const bool dx = x.requires_grad();
    const bool dw = weight.requires_grad();
    const bool db = bias.defined() && bias.requires_grad();
    // The data and filter gradients use the forward's math (tf32 or bf16 on the tensor
    // cores where the shape qualifies, kernels/conv2d.h), as PyTorch's allow_tf32 does.
    autograd::record(
        "Conv2dBackward", {x, weight, bias}, y,
        [x_saved = saved_if(dw, x), weight_saved = saved_if(dx, weight), shape, dtype, format, dx, dw, db,
         on_cudnn](autograd::Gradients dL_dy, cudaStream_t stream) {
          return conv2d_backward_passes(dL_dy[0].detach(), x_saved, weight_saved, shape, dtype, format, dx, dw, db,
                                        on_cudnn, stream);
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
  const auto [x, weight, bias, shape, on_cudnn] =
      lowered_conv2d_operands(x_given, weight_given, bias_given, params, engine, kOp);
  kernels::expect_conv2d_epilogue(epilogue, shape.output(), kOp, "y");
  const DType dtype = x.dtype();
  const bool needs_grad = autograd::needs_grad({x, weight, bias});
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
    const bool dx = x.requires_grad();
    const bool dw = weight.requires_grad();
    const bool db = bias.defined() && bias.requires_grad();
    // What the epilogue's backward reads: y for ReLU, v for GELU, nothing without an activation.
    const Tensor saved = epilogue.activation == FusedActivation::relu ? y.detach() : preactivation.detach();
    autograd::record(
        "FusedConv2dBackward", {x, weight, bias}, y,
        [x_saved = saved_if(dw, x), weight_saved = saved_if(dx, weight), saved, constants, shape, dtype, format, dx,
         dw, db, on_cudnn](autograd::Gradients dL_dy, cudaStream_t stream) {
          const Tensor dL_dy_detached = dL_dy[0].detach();                         // (N, K, P, Q)
          Tensor dL_dz = Tensor::empty(shape.output(), dtype, stream, format);  // (N, K, P, Q), y's format
          graph::run_op_on(stream, "conv2d_epilogue_backward", {dL_dy_detached, saved, constants.scale}, {dL_dz},
                           [dL_dy_detached, saved, constants, dL_dz](cudaStream_t s) mutable {
                             // The element-wise kernel takes one layout: dL_dy in y's (and saved's).
                             const Tensor dL_dy_as_y = dL_dy_detached.to_memory_format(dL_dz.memory_format(), s);
                             kernels::conv2d_epilogue_backward(dL_dy_as_y, saved, constants, dL_dz, s);
                           });
          return conv2d_backward_passes(dL_dz, x_saved, weight_saved, shape, dtype, format, dx, dw, db, on_cudnn,
                                        stream);
        });
  }
  return y;
}

}  // namespace strata::F
