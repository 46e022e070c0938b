// The element-wise ops of the functional API (strata/layers/functional.h): activations,
// dropout, the residual add, scaling, concatenation, flatten and softmax, recording the
// node that runs their backward kernels when an input requires gradients.
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "core/check.h"
#include "core/format.h"
#include "kernels/tensor_checks.h"
#include "strata/core/autograd.h"
#include "strata/core/generator.h"
#include "strata/core/stream.h"
#include "strata/kernels/dropout.h"
#include "strata/kernels/elementwise.h"
#include "strata/kernels/softmax.h"
#include "strata/layers/functional.h"

namespace strata::F {

namespace {

// factor * x in a new tensor.
Tensor scaled(const Tensor& x, float factor, cudaStream_t stream) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), stream);
  kernels::scale(x, y, {.factor = factor}, stream);
  return y;
}

// Records, when x requires gradients, the node of a one-input op whose backward is
// backward(dL_dy, saved, stream). saved (x or y) is kept detached: a saved y with its
// autograd meta would hold its own grad_fn, a cycle that never frees the graph.
template <typename Backward>
void record_unary(const char* name, const Tensor& x, Tensor& y, const Tensor& saved, Backward backward) {
  if (!autograd::needs_grad({x})) return;
  autograd::record(name, {x}, y,
                   [saved = saved.detach(), backward](autograd::Gradients dL_dy, cudaStream_t stream) {
                     return autograd::Gradients{backward(dL_dy[0], saved, stream)};
                   });
}

}  // namespace

Tensor relu(const Tensor& x) {
  Tensor y = kernels::relu_forward(x, {}, current_stream());
  // Saves the output: the same gradient as from x (y > 0 exactly where x > 0), and the next
  // op (a pool, a conv) usually keeps y alive already, whereas x could otherwise be freed.
  record_unary("ReluBackward", x, y, /*saved=*/y, [](const Tensor& dL_dy, const Tensor& saved_y, cudaStream_t stream) {
    return kernels::relu_backward(dL_dy, saved_y, {}, stream);
  });
  return y;
}

Tensor gelu(const Tensor& x, GeluApproximation approximation) {
  const kernels::GeluParams params{.approximation = approximation};
  Tensor y = kernels::gelu_forward(x, params, current_stream());
  record_unary("GeluBackward", x, y, /*saved=*/x,
               [params](const Tensor& dL_dy, const Tensor& saved_x, cudaStream_t stream) {
                 return kernels::gelu_backward(dL_dy, saved_x, params, stream);
               });
  return y;
}

Tensor dropout(const Tensor& x, float p, bool training) {
  STRATA_CHECK(p >= 0.0f && p <= 1.0f, "dropout: p must be in [0, 1], got {} (x {})", p, x.shape());
  if (!training || p == 0.0f) return x;
  // Checked before reserving, so that a rejected call leaves the generator as it was.
  kernels::expect_device_tensor(x, "dropout", "x");
  // p = 1 takes the kernel too: every element is dropped (scale 0), so y and dL_dx are zeros.
  Generator& generator = default_generator();
  const std::uint64_t offset = generator.reserve(static_cast<std::uint64_t>(x.numel()));
  const kernels::DropoutParams params{.p = p, .seed = generator.state().seed, .offset = offset};
  kernels::DropoutOutputs outputs = kernels::dropout_forward(x, params, current_stream());  // y, mask (u8)
  record_unary("DropoutBackward", x, outputs.y, /*saved=*/outputs.mask,
               [params](const Tensor& dL_dy, const Tensor& mask, cudaStream_t stream) {
                 return kernels::dropout_backward(dL_dy, mask, params, stream);
               });
  return outputs.y;
}

Tensor add(const Tensor& a, const Tensor& b, float alpha) {
  Tensor y = kernels::add_forward(a, b, {.alpha = alpha}, current_stream());
  if (autograd::needs_grad({a, b})) {
    autograd::record("AddBackward", {a, b}, y,
                     [alpha, b_requires_grad = b.requires_grad()](autograd::Gradients dL_dy, cudaStream_t stream) {
                       // dL_da = dL_dy, passed on as is; dL_db = alpha * dL_dy, computed only when b needs it.
                       Tensor dL_db;
                       if (b_requires_grad) dL_db = alpha == 1.0f ? dL_dy[0] : scaled(dL_dy[0], alpha, stream);
                       return autograd::Gradients{dL_dy[0], dL_db};
                     });
  }
  return y;
}

Tensor mul(const Tensor& x, float factor) {
  kernels::expect_device_tensor(x, "mul", "x");
  Tensor y = scaled(x, factor, current_stream());
  if (autograd::needs_grad({x})) {
    autograd::record("MulBackward", {x}, y, [factor](autograd::Gradients dL_dy, cudaStream_t stream) {
      return autograd::Gradients{scaled(dL_dy[0], factor, stream)};
    });
  }
  return y;
}

Tensor cat(std::span<const Tensor> xs, int dim) {
  const kernels::ConcatParams params{.dim = dim};
  std::vector<Shape> input_shapes;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    kernels::expect_device_tensor(xs[i], "cat", fmt::format("xs[{}]", i));
    input_shapes.push_back(xs[i].shape());
  }
  const Shape y_shape = kernels::concat_shape(input_shapes, params);  // before xs[0]: xs may be empty
  const cudaStream_t stream = current_stream();
  Tensor y = Tensor::empty(y_shape, xs[0].dtype(), stream);
  kernels::concat_forward(xs, y, params, stream);
  if (autograd::needs_grad(xs)) {
    // Every input gets its slice; the engine drops those of inputs without gradients.
    autograd::record("CatBackward", xs, std::span<Tensor>(&y, 1),
                     [input_shapes = std::move(input_shapes), params](autograd::Gradients dL_dy,
                                                                      cudaStream_t backward_stream) {
                       return kernels::concat_backward(dL_dy[0], input_shapes, params, backward_stream);
                     });
  }
  return y;
}

Tensor flatten(const Tensor& x, int start_dim) {
  STRATA_CHECK(x.defined(), "flatten: x is an undefined tensor");
  const int rank = x.dim();
  const int dim = start_dim < 0 ? start_dim + rank : start_dim;
  STRATA_CHECK(dim >= 0 && dim < rank, "flatten: start_dim {} is out of range for x of shape {} (rank {})", start_dim,
               x.shape(), rank);
  return x.flatten(dim);  // a view; records its ReshapeBackward itself
}

Tensor softmax(const Tensor& x) {
  Tensor y = kernels::softmax_forward(x, current_stream());
  record_unary("SoftmaxBackward", x, y, /*saved=*/y,
               [](const Tensor& dL_dy, const Tensor& saved_y, cudaStream_t stream) {
                 return kernels::softmax_backward(dL_dy, saved_y, stream);
               });
  return y;
}

Tensor log_softmax(const Tensor& x) {
  Tensor y = kernels::log_softmax_forward(x, current_stream());
  record_unary("LogSoftmaxBackward", x, y, /*saved=*/y,
               [](const Tensor& dL_dy, const Tensor& saved_y, cudaStream_t stream) {
                 return kernels::log_softmax_backward(dL_dy, saved_y, stream);
               });
  return y;
}

}  // namespace strata::F
