// batch_norm2d on cuDNN, the CUDA build's backend (kernels/cudnn/batch_norm2d_cudnn_backend.h):
// cuDNN's legacy batch normalisation in mode CUDNN_BATCHNORM_SPATIAL, on descriptors made per
// call (host-side structs), with constant ones and zeros standing in for an absent weight or
// bias and scratch for the gradients not asked for (see kernels/cudnn/batch_norm2d_cudnn.h).
#include <cstddef>
#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "core/check.h"
#include "core/cudnn.h"
#include "kernels/cudnn/batch_norm2d_cudnn_backend.h"
#include "strata/core/allocator.h"
#include "strata/core/engine.h"

namespace strata::kernels::cudnn_backend {

// The custom kernels accept any eps >= 0; so must cuDNN, or the refusal needs an eps clause.
static_assert(CUDNN_BN_MIN_EPSILON == 0.0, "cuDNN's minimum batch-norm eps is no longer 0: refuse smaller eps");

namespace {

constexpr float kOne = 1.0f;
constexpr float kZero = 0.0f;
constexpr cudnnBatchNormMode_t kMode = CUDNN_BATCHNORM_SPATIAL;

int as_int(std::int64_t value) { return static_cast<int>(value); }

// x (N, C, H, W) and the per-channel tensors (1, C, 1, 1), as cuDNN derives them for spatial
// batch norm.
struct Descriptors {
  detail::CudnnTensorDescriptor x;
  detail::CudnnTensorDescriptor channels;

  explicit Descriptors(const Shape& shape) {
    STRATA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, as_int(shape[0]),
                                                  as_int(shape[1]), as_int(shape[2]), as_int(shape[3])),
                       "batch_norm2d descriptor (x {})", shape.to_string());
    STRATA_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(channels, x, kMode), "batch_norm2d channel descriptor (x {})",
                       shape.to_string());
  }
};

// A (C) f32 device buffer on stream with every element value, for an absent weight (1) or
// bias (0); cudnnSetTensor writes it on the handle's stream, so it is stream-ordered.
DeviceBuffer constant_channels(cudnnHandle_t handle, const Descriptors& descriptors, std::int64_t channels, float value,
                               cudaStream_t stream) {
  DeviceBuffer buffer = allocate_device(static_cast<std::size_t>(channels) * sizeof(float), stream);
  STRATA_CUDNN_CHECK(cudnnSetTensor(handle, descriptors.channels, buffer.data(), &value),
                     "batch_norm2d constant {} for {} channels", value, channels);
  return buffer;
}

const float* data_or_null(const Tensor& tensor) { return tensor.defined() ? tensor.data<float>() : nullptr; }
float* data_or_null(Tensor& tensor) { return tensor.defined() ? tensor.data<float>() : nullptr; }

}  // namespace

std::string batch_norm2d_refusal() { return std::string(cudnn_unavailable_reason()); }

void batch_norm2d_forward_training(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                   BatchNormRunningStats& running, Tensor& y, BatchNormSaved& saved,
                                   const BatchNormParams& params, cudaStream_t stream) {
  const cudnnHandle_t handle = detail::cudnn_handle(stream);
  const Descriptors descriptors(x.shape());
  const std::int64_t channels = x.size(1);
  DeviceBuffer ones;
  DeviceBuffer zeros;
  const void* scale = data_or_null(weight);
  const void* shift = data_or_null(bias);
  if (scale == nullptr) scale = (ones = constant_channels(handle, descriptors, channels, 1.0f, stream)).data();
  if (shift == nullptr) shift = (zeros = constant_channels(handle, descriptors, channels, 0.0f, stream)).data();
  STRATA_CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(
                         handle, kMode, &kOne, &kZero, descriptors.x, x.data<float>(), descriptors.x, y.data<float>(),
                         descriptors.channels, scale, shift, static_cast<double>(params.momentum),
                         data_or_null(running.mean), data_or_null(running.var), static_cast<double>(params.eps),
                         saved.mean.data<float>(), saved.invstd.data<float>()),
                     "batch_norm2d_forward_training (x {}, eps {}, momentum {})", x.shape().to_string(), params.eps,
                     params.momentum);
}

void batch_norm2d_forward_eval(const Tensor& x, const Tensor& weight, const Tensor& bias,
                               const BatchNormRunningStats& running, Tensor& y, const BatchNormParams& params,
                               cudaStream_t stream) {
  const cudnnHandle_t handle = detail::cudnn_handle(stream);
  const Descriptors descriptors(x.shape());
  const std::int64_t channels = x.size(1);
  DeviceBuffer ones;
  DeviceBuffer zeros;
  const void* scale = data_or_null(weight);
  const void* shift = data_or_null(bias);
  if (scale == nullptr) scale = (ones = constant_channels(handle, descriptors, channels, 1.0f, stream)).data();
  if (shift == nullptr) shift = (zeros = constant_channels(handle, descriptors, channels, 0.0f, stream)).data();
  STRATA_CUDNN_CHECK(cudnnBatchNormalizationForwardInference(
                         handle, kMode, &kOne, &kZero, descriptors.x, x.data<float>(), descriptors.x, y.data<float>(),
                         descriptors.channels, scale, shift, running.mean.data<float>(), running.var.data<float>(),
                         static_cast<double>(params.eps)),
                     "batch_norm2d_forward_eval (x {}, eps {})", x.shape().to_string(), params.eps);
}

void batch_norm2d_backward(const Tensor& dL_dy, const Tensor& x, const Tensor& weight, const BatchNormSaved& saved,
                           BatchNormGradients& gradients, const BatchNormParams& params, cudaStream_t stream) {
  const cudnnHandle_t handle = detail::cudnn_handle(stream);
  const Descriptors descriptors(x.shape());
  const std::int64_t channels = x.size(1);
  const std::size_t channel_bytes = static_cast<std::size_t>(channels) * sizeof(float);
  DeviceBuffer ones;
  const void* scale = data_or_null(weight);
  if (scale == nullptr) scale = (ones = constant_channels(handle, descriptors, channels, 1.0f, stream)).data();
  // cuDNN writes all three gradients: the ones not asked for go to scratch.
  DeviceBuffer dL_dx_scratch;
  DeviceBuffer dL_dweight_scratch;
  DeviceBuffer dL_dbias_scratch;
  void* dL_dx = data_or_null(gradients.dL_dx);
  void* dL_dweight = data_or_null(gradients.dL_dweight);
  void* dL_dbias = data_or_null(gradients.dL_dbias);
  if (dL_dx == nullptr) {
    dL_dx = (dL_dx_scratch = allocate_device(static_cast<std::size_t>(x.numel()) * sizeof(float), stream)).data();
  }
  if (dL_dweight == nullptr) dL_dweight = (dL_dweight_scratch = allocate_device(channel_bytes, stream)).data();
  if (dL_dbias == nullptr) dL_dbias = (dL_dbias_scratch = allocate_device(channel_bytes, stream)).data();
  STRATA_CUDNN_CHECK(cudnnBatchNormalizationBackward(
                         handle, kMode, &kOne, &kZero, &kOne, &kZero, descriptors.x, x.data<float>(), descriptors.x,
                         dL_dy.data<float>(), descriptors.x, dL_dx, descriptors.channels, scale, dL_dweight, dL_dbias,
                         static_cast<double>(params.eps), saved.mean.data<float>(), saved.invstd.data<float>()),
                     "batch_norm2d_backward (x {}, eps {})", x.shape().to_string(), params.eps);
}

}  // namespace strata::kernels::cudnn_backend
