// The pooling ops of the functional API (strata/layers/functional.h): max and average
// pooling over fixed windows and adaptive bins, recording the node that runs their backward
// kernels when x requires gradients. Every kernel runs in an op (strata/core/op.h) named
// after it; outputs are allocated outside the ops.
#include <cstdint>
#include <limits>
#include <string>

#include "kernels/tensor_checks.h"
#include "strata/core/autograd.h"
#include "strata/core/op.h"
#include "strata/core/stream.h"
#include "strata/layers/functional.h"

namespace strata::F {

namespace {

// The max-pool backward needs only the argmax of each window, not x. It is stored as i32,
// half the memory of i64 for as long as the graph lives: a plane index h * W + w fits in
// i32 for any image a CNN sees; planes beyond 2^31 elements fall back to i64.
DType argmax_dtype(const Shape& x_shape) {
  return x_shape[2] * x_shape[3] <= std::numeric_limits<std::int32_t>::max() ? DType::i32 : DType::i64;
}

// The argmax a max-pool forward writes: none (the kernel skips it) unless the backward will
// need it.
Tensor argmax_for_backward(const Tensor& x, const Shape& y_shape, cudaStream_t stream) {
  if (!autograd::needs_grad({x})) return {};
  return Tensor::empty(y_shape, argmax_dtype(x.shape()), stream);
}

// The backward of a pooling op: a new dL_dx (x_shape) written by backward(dL_dy, dL_dx,
// stream), run as op name. argmax (undefined for average pooling) is what backward reads
// besides dL_dy: it is listed in the op's reads.
template <typename Backward>
Tensor pool_backward(const char* name, const Tensor& dL_dy, const Tensor& argmax, const Shape& x_shape,
                     cudaStream_t stream, Backward backward) {
  Tensor dL_dx = Tensor::empty(x_shape, dL_dy.dtype(), stream);  // (N, C, H, W)
  graph::run_op_on(stream, name, {dL_dy, argmax}, {dL_dx},
                   [dL_dy = dL_dy.detach(), dL_dx, backward](cudaStream_t s) mutable { backward(dL_dy, dL_dx, s); });
  return dL_dx;
}

// One pooling op: y (N, C, Ho, Wo) written by forward(x, y, argmax, stream) in the op
// "<op>_forward", and, when x requires gradients, the node backward_node whose backward
// runs backward(dL_dy, argmax, dL_dx, stream) in the op "<op>_backward". Max pooling saves an
// argmax for it (with_argmax); average pooling needs only x's shape.
template <typename Forward, typename Backward>
Tensor pool(const std::string& op, const Tensor& x, const Shape& y_shape, bool with_argmax, const char* backward_node,
            Forward forward, Backward backward) {
  const cudaStream_t stream = current_stream();
  Tensor y = Tensor::empty(y_shape, x.dtype(), stream);  // (N, C, Ho, Wo)
  // (N, C, Ho, Wo) i32 or i64, or undefined
  Tensor argmax = with_argmax ? argmax_for_backward(x, y_shape, stream) : Tensor();
  graph::run_op(op + "_forward", {x}, {y, argmax}, [x = x.detach(), y, argmax, forward](cudaStream_t s) mutable {
    forward(x, y, argmax, s);
  });
  if (autograd::needs_grad({x})) {
    autograd::record(backward_node, {x}, y,
                     [argmax, x_shape = x.shape(), name = op + "_backward", backward](
                         autograd::Gradients dL_dy, cudaStream_t backward_stream) {
                       return autograd::Gradients{pool_backward(
                           name.c_str(), dL_dy[0], argmax, x_shape, backward_stream,
                           [argmax, backward](const Tensor& dL_dy0, Tensor& dL_dx, cudaStream_t s) {
                             backward(dL_dy0, argmax, dL_dx, s);
                           })};
                     });
  }
  return y;
}

}  // namespace

Tensor max_pool2d(const Tensor& x, const Pool2dParams& params) {
  kernels::expect_device_tensor(x, "max_pool2d", "x");
  return pool(
      "max_pool2d", x, kernels::max_pool2d_output_shape(x.shape(), params), true, "MaxPool2dBackward",
      [params](const Tensor& in, Tensor& y, Tensor& argmax, cudaStream_t s) {
        kernels::max_pool2d_forward(in, y, argmax, params, s);
      },
      [params](const Tensor& dL_dy, const Tensor& argmax, Tensor& dL_dx, cudaStream_t s) {
        kernels::max_pool2d_backward(dL_dy, argmax, dL_dx, params, s);
      });
}

Tensor avg_pool2d(const Tensor& x, const AvgPool2dParams& params) {
  kernels::expect_device_tensor(x, "avg_pool2d", "x");
  return pool(
      "avg_pool2d", x, kernels::avg_pool2d_output_shape(x.shape(), params), false, "AvgPool2dBackward",
      [params](const Tensor& in, Tensor& y, Tensor&, cudaStream_t s) { kernels::avg_pool2d_forward(in, y, params, s); },
      [params](const Tensor& dL_dy, const Tensor&, Tensor& dL_dx, cudaStream_t s) {
        kernels::avg_pool2d_backward(dL_dy, dL_dx, params, s);
      });
}

Tensor adaptive_avg_pool2d(const Tensor& x, Size2d output_size) {
  kernels::expect_device_tensor(x, "adaptive_avg_pool2d", "x");
  const AdaptivePool2dParams params{.output_size = output_size};
  return pool(
      "adaptive_avg_pool2d", x, kernels::adaptive_avg_pool2d_output_shape(x.shape(), params), false,
      "AdaptiveAvgPool2dBackward",
      [params](const Tensor& in, Tensor& y, Tensor&, cudaStream_t s) {
        kernels::adaptive_avg_pool2d_forward(in, y, params, s);
      },
      [params](const Tensor& dL_dy, const Tensor&, Tensor& dL_dx, cudaStream_t s) {
        kernels::adaptive_avg_pool2d_backward(dL_dy, dL_dx, params, s);
      });
}

Tensor adaptive_max_pool2d(const Tensor& x, Size2d output_size) {
  kernels::expect_device_tensor(x, "adaptive_max_pool2d", "x");
  const AdaptivePool2dParams params{.output_size = output_size};
  return pool(
      "adaptive_max_pool2d", x, kernels::adaptive_max_pool2d_output_shape(x.shape(), params), true,
      "AdaptiveMaxPool2dBackward",
      [params](const Tensor& in, Tensor& y, Tensor& argmax, cudaStream_t s) {
        kernels::adaptive_max_pool2d_forward(in, y, argmax, params, s);
      },
      [params](const Tensor& dL_dy, const Tensor& argmax, Tensor& dL_dx, cudaStream_t s) {
        kernels::adaptive_max_pool2d_backward(dL_dy, argmax, dL_dx, params, s);
      });
}

}  // namespace strata::F
