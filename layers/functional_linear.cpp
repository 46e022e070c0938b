// F::linear: the forward on cuBLAS (strata/kernels/linear.h), and an autograd node that
// runs only the backward passes some input needs, each an op of its own (strata/core/op.h).
#include "core/check.h"
#include "core/format.h"
#include "strata/core/autograd.h"
#include "strata/core/op.h"
#include "strata/core/stream.h"
#include "strata/kernels/linear.h"
#include "strata/layers/functional.h"

namespace strata::F {

namespace {

// Saved only when the backward will read it, so a frozen layer keeps nothing alive.
Tensor saved_if(bool needed, const Tensor& tensor) { return needed ? tensor.detach() : Tensor(); }

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const Shape y_shape = kernels::linear_output_shape(x.shape(), weight.shape());
  if (bias.defined()) {
    STRATA_CHECK(bias.shape() == Shape{weight.size(0)}, "linear: bias {} does not match the weight {}: expected ({})",
                 bias.shape(), weight.shape(), weight.size(0));
  }
  Tensor y = Tensor::empty(y_shape, DType::f32, current_stream());  // (..., out)
  graph::run_op("linear_forward", {x, weight, bias}, {y},
                [x = x.detach(), weight = weight.detach(), bias = bias.detach(), y](cudaStream_t s) mutable {
                  kernels::linear_forward(x, weight, bias, y, s);
                });
  if (autograd::needs_grad({x, weight, bias})) {
    const bool dx = x.requires_grad();
    const bool dw = weight.requires_grad();
    const bool db = bias.defined() && bias.requires_grad();
    autograd::record(
        "LinearBackward", {x, weight, bias}, y,
        [x_saved = saved_if(dw, x), weight_saved = saved_if(dx, weight), x_shape = x.shape(),
         weight_shape = weight.shape(), dx, dw, db](autograd::Gradients dL_dy, cudaStream_t stream) {
          const Tensor dL_dy_detached = dL_dy[0].detach();  // (..., out)
          autograd::Gradients dL_dinputs(3);
          if (dx) {
            Tensor dL_dx = Tensor::empty(x_shape, DType::f32, stream);  // (..., in)
            graph::run_op_on(stream, "linear_backward_data", {dL_dy_detached, weight_saved}, {dL_dx},
                             [dL_dy_detached, weight_saved, dL_dx](cudaStream_t s) mutable {
                               kernels::linear_backward_data(dL_dy_detached, weight_saved, dL_dx, {}, s);
                             });
            dL_dinputs[0] = dL_dx;
          }
          if (dw) {
            Tensor dL_dweight = Tensor::empty(weight_shape, DType::f32, stream);  // (out, in)
            graph::run_op_on(stream, "linear_backward_weight", {dL_dy_detached, x_saved}, {dL_dweight},
                             [dL_dy_detached, x_saved, dL_dweight](cudaStream_t s) mutable {
                               kernels::linear_backward_weight(dL_dy_detached, x_saved, dL_dweight, {}, s);
                             });
            dL_dinputs[1] = dL_dweight;
          }
          if (db) {
            Tensor dL_dbias = Tensor::empty({weight_shape[0]}, DType::f32, stream);  // (out)
            graph::run_op_on(stream, "linear_backward_bias", {dL_dy_detached}, {dL_dbias},
                             [dL_dy_detached, dL_dbias](cudaStream_t s) mutable {
                               kernels::linear_backward_bias(dL_dy_detached, dL_dbias, {}, s);
                             });
            dL_dinputs[2] = dL_dbias;
          }
          return dL_dinputs;
        });
  }
  return y;
}

}  // namespace strata::F
