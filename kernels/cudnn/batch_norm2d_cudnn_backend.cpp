// batch_norm2d on cuDNN, the CUDA build's backend (kernels/cudnn/batch_norm2d_cudnn_backend.h):
// cuDNN's legacy batch normalisation in mode CUDNN_BATCHNORM_SPATIAL, on descriptors made per
// call (host-side structs), with constant ones and zeros standing in for an absent weight or
// bias and scratch for the gradients not asked for (see kernels/cudnn/batch_norm2d_cudnn.h).
// x, y, dL_dy and dL_dx are described in their dtype (f32, f16 or bf16) and x's memory order
// (NCHW, or NHWC for channels-last; the launchers' checks make the four alike); the
// per-channel descriptor cuDNN derives from x is float for all three, as the weight, bias and
// statistics.
#include <cstddef>
#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "core/check.h"
#include "core/cudnn.h"
#include "kernels/cudnn/batch_norm2d_cudnn_backend.h"
#include "kernels/cudnn/cudnn_common.h"
#include "strata/core/allocator.h"
#include "strata/core/engine.h"

namespace strata::kernels::cudnn_backend {

// The custom kernels accept any eps >= 0; so must cuDNN, or the refusal needs an eps clause.
static_assert(CUDNN_BN_MIN_EPSILON == 0.0, "cuDNN's minimum batch-norm eps is no longer 0: refuse smaller eps");

namespace {

constexpr float kOne = 1.0f;
constexpr float kZero = 0.0f;
constexpr cudnnBatchNormMode_t kMode = CUDNN_BATCHNORM_SPATIAL;

float* data_or_null(Tensor& tensor) { return tensor.defined() ? tensor.data<float>() : nullptr; }

// A (C) f32 device buffer on stream with every element value, for an absent weight (1) or
// bias (0); cudnnSetTensor writes it on the handle's stream, so it is stream-ordered.
DeviceBuffer constant_channels(cudnnHandle_t handle, cudnnTensorDescriptor_t channel_descriptor, std::int64_t channels,
                               float value, cudaStream_t stream) {
  DeviceBuffer buffer = allocate_device(static_cast<std::size_t>(channels) * sizeof(float), stream);
  STRATA_CUDNN_CHECK(cudnnSetTensor(handle, channel_descriptor, buffer.data(), &value),
                     "batch_norm2d constant {} for {} channels", value, channels);
  return buffer;
}

// What every direction passes cuDNN: the handle on the op's stream, the descriptors of x
// (N, C, H, W) in x's dtype and memory order (also y's and the gradients': the checks make
// them alike) and of the per-channel f32 tensors (1, C, 1, 1), as cuDNN derives
// them for spatial batch norm, and the scale and shift: the weight and bias or, where the
// layer has none, constant ones and zeros held here, since cuDNN always takes both.
struct Operands {
  cudnnHandle_t handle;
  detail::CudnnTensorDescriptor x_descriptor;
  detail::CudnnTensorDescriptor channel_descriptor;
  DeviceBuffer ones;            // the stand-in weight, allocated only when there is none
  DeviceBuffer zeros;           // the stand-in bias, allocated only when there is none
  const void* scale = nullptr;  // (C): weight, or ones
  const void* shift = nullptr;  // (C): bias, or zeros; null for the backward, which takes no bias

  // The backward's: the scale only.
  Operands(const Tensor& x, const Tensor& weight, cudaStream_t stream) : handle(detail::cudnn_handle(stream)) {
    cudnn_detail::set_activation_descriptor(x_descriptor, x, "batch_norm2d x");
    STRATA_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(channel_descriptor, x_descriptor, kMode),
                       "batch_norm2d channel descriptor (x {})", x.shape().to_string());
    scale = weight.defined() ? weight.data<float>()
                             : (ones = constant_channels(handle, channel_descriptor, x.size(1), 1.0f, stream)).data();
  }

  // The forwards': the scale and the shift.
  Operands(const Tensor& x, const Tensor& weight, const Tensor& bias, cudaStream_t stream)
      : Operands(x, weight, stream) {
    shift = bias.defined() ? bias.data<float>()
                           : (zeros = constant_channels(handle, channel_descriptor, x.size(1), 0.0f, stream)).data();
  }
};

}  // namespace

std::string batch_norm2d_refusal() { return std::string(cudnn_unavailable_reason()); }

void batch_norm2d_forward_training(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                   BatchNormRunningStats& running, Tensor& y, BatchNormSaved& saved,
                                   const BatchNormParams& params, cudaStream_t stream) {
  const Operands operands(x, weight, bias, stream);
  STRATA_CUDNN_CHECK(
      cudnnBatchNormalizationForwardTraining(
          operands.handle, kMode, &kOne, &kZero, operands.x_descriptor, x.memory_ptr(), operands.x_descriptor,
          y.memory_ptr(), operands.channel_descriptor, operands.scale, operands.shift,
          static_cast<double>(params.momentum), data_or_null(running.mean), data_or_null(running.var),
          static_cast<double>(params.eps), saved.mean.data<float>(), saved.invstd.data<float>()),
      "batch_norm2d_forward_training (x {}, eps {}, momentum {})", x.shape().to_string(), params.eps, params.momentum);
}

void batch_norm2d_forward_eval(const Tensor& x, const Tensor& weight, const Tensor& bias,
                               const BatchNormRunningStats& running, Tensor& y, const BatchNormParams& params,
                               cudaStream_t stream) {
  const Operands operands(x, weight, bias, stream);
  STRATA_CUDNN_CHECK(
      cudnnBatchNormalizationForwardInference(
          operands.handle, kMode, &kOne, &kZero, operands.x_descriptor, x.memory_ptr(), operands.x_descriptor,
          y.memory_ptr(), operands.channel_descriptor, operands.scale, operands.shift, running.mean.data<float>(),
          running.var.data<float>(), static_cast<double>(params.eps)),
      "batch_norm2d_forward_eval (x {}, eps {})", x.shape().to_string(), params.eps);
}

void batch_norm2d_backward(const Tensor& dL_dy, const Tensor& x, const Tensor& weight, const BatchNormSaved& saved,
                           BatchNormGradients& gradients, const BatchNormParams& params, cudaStream_t stream) {
  const Operands operands(x, weight, stream);
  const std::size_t channel_bytes = static_cast<std::size_t>(x.size(1)) * sizeof(float);
  // cuDNN writes all three gradients: the ones not asked for go to scratch.
  DeviceBuffer dL_dx_scratch;
  DeviceBuffer dL_dweight_scratch;
  DeviceBuffer dL_dbias_scratch;
  void* dL_dx = gradients.dL_dx.defined() ? gradients.dL_dx.memory_ptr() : nullptr;  // in x's memory order
  void* dL_dweight = data_or_null(gradients.dL_dweight);
  void* dL_dbias = data_or_null(gradients.dL_dbias);
  if (dL_dx == nullptr) {  // scratch in any order: packed, as x
    dL_dx = (dL_dx_scratch = allocate_device(static_cast<std::size_t>(x.numel()) * element_size(x.dtype()), stream))
                .data();
  }
  if (dL_dweight == nullptr) dL_dweight = (dL_dweight_scratch = allocate_device(channel_bytes, stream)).data();
  if (dL_dbias == nullptr) dL_dbias = (dL_dbias_scratch = allocate_device(channel_bytes, stream)).data();
  STRATA_CUDNN_CHECK(cudnnBatchNormalizationBackward(
                         operands.handle, kMode, &kOne, &kZero, &kOne, &kZero, operands.x_descriptor, x.memory_ptr(),
                         operands.x_descriptor, dL_dy.memory_ptr(), operands.x_descriptor, dL_dx,
                         operands.channel_descriptor, operands.scale, dL_dweight, dL_dbias,
                         static_cast<double>(params.eps), saved.mean.data<float>(), saved.invstd.data<float>()),
                     "batch_norm2d_backward (x {}, eps {})", x.shape().to_string(), params.eps);
}

}  // namespace strata::kernels::cudnn_backend
