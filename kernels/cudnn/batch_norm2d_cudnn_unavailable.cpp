// batch_norm2d on cuDNN in the simulator build: always refused, so the run functions are
// never reached (they throw NotSupported all the same).
#include <fmt/format.h>

#include "kernels/cudnn/batch_norm2d_cudnn_backend.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"

namespace strata::kernels::cudnn_backend {

namespace {
[[noreturn]] void unavailable() {
  throw NotSupported(fmt::format("batch_norm2d on cuDNN: {}", cudnn_unavailable_reason()));
}
}  // namespace

std::string batch_norm2d_refusal() { return std::string(cudnn_unavailable_reason()); }

void batch_norm2d_forward_training(const Tensor&, const Tensor&, const Tensor&, BatchNormRunningStats&, Tensor&,
                                   BatchNormSaved&, const BatchNormParams&, cudaStream_t) {
  unavailable();
}
void batch_norm2d_forward_eval(const Tensor&, const Tensor&, const Tensor&, const BatchNormRunningStats&, Tensor&,
                               const BatchNormParams&, cudaStream_t) {
  unavailable();
}
void batch_norm2d_backward(const Tensor&, const Tensor&, const Tensor&, const BatchNormSaved&, BatchNormGradients&,
                           const BatchNormParams&, cudaStream_t) {
  unavailable();
}

}  // namespace strata::kernels::cudnn_backend
