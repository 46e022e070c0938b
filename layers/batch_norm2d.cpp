// BatchNorm2d: PyTorch's nn.BatchNorm2d over F::batch_norm2d, with its engine choice; and
// BatchNorm2dBase, the state and checks it shares with BatchNorm2dActivation.
#include <fmt/format.h>

#include "core/check.h"
#include "core/format.h"
#include "layers/module_format.h"
#include "strata/core/stream.h"
#include "strata/layers/functional.h"
#include "strata/layers/modules.h"

namespace strata::nn {

BatchNorm2dBase::BatchNorm2dBase(std::string_view type_name, std::int64_t num_features,
                                 const kernels::BatchNormParams& params, bool track_running_stats)
    : num_features_(num_features), params_(params), track_running_stats_(track_running_stats) {
  STRATA_CHECK(num_features >= 1, "{}: num_features must be at least 1, got {}", type_name, num_features);
  STRATA_CHECK(params.eps > 0.0f && params.momentum >= 0.0f && params.momentum <= 1.0f,
               "{}({}): eps must be positive and momentum between 0 and 1", type_name, norm_repr());
  const cudaStream_t stream = current_stream();
  if (params.affine == BatchNormAffine::weight_and_bias) {
    Tensor weight = Tensor::empty({num_features}, DType::f32, stream);
    weight.fill(1.0, stream);
    weight_ = register_parameter("weight", weight);
  }
  if (params.affine != BatchNormAffine::none) {
    bias_ = register_parameter("bias", Tensor::zeros({num_features}, DType::f32, stream));
  }
  if (track_running_stats) {
    running_.mean = register_buffer("running_mean", Tensor::zeros({num_features}, DType::f32, stream));
    Tensor running_var = Tensor::empty({num_features}, DType::f32, stream);
    running_var.fill(1.0, stream);
    running_.var = register_buffer("running_var", running_var);
    running_.num_batches_tracked =
        register_buffer("num_batches_tracked", Tensor::zeros(Shape(), DType::i64, stream));
  }
}

std::string BatchNorm2dBase::norm_repr() const {
  const char* affine = params_.affine == BatchNormAffine::weight_and_bias ? "True"
                       : params_.affine == BatchNormAffine::none          ? "False"
                                                                          : "'bias_only'";
  return fmt::format("{}, eps={}, momentum={}, affine={}, track_running_stats={}", num_features_,
                     detail::python_float(params_.eps), detail::python_float(params_.momentum), affine,
                     detail::python_bool(track_running_stats_));
}

void BatchNorm2dBase::check_input(const Tensor& x) const {
  STRATA_CHECK(x.dim() == 4, "expected a 4-D input (N, {}, H, W), got input {}", num_features_, x.shape());
  STRATA_CHECK(x.size(1) == num_features_, "expected {} channels, got input {}", num_features_, x.shape());
}

BatchNorm2d::BatchNorm2d(std::int64_t num_features, const BatchNorm2dOptions& options)
    : BatchNorm2dBase("BatchNorm2d", num_features,
                      {.eps = options.eps, .momentum = options.momentum, .affine = options.affine},
                      options.track_running_stats),
      engine_(options.engine) {}

std::string BatchNorm2d::summary() const { return fmt::format("BatchNorm2d {}", num_features()); }

Tensor BatchNorm2d::forward_impl(const Tensor& x) {
  return F::batch_norm2d(x, weight(), bias(), running(), uses_batch_statistics(), norm_params(), engine_);
}

bool BatchNorm2d::take_engine(Engine engine) {
  engine_ = engine;
  return true;
}

}  // namespace strata::nn
