// The backend half of softmax on cuDNN (kernels/cudnn/softmax_cudnn.h): cuDNN's routines in
// the CUDA build (softmax_cudnn_backend.cpp), a refusal in the simulator build
// (softmax_cudnn_unavailable.cpp). Arguments are already checked; the run functions are
// called only after the refusal came back empty.
#pragma once

#include <cstdint>
#include <string>

#include <cuda_runtime_api.h>

#include "strata/core/dtype.h"

namespace strata::kernels::cudnn_backend {

enum class SoftmaxKind : bool { softmax, log_softmax };

// Why cuDNN cannot run here at all (no cuDNN in this build or process); empty when it can.
std::string softmax_refusal();

// Pointers to device memory of rows x classes values of dtype (f32, f16 or bf16; cuDNN
// computes in f32), each row one instance.
void softmax_forward(SoftmaxKind kind, DType dtype, std::int64_t rows, std::int64_t classes, const void* x, void* y,
                     cudaStream_t stream);
void softmax_backward(SoftmaxKind kind, DType dtype, std::int64_t rows, std::int64_t classes, const void* dL_dy,
                      const void* y, void* dL_dx, cudaStream_t stream);

}  // namespace strata::kernels::cudnn_backend
