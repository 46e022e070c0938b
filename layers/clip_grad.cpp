// clip_grad_norm_: the parameters' defined gradients handed to kernels::clip_grad_norm.
#include "strata/layers/clip_grad.h"

#include <vector>

namespace strata::optim {

Tensor clip_grad_norm_(std::span<const Tensor> params, double max_norm, GradNormType norm_type, cudaStream_t stream) {
  std::vector<Tensor> gradients;  // share the gradients' storage: the clip scales them in place
  for (const Tensor& param : params) {
    if (param.defined() && param.grad().defined()) gradients.push_back(param.grad());
  }
  return kernels::clip_grad_norm(gradients, {.max_norm = max_norm, .norm_type = norm_type}, stream);
}

}  // namespace strata::optim
