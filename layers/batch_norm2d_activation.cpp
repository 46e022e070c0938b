// BatchNorm2dActivation: BatchNorm2d's state (parameters, running statistics, batch counter,
// under BatchNorm2d's names) over the fused F::batch_norm2d_activation.
#include <fmt/format.h>

#include "core/check.h"
#include "core/format.h"
#include "layers/batch_norm_counter.h"
#include "layers/module_format.h"
#include "strata/core/op.h"
#include "strata/core/stream.h"
#include "strata/layers/functional.h"
#include "strata/layers/modules.h"

namespace strata::nn {

BatchNorm2dActivation::BatchNorm2dActivation(std::int64_t num_features, const BatchNorm2dActivationOptions& options)
    : num_features_(num_features), options_(options) {
  STRATA_CHECK(num_features >= 1, "BatchNorm2dActivation: num_features must be at least 1, got {}", num_features);
  STRATA_CHECK(options.eps > 0.0f && options.momentum >= 0.0f && options.momentum <= 1.0f,
               "BatchNorm2dActivation({}): eps must be positive and momentum between 0 and 1", extra_repr());
  // As BatchNorm2d registers them, in the same order: the same state_dict.
  const cudaStream_t stream = current_stream();
  if (options.affine == BatchNormAffine::weight_and_bias) {
    Tensor weight = Tensor::empty({num_features}, DType::f32, stream);
    weight.fill(1.0, stream);
    weight_ = register_parameter("weight", weight);
  }
  if (options.affine != BatchNormAffine::none) {
    bias_ = register_parameter("bias", Tensor::zeros({num_features}, DType::f32, stream));
  }
  if (options.track_running_stats) {
    running_.mean = register_buffer("running_mean", Tensor::zeros({num_features}, DType::f32, stream));
    Tensor running_var = Tensor::empty({num_features}, DType::f32, stream);
    running_var.fill(1.0, stream);
    running_.var = register_buffer("running_var", running_var);
    num_batches_tracked_ = register_buffer("num_batches_tracked", Tensor::zeros(Shape(), DType::i64, stream));
  }
}

std::string BatchNorm2dActivation::extra_repr() const {
  const char* affine = options_.affine == BatchNormAffine::weight_and_bias ? "True"
                       : options_.affine == BatchNormAffine::none          ? "False"
                                                                           : "'bias_only'";
  return fmt::format("{}, eps={}, momentum={}, affine={}, track_running_stats={}, activation='{}'", num_features_,
                     detail::python_float(options_.eps), detail::python_float(options_.momentum), affine,
                     detail::python_bool(options_.track_running_stats),
                     kernels::fused_activation_name(options_.activation));
}

std::string BatchNorm2dActivation::summary() const {
  return fmt::format("BatchNorm2dActivation {}, {}", num_features_,
                     kernels::fused_activation_name(options_.activation));
}

void BatchNorm2dActivation::check_input(const Tensor& x) const {
  STRATA_CHECK(x.dim() == 4, "expected a 4-D input (N, {}, H, W), got input {}", num_features_, x.shape());
  STRATA_CHECK(x.size(1) == num_features_, "expected {} channels, got input {}", num_features_, x.shape());
}

Tensor BatchNorm2dActivation::forward_impl(const Tensor& x) {
  // Without running statistics even eval normalises with the batch's, as BatchNorm2d.
  const bool use_batch_statistics = is_training() || !options_.track_running_stats;
  const kernels::BatchNormActivationParams params{
      .norm = {.eps = options_.eps, .momentum = options_.momentum, .affine = options_.affine},
      .activation = options_.activation};
  Tensor y = F::batch_norm2d_activation(x, weight_, bias_, running_, use_batch_statistics, params);
  if (is_training() && options_.track_running_stats) {
    graph::run_op("num_batches_tracked_increment", {num_batches_tracked_}, {num_batches_tracked_},
                  [counter = num_batches_tracked_.detach()](cudaStream_t s) mutable {
                    detail::launch_increment_counter(counter.data<std::int64_t>(), s);
                  });
  }
  return y;
}

}  // namespace strata::nn
