// Fused ops against the unfused kernels they replace, both on Strata's kernels: batch norm +
// GELU (strata/kernels/batch_norm2d_activation.h) against batch_norm2d then gelu, training
// forward and backward, bias only as airbench94 uses them.
//
// The fused rows are engine "custom", the unfused ones "custom unfused": cuDNN has no fused
// batch norm + activation, so the fused row's comparison is the unfused row beside it
// (compare engines on batch_norm2d and gelu). Both rows count the same work, the fused op's
// compulsory traffic (x read and y written; dL_dy and x read and dL_dx written), so their
// rates compare as their times do; the unfused pair also writes and reads the
// pre-activation, and keeps it from the forward to the backward.
//
// Both run in each storage dtype: bf16 ("custom-bf16io", "custom-bf16io unfused") stores x, y,
// the pre-activation and the gradients in bf16, the bias and statistics in f32, as autocast.
#include <string>
#include <vector>

#include "benchmark_cases.h"

namespace op_benchmark {

namespace {

constexpr const char* kOp = "batch_norm2d_gelu";
// Why neither row has a cuDNN twin; the table shows 40 characters.
constexpr const char* kFusedNoCudnn = "cuDNN has none: see 'custom unfused'";
constexpr const char* kUnfusedNoCudnn = "the unfused pair for the 'custom' row";

// A row of this file: fused ("custom") or unfused ("custom unfused"), in storage.
BenchmarkCase fusion_case(const std::string& set, const std::string& direction, const Shape& x, DType storage,
                          bool fused, std::function<RunFunction(cudaStream_t)> prepare) {
  const std::string engine = storage_engine("custom", storage);
  const double x_bytes = tensor_bytes(x, strata::element_size(storage));
  return {.set = set, .op = kOp, .direction = direction, .shape = "x " + x.to_string(),
          .engine = fused ? engine : engine + " unfused", .work_kind = WorkKind::bytes,
          .work = (direction == "forward" ? 2 : 3) * x_bytes,
          .no_cudnn_reason = fused ? kFusedNoCudnn : kUnfusedNoCudnn, .prepare = std::move(prepare)};
}

// The per-copy state of a training forward: its saved statistics, and (unfused) the
// pre-activation the backward reads.
struct ForwardState {
  kernels::BatchNormSaved saved;
  Tensor z;  // (N, C, H, W), unfused only
};

}  // namespace

void add_batch_norm2d_gelu_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const Shape& x_shape,
                                 int input_copies) {
  const Shape channels = kernels::batch_norm2d_channel_shape(x_shape, kernels::BatchNormMode::training);
  const kernels::BatchNormActivationParams params{.norm = {.affine = kernels::BatchNormAffine::bias_only},
                                                  .activation = kernels::FusedActivation::gelu};
  const auto saved_for = [channels](cudaStream_t stream) {
    return kernels::BatchNormSaved{Tensor::empty(channels, DType::f32, stream),
                                   Tensor::empty(channels, DType::f32, stream)};
  };
  for (const DType storage : kStorageDtypes) {
    for (const bool fused : {true, false}) {
      cases.push_back(fusion_case(
          set, "forward", x_shape, storage, fused,
          [x_shape, channels, params, storage, fused, saved_for, input_copies](cudaStream_t stream) -> RunFunction {
            const std::vector<Tensor> x = random_copies(x_shape, input_copies, 1, stream, storage);
            const Tensor bias = Tensor::zeros(channels, DType::f32, stream);
            kernels::BatchNormRunningStats running{Tensor::zeros(channels, DType::f32, stream),
                                                   Tensor::zeros(channels, DType::f32, stream)};
            running.var.fill(1.0, stream);
            Tensor y = Tensor::empty(x_shape, storage, stream);
            Tensor z = Tensor::empty(x_shape, storage, stream);
            kernels::BatchNormSaved saved = saved_for(stream);
            return [x, bias, running, y, z, saved, params, fused](int run, cudaStream_t s) mutable {
              const Tensor& input = x[copy_of(run, x.size())];
              if (fused) {
                kernels::batch_norm2d_activation_forward_training(input, Tensor(), bias, running, y, saved, params, s);
              } else {
                kernels::batch_norm2d_forward_training(input, Tensor(), bias, running, z, saved, params.norm, s);
                kernels::gelu_forward(z, y, {.approximation = kernels::GeluApproximation::none}, s);
              }
            };
          }));
    }
    for (const bool fused : {true, false}) {
      cases.push_back(fusion_case(
          set, "backward", x_shape, storage, fused,
          [x_shape, channels, params, storage, fused, saved_for, input_copies](cudaStream_t stream) -> RunFunction {
            const std::vector<Tensor> x = random_copies(x_shape, input_copies, 1, stream, storage);
            const std::vector<Tensor> dL_dy = random_copies(x_shape, input_copies, 2, stream, storage);
            const Tensor bias = Tensor::zeros(channels, DType::f32, stream);
            std::vector<ForwardState> forwards;
            for (const Tensor& copy : x) {
              ForwardState state{.saved = saved_for(stream), .z = Tensor()};
              kernels::BatchNormRunningStats untracked;
              Tensor y = Tensor::empty(x_shape, storage, stream);
              if (fused) {
                kernels::batch_norm2d_activation_forward_training(copy, Tensor(), bias, untracked, y, state.saved,
                                                                  params, stream);
              } else {
                state.z = Tensor::empty(x_shape, storage, stream);
                kernels::batch_norm2d_forward_training(copy, Tensor(), bias, untracked, state.z, state.saved,
                                                       params.norm, stream);
              }
              forwards.push_back(state);
            }
            kernels::BatchNormGradients gradients{.dL_dx = Tensor::empty(x_shape, storage, stream),
                                                  .dL_dbias = Tensor::empty(channels, DType::f32, stream)};
            Tensor dL_dz = Tensor::empty(x_shape, storage, stream);  // unfused only
            return [x, dL_dy, bias, forwards, gradients, dL_dz, params, fused](int run, cudaStream_t s) mutable {
              const std::size_t k = copy_of(run, x.size());
              if (fused) {
                kernels::batch_norm2d_activation_backward(dL_dy[k], x[k], Tensor(), bias, forwards[k].saved, gradients,
                                                          params, s);
              } else {
                kernels::gelu_backward(dL_dy[k], forwards[k].z, dL_dz,
                                       {.approximation = kernels::GeluApproximation::none}, s);
                kernels::batch_norm2d_backward(dL_dz, x[k], Tensor(), forwards[k].saved, gradients, params.norm, s);
              }
            };
          }));
    }
  }
}

}  // namespace op_benchmark
