// conv2d on cuDNN in the simulator build: always refused, so the run functions are never
// reached (they throw NotSupported all the same).
#include <fmt/format.h>

#include "kernels/cudnn/conv2d_cudnn_backend.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"

namespace strata::kernels::cudnn_backend {

namespace {
[[noreturn]] void unavailable() { throw NotSupported(fmt::format("conv2d on cuDNN: {}", cudnn_unavailable_reason())); }
}  // namespace

std::string refusal(const Conv2dShape& /*shape*/, DType /*dtype*/, Conv2dCudnnFormats /*formats*/,
                    cudaStream_t /*stream*/) {
  return std::string(cudnn_unavailable_reason());
}

void forward(const Conv2dShape&, DType, Conv2dCudnnFormats, const void*, const void*, const void*, void*,
             cudaStream_t) {
  unavailable();
}
void backward_data(const Conv2dShape&, DType, Conv2dCudnnFormats, const void*, const void*, void*, cudaStream_t) {
  unavailable();
}
void backward_filter(const Conv2dShape&, DType, Conv2dCudnnFormats, const void*, const void*, void*, cudaStream_t) {
  unavailable();
}
void backward_bias(const Shape&, DType, MemoryFormat, const void*, void*, cudaStream_t) { unavailable(); }

}  // namespace strata::kernels::cudnn_backend
