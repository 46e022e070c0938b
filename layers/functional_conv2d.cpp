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
// and plan it); cuDNN's writes none.
#include <string>

#include <fmt/format.h>

#include "core/check.h"
#include "core/format.h"
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

// Whether a conv2d of this shape and dtype runs on cuDNN (layers/engine_choice.h).
bool conv2d_on_cudnn(Engine engine, const kernels::Conv2dShape& shape, DType dtype) {
  return detail::runs_on_cudnn(engine, "conv2d",
                               fmt::format("input {}, weight {}, {}, {}", shape.input(), shape.weight(),
                                           kernels::to_string(shape.params), dtype_name(dtype)),
                               [&] { return kernels::conv2d_cudnn_refusal(shape, dtype, current_stream()); });
}

}  // namespace

Tensor conv2d(const Tensor& x_given, const Tensor& weight_given, const Tensor& bias_given, const Conv2dParams& params,
              std::optional<Engine> engine, ChannelStatistics* statistics) {
  const Tensor x = strata::detail::autocast_lower(x_given);
  const Tensor weight = strata::detail::autocast_lower(weight_given);
  const Tensor bias = strata::detail::autocast_lower(bias_given);
  const kernels::Conv2dShape shape = kernels::conv2d_shape(x.shape(), weight.shape(), params);
  // One dtype for the op and its gradients, checked here so a mismatch is reported where the
  // op is called, before anything is queued.
  kernels::expect_floating_device_tensor(x, "conv2d", "x");
  kernels::expect_same_dtype(weight, x, "conv2d", "weight", "x");
  if (bias.defined()) {
    STRATA_CHECK(bias.shape() == shape.bias(), "conv2d: bias {} does not match the weight {}: expected ({})",
                 bias.shape(), weight.shape(), shape.out_channels);
    kernels::expect_same_dtype(bias, x, "conv2d", "bias", "x");
  }
  const DType dtype = x.dtype();
  const bool on_cudnn = conv2d_on_cudnn(resolve_engine(engine), shape, dtype);
  Tensor y = Tensor::empty(shape.output(), dtype, current_stream());  // (N, K, P, Q)
  // (6, slots, K) f32 when asked for on the custom kernels, else undefined.
  Tensor partials;
  if (statistics != nullptr) {
    if (!on_cudnn) {
      partials = Tensor::empty(kernels::channel_statistics_shape(kernels::conv2d_forward_statistics_slots(shape),
                                                                 shape.out_channels),
                               DType::f32, current_stream());
    }
    statistics->partials = partials;
  }
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
        [x_saved = saved_if(dw, x), weight_saved = saved_if(dx, weight), shape, dtype, dx, dw, db,
         on_cudnn](autograd::Gradients dL_dy, cudaStream_t stream) {
          const Tensor dL_dy_detached = dL_dy[0].detach();  // (N, K, P, Q)
          autograd::Gradients dL_dinputs(3);
          if (dx) {
            Tensor dL_dx = Tensor::empty(shape.input(), dtype, stream);  // (N, C, H, W)
            graph::run_op_on(stream, "conv2d_backward_data", {dL_dy_detached, weight_saved}, {dL_dx},
                             [dL_dy_detached, weight_saved, dL_dx, params = shape.params,
                              on_cudnn](cudaStream_t s) mutable {
                               if (on_cudnn) {
                                 kernels::conv2d_cudnn_backward_data(dL_dy_detached, weight_saved, dL_dx, params, s);
                               } else {
                                 kernels::conv2d_backward_data(dL_dy_detached, weight_saved, dL_dx, params, s);
                               }
                             });
            dL_dinputs[0] = dL_dx;
          }
          if (dw) {
            Tensor dL_dweight = Tensor::empty(shape.weight(), dtype, stream);  // (K, C/groups, R, S)
            graph::run_op_on(stream, "conv2d_backward_filter", {x_saved, dL_dy_detached}, {dL_dweight},
                             [x_saved, dL_dy_detached, dL_dweight, params = shape.params,
                              on_cudnn](cudaStream_t s) mutable {
                               if (on_cudnn) {
                                 kernels::conv2d_cudnn_backward_filter(x_saved, dL_dy_detached, dL_dweight, params, s);
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
                                 kernels::conv2d_cudnn_backward_bias(dL_dy_detached, dL_dbias, s);
                               } else {
                                 kernels::conv2d_backward_bias(dL_dy_detached, dL_dbias, s);
                               }
                             });
            dL_dinputs[2] = dL_dbias;
          }
          return dL_dinputs;
        });
  }
  return y;
}

}  // namespace strata::F
