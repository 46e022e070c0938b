// The cases of the ops besides conv2d: max pooling, batch norm, GELU, linear and softmax
// cross-entropy, forward and backward, each through its launcher (strata/kernels/*.h). The
// cuDNN side of max pooling and GELU comes from add_cudnn_unary_cases, that of batch norm from
// add_batch_norm2d_cudnn_cases (benchmark_norm_cases.cpp); linear is cuBLAS, and cuDNN has no
// cross-entropy.
#include <memory>
#include <string>
#include <vector>

#include "benchmark_cases.h"

namespace op_benchmark {

namespace {

using strata::DType;
using strata::Shape;
using strata::Tensor;
namespace kernels = strata::kernels;


constexpr const char* kNoCudnnCrossEntropy = "cuDNN has no cross-entropy (compare engines on log_softmax)";

std::size_t copy_of(int run, std::size_t copies) { return static_cast<std::size_t>(run) % copies; }

// A custom case whose cuDNN twin is added next to it (no_cudnn_reason empty), or which has
// none, and says why.
BenchmarkCase bytes_case(const std::string& set, const std::string& op, const std::string& direction,
                         const std::string& shape, double bytes, std::function<RunFunction(cudaStream_t)> prepare,
                         std::string no_cudnn_reason = {}) {
  return {.set = set, .op = op, .direction = direction, .shape = shape, .engine = "custom",
          .work_kind = WorkKind::bytes, .work = bytes, .no_cudnn_reason = std::move(no_cudnn_reason),
          .prepare = std::move(prepare)};
}

}  // namespace

std::vector<Tensor> random_copies(const Shape& shape, int input_copies, std::uint64_t seed, cudaStream_t stream,
                                  DType dtype) {
  std::vector<Tensor> copies;
  for (int i = 0; i < input_copies; ++i) {
    Tensor copy = Tensor::empty(shape, DType::f32, stream);
    strata::fill_uniform(copy, {.low = -1.0f, .high = 1.0f, .seed = seed * 1000 + static_cast<std::uint64_t>(i)},
                         stream);
    copies.push_back(dtype == DType::f32 ? copy : copy.to_dtype(dtype, stream));
  }
  return copies;
}

double tensor_bytes(const Shape& shape, std::size_t element_size) {
  return static_cast<double>(shape.numel()) * static_cast<double>(element_size);
}

void add_max_pool2d_cases(std::vector<BenchmarkCase>& cases, const PoolSpec& spec, int input_copies) {
  const Shape y_shape = kernels::max_pool2d_output_shape(spec.x, spec.params);
  const kernels::Pool2dParams& p = spec.params;
  std::string shape = "x " + spec.x.to_string() + ", kernel " + std::to_string(p.kernel.h);
  if (p.effective_stride() != p.kernel) shape += ", stride " + std::to_string(p.effective_stride().h);
  if (p.padding != kernels::Size2d{0, 0}) shape += ", padding " + std::to_string(p.padding.h);
  // The argmax the training forward writes for the backward: i32, as F::max_pool2d stores it.
  const double argmax_bytes = tensor_bytes(y_shape, sizeof(std::int32_t));
  cases.push_back(bytes_case(spec.set, "max_pool2d", "forward", shape,
                             tensor_bytes(spec.x) + tensor_bytes(y_shape) + argmax_bytes,
                             [spec, y_shape, input_copies](cudaStream_t stream) -> RunFunction {
                               const std::vector<Tensor> x = random_copies(spec.x, input_copies, 1, stream);
                               Tensor y = Tensor::empty(y_shape, DType::f32, stream);
                               Tensor argmax = Tensor::empty(y_shape, DType::i32, stream);
                               return [x, y, argmax, params = spec.params](int run, cudaStream_t s) mutable {
                                 kernels::max_pool2d_forward(x[copy_of(run, x.size())], y, argmax, params, s);
                               };
                             }));
  cases.push_back(bytes_case(spec.set, "max_pool2d", "backward", shape,
                             tensor_bytes(y_shape) + argmax_bytes + tensor_bytes(spec.x),
                             [spec, y_shape, input_copies](cudaStream_t stream) -> RunFunction {
                               const std::vector<Tensor> x = random_copies(spec.x, input_copies, 1, stream);
                               const std::vector<Tensor> dL_dy = random_copies(y_shape, input_copies, 2, stream);
                               std::vector<Tensor> argmax;
                               for (const Tensor& copy : x) {
                                 Tensor y = Tensor::empty(y_shape, DType::f32, stream);
                                 argmax.push_back(Tensor::empty(y_shape, DType::i32, stream));
                                 kernels::max_pool2d_forward(copy, y, argmax.back(), spec.params, stream);
                               }
                               Tensor dL_dx = Tensor::empty(spec.x, DType::f32, stream);
                               return [dL_dy, argmax, dL_dx, params = spec.params](int run, cudaStream_t s) mutable {
                                 const std::size_t k = copy_of(run, dL_dy.size());
                                 kernels::max_pool2d_backward(dL_dy[k], argmax[k], dL_dx, params, s);
                               };
                             }));
  // cuDNN keeps no argmax: its backward reads x and y besides dL_dy.
  add_cudnn_unary_cases(cases,
                        {.set = spec.set, .op = "max_pool2d", .shape = shape, .x = spec.x,
                         .forward_bytes = tensor_bytes(spec.x) + tensor_bytes(y_shape),
                         .backward_bytes = 2 * tensor_bytes(y_shape) + 2 * tensor_bytes(spec.x),
                         .run_on_cudnn = [params = spec.params](const Tensor& x) {
                           return strata::F::max_pool2d(x, params, strata::Engine::cudnn);
                         }},
                        input_copies);
}

void add_batch_norm2d_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const Shape& x_shape,
                            int input_copies) {
  const Shape channels = kernels::batch_norm2d_channel_shape(x_shape, kernels::BatchNormMode::training);
  const kernels::BatchNormParams params{.affine = kernels::BatchNormAffine::bias_only};
  // Per-channel tensors are ignored in the traffic: x and y (forward), dL_dy, x, dL_dx (backward).
  cases.push_back(bytes_case(set, "batch_norm2d", "forward", "x " + x_shape.to_string(), 2 * tensor_bytes(x_shape),
                             [x_shape, channels, params, input_copies](cudaStream_t stream) -> RunFunction {
                               const std::vector<Tensor> x = random_copies(x_shape, input_copies, 1, stream);
                               const Tensor bias = Tensor::zeros(channels, DType::f32, stream);
                               kernels::BatchNormRunningStats running{Tensor::zeros(channels, DType::f32, stream),
                                                                      Tensor::zeros(channels, DType::f32, stream)};
                               running.var.fill(1.0, stream);
                               kernels::BatchNormSaved saved{Tensor::empty(channels, DType::f32, stream),
                                                             Tensor::empty(channels, DType::f32, stream)};
                               Tensor y = Tensor::empty(x_shape, DType::f32, stream);
                               return [x, bias, running, saved, y, params](int run, cudaStream_t s) mutable {
                                 kernels::batch_norm2d_forward_training(x[copy_of(run, x.size())], Tensor(), bias,
                                                                        running, y, saved, params, s);
                               };
                             }));
  cases.push_back(bytes_case(set, "batch_norm2d", "backward", "x " + x_shape.to_string(), 3 * tensor_bytes(x_shape),
                             [x_shape, channels, params, input_copies](cudaStream_t stream) -> RunFunction {
                               const std::vector<Tensor> x = random_copies(x_shape, input_copies, 1, stream);
                               const std::vector<Tensor> dL_dy = random_copies(x_shape, input_copies, 2, stream);
                               const Tensor bias = Tensor::zeros(channels, DType::f32, stream);
                               std::vector<kernels::BatchNormSaved> saved;
                               for (const Tensor& copy : x) {
                                 saved.push_back({Tensor::empty(channels, DType::f32, stream),
                                                  Tensor::empty(channels, DType::f32, stream)});
                                 kernels::BatchNormRunningStats untracked;
                                 Tensor y = Tensor::empty(x_shape, DType::f32, stream);
                                 kernels::batch_norm2d_forward_training(copy, Tensor(), bias, untracked, y,
                                                                        saved.back(), params, stream);
                               }
                               kernels::BatchNormGradients gradients{.dL_dx = Tensor::empty(x_shape, DType::f32, stream),
                                                                     .dL_dweight = {},
                                                                     .dL_dbias = Tensor::empty(channels, DType::f32, stream)};
                               return [x, dL_dy, saved, gradients, params](int run, cudaStream_t s) mutable {
                                 const std::size_t k = copy_of(run, x.size());
                                 kernels::batch_norm2d_backward(dL_dy[k], x[k], Tensor(), saved[k], gradients, params, s);
                               };
                             }));
}

void add_gelu_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const Shape& x_shape,
                    int input_copies) {
  cases.push_back(bytes_case(set, "gelu", "forward", "x " + x_shape.to_string(), 2 * tensor_bytes(x_shape),
                             [x_shape, input_copies](cudaStream_t stream) -> RunFunction {
                               const std::vector<Tensor> x = random_copies(x_shape, input_copies, 1, stream);
                               Tensor y = Tensor::empty(x_shape, DType::f32, stream);
                               return [x, y](int run, cudaStream_t s) mutable {
                                 kernels::gelu_forward(x[copy_of(run, x.size())], y, {}, s);
                               };
                             }));
  cases.push_back(bytes_case(set, "gelu", "backward", "x " + x_shape.to_string(), 3 * tensor_bytes(x_shape),
                             [x_shape, input_copies](cudaStream_t stream) -> RunFunction {
                               const std::vector<Tensor> x = random_copies(x_shape, input_copies, 1, stream);
                               const std::vector<Tensor> dL_dy = random_copies(x_shape, input_copies, 2, stream);
                               Tensor dL_dx = Tensor::empty(x_shape, DType::f32, stream);
                               return [x, dL_dy, dL_dx](int run, cudaStream_t s) mutable {
                                 const std::size_t k = copy_of(run, x.size());
                                 kernels::gelu_backward(dL_dy[k], x[k], dL_dx, {}, s);
                               };
                             }));  add_cudnn_unary_cases(cases,
                        {.set = set, .op = "gelu", .shape = "x " + x_shape.to_string(), .x = x_shape,
                         .forward_bytes = 2 * tensor_bytes(x_shape), .backward_bytes = 3 * tensor_bytes(x_shape),
                         .run_on_cudnn = [](const Tensor& x) {
                           return strata::F::gelu(x, strata::F::GeluApproximation::none, strata::Engine::cudnn);
                         }},
                        input_copies);
}

void add_linear_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const Shape& x_shape,
                      std::int64_t out_features, int input_copies) {
  const Shape weight_shape{out_features, x_shape[1]};
  const Shape y_shape = kernels::linear_output_shape(x_shape, weight_shape);
  const double flops = 2.0 * static_cast<double>(x_shape.numel()) * static_cast<double>(out_features);
  const auto linear_case = [&](const std::string& direction, std::function<RunFunction(cudaStream_t)> prepare) {
    cases.push_back({.set = set, .op = "linear", .direction = direction,
                     .shape = "x " + x_shape.to_string() + ", w " + weight_shape.to_string(), .engine = "cublas",
                     .work_kind = WorkKind::flops, .work = flops,
                     .no_cudnn_reason = "Strata's linear is cuBLAS; cuDNN has no dense layer",
                     .prepare = std::move(prepare)});
  };
  linear_case("forward", [=](cudaStream_t stream) -> RunFunction {
    const std::vector<Tensor> x = random_copies(x_shape, input_copies, 1, stream);
    const std::vector<Tensor> weight = random_copies(weight_shape, input_copies, 2, stream);
    Tensor y = Tensor::empty(y_shape, DType::f32, stream);
    return [x, weight, y](int run, cudaStream_t s) mutable {
      const std::size_t k = copy_of(run, x.size());
      kernels::linear_forward(x[k], weight[k], Tensor(), y, s);
    };
  });
  linear_case("backward_data", [=](cudaStream_t stream) -> RunFunction {
    const std::vector<Tensor> dL_dy = random_copies(y_shape, input_copies, 3, stream);
    const std::vector<Tensor> weight = random_copies(weight_shape, input_copies, 2, stream);
    Tensor dL_dx = Tensor::empty(x_shape, DType::f32, stream);
    return [dL_dy, weight, dL_dx](int run, cudaStream_t s) mutable {
      const std::size_t k = copy_of(run, dL_dy.size());
      kernels::linear_backward_data(dL_dy[k], weight[k], dL_dx, {}, s);
    };
  });
  linear_case("backward_weight", [=](cudaStream_t stream) -> RunFunction {
    const std::vector<Tensor> dL_dy = random_copies(y_shape, input_copies, 3, stream);
    const std::vector<Tensor> x = random_copies(x_shape, input_copies, 1, stream);
    Tensor dL_dweight = Tensor::empty(weight_shape, DType::f32, stream);
    return [dL_dy, x, dL_dweight](int run, cudaStream_t s) mutable {
      const std::size_t k = copy_of(run, x.size());
      kernels::linear_backward_weight(dL_dy[k], x[k], dL_dweight, {}, s);
    };
  });
}

namespace {

// Targets spread over the classes (row i: i * 7 % classes), input_copies rotations of them.
std::vector<Tensor> target_copies(std::int64_t rows, std::int64_t classes, int input_copies, cudaStream_t stream) {
  std::vector<Tensor> copies;
  for (int copy = 0; copy < input_copies; ++copy) {
    std::vector<std::int64_t> targets;
    for (std::int64_t row = 0; row < rows; ++row) targets.push_back((row * 7 + copy) % classes);
    copies.push_back(Tensor::from_vector(targets, {rows}).to_device(stream));
  }
  return copies;
}

strata::kernels::CrossEntropyForward forward_outputs(std::int64_t rows, cudaStream_t stream) {
  return {.loss = Tensor::empty({rows}, DType::f32, stream),
          .log_sum_exp = Tensor::empty({rows, 2}, DType::f32, stream),
          .target_count = Tensor::empty({}, DType::i64, stream)};
}

}  // namespace

void add_softmax_cross_entropy_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const Shape& logits,
                                     int input_copies) {
  const std::int64_t rows = logits[0], classes = logits[1];
  const kernels::CrossEntropyParams params{.label_smoothing = 0.2f, .reduction = kernels::Reduction::none};
  const double targets_bytes = tensor_bytes({rows}, sizeof(std::int64_t));
  const double saved_bytes = tensor_bytes({rows, 2});  // the log-sum-exp terms
  cases.push_back(bytes_case(set, "softmax_cross_entropy", "forward", "logits " + logits.to_string(),
                             tensor_bytes(logits) + targets_bytes + saved_bytes + tensor_bytes({rows}),
                             [=](cudaStream_t stream) -> RunFunction {
                               const std::vector<Tensor> x = random_copies(logits, input_copies, 1, stream);
                               const std::vector<Tensor> targets = target_copies(rows, classes, input_copies, stream);
                               auto check = std::make_shared<kernels::TargetCheck>(stream);
                               kernels::CrossEntropyForward forward = forward_outputs(rows, stream);
                               return [x, targets, check, forward, params](int run, cudaStream_t s) mutable {
                                 const std::size_t k = copy_of(run, x.size());
                                 kernels::softmax_cross_entropy_forward(x[k], targets[k], forward, *check, params, s);
                               };
                             },
                             kNoCudnnCrossEntropy));
  cases.push_back(bytes_case(set, "softmax_cross_entropy", "backward", "logits " + logits.to_string(),
                             2 * tensor_bytes(logits) + targets_bytes + saved_bytes,
                             [=](cudaStream_t stream) -> RunFunction {
                               const std::vector<Tensor> x = random_copies(logits, input_copies, 1, stream);
                               const std::vector<Tensor> targets = target_copies(rows, classes, input_copies, stream);
                               kernels::TargetCheck check(stream);
                               std::vector<kernels::CrossEntropyForward> forwards;
                               for (std::size_t k = 0; k < x.size(); ++k) {
                                 forwards.push_back(forward_outputs(rows, stream));
                                 kernels::softmax_cross_entropy_forward(x[k], targets[k], forwards.back(), check,
                                                                        params, stream);
                               }
                               check.check(stream);
                               Tensor dL_dloss = Tensor::empty({rows}, DType::f32, stream);
                               dL_dloss.fill(1.0, stream);
                               Tensor dL_dlogits = Tensor::empty(logits, DType::f32, stream);
                               return [x, targets, forwards, dL_dloss, dL_dlogits, params](int run,
                                                                                           cudaStream_t s) mutable {
                                 const std::size_t k = copy_of(run, x.size());
                                 kernels::softmax_cross_entropy_backward(dL_dloss, x[k], targets[k], forwards[k],
                                                                         dL_dlogits, params, s);
                               };
                             },
                             kNoCudnnCrossEntropy));
}

}  // namespace op_benchmark
