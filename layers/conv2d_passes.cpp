// The lowered operands and the backward passes of the conv ops (layers/conv2d_passes.h).
#include "layers/conv2d_passes.h"

#include <fmt/format.h>

#include "core/check.h"
#include "core/format.h"
#include "kernels/cudnn/conv2d_cudnn.h"
#include "kernels/tensor_checks.h"
#include "layers/autocast_policy.h"
#include "layers/engine_choice.h"
#include "strata/core/autocast.h"
#include "strata/core/op.h"
#include "strata/core/stream.h"

namespace strata::F::detail {

namespace {

// Whether a conv2d of this shape and dtype, its activations in format (x's), runs on cuDNN
// (layers/engine_choice.h).
bool conv2d_on_cudnn(Engine engine, const kernels::Conv2dShape& shape, DType dtype, MemoryFormat format) {
  return runs_on_cudnn(engine, "conv2d",
                       fmt::format("input {}, weight {}, {}, {}, {}", shape.input(), shape.weight(),
                                   kernels::to_string(shape.params), dtype_name(dtype), memory_format_name(format)),
                       [&] { return kernels::conv2d_cudnn_refusal(shape, dtype, format, current_stream()); });
}

// Whether autocast will cast this parameter from f32 to a reduced dtype while its gradient is
// wanted: then the op returns that gradient in f32 itself. A channels-last parameter keeps
// the cast's node, which gives its gradient in its format.
bool widens_gradient(const Tensor& parameter) {
  const std::optional<DType> lowered = autocast_dtype();
  return lowered && *lowered != DType::f32 && parameter.defined() && parameter.dtype() == DType::f32 &&
         parameter.is_contiguous() && autograd::is_grad_enabled() && parameter.requires_grad();
}

// lower(parameter), untracked by autograd where the op returns the f32 gradient itself.
template <typename Lower>
Tensor lowered_parameter(const Tensor& parameter, bool widened, Lower lower) {
  if (!widened) return lower(parameter);
  autograd::NoGradGuard untracked;
  return lower(parameter);
}

Tensor saved_if(bool needed, const Tensor& tensor) { return needed ? tensor.detach() : Tensor(); }

}  // namespace

Conv2dOperands lowered_conv2d_operands(const Tensor& x_given, const Tensor& weight_given, const Tensor& bias_given,
                                       const kernels::Conv2dParams& params, std::optional<Engine> engine,
                                       std::string_view op) {
  Conv2dOperands operands;
  operands.x = strata::detail::autocast_lower(x_given);
  const Tensor& x = operands.x;
  operands.shape = kernels::conv2d_shape(x.shape(), weight_given.shape(), params, op);
  kernels::expect_floating_device_tensor(x, op, "x");
  const kernels::Conv2dShape& shape = operands.shape;
  operands.on_cudnn = conv2d_on_cudnn(resolve_engine(engine), shape, x.dtype(), x.memory_format());
  const MemoryFormat weight_format =
      operands.on_cudnn ? MemoryFormat::contiguous : kernels::conv2d_weight_format(shape, x.dtype(), x.memory_format());
  const bool widened_weight = widens_gradient(weight_given);
  operands.weight = lowered_parameter(weight_given, widened_weight, [&](const Tensor& weight) {
    return strata::detail::lower_conv2d_weight(weight, weight_format);
  });
  kernels::expect_same_dtype(operands.weight, x, op, "weight", "x");
  operands.weight_input = widened_weight ? weight_given : operands.weight;
  operands.weight_gradient_dtype = widened_weight ? DType::f32 : x.dtype();

  const bool widened_bias = widens_gradient(bias_given);
  operands.bias = lowered_parameter(bias_given, widened_bias,
                                    [](const Tensor& bias) { return strata::detail::autocast_lower(bias); });
  if (operands.bias.defined()) {
    STRATA_CHECK(operands.bias.shape() == shape.bias(), "{}: bias {} does not match the weight {}: expected ({})", op,
                 operands.bias.shape(), weight_given.shape(), shape.out_channels);
    kernels::expect_same_dtype(operands.bias, x, op, "bias", "x");
  }
  operands.bias_input = widened_bias ? bias_given : operands.bias;
  operands.bias_gradient_dtype = widened_bias ? DType::f32 : x.dtype();
  return operands;
}

Conv2dBackward conv2d_backward_of(const Conv2dOperands& operands) {
  const bool dx = operands.x.requires_grad();
  const bool dw = operands.weight_input.requires_grad();
  const bool db = operands.bias_input.defined() && operands.bias_input.requires_grad();
  return {.x_saved = saved_if(dw, operands.x),
          .weight_saved = saved_if(dx, operands.weight),
          .shape = operands.shape,
          .dtype = operands.x.dtype(),
          .format = operands.x.memory_format(),
          .dx = dx,
          .dw = dw,
          .db = db,
          .weight_gradient_dtype = operands.weight_gradient_dtype,
          .bias_gradient_dtype = operands.bias_gradient_dtype,
          .on_cudnn = operands.on_cudnn};
}

// cuDNN was accepted (conv2d_on_cudnn) for every activation in x's format, so its data and
// filter passes read dL_dy in that format (no copy when it already is, as it is when it comes
// from y's consumers); the bias pass and the custom kernels take any format.
autograd::Gradients conv2d_backward_passes(const Tensor& dL_dy_detached, const Conv2dBackward& state,
                                           cudaStream_t stream) {
  const kernels::Conv2dShape& shape = state.shape;
  autograd::Gradients dL_dinputs(3);
  if (state.dx) {
    Tensor dL_dx = Tensor::empty(shape.input(), state.dtype, stream, state.format);  // (N, C, H, W)
    graph::run_op_on(stream, "conv2d_backward_data", {dL_dy_detached, state.weight_saved}, {dL_dx},
                     [dL_dy_detached, weight_saved = state.weight_saved, dL_dx, params = shape.params,
                      format = state.format, on_cudnn = state.on_cudnn](cudaStream_t s) mutable {
                       if (on_cudnn) {
                         kernels::conv2d_cudnn_backward_data(dL_dy_detached.to_memory_format(format, s), weight_saved,
                                                             dL_dx, params, s);
                       } else {
                         kernels::conv2d_backward_data(dL_dy_detached, weight_saved, dL_dx, params, s);
                       }
                     });
    dL_dinputs[0] = dL_dx;
  }
  if (state.dw) {
    Tensor dL_dweight = Tensor::empty(shape.weight(), state.weight_gradient_dtype, stream);  // (K, C/groups, R, S)
    graph::run_op_on(stream, "conv2d_backward_filter", {state.x_saved, dL_dy_detached}, {dL_dweight},
                     [x_saved = state.x_saved, dL_dy_detached, dL_dweight, params = shape.params,
                      format = state.format, on_cudnn = state.on_cudnn](cudaStream_t s) mutable {
                       if (on_cudnn) {
                         kernels::conv2d_cudnn_backward_filter(x_saved, dL_dy_detached.to_memory_format(format, s),
                                                               dL_dweight, params, s);
                       } else {
                         kernels::conv2d_backward_filter(x_saved, dL_dy_detached, dL_dweight, params, s);
                       }
                     });
    dL_dinputs[1] = dL_dweight;
  }
  if (state.db) {
    Tensor dL_dbias = Tensor::empty(shape.bias(), state.bias_gradient_dtype, stream);  // (K)
    graph::run_op_on(stream, "conv2d_backward_bias", {dL_dy_detached}, {dL_dbias},
                     [dL_dy_detached, dL_dbias, on_cudnn = state.on_cudnn](cudaStream_t s) mutable {
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

}  // namespace strata::F::detail
