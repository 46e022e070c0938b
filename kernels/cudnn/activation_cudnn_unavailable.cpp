// ReLU and GELU on cuDNN in the simulator build: always refused, so the run functions are
// never reached (they throw NotSupported all the same).
#include <fmt/format.h>

#include "kernels/cudnn/activation_cudnn_backend.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"

namespace strata::kernels::cudnn_activation_backend {

namespace {
[[noreturn]] void unavailable() {
  throw NotSupported(fmt::format("activation on cuDNN: {}", cudnn_unavailable_reason()));
}
}  // namespace

std::string relu_refusal(const Shape& /*shape*/) { return std::string(cudnn_unavailable_reason()); }
std::string gelu_refusal(const Shape& /*shape*/, GeluApproximation /*approximation*/, DType /*dtype*/,
                         cudaStream_t /*stream*/) {
  return std::string(cudnn_unavailable_reason());
}

void relu_forward(const Shape&, DType, const void*, void*, cudaStream_t) { unavailable(); }
void relu_backward(const Shape&, DType, const void*, const void*, void*, cudaStream_t) { unavailable(); }
void gelu_forward(const Shape&, GeluApproximation, DType, const void*, void*, cudaStream_t) { unavailable(); }
void gelu_backward(const Shape&, GeluApproximation, DType, const void*, const void*, void*, cudaStream_t) {
  unavailable();
}

}  // namespace strata::kernels::cudnn_activation_backend
