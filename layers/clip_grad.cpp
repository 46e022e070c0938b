// clip_grad_norm_: the parameters' defined gradients handed to kernels::clip_grad_norm.
#include "strata/layers/clip_grad.h"

#include <vector>

#include "strata/core/op.h"

namespace strata::optim {

Tensor clip_grad_norm_(std::span<const Tensor> params, double max_norm, GradNormType norm_type, cudaStream_t stream) {
  std::vector<Tensor> gradients;  // share the gradients' storage: the clip scales them in place
  for (const Tensor& param : params) {
    if (param.defined() && param.grad().defined()) gradients.push_back(param.grad());
  }
  const graph::PhaseGuard phase(graph::Phase::optimizer);
  Tensor total_norm = Tensor::empty(Shape{}, DType::f32, stream);  // ()
  std::vector<Tensor> written = gradients;  // scaled in place: read and written
  written.push_back(total_norm);
  const kernels::ClipGradNormParams clip{.max_norm = max_norm, .norm_type = norm_type};
  graph::run_op_on(stream, "clip_grad_norm", gradients, written,
                   [gradients, total_norm, clip](cudaStream_t s) mutable {
                     kernels::clip_grad_norm(gradients, total_norm, clip, s);
                   });
  return total_norm;
}

}  // namespace strata::optim
