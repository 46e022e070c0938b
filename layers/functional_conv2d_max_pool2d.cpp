// F::conv2d_max_pool2d (strata/layers/functional_conv_pool.h): on the custom kernels, where the
// shapes fuse, one forward op (kernels::conv2d_max_pool2d_forward) and an autograd node whose
// backward is max_pool2d's (the saved argmax routes dL/dy into dL/d(conv output)) followed by
// conv2d's backward passes, each an op of its own as F::conv2d records them (data and filter
// gradients only when x and the weight need them, the bias gradient when the bias does); the
// same kernels on the same values as the composition, so the same bits. Everything else is
// F::conv2d then F::max_pool2d, which choose their engines and record their own nodes. Under
// autocast the inputs are lowered, and f32 parameters get f32 gradients, as in F::conv2d
// (layers/conv2d_passes.h). A channels-last x gives a
// channels-last y (and argmax) and dL/dx.
#include <cstdint>
#include <limits>

#include "core/check.h"
#include "core/format.h"
#include "kernels/conv2d_checks.h"
#include "kernels/tensor_checks.h"
#include "layers/conv2d_passes.h"
#include "strata/core/autograd.h"
#include "strata/core/op.h"
#include "strata/core/stream.h"
#include "strata/kernels/conv2d.h"
#include "strata/kernels/conv2d_max_pool2d.h"
#include "strata/kernels/pool2d.h"
#include "strata/layers/functional.h"
#include "strata/layers/functional_conv_pool.h"

namespace strata::F {

namespace {

// The argmax the fused forward writes for the backward, as F::max_pool2d keeps it: i32 when
// the (P, Q) conv plane is indexable in 32 bits (half the memory for as long as the graph
// lives), else i64; none when no input requires gradients.
Tensor argmax_for_backward(bool needed, const Shape& conv_output, const Shape& y_shape, MemoryFormat format,
                           cudaStream_t stream) {
  if (!needed) return {};
  const bool narrow = conv_output[2] * conv_output[3] <= std::numeric_limits<std::int32_t>::max();
  return Tensor::empty(y_shape, narrow ? DType::i32 : DType::i64, stream, format);
}

}  // namespace

Tensor conv2d_max_pool2d(const Tensor& x_given, const Tensor& weight_given, const Tensor& bias_given,
                         const Conv2dParams& conv_params, const Pool2dParams& pool_params, std::optional<Engine> engine,
                         ChannelStatistics* statistics) {
  const kernels::Conv2dShape shape = kernels::conv2d_shape(x_given.shape(), weight_given.shape(), conv_params);
  if (resolve_engine(engine) != Engine::custom || !kernels::conv2d_max_pool2d_fuses(shape, pool_params)) {
    return max_pool2d(conv2d(x_given, weight_given, bias_given, conv_params, engine), pool_params, engine, statistics);
  }
  // F::conv2d's lowering and checks, so that a mismatch is reported where the op is called.
  const detail::Conv2dOperands operands =
      detail::lowered_conv2d_operands(x_given, weight_given, bias_given, conv_params, Engine::custom, "conv2d");
  const Tensor& x = operands.x;
  const Tensor& weight = operands.weight;
  const Tensor& bias = operands.bias;
  const DType dtype = x.dtype();
  const cudaStream_t stream = current_stream();
  const Shape y_shape = kernels::conv2d_max_pool2d_output_shape(shape, pool_params);
  const MemoryFormat format = x.memory_format();
  Tensor y = Tensor::empty(y_shape, dtype, stream, format);  // (N, K, Ho, Wo)
  const bool needs_grad = autograd::needs_grad({x, operands.weight_input, operands.bias_input});
  // (N, K, Ho, Wo) in y's format, or undefined
  Tensor argmax = argmax_for_backward(needs_grad, shape.output(), y_shape, format, stream);
  Tensor partials;  // (6, slots, K) f32 when asked for
  if (statistics != nullptr) {
    partials = Tensor::empty(kernels::channel_statistics_shape(
                                 kernels::conv2d_max_pool2d_forward_statistics_slots(shape, pool_params), y_shape[1]),
                             DType::f32, stream);
    statistics->partials = partials;
  }
  graph::run_op("conv2d_max_pool2d_forward", {x, weight, bias}, {y, argmax, partials},
                [x = x.detach(), weight = weight.detach(), bias = bias.detach(), y, argmax, partials, conv_params,
                 pool_params](cudaStream_t s) mutable {
                  kernels::ChannelStatistics written{partials};
                  kernels::conv2d_max_pool2d_forward(x, weight, bias, y, argmax, conv_params, pool_params, s,
                                                     partials.defined() ? &written : nullptr);
                });
  if (!needs_grad) return y;
  autograd::record(
      "Conv2dMaxPool2dBackward", {x, operands.weight_input, operands.bias_input}, y,
      [argmax, state = detail::conv2d_backward_of(operands), pool_params](autograd::Gradients dL_dy,
                                                                          cudaStream_t backward_stream) {
        const Tensor dL_dy_detached = dL_dy[0].detach();  // (N, K, Ho, Wo)
        // max_pool2d's backward: each window's gradient to its argmax, zeros elsewhere, in the
        // argmax's format (x's), as F::max_pool2d takes it: dL_dy converted when it arrives in
        // the other.
        Tensor dL_dconv = Tensor::empty(state.shape.output(), state.dtype, backward_stream, state.format);
        graph::run_op_on(backward_stream, "max_pool2d_backward", {dL_dy_detached, argmax}, {dL_dconv},
                         [dL_dy_detached, argmax, dL_dconv, format = state.format, pool_params](cudaStream_t s) mutable {
                           kernels::max_pool2d_backward(dL_dy_detached.to_memory_format(format, s), argmax, dL_dconv,
                                                        pool_params, s);
                         });
        // conv2d's backward passes, on the forward's math, as F::conv2d runs them.
        return detail::conv2d_backward_passes(dL_dconv, state, backward_stream);
      });
  return y;
}

}  // namespace strata::F
