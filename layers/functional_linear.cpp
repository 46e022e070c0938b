// F::linear: the forward on cuBLAS (strata/kernels/linear.h), and an autograd node that
// runs only the backward passes some input needs, each an op of its own (strata/core/op.h).
// Under autocast, x, weight and bias are cast to the autocast dtype first (layers/
// autocast_policy.h): the op and its gradients then run in that dtype, and the casts' own
// nodes return f32 gradients to f32 parameters. A channels-last x (a 4-D (N, C, H, W) x read
// as rows of W) is converted with F::contiguous first: cuBLAS reads it in NCHW order.
#include "core/check.h"
#include "core/format.h"
#include "kernels/tensor_checks.h"
#include "layers/autocast_policy.h"
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

Tensor linear(const Tensor& x_given, const Tensor& weight_given, const Tensor& bias_given) {
  const Tensor x = strata::detail::autocast_lower(contiguous(x_given));
  const Tensor weight = strata::detail::autocast_lower(weight_given);
  const Tensor bias = strata::detail::autocast_lower(bias_given);
  const Shape y_shape = kernels::linear_output_shape(x.shape(), weight.shape());
  // One dtype for the op and its gradients, checked here so a mismatch is reported where the
  // op is called, before anything is queued.
  kernels::expect_floating_device_tensor(x, "linear", "x");
  kernels::expect_same_dtype(weight, x, "linear", "weight", "x");
  if (bias.defined()) {
    STRATA_CHECK(bias.shape() == Shape{weight.size(0)}, "linear: bias {} does not match the weight {}: expected ({})",
                 bias.shape(), weight.shape(), weight.size(0));
    kernels::expect_same_dtype(bias, x, "linear", "bias", "x");
  }
  const DType dtype = x.dtype();
  Tensor y = Tensor::empty(y_shape, dtype, current_stream());  // (..., out)
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
         weight_shape = weight.shape(), dtype, dx, dw, db](autograd::Gradients dL_dy, cudaStream_t stream) {
          const Tensor dL_dy_detached = dL_dy[0].detach();  // (..., out)
          autograd::Gradients dL_dinputs(3);
          if (dx) {
            Tensor dL_dx = Tensor::empty(x_shape, dtype, stream);  // (..., in)
            graph::run_op_on(stream, "linear_backward_data", {dL_dy_detached, weight_saved}, {dL_dx},
                             [dL_dy_detached, weight_saved, dL_dx](cudaStream_t s) mutable {
                               kernels::linear_backward_data(dL_dy_detached, weight_saved, dL_dx, {}, s);
                             });
            dL_dinputs[0] = dL_dx;
          }
          if (dw) {
            Tensor dL_dweight = Tensor::empty(weight_shape, dtype, stream);  // (out, in)
            graph::run_op_on(stream, "linear_backward_weight", {dL_dy_detached, x_saved}, {dL_dweight},
                             [dL_dy_detached, x_saved, dL_dweight](cudaStream_t s) mutable {
                               kernels::linear_backward_weight(dL_dy_detached, x_saved, dL_dweight, {}, s);
                             });
            dL_dinputs[1] = dL_dweight;
          }
          if (db) {
            Tensor dL_dbias = Tensor::empty({weight_shape[0]}, dtype, stream);  // (out)
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
