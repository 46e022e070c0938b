// Pooling on cuDNN in the simulator build: always refused, so the run functions are never
// reached (they throw NotSupported all the same).
#include <fmt/format.h>

#include "kernels/cudnn/pool2d_cudnn_backend.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"

namespace strata::kernels::cudnn_pool_backend {

namespace {
[[noreturn]] void unavailable() { throw NotSupported(fmt::format("pooling on cuDNN: {}", cudnn_unavailable_reason())); }
}  // namespace

std::string refusal(const CudnnPoolWindow& /*window*/) { return std::string(cudnn_unavailable_reason()); }

void forward(const CudnnPoolWindow&, DType, const void*, void*, cudaStream_t) { unavailable(); }
void backward(const CudnnPoolWindow&, DType, const void*, const void*, const void*, void*, cudaStream_t) {
  unavailable();
}

}  // namespace strata::kernels::cudnn_pool_backend
