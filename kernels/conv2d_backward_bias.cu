// conv2d backward-bias: dL_dbias[k] = sum of dL_dy[:, k, :, :]. One block per channel adds
// its N*P*Q values in a fixed order (strided per thread, then a shuffle tree; the same order
// for a channels-last dL_dy, so the same bits), in double:
// deterministic and accurate, and cheap for a reduction that only streams memory. One kernel
// for every storage dtype (f32, f16, bf16): each value converts to double, dL_dbias rounds
// once from the double sum to the dtype.
#include <limits>

#include "core/check.h"
#include "core/dtype_dispatch.h"
#include "core/nvtx.h"
#include "kernels/common.cuh"
#include "kernels/conv2d_checks.h"
#include "kernels/conv2d_tiling.cuh"
#include "kernels/tensor_checks.h"
#include "strata/kernels/conv2d.h"

namespace strata::kernels {

namespace {

constexpr int kBiasThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kBiasThreads)
    conv2d_backward_bias_kernel(const T* __restrict__ dL_dy,  // (N, K, P, Q), in layout
                                T* __restrict__ dL_dbias,     // (K)
                                int batch, int plane, conv2d_detail::ActivationLayout layout) {
  __shared__ double scratch[kWarpSize];
  const std::int64_t channel = blockIdx.x;
  const int count = batch * plane;  // < 2^31, checked by the launcher
  double sum = 0.0;
  for (std::int64_t i = threadIdx.x; i < count; i += kBiasThreads) {  // 64-bit: i + 256 may pass 2^31
    const int pixel = static_cast<int>(i);
    const int image = pixel / plane;
    sum += detail::to_double(dL_dy[layout.offset(image, channel, pixel - image * plane)]);
  }
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) dL_dbias[channel] = detail::convert_element<T>(sum);
}

}  // namespace

void conv2d_backward_bias(const Tensor& dL_dy, Tensor& dL_dbias, cudaStream_t stream) {
  constexpr std::string_view kOp = "conv2d_backward_bias";
  NvtxRange range("conv2d_backward_bias");
  expect_conv2d_backward_bias_arguments(dL_dy, dL_dbias);
  const std::int64_t channels = dL_dy.size(1);
  constexpr std::int64_t kInt32Max = std::numeric_limits<std::int32_t>::max();
  STRATA_CHECK(channels <= kInt32Max && dL_dy.size(0) * dL_dy.size(2) * dL_dy.size(3) <= kInt32Max,
               "{}: dL_dy {} must have fewer than 2^31 channels and N*P*Q below 2^31", kOp, dL_dy.shape().to_string());

  conv2d_detail::dispatch_conv2d_dtype(dL_dy.dtype(), [&]<typename T>(std::type_identity<T>) {
    launch(conv2d_backward_bias_kernel<T>,
           LaunchConfig{.grid = static_cast<unsigned>(channels), .block = kBiasThreads, .stream = stream,
                        .name = "conv2d_backward_bias"},
           memory_elements<T>(dL_dy), dL_dbias.data<T>(), static_cast<int>(dL_dy.size(0)),
           static_cast<int>(dL_dy.size(2) * dL_dy.size(3)),
           conv2d_detail::activation_layout(dL_dy.memory_format(), channels, dL_dy.size(2) * dL_dy.size(3)));
  });
}

Tensor conv2d_backward_bias(const Tensor& dL_dy, cudaStream_t stream) {
  expect_rank(dL_dy, 4, "conv2d_backward_bias", "dL_dy");
  Tensor dL_dbias = Tensor::empty({dL_dy.size(1)}, dL_dy.dtype(), stream);  // (K)
  conv2d_backward_bias(dL_dy, dL_dbias, stream);
  return dL_dbias;
}

}  // namespace strata::kernels
