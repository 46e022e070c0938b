// The cases of batch norm, linear and softmax cross-entropy, forward and backward, each
// through its launcher (strata/kernels/*.h), in each storage dtype; and the helpers every
// builder shares. The cuDNN side of batch norm comes from add_batch_norm2d_cudnn_cases
// (benchmark_norm_cases.cpp); linear is cuBLAS, and cuDNN has no cross-entropy.
//
// In bf16 storage the activations (x, y and their gradients; the logits and dL_dlogits; the
// linear layer's weight, as autocast casts it) are bf16, while batch norm's bias and
// statistics and the loss with its log-sum-exp terms stay f32, as autocast keeps them.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "benchmark_cases.h"

namespace op_benchmark {

namespace {

constexpr const char* kNoCudnnCrossEntropy = "cuDNN has no cross-entropy (compare engines on log_softmax)";

}  // namespace

std::string storage_engine(const std::string& engine, DType storage) {
  return storage == DType::f32 ? engine : engine + "-" + std::string(strata::dtype_name(storage)) + "io";
}

std::size_t copy_of(int run, std::size_t copies) { return static_cast<std::size_t>(run) % copies; }

BenchmarkCase bytes_case(const std::string& set, const std::string& op, const std::string& direction,
                         const std::string& shape, DType storage, double bytes,
                         std::function<RunFunction(cudaStream_t)> prepare, std::string no_cudnn_reason) {
  return {.set = set, .op = op, .direction = direction, .shape = shape, .engine = storage_engine("custom", storage),
          .work_kind = WorkKind::bytes, .work = bytes, .cudnn_twin = storage_engine("cudnn", storage),
          .no_cudnn_reason = std::move(no_cudnn_reason), .prepare = std::move(prepare)};
}

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

void add_batch_norm2d_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const Shape& x_shape,
                            int input_copies) {
  const Shape channels = kernels::batch_norm2d_channel_shape(x_shape, kernels::BatchNormMode::training);
  const kernels::BatchNormParams params{.affine = kernels::BatchNormAffine::bias_only};
  const std::string shape = "x " + x_shape.to_string();
  // Each storage, and bf16 channels-last ("-cl", whose reductions coalesce by channel tiles:
  // channel_reduction.cuh), against cuDNN's NCHW row of the same storage.
  const std::pair<DType, strata::MemoryFormat> variants[] = {
      {DType::f32, strata::MemoryFormat::contiguous},
      {DType::bf16, strata::MemoryFormat::contiguous},
      {DType::bf16, strata::MemoryFormat::channels_last}};
  for (const auto& [storage, format] : variants) {
    // Per-channel tensors are ignored in the traffic: x and y (forward), dL_dy, x, dL_dx (backward).
    const double x_bytes = tensor_bytes(x_shape, strata::element_size(storage));
    const auto in_format = [format](std::vector<Tensor> tensors, cudaStream_t stream) {
      for (Tensor& tensor : tensors) tensor = tensor.to_memory_format(format, stream);
      return tensors;
    };
    BenchmarkCase forward = bytes_case(
        set, "batch_norm2d", "forward", shape, storage, 2 * x_bytes,
        [x_shape, channels, params, storage, format, in_format, input_copies](cudaStream_t stream) -> RunFunction {
          const std::vector<Tensor> x = in_format(random_copies(x_shape, input_copies, 1, stream, storage), stream);
          const Tensor bias = Tensor::zeros(channels, DType::f32, stream);
          kernels::BatchNormRunningStats running{Tensor::zeros(channels, DType::f32, stream),
                                                 Tensor::zeros(channels, DType::f32, stream)};
          running.var.fill(1.0, stream);
          kernels::BatchNormSaved saved{Tensor::empty(channels, DType::f32, stream),
                                        Tensor::empty(channels, DType::f32, stream)};
          Tensor y = Tensor::empty(x_shape, storage, stream, format);
          return [x, bias, running, saved, y, params](int run, cudaStream_t s) mutable {
            kernels::batch_norm2d_forward_training(x[copy_of(run, x.size())], Tensor(), bias, running, y, saved,
                                                   params, s);
          };
        });
    BenchmarkCase backward = bytes_case(
        set, "batch_norm2d", "backward", shape, storage, 3 * x_bytes,
        [x_shape, channels, params, storage, format, in_format, input_copies](cudaStream_t stream) -> RunFunction {
          const std::vector<Tensor> x = in_format(random_copies(x_shape, input_copies, 1, stream, storage), stream);
          const std::vector<Tensor> dL_dy =
              in_format(random_copies(x_shape, input_copies, 2, stream, storage), stream);
          const Tensor bias = Tensor::zeros(channels, DType::f32, stream);
          std::vector<kernels::BatchNormSaved> saved;
          for (const Tensor& copy : x) {
            saved.push_back({Tensor::empty(channels, DType::f32, stream), Tensor::empty(channels, DType::f32, stream)});
            kernels::BatchNormRunningStats untracked;
            Tensor y = Tensor::empty(x_shape, storage, stream, format);
            kernels::batch_norm2d_forward_training(copy, Tensor(), bias, untracked, y, saved.back(), params, stream);
          }
          kernels::BatchNormGradients gradients{.dL_dx = Tensor::empty(x_shape, storage, stream, format),
                                                .dL_dweight = {},
                                                .dL_dbias = Tensor::empty(channels, DType::f32, stream)};
          return [x, dL_dy, saved, gradients, params](int run, cudaStream_t s) mutable {
            const std::size_t k = copy_of(run, x.size());
            kernels::batch_norm2d_backward(dL_dy[k], x[k], Tensor(), saved[k], gradients, params, s);
          };
        });
    for (BenchmarkCase* bench_case : {&forward, &backward}) {
      if (format == strata::MemoryFormat::channels_last) bench_case->engine += "-cl";
      cases.push_back(std::move(*bench_case));
    }
  }
}

void add_linear_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const Shape& x_shape,
                      std::int64_t out_features, int input_copies) {
  const Shape weight_shape{out_features, x_shape[1]};
  const Shape y_shape = kernels::linear_output_shape(x_shape, weight_shape);
  const double flops = 2.0 * static_cast<double>(x_shape.numel()) * static_cast<double>(out_features);
  for (const DType storage : kStorageDtypes) {
    // bf16: cuBLAS GemmEx on the tensor cores, f32 accumulation.
    const auto linear_case = [&](const std::string& direction, std::function<RunFunction(cudaStream_t)> prepare) {
      cases.push_back({.set = set, .op = "linear", .direction = direction,
                       .shape = "x " + x_shape.to_string() + ", w " + weight_shape.to_string(),
                       .engine = storage_engine("cublas", storage), .work_kind = WorkKind::flops, .work = flops,
                       .tensor_cores = storage != DType::f32,
                       .no_cudnn_reason = "Strata's linear is cuBLAS; cuDNN has no dense layer",
                       .prepare = std::move(prepare)});
    };
    linear_case("forward", [=](cudaStream_t stream) -> RunFunction {
      const std::vector<Tensor> x = random_copies(x_shape, input_copies, 1, stream, storage);
      const std::vector<Tensor> weight = random_copies(weight_shape, input_copies, 2, stream, storage);
      Tensor y = Tensor::empty(y_shape, storage, stream);
      return [x, weight, y](int run, cudaStream_t s) mutable {
        const std::size_t k = copy_of(run, x.size());
        kernels::linear_forward(x[k], weight[k], Tensor(), y, s);
      };
    });
    linear_case("backward_data", [=](cudaStream_t stream) -> RunFunction {
      const std::vector<Tensor> dL_dy = random_copies(y_shape, input_copies, 3, stream, storage);
      const std::vector<Tensor> weight = random_copies(weight_shape, input_copies, 2, stream, storage);
      Tensor dL_dx = Tensor::empty(x_shape, storage, stream);
      return [dL_dy, weight, dL_dx](int run, cudaStream_t s) mutable {
        const std::size_t k = copy_of(run, dL_dy.size());
        kernels::linear_backward_data(dL_dy[k], weight[k], dL_dx, {}, s);
      };
    });
    linear_case("backward_weight", [=](cudaStream_t stream) -> RunFunction {
      const std::vector<Tensor> dL_dy = random_copies(y_shape, input_copies, 3, stream, storage);
      const std::vector<Tensor> x = random_copies(x_shape, input_copies, 1, stream, storage);
      Tensor dL_dweight = Tensor::empty(weight_shape, storage, stream);
      return [dL_dy, x, dL_dweight](int run, cudaStream_t s) mutable {
        const std::size_t k = copy_of(run, x.size());
        kernels::linear_backward_weight(dL_dy[k], x[k], dL_dweight, {}, s);
      };
    });
  }
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
  const std::string shape = "logits " + logits.to_string();
  const double targets_bytes = tensor_bytes({rows}, sizeof(std::int64_t));
  const double saved_bytes = tensor_bytes({rows, 2});  // the log-sum-exp terms, f32
  const double loss_bytes = tensor_bytes({rows});      // f32
  for (const DType storage : kStorageDtypes) {
    const double logits_bytes = tensor_bytes(logits, strata::element_size(storage));
    cases.push_back(bytes_case(set, "softmax_cross_entropy", "forward", shape, storage,
                               logits_bytes + targets_bytes + saved_bytes + loss_bytes,
                               [=](cudaStream_t stream) -> RunFunction {
                                 const std::vector<Tensor> x = random_copies(logits, input_copies, 1, stream, storage);
                                 const std::vector<Tensor> targets = target_copies(rows, classes, input_copies, stream);
                                 auto check = std::make_shared<kernels::TargetCheck>(stream);
                                 kernels::CrossEntropyForward forward = forward_outputs(rows, stream);
                                 return [x, targets, check, forward, params](int run, cudaStream_t s) mutable {
                                   const std::size_t k = copy_of(run, x.size());
                                   kernels::softmax_cross_entropy_forward(x[k], targets[k], forward, *check, params, s);
                                 };
                               },
                               kNoCudnnCrossEntropy));
    // logits read and dL_dlogits written (the upstream dL_dloss, (N) f32, is not counted).
    cases.push_back(bytes_case(
        set, "softmax_cross_entropy", "backward", shape, storage, 2 * logits_bytes + targets_bytes + saved_bytes,
        [=](cudaStream_t stream) -> RunFunction {
          const std::vector<Tensor> x = random_copies(logits, input_copies, 1, stream, storage);
          const std::vector<Tensor> targets = target_copies(rows, classes, input_copies, stream);
          kernels::TargetCheck check(stream);
          std::vector<kernels::CrossEntropyForward> forwards;
          for (std::size_t k = 0; k < x.size(); ++k) {
            forwards.push_back(forward_outputs(rows, stream));
            kernels::softmax_cross_entropy_forward(x[k], targets[k], forwards.back(), check, params, stream);
          }
          check.check(stream);
          Tensor dL_dloss = Tensor::empty({rows}, DType::f32, stream);
          dL_dloss.fill(1.0, stream);
          Tensor dL_dlogits = Tensor::empty(logits, storage, stream);
          return [x, targets, forwards, dL_dloss, dL_dlogits, params](int run, cudaStream_t s) mutable {
            const std::size_t k = copy_of(run, x.size());
            kernels::softmax_cross_entropy_backward(dL_dloss, x[k], targets[k], forwards[k], dL_dlogits, params, s);
          };
        },
        kNoCudnnCrossEntropy));
  }
}

}  // namespace op_benchmark
