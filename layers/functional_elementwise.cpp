// The element-wise ops of the functional API (strata/layers/functional.h): activations,
// dropout, the residual add, scaling, concatenation and flatten, recording the
// node that runs their backward kernels when an input requires gradients. Every kernel runs
// in an op (strata/core/op.h) named after it; outputs are allocated outside the ops. relu and
// gelu run on the custom kernels or on cuDNN (strata/core/engine.h), chosen once when the
// forward is queued: the backward follows. Each op runs in its input's dtype (f32, f16 or
// bf16; outputs and gradients in it too), except add, which promotes two different floating
// dtypes to f32 first (layers/autocast_policy.h), as PyTorch's type promotion. Outputs and
// gradients take their input's memory format (the element-wise kernels read any); add
// converts b to a's format when they differ; cat and flatten, which read NCHW order, convert
// a channels-last input with F::contiguous.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "core/check.h"
#include "core/format.h"
#include "kernels/cudnn/activation_cudnn.h"
#include "kernels/tensor_checks.h"
#include "layers/autocast_policy.h"
#include "layers/engine_choice.h"
#include "strata/core/autograd.h"
#include "strata/core/errors.h"
#include "strata/core/generator.h"
#include "strata/core/op.h"
#include "strata/core/stream.h"
#include "strata/kernels/dropout.h"
#include "strata/kernels/elementwise.h"
#include "strata/layers/functional.h"

namespace strata::F {

namespace {

// factor * x in a new tensor of x's memory format.
Tensor scaled(const Tensor& x, float factor, cudaStream_t stream) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), stream, x.memory_format());
  graph::run_op_on(stream, "scale", {x}, {y}, [x = x.detach(), y, factor](cudaStream_t s) mutable {
    kernels::scale(x, y, {.factor = factor}, s);
  });
  return y;
}

// y = a new tensor of x's shape, dtype and memory format, written by kernel(x, y, stream) as
// op name on the current stream. The caller has checked x (as the kernels' allocating forms do).
template <typename Kernel>
Tensor unary_forward(const char* name, const Tensor& x, Kernel kernel) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), current_stream(), x.memory_format());
  graph::run_op(name, {x}, {y}, [x = x.detach(), y, kernel](cudaStream_t s) mutable { kernel(x, y, s); });
  return y;
}

// Records, when x requires gradients, the node of a one-input op whose backward is the op
// backward_name: backward(dL_dy, saved, dL_dx, stream) into a new dL_dx. saved (x, y or a
// mask) is kept detached: a saved y with its autograd meta would hold its own grad_fn, a
// cycle that never frees the graph. dL_dx takes saved's memory format (x's, as y's), and a
// dL_dy that came in another one is converted to it first, since the kernels read all three
// in one memory order.
template <typename Backward>
void record_unary(const char* name, const char* backward_name, const Tensor& x, Tensor& y, const Tensor& saved,
                  Backward backward) {
  if (!autograd::needs_grad({x})) return;
  autograd::record(name, {x}, y,
                   [saved = saved.detach(), backward_name, backward](autograd::Gradients dL_dy, cudaStream_t stream) {
                     const Tensor dL_dy_in_order = dL_dy[0].detach().to_memory_format(saved.memory_format(), stream);
                     Tensor dL_dx = Tensor::empty(dL_dy[0].shape(), dL_dy[0].dtype(), stream, saved.memory_format());
                     graph::run_op_on(stream, backward_name, {dL_dy_in_order, saved}, {dL_dx},
                                      [dL_dy = dL_dy_in_order, saved, dL_dx, backward](cudaStream_t s) mutable {
                                        backward(dL_dy, saved, dL_dx, s);
                                      });
                     return autograd::Gradients{dL_dx};
                   });
}

// Whether an activation runs on cuDNN (layers/engine_choice.h); extra follows x's shape in
// the description of the operands. refusal() is not asked under Engine::custom.
template <typename Refusal>
bool activation_on_cudnn(Engine engine, std::string_view op, const Tensor& x, std::string_view extra,
                         Refusal refusal) {
  if (engine == Engine::custom) return false;
  return detail::runs_on_cudnn(engine, op, fmt::format("x {}{}", x.shape(), extra), refusal);
}

}  // namespace

Tensor relu(const Tensor& x, std::optional<Engine> engine) {
  kernels::expect_floating_device_tensor(x, "relu_forward", "x");
  const bool on_cudnn = activation_on_cudnn(resolve_engine(engine), "relu", x, "",
                                            [&] { return kernels::relu_cudnn_refusal(x.shape()); });
  Tensor y = unary_forward("relu_forward", x, [on_cudnn](const Tensor& input, Tensor& output, cudaStream_t stream) {
    if (on_cudnn) {
      kernels::relu_cudnn_forward(input, output, stream);
    } else {
      kernels::relu_forward(input, output, {}, stream);
    }
  });
  // Saves the output: the same gradient as from x (y > 0 exactly where x > 0), and the next
  // op (a pool, a conv) usually keeps y alive already, whereas x could otherwise be freed.
  record_unary("ReluBackward", "relu_backward", x, y, /*saved=*/y,
               [on_cudnn](const Tensor& dL_dy, const Tensor& saved_y, Tensor& dL_dx, cudaStream_t stream) {
                 if (on_cudnn) {
                   kernels::relu_cudnn_backward(dL_dy, saved_y, dL_dx, stream);
                 } else {
                   kernels::relu_backward(dL_dy, saved_y, dL_dx, {}, stream);
                 }
               });
  return y;
}

Tensor gelu(const Tensor& x, GeluApproximation approximation, std::optional<Engine> engine) {
  const kernels::GeluParams params{.approximation = approximation};
  kernels::expect_floating_device_tensor(x, "gelu_forward", "x");
  const bool on_cudnn =
      activation_on_cudnn(resolve_engine(engine), "gelu", x,
                          approximation == GeluApproximation::tanh ? ", approximate tanh" : ", approximate none",
                          [&] { return kernels::gelu_cudnn_refusal(x.shape(), params, current_stream(), x.dtype()); });
  Tensor y =
      unary_forward("gelu_forward", x, [params, on_cudnn](const Tensor& input, Tensor& output, cudaStream_t stream) {
        if (on_cudnn) {
          kernels::gelu_cudnn_forward(input, output, params, stream);
        } else {
          kernels::gelu_forward(input, output, params, stream);
        }
      });
  record_unary("GeluBackward", "gelu_backward", x, y, /*saved=*/x,
               [params, on_cudnn](const Tensor& dL_dy, const Tensor& saved_x, Tensor& dL_dx, cudaStream_t stream) {
                 if (on_cudnn) {
                   kernels::gelu_cudnn_backward(dL_dy, saved_x, dL_dx, params, stream);
                 } else {
                   kernels::gelu_backward(dL_dy, saved_x, dL_dx, params, stream);
                 }
               });
  return y;
}

Tensor dropout(const Tensor& x, float p, bool training) {
  STRATA_CHECK(p >= 0.0f && p <= 1.0f, "dropout: p must be in [0, 1], got {} (x {})", p, x.shape());
  if (!training || p == 0.0f) return x;
  // Checked before reserving, so that a rejected call leaves the generator as it was.
  kernels::expect_floating_device_tensor(x, "dropout", "x");
  // p = 1 takes the kernel too: every element is dropped (scale 0), so y and dL_dx are zeros.
  const cudaStream_t stream = current_stream();
  // In x's memory format; the mask is drawn per memory position (strata/kernels/dropout.h).
  Tensor y = Tensor::empty(x.shape(), x.dtype(), stream, x.memory_format());
  Tensor mask = Tensor::empty(x.shape(), DType::u8, stream, x.memory_format());  // 1 kept, 0 dropped
  // Where a CUDA graph of the step reads the Philox offset; allocated outside any capture,
  // whose memory may be shared with the graph's temporaries.
  Tensor offset = Tensor::empty({}, DType::i64, stream);
  graph::run_op("dropout_forward", {x}, {y, mask}, [x = x.detach(), y, mask, p, offset](cudaStream_t s) mutable {
    Generator& generator = default_generator();
    const auto words = static_cast<std::uint64_t>(x.numel());
    if (graph::capturing_for_replay()) {
      // A CUDA graph keeps the kernel's arguments: the kernel reads the offset from the
      // device, and before each launch the host reserves this step's words, as an eager step
      // would, and writes the offset there.
      graph::on_each_replay([offset, words](cudaStream_t launch_stream) mutable {
        offset.fill(static_cast<double>(default_generator().reserve(words)), launch_stream);
      });
      kernels::dropout_forward(
          x, y, mask, {.p = p, .seed = generator.state().seed, .offset_device = offset.data<std::int64_t>()}, s);
      return;
    }
    // The words are reserved when the body runs, so that every replay draws a fresh mask.
    const std::uint64_t first_word = generator.reserve(words);
    kernels::dropout_forward(x, y, mask, {.p = p, .seed = generator.state().seed, .offset = first_word}, s);
  });
  record_unary("DropoutBackward", "dropout_backward", x, y, /*saved=*/mask,
               [p](const Tensor& dL_dy, const Tensor& saved_mask, Tensor& dL_dx, cudaStream_t backward_stream) {
                 kernels::dropout_backward(dL_dy, saved_mask, dL_dx, {.p = p}, backward_stream);
               });
  return y;
}

Tensor add(const Tensor& a_given, const Tensor& b_given, float alpha) {
  kernels::expect_floating_device_tensor(a_given, "add", "a");
  kernels::expect_floating_device_tensor(b_given, "add", "b");
  // Two different floating dtypes meet in f32: the narrower operand is cast (to_dtype, whose
  // backward casts its gradient back), always, not only under autocast.
  const DType dtype = strata::detail::promote_floating(a_given.dtype(), b_given.dtype());
  const Tensor a = to_dtype(a_given, dtype);
  STRATA_CHECK(a.shape() == b_given.shape(), "add_forward: a {} and b {} must have the same shape (no broadcasting)",
               a.shape(), b_given.shape());
  // Two memory formats: b follows a (the result is in a's format; b's gradient comes back in
  // b's, through to_memory_format's backward).
  const Tensor b = to_dtype(layouts_coincide(a.shape()) ? b_given : to_memory_format(b_given, a.memory_format()),
                            dtype);
  Tensor y = Tensor::empty(a.shape(), a.dtype(), current_stream(), a.memory_format());
  graph::run_op("add_forward", {a, b}, {y}, [a = a.detach(), b = b.detach(), y, alpha](cudaStream_t s) mutable {
    kernels::add_forward(a, b, y, {.alpha = alpha}, s);
  });
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
  kernels::expect_floating_device_tensor(x, "mul", "x");
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
  std::vector<Tensor> inputs;  // detached, for the op's body
  // The concat kernel reads NCHW order: channels-last inputs are converted (their gradients
  // come back in their format through F::contiguous's backward).
  std::vector<Tensor> readable;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    kernels::expect_floating_device_tensor(xs[i], "cat", fmt::format("xs[{}]", i));
    kernels::expect_same_dtype(xs[i], xs[0], "cat", fmt::format("xs[{}]", i), "xs[0]");
    readable.push_back(contiguous(xs[i]));
    input_shapes.push_back(xs[i].shape());
    inputs.push_back(readable.back().detach());
  }
  const Shape y_shape = kernels::concat_shape(input_shapes, params);  // before xs[0]: xs may be empty
  Tensor y = Tensor::empty(y_shape, xs[0].dtype(), current_stream());
  graph::run_op("concat_forward", readable, std::span<const Tensor>(&y, 1),
                [inputs = std::move(inputs), y, params](cudaStream_t s) mutable {
                  kernels::concat_forward(inputs, y, params, s);
                });
  if (autograd::needs_grad(readable)) {
    // Every input gets its slice; the engine drops those of inputs without gradients.
    autograd::record("CatBackward", readable, std::span<Tensor>(&y, 1),
                     [input_shapes = std::move(input_shapes), params](autograd::Gradients dL_dy,
                                                                      cudaStream_t backward_stream) {
                       std::vector<Tensor> dL_dxs;
                       for (const Shape& shape : input_shapes) {
                         dL_dxs.push_back(Tensor::empty(shape, dL_dy[0].dtype(), backward_stream));
                       }
                       graph::run_op_on(backward_stream, "concat_backward", std::span<const Tensor>(&dL_dy[0], 1),
                                        dL_dxs,
                                        [dL_dy = dL_dy[0].detach(), dL_dxs, params](cudaStream_t s) mutable {
                                          kernels::concat_backward(dL_dy, dL_dxs, params, s);
                                        });
                       return dL_dxs;
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
  // A view (recording its ReshapeBackward itself) of x in NCHW order: a channels-last x is
  // converted first unless its layouts coincide (airbench94's (N, 256, 1, 1)).
  return contiguous(x).flatten(dim);
}

}  // namespace strata::F
