// The cuDNN side of the ops besides conv2d (batch norm; pooling and activations through
// add_cudnn_unary_cases), and log-softmax on both engines, in each storage dtype.
//
// Batch norm's custom cases are in benchmark_layer_cases.cpp (training forward and backward,
// bias only, as airbench94); these are the same cases on cuDNN, matched to them by set, op,
// direction and shape in the report. Strata's cuDNN paths are reached only through the
// functional API and autograd (as in benchmark_conv_cases.cpp): the forward runs
// F::batch_norm2d(..., Engine::cudnn) under NoGradGuard; the backward is a retained graph per
// input copy whose leaves are x and the bias, so autograd queues the one backward op (its
// first gradient is moved into the leaf, not copied). The overhead over a bare launcher is
// host-side (walking a one-node graph, cached allocations of the outputs and saved
// statistics), which can show as idle GPU time only for the smallest shapes.
//
// log_softmax over the logits' last dimension, forward and backward: the custom side through
// its launchers (strata/kernels/softmax.h), cuDNN's through F::log_softmax as above. Its bf16
// rows (bf16 logits and output, f32 arithmetic) are the cuDNN comparison for the fused
// cross-entropy's bf16 rows; F::log_softmax runs them in bf16 because no autocast is active
// here (under autocast it would cast to f32 first).
#include <string>
#include <vector>

#include "benchmark_cases.h"

namespace op_benchmark {

namespace {

using strata::Engine;
namespace F = strata::F;

}  // namespace

RunFunction backward_run(std::vector<Tensor> leaves, std::vector<Tensor> outputs, std::vector<Tensor> dL_dy,
                         std::size_t leaves_per_copy) {
  return [leaves, outputs, dL_dy, leaves_per_copy](int run, cudaStream_t s) mutable {
    const std::size_t k = copy_of(run, outputs.size());
    for (std::size_t i = 0; i < leaves_per_copy; ++i) leaves[k * leaves_per_copy + i].set_grad(Tensor());
    strata::autograd::backward(outputs[k], dL_dy[k], s, {.retain_graph = true});
  };
}

void add_cudnn_unary_cases(std::vector<BenchmarkCase>& cases, const CudnnUnaryCase& spec, int input_copies) {
  const std::string engine = storage_engine("cudnn", spec.dtype);
  cases.push_back({.set = spec.set, .op = spec.op, .direction = "forward", .shape = spec.shape, .engine = engine,
                   .work_kind = WorkKind::bytes, .work = spec.forward_bytes, .no_cudnn_reason = {},
                   .prepare = [spec, input_copies](cudaStream_t stream) -> RunFunction {
                     const strata::StreamGuard on_stream(stream, strata::current_device());
                     const std::vector<Tensor> x = random_copies(spec.x, input_copies, 1, stream, spec.dtype);
                     const auto forward = [x, run_op = spec.run_on_cudnn](std::size_t k) {
                       const strata::autograd::NoGradGuard no_grad;
                       return run_op(x[k]);
                     };
                     forward(0);  // throws NotSupported here, not in the timed loop, where cuDNN cannot run it
                     return [forward, copies = x.size()](int run, cudaStream_t s) {
                       const strata::StreamGuard run_on_stream(s, strata::current_device());
                       forward(copy_of(run, copies));
                     };
                   }});
  cases.push_back({.set = spec.set, .op = spec.op, .direction = "backward", .shape = spec.shape, .engine = engine,
                   .work_kind = WorkKind::bytes, .work = spec.backward_bytes, .no_cudnn_reason = {},
                   .prepare = [spec, input_copies](cudaStream_t stream) -> RunFunction {
                     const strata::StreamGuard on_stream(stream, strata::current_device());
                     const std::vector<Tensor> x = random_copies(spec.x, input_copies, 1, stream, spec.dtype);
                     std::vector<Tensor> leaves;
                     std::vector<Tensor> outputs;
                     for (const Tensor& copy : x) {
                       Tensor leaf = copy;
                       leaf.set_requires_grad();
                       outputs.push_back(spec.run_on_cudnn(leaf));
                       leaves.push_back(leaf);
                     }
                     const std::vector<Tensor> dL_dy =
                         random_copies(outputs.front().shape(), input_copies, 2, stream, spec.dtype);
                     return backward_run(leaves, outputs, dL_dy, 1);
                   }});
}

void add_batch_norm2d_cudnn_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const Shape& x_shape,
                                  int input_copies) {
  const Shape channels = kernels::batch_norm2d_channel_shape(x_shape, kernels::BatchNormMode::training);
  // As the custom cases: bias only, default eps and momentum, the same traffic; x and y (and
  // their gradients) in the storage dtype, the bias and statistics f32.
  const F::BatchNormParams params{.affine = kernels::BatchNormAffine::bias_only};
  const std::string shape = "x " + x_shape.to_string();
  for (const DType storage : kStorageDtypes) {
    const std::string engine = storage_engine("cudnn", storage);
    const double x_bytes = tensor_bytes(x_shape, strata::element_size(storage));
    cases.push_back({.set = set, .op = "batch_norm2d", .direction = "forward", .shape = shape, .engine = engine,
                     .work_kind = WorkKind::bytes, .work = 2 * x_bytes, .no_cudnn_reason = {},
                     .prepare = [x_shape, channels, params, storage, input_copies](cudaStream_t stream) -> RunFunction {
                       const strata::StreamGuard on_stream(stream, strata::current_device());
                       const std::vector<Tensor> x = random_copies(x_shape, input_copies, 1, stream, storage);
                       const Tensor bias = Tensor::zeros(channels, DType::f32, stream);
                       F::BatchNormRunningStats running{Tensor::zeros(channels, DType::f32, stream),
                                                        Tensor::zeros(channels, DType::f32, stream)};
                       running.var.fill(1.0, stream);
                       auto forward = [x, bias, running, params](std::size_t k) mutable {
                         const strata::autograd::NoGradGuard no_grad;
                         return F::batch_norm2d(x[k], Tensor(), bias, running, true, params, Engine::cudnn);
                       };
                       forward(0);  // throws NotSupported here, not in the timed loop, where cuDNN cannot run it
                       return [forward, copies = x.size()](int run, cudaStream_t s) mutable {
                         const strata::StreamGuard run_on_stream(s, strata::current_device());
                         forward(copy_of(run, copies));
                       };
                     }});
    cases.push_back({.set = set, .op = "batch_norm2d", .direction = "backward", .shape = shape, .engine = engine,
                     .work_kind = WorkKind::bytes, .work = 3 * x_bytes, .no_cudnn_reason = {},
                     .prepare = [x_shape, channels, params, storage, input_copies](cudaStream_t stream) -> RunFunction {
                       const strata::StreamGuard on_stream(stream, strata::current_device());
                       const std::vector<Tensor> x = random_copies(x_shape, input_copies, 1, stream, storage);
                       const std::vector<Tensor> dL_dy = random_copies(x_shape, input_copies, 2, stream, storage);
                       std::vector<Tensor> leaves;   // x and bias of each copy
                       std::vector<Tensor> outputs;  // (N, C, H, W) each
                       for (const Tensor& copy : x) {
                         Tensor leaf = copy;
                         leaf.set_requires_grad();
                         Tensor bias = Tensor::zeros(channels, DType::f32, stream);
                         bias.set_requires_grad();
                         F::BatchNormRunningStats untracked;
                         outputs.push_back(
                             F::batch_norm2d(leaf, Tensor(), bias, untracked, true, params, Engine::cudnn));
                         leaves.push_back(leaf);
                         leaves.push_back(bias);
                       }
                       return backward_run(leaves, outputs, dL_dy, 2);
                     }});
  }
}

void add_log_softmax_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const Shape& logits,
                           int input_copies) {
  const std::string shape = "logits " + logits.to_string();
  for (const DType storage : kStorageDtypes) {
    // Forward reads x and writes y; backward reads dL_dy and y and writes dL_dx.
    const double logits_bytes = tensor_bytes(logits, strata::element_size(storage));
    for (const std::string engine : {"custom", "cudnn"}) {
      const auto log_softmax_case = [&](const std::string& direction, double bytes,
                                        std::function<RunFunction(cudaStream_t)> prepare) {
        cases.push_back({.set = set, .op = "log_softmax", .direction = direction, .shape = shape,
                         .engine = storage_engine(engine, storage), .work_kind = WorkKind::bytes, .work = bytes,
                         .cudnn_twin = engine == "custom" ? storage_engine("cudnn", storage) : "cudnn",
                         .no_cudnn_reason = {}, .prepare = std::move(prepare)});
      };
      const auto prepare_forward = [logits, engine, storage, input_copies](cudaStream_t stream) -> RunFunction {
        const strata::StreamGuard on_stream(stream, strata::current_device());
        const std::vector<Tensor> x = random_copies(logits, input_copies, 1, stream, storage);
        if (engine == "custom") {
          Tensor y = Tensor::empty(logits, storage, stream);
          return [x, y](int run, cudaStream_t s) mutable {
            kernels::log_softmax_forward(x[copy_of(run, x.size())], y, s);
          };
        }
        const auto forward = [x](std::size_t k) {
          const strata::autograd::NoGradGuard no_grad;
          return F::log_softmax(x[k], Engine::cudnn);
        };
        forward(0);  // throws NotSupported here where cuDNN cannot run it
        return [forward, copies = x.size()](int run, cudaStream_t s) {
          const strata::StreamGuard run_on_stream(s, strata::current_device());
          forward(copy_of(run, copies));
        };
      };
      const auto prepare_backward = [logits, engine, storage, input_copies](cudaStream_t stream) -> RunFunction {
        const strata::StreamGuard on_stream(stream, strata::current_device());
        const std::vector<Tensor> x = random_copies(logits, input_copies, 1, stream, storage);
        const std::vector<Tensor> dL_dy = random_copies(logits, input_copies, 2, stream, storage);
        if (engine == "custom") {
          std::vector<Tensor> y;
          for (const Tensor& copy : x) y.push_back(kernels::log_softmax_forward(copy, stream));
          Tensor dL_dx = Tensor::empty(logits, storage, stream);
          return [y, dL_dy, dL_dx](int run, cudaStream_t s) mutable {
            const std::size_t k = copy_of(run, y.size());
            kernels::log_softmax_backward(dL_dy[k], y[k], dL_dx, s);
          };
        }
        std::vector<Tensor> leaves;
        std::vector<Tensor> outputs;  // (N, classes) each
        for (const Tensor& copy : x) {
          Tensor leaf = copy;
          leaf.set_requires_grad();
          outputs.push_back(F::log_softmax(leaf, Engine::cudnn));
          leaves.push_back(leaf);
        }
        return backward_run(leaves, outputs, dL_dy, 1);
      };
      log_softmax_case("forward", 2 * logits_bytes, prepare_forward);
      log_softmax_case("backward", 3 * logits_bytes, prepare_backward);
    }
  }
}

}  // namespace op_benchmark
