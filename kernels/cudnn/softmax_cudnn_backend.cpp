// softmax on cuDNN, the CUDA build's backend (kernels/cudnn/softmax_cudnn_backend.h):
// cudnnSoftmaxForward and cudnnSoftmaxBackward on one tensor descriptor (rows, classes, 1, 1)
// in instance mode, made per call (a host-side struct: cheaper than a cache lookup would be),
// of the tensors' dtype (f32, f16 or bf16; the scaling factors stay float, cuDNN's rule for
// every data type but double).
#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "core/check.h"
#include "core/cudnn.h"
#include "kernels/cudnn/cudnn_common.h"
#include "kernels/cudnn/softmax_cudnn_backend.h"
#include "strata/core/engine.h"

namespace strata::kernels::cudnn_backend {

namespace {

constexpr float kOne = 1.0f;
constexpr float kZero = 0.0f;

// ACCURATE subtracts the row maximum before exponentiating, as the custom kernel does (FAST
// does not, and overflows for logits above ~88); LOG is log-softmax, computed the same way.
cudnnSoftmaxAlgorithm_t algorithm_of(SoftmaxKind kind) {
  return kind == SoftmaxKind::softmax ? CUDNN_SOFTMAX_ACCURATE : CUDNN_SOFTMAX_LOG;
}

const char* name_of(SoftmaxKind kind) { return kind == SoftmaxKind::softmax ? "softmax" : "log_softmax"; }

// (rows, classes, 1, 1) of dtype: softmax over C * H * W = classes per row, in instance mode.
// The caller checked that rows * classes fits cuDNN's 32-bit sizes.
detail::CudnnTensorDescriptor rows_descriptor(DType dtype, std::int64_t rows, std::int64_t classes) {
  detail::CudnnTensorDescriptor descriptor;
  cudnn_detail::set_nchw(descriptor, Shape{rows, classes, 1, 1}, dtype, "softmax rows");
  return descriptor;
}

}  // namespace

std::string softmax_refusal() { return std::string(cudnn_unavailable_reason()); }

void softmax_forward(SoftmaxKind kind, DType dtype, std::int64_t rows, std::int64_t classes, const void* x, void* y,
                     cudaStream_t stream) {
  const cudnnHandle_t handle = detail::cudnn_handle(stream);
  const detail::CudnnTensorDescriptor descriptor = rows_descriptor(dtype, rows, classes);
  STRATA_CUDNN_CHECK(cudnnSoftmaxForward(handle, algorithm_of(kind), CUDNN_SOFTMAX_MODE_INSTANCE, &kOne, descriptor, x,
                                         &kZero, descriptor, y),
                     "{}_forward ({} rows of {}, {})", name_of(kind), rows, classes, dtype_name(dtype));
}

void softmax_backward(SoftmaxKind kind, DType dtype, std::int64_t rows, std::int64_t classes, const void* dL_dy,
                      const void* y, void* dL_dx, cudaStream_t stream) {
  const cudnnHandle_t handle = detail::cudnn_handle(stream);
  const detail::CudnnTensorDescriptor descriptor = rows_descriptor(dtype, rows, classes);
  STRATA_CUDNN_CHECK(cudnnSoftmaxBackward(handle, algorithm_of(kind), CUDNN_SOFTMAX_MODE_INSTANCE, &kOne, descriptor, y,
                                          descriptor, dL_dy, &kZero, descriptor, dL_dx),
                     "{}_backward ({} rows of {}, {})", name_of(kind), rows, classes, dtype_name(dtype));
}

}  // namespace strata::kernels::cudnn_backend
