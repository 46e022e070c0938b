// The pooling ops of the functional API (strata/layers/functional.h): max and average
// pooling over fixed windows and adaptive bins, recording the node that runs their backward
// kernels when x requires gradients. Every kernel runs in an op (strata/core/op.h) named
// after it; outputs are allocated outside the ops. Each op runs on the custom kernels or on
// cuDNN (strata/core/engine.h), chosen once when its forward is queued: the backward follows.
// Each runs in x's dtype (f32, f16 or bf16) and memory format (contiguous or channels-last):
// y, its argmax and dL_dx are allocated in them. Custom max pooling can also write the
// per-channel statistics of y for a batch norm on it.
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "kernels/cudnn/pool2d_cudnn.h"
#include "kernels/tensor_checks.h"
#include "layers/engine_choice.h"
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

// The argmax a max-pool forward writes, in x's memory format as y: none (the kernel skips it)
// unless the backward will need it.
Tensor argmax_for_backward(const Tensor& x, const Shape& y_shape, cudaStream_t stream) {
  if (!autograd::needs_grad({x})) return {};
  return Tensor::empty(y_shape, argmax_dtype(x.shape()), stream, x.memory_format());
}

// What a pooling op's backward reads besides dL_dy: the argmax of custom max pooling, x and
// y on cuDNN (whose backward recomputes the windows' maxima from them instead of reading an
// argmax), nothing for custom average pooling. Undefined members are not read.
struct PoolSaved {
  Tensor argmax;  // (N, C, Ho, Wo) i32 or i64
  Tensor x;       // (N, C, H, W)
  Tensor y;       // (N, C, Ho, Wo)
};

// The backward of a pooling op: a new dL_dx (x_shape, in x's format x_format) written by
// backward(dL_dy, dL_dx, stream), run as op name, which reads saved besides dL_dy. A dL_dy
// that arrives in another format is converted first: the kernels read one layout.
template <typename Backward>
Tensor pool_backward(const char* name, const Tensor& dL_dy_in_any_format, const PoolSaved& saved,
                     const Shape& x_shape, MemoryFormat x_format, cudaStream_t stream, Backward backward) {
  const Tensor dL_dy = layouts_coincide(dL_dy_in_any_format.shape())
                           ? dL_dy_in_any_format
                           : dL_dy_in_any_format.to_memory_format(x_format, stream);  // (N, C, Ho, Wo)
  Tensor dL_dx = Tensor::empty(x_shape, dL_dy.dtype(), stream, x_format);  // (N, C, H, W)
  graph::run_op_on(stream, name, {dL_dy, saved.argmax, saved.x, saved.y}, {dL_dx},
                   [dL_dy = dL_dy.detach(), dL_dx, backward](cudaStream_t s) mutable { backward(dL_dy, dL_dx, s); });
  return dL_dx;
}

// One pooling op: y (N, C, Ho, Wo) written by forward(x, y, argmax, partials, stream) in the
// op "<op>_forward" (partials: y's statistics, written when defined), and, when x requires
// gradients, the node backward_node whose backward runs backward(dL_dy, saved, dL_dx,
// stream) in the op "<op>_backward". Custom max pooling
// saves an argmax for it (with_argmax); on cuDNN (on_cudnn) x and y are saved instead;
// custom average pooling needs only x's shape.
template <typename Forward, typename Backward>
Tensor pool(const std::string& op, const Tensor& x, const Shape& y_shape, bool with_argmax, bool on_cudnn,
            const Tensor& partials, const char* backward_node, Forward forward, Backward backward) {
  const cudaStream_t stream = current_stream();
  Tensor y = Tensor::empty(y_shape, x.dtype(), stream, x.memory_format());  // (N, C, Ho, Wo)
  // (N, C, Ho, Wo) i32 or i64, or undefined
  Tensor argmax = with_argmax && !on_cudnn ? argmax_for_backward(x, y_shape, stream) : Tensor();
  graph::run_op(op + "_forward", {x}, {y, argmax, partials},
                [x = x.detach(), y, argmax, partials, forward](cudaStream_t s) mutable {
                  forward(x, y, argmax, partials, s);
                });
  if (autograd::needs_grad({x})) {
    // Detached: a saved y with its autograd meta would hold its own grad_fn, a cycle.
    const PoolSaved saved{.argmax = argmax, .x = on_cudnn ? x.detach() : Tensor(), .y = on_cudnn ? y.detach() : Tensor()};
    autograd::record(backward_node, {x}, y,
                     [saved, x_shape = x.shape(), x_format = x.memory_format(), name = op + "_backward",
                      backward](autograd::Gradients dL_dy, cudaStream_t backward_stream) {
                       return autograd::Gradients{pool_backward(
                           name.c_str(), dL_dy[0], saved, x_shape, x_format, backward_stream,
                           [saved, backward](const Tensor& dL_dy0, Tensor& dL_dx, cudaStream_t s) {
                             backward(dL_dy0, saved, dL_dx, s);
                           })};
                     });
  }
  return y;
}

// Whether a pooling op runs on cuDNN (layers/engine_choice.h). window() gives cuDNN's
// mapping of the op (for its description) and refusal() why cuDNN cannot run it; neither is
// asked under Engine::custom.
template <typename Window, typename Refusal>
bool pool_on_cudnn(Engine engine, std::string_view op, Window window, Refusal refusal) {
  if (engine == Engine::custom) return false;
  return detail::runs_on_cudnn(engine, op, window().description, refusal);
}

// One pooling op's launchers on cuDNN (kernels/cudnn/pool2d_cudnn.h), which all take its Params.
template <typename Params>
struct CudnnPoolLaunchers {
  kernels::CudnnPoolMapping (*window)(const Shape& x, const Params& params);
  std::string (*refusal)(const Shape& x, const Params& params);
  void (*forward)(const Tensor& x, Tensor& y, const Params& params, cudaStream_t stream);
  void (*backward)(const Tensor& x, const Tensor& y, const Tensor& dL_dy, Tensor& dL_dx, const Params& params,
                   cudaStream_t stream);
};

// One pooling op on the engine chosen now: x's check, y's shape, the choice (pool_on_cudnn)
// and pool(), with cuDNN's launchers or the custom ones, custom_forward(x, y, argmax,
// partials, stream) and custom_backward(dL_dy, saved, dL_dx, stream), which capture params.
// statistics (max pooling only, else null): given, its partials are replaced by new ones of
// statistics_slots(y) slots that the custom forward writes, or left undefined on cuDNN.
template <typename Params, typename CustomForward, typename CustomBackward>
Tensor pool_on_engine(const std::string& op, const char* backward_node, const Tensor& x, const Params& params,
                      std::optional<Engine> engine, Shape (*output_shape)(const Shape& x, const Params& params),
                      bool with_argmax, const CudnnPoolLaunchers<Params>& cudnn, CustomForward custom_forward,
                      CustomBackward custom_backward, ChannelStatistics* statistics = nullptr,
                      std::int64_t (*statistics_slots)(const Shape& y) = nullptr) {
  kernels::expect_floating_device_tensor(x, op, "x");
  const Shape y_shape = output_shape(x.shape(), params);
  const bool on_cudnn = pool_on_cudnn(
      resolve_engine(engine), op, [&] { return cudnn.window(x.shape(), params); },
      [&] { return cudnn.refusal(x.shape(), params); });
  Tensor partials;  // (6, slots, C) f32, or undefined
  if (statistics != nullptr) {
    if (!on_cudnn) {
      partials = Tensor::empty(kernels::channel_statistics_shape(statistics_slots(y_shape), y_shape[1]), DType::f32,
                               current_stream());
    }
    statistics->partials = partials;
  }
  return pool(
      op, x, y_shape, with_argmax, on_cudnn, partials, backward_node,
      [params, on_cudnn, cudnn_forward = cudnn.forward, custom_forward](
          const Tensor& in, Tensor& y, Tensor& argmax, const Tensor& partials_written, cudaStream_t s) {
        if (on_cudnn) {
          cudnn_forward(in, y, params, s);
        } else {
          custom_forward(in, y, argmax, partials_written, s);
        }
      },
      [params, on_cudnn, cudnn_backward = cudnn.backward, custom_backward](
          const Tensor& dL_dy, const PoolSaved& saved, Tensor& dL_dx, cudaStream_t s) {
        if (on_cudnn) {
          // cuDNN reads x, y and both gradients in one memory order: x's (no copy when dL_dy has it).
          cudnn_backward(saved.x, saved.y, dL_dy.to_memory_format(saved.x.memory_format(), s), dL_dx, params, s);
        } else {
          custom_backward(dL_dy, saved, dL_dx, s);
        }
      });
}

}  // namespace

Tensor max_pool2d(const Tensor& x, const Pool2dParams& params, std::optional<Engine> engine,
                  ChannelStatistics* statistics) {
  return pool_on_engine(
      "max_pool2d", "MaxPool2dBackward", x, params, engine, kernels::max_pool2d_output_shape, /*with_argmax=*/true,
      CudnnPoolLaunchers<Pool2dParams>{kernels::max_pool2d_cudnn_window, kernels::max_pool2d_cudnn_refusal,
                                       kernels::max_pool2d_cudnn_forward, kernels::max_pool2d_cudnn_backward},
      [params](const Tensor& in, Tensor& y, Tensor& argmax, const Tensor& partials, cudaStream_t s) {
        kernels::ChannelStatistics written{partials};
        kernels::max_pool2d_forward(in, y, argmax, params, s, partials.defined() ? &written : nullptr);
      },
      [params](const Tensor& dL_dy, const PoolSaved& saved, Tensor& dL_dx, cudaStream_t s) {
        kernels::max_pool2d_backward(dL_dy, saved.argmax, dL_dx, params, s);
      },
      statistics, kernels::max_pool2d_forward_statistics_slots);
}

Tensor avg_pool2d(const Tensor& x, const AvgPool2dParams& params, std::optional<Engine> engine) {
  return pool_on_engine(
      "avg_pool2d", "AvgPool2dBackward", x, params, engine, kernels::avg_pool2d_output_shape, /*with_argmax=*/false,
      CudnnPoolLaunchers<AvgPool2dParams>{kernels::avg_pool2d_cudnn_window, kernels::avg_pool2d_cudnn_refusal,
                                          kernels::avg_pool2d_cudnn_forward, kernels::avg_pool2d_cudnn_backward},
      [params](const Tensor& in, Tensor& y, Tensor&, const Tensor&, cudaStream_t s) {
        kernels::avg_pool2d_forward(in, y, params, s);
      },
      [params](const Tensor& dL_dy, const PoolSaved&, Tensor& dL_dx, cudaStream_t s) {
        kernels::avg_pool2d_backward(dL_dy, dL_dx, params, s);
      });
}

Tensor adaptive_avg_pool2d(const Tensor& x, Size2d output_size, std::optional<Engine> engine) {
  return pool_on_engine(
      "adaptive_avg_pool2d", "AdaptiveAvgPool2dBackward", x, AdaptivePool2dParams{.output_size = output_size},
      engine, kernels::adaptive_avg_pool2d_output_shape, /*with_argmax=*/false,
      CudnnPoolLaunchers<AdaptivePool2dParams>{
          kernels::adaptive_avg_pool2d_cudnn_window, kernels::adaptive_avg_pool2d_cudnn_refusal,
          kernels::adaptive_avg_pool2d_cudnn_forward, kernels::adaptive_avg_pool2d_cudnn_backward},
      [output_size](const Tensor& in, Tensor& y, Tensor&, const Tensor&, cudaStream_t s) {
        kernels::adaptive_avg_pool2d_forward(in, y, {.output_size = output_size}, s);
      },
      [output_size](const Tensor& dL_dy, const PoolSaved&, Tensor& dL_dx, cudaStream_t s) {
        kernels::adaptive_avg_pool2d_backward(dL_dy, dL_dx, {.output_size = output_size}, s);
      });
}

Tensor adaptive_max_pool2d(const Tensor& x, Size2d output_size, std::optional<Engine> engine) {
  return pool_on_engine(
      "adaptive_max_pool2d", "AdaptiveMaxPool2dBackward", x, AdaptivePool2dParams{.output_size = output_size},
      engine, kernels::adaptive_max_pool2d_output_shape, /*with_argmax=*/true,
      CudnnPoolLaunchers<AdaptivePool2dParams>{
          kernels::adaptive_max_pool2d_cudnn_window, kernels::adaptive_max_pool2d_cudnn_refusal,
          kernels::adaptive_max_pool2d_cudnn_forward, kernels::adaptive_max_pool2d_cudnn_backward},
      [output_size](const Tensor& in, Tensor& y, Tensor& argmax, const Tensor&, cudaStream_t s) {
        kernels::adaptive_max_pool2d_forward(in, y, argmax, {.output_size = output_size}, s);
      },
      [output_size](const Tensor& dL_dy, const PoolSaved& saved, Tensor& dL_dx, cudaStream_t s) {
        kernels::adaptive_max_pool2d_backward(dL_dy, saved.argmax, dL_dx, {.output_size = output_size}, s);
      });
}

}  // namespace strata::F
