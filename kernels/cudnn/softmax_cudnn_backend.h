// The backend half of softmax on cuDNN (kernels/cudnn/softmax_cudnn.h): cuDNN's routines in
// the CUDA build (softmax_cudnn_backend.cpp), a refusal in the simulator build
// (softmax_cudnn_unavailable.cpp). Arguments are already checked; the run functions are
// called only after the refusal came back empty.
#pragma once

#include <cstdint>
#include <string>

#include <cuda_runtime_api.h>

namespace strata::kernels::cudnn_backend {

enum class SoftmaxKind : bool { softmax, log_softmax };

// Why cuDNN cannot run here at all (no cuDNN in this build or process); empty when it can.
std::string softmax_refusal();

// Pointers to f32 device memory of rows x classes values, each row one instance.
void softmax_forward(SoftmaxKind kind, std::int64_t rows, std::int64_t classes, const float* x, float* y,
                     cudaStream_t stream);
void softmax_backward(SoftmaxKind kind, std::int64_t rows, std::int64_t classes, const float* dL_dy, const float* y,
                      float* dL_dx, cudaStream_t stream);

}  // namespace strata::kernels::cudnn_backend
