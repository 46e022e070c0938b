// Linear: PyTorch's nn.Linear over F::linear.
#include <fmt/format.h>

#include "core/check.h"
#include "core/format.h"
#include "layers/module_format.h"
#include "strata/core/generator.h"
#include "strata/core/stream.h"
#include "strata/layers/functional.h"
#include "strata/layers/init.h"
#include "strata/layers/modules.h"

namespace strata::nn {

Linear::Linear(std::int64_t in_features, std::int64_t out_features, const LinearOptions& options)
    : in_features_(in_features), out_features_(out_features) {
  STRATA_CHECK(in_features >= 1 && out_features >= 1,
               "Linear(in_features={}, out_features={}): both must be at least 1", in_features, out_features);
  const cudaStream_t stream = current_stream();
  Tensor weight = Tensor::empty({out_features, in_features}, DType::f32, stream);
  const std::uint64_t seed = default_generator().next_seed();
  if (options.bias) {
    Tensor bias = Tensor::empty({out_features}, DType::f32, stream);
    init::default_linear_init(weight, bias, seed, stream);
    weight_ = register_parameter("weight", weight);
    bias_ = register_parameter("bias", bias);
  } else {
    init::default_linear_init(weight, seed, stream);
    weight_ = register_parameter("weight", weight);
  }
}

std::string Linear::extra_repr() const {
  return fmt::format("in_features={}, out_features={}, bias={}", in_features_, out_features_,
                     detail::python_bool(bias_.defined()));
}

std::string Linear::summary() const { return fmt::format("Linear {}->{}", in_features_, out_features_); }

void Linear::check_input(const Tensor& x) const {
  STRATA_CHECK(x.dim() >= 1 && x.size(x.dim() - 1) == in_features_,
               "expected {} input features (the last dimension), got input {}", in_features_, x.shape());
}

Tensor Linear::forward_impl(const Tensor& x) { return F::linear(x, weight_, bias_); }

}  // namespace strata::nn
