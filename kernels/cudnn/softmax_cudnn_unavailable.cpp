// softmax on cuDNN in the simulator build: always refused, so the run functions are never
// reached (they throw NotSupported all the same).
#include <fmt/format.h>

#include "kernels/cudnn/softmax_cudnn_backend.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"

namespace strata::kernels::cudnn_backend {

namespace {
[[noreturn]] void unavailable() { throw NotSupported(fmt::format("softmax on cuDNN: {}", cudnn_unavailable_reason())); }
}  // namespace

std::string softmax_refusal() { return std::string(cudnn_unavailable_reason()); }

void softmax_forward(SoftmaxKind, DType, std::int64_t, std::int64_t, const void*, void*, cudaStream_t) {
  unavailable();
}
void softmax_backward(SoftmaxKind, DType, std::int64_t, std::int64_t, const void*, const void*, void*, cudaStream_t) {
  unavailable();
}

}  // namespace strata::kernels::cudnn_backend
