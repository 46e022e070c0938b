// F::conv2d and F::linear: the forward kernels, and autograd nodes that run only the
// backward passes some input needs (no filter gradient for a frozen weight, no data
// gradient for the network's input).
#include "core/check.h"
#include "core/format.h"
#include "strata/core/autograd.h"
#include "strata/core/stream.h"
#include "strata/kernels/conv2d.h"
#include "strata/kernels/linear.h"
#include "strata/layers/functional.h"

namespace strata::F {

namespace {

// Saved only when the backward will read it, so a frozen layer keeps nothing alive.
Tensor saved_if(bool needed, const Tensor& tensor) { return needed ? tensor.detach() : Tensor(); }

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& params) {
  const kernels::Conv2dShape shape = kernels::conv2d_shape(x.shape(), weight.shape(), params);
  if (bias.defined()) {
    STRATA_CHECK(bias.shape() == shape.bias(), "conv2d: bias {} does not match the weight {}: expected ({})",
                 bias.shape(), weight.shape(), shape.out_channels);
  }
  const cudaStream_t stream = current_stream();
  Tensor y = kernels::conv2d_forward(x, weight, bias, params, stream);  // (N, K, P, Q)
  if (autograd::needs_grad({x, weight, bias})) {
    const bool dx = x.requires_grad();
    const bool dw = weight.requires_grad();
    const bool db = bias.defined() && bias.requires_grad();
    autograd::record(
        "Conv2dBackward", {x, weight, bias}, y,
        [x_saved = saved_if(dw, x), weight_saved = saved_if(dx, weight), shape, dx, dw,
         db](autograd::Gradients dL_dy, cudaStream_t s) {
          autograd::Gradients dL_dinputs(3);
          if (dx) dL_dinputs[0] = kernels::conv2d_backward_data(dL_dy[0], weight_saved, shape.input(), shape.params, s);
          if (dw) dL_dinputs[1] = kernels::conv2d_backward_filter(x_saved, dL_dy[0], shape.weight(), shape.params, s);
          if (db) dL_dinputs[2] = kernels::conv2d_backward_bias(dL_dy[0], s);
          return dL_dinputs;
        });
  }
  return y;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const Shape y_shape = kernels::linear_output_shape(x.shape(), weight.shape());
  if (bias.defined()) {
    STRATA_CHECK(bias.shape() == Shape{weight.size(0)}, "linear: bias {} does not match the weight {}: expected ({})",
                 bias.shape(), weight.shape(), weight.size(0));
  }
  const cudaStream_t stream = current_stream();
  Tensor y = Tensor::empty(y_shape, DType::f32, stream);  // (..., out)
  kernels::linear_forward(x, weight, bias, y, stream);
  if (autograd::needs_grad({x, weight, bias})) {
    const bool dx = x.requires_grad();
    const bool dw = weight.requires_grad();
    const bool db = bias.defined() && bias.requires_grad();
    autograd::record("LinearBackward", {x, weight, bias}, y,
                     [x_saved = saved_if(dw, x), weight_saved = saved_if(dx, weight), x_shape = x.shape(),
                      weight_shape = weight.shape(), dx, dw, db](autograd::Gradients dL_dy, cudaStream_t s) {
                       autograd::Gradients dL_dinputs(3);
                       if (dx) {
                         dL_dinputs[0] = Tensor::empty(x_shape, DType::f32, s);
                         kernels::linear_backward_data(dL_dy[0], weight_saved, dL_dinputs[0], {}, s);
                       }
                       if (dw) {
                         dL_dinputs[1] = Tensor::empty(weight_shape, DType::f32, s);
                         kernels::linear_backward_weight(dL_dy[0], x_saved, dL_dinputs[1], {}, s);
                       }
                       if (db) {
                         dL_dinputs[2] = Tensor::empty({weight_shape[0]}, DType::f32, s);
                         kernels::linear_backward_bias(dL_dy[0], dL_dinputs[2], {}, s);
                       }
                       return dL_dinputs;
                     });
  }
  return y;
}

}  // namespace strata::F
