// conv2d backward-bias: dL_dbias[k] = sum of dL_dy[:, k, :, :], its N*P*Q values added in
// double in a fixed order, the same for a channels-last dL_dy (channel_reduction.cuh, which
// coalesces that layout's loads): deterministic and accurate, and cheap for a reduction that
// only streams memory. One kernel for every storage dtype (f32, f16, bf16): each value
// converts to double, dL_dbias rounds once from the double sum to the dtype (and is stored
// widened where dL_dbias is f32 for a reduced dL_dy).
#include <limits>

#include "core/check.h"
#include "core/dtype_dispatch.h"
#include "core/nvtx.h"
#include "kernels/channel_reduction.cuh"
#include "kernels/common.cuh"
#include "kernels/conv2d_checks.h"
#include "kernels/conv2d_tiling.cuh"
#include "kernels/tensor_checks.h"
#include "strata/kernels/conv2d.h"

namespace strata::kernels {

namespace {

// Out: T, or f32 (the sum rounded to T, then widened exactly: autocast's gradient of an f32
// bias, without the cast's own pass).
template <typename T, typename Out>
struct BiasReduction {
  static constexpr int kSums = 1;
  struct Channel {};

  const T* dL_dy;  // (N, K, P, Q), either layout
  Out* dL_dbias;   // (K)

  __device__ Channel channel(std::int64_t /*c*/) const { return {}; }
  __device__ void add(const Channel& /*channel*/, std::int64_t index, std::int64_t /*c*/,
                      double (&sums)[kSums]) const {
    sums[0] += detail::to_double(dL_dy[index]);
  }
  __device__ void finish(const Channel& /*channel*/, std::int64_t c, const double (&sums)[kSums]) const {
    dL_dbias[c] = detail::convert_element<Out>(detail::convert_element<T>(sums[0]));
  }
};

}  // namespace

void conv2d_backward_bias(const Tensor& dL_dy, Tensor& dL_dbias, cudaStream_t stream) {
  constexpr std::string_view kOp = "conv2d_backward_bias";
  NvtxRange range("conv2d_backward_bias");
  expect_conv2d_backward_bias_arguments(dL_dy, dL_dbias);
  constexpr std::int64_t kInt32Max = std::numeric_limits<std::int32_t>::max();
  STRATA_CHECK(dL_dy.size(1) <= kInt32Max, "{}: dL_dy {} must have fewer than 2^31 channels (one block each)", kOp,
               dL_dy.shape().to_string());

  // A channels-last dL_dy whose layouts coincide (K == 1 or P * Q == 1) reads as contiguous.
  const channel_reduction::Extent extent{.batch = dL_dy.size(0),
                                         .channels = dL_dy.size(1),
                                         .plane = dL_dy.size(2) * dL_dy.size(3),
                                         .channels_last = !dL_dy.is_contiguous()};
  conv2d_detail::dispatch_conv2d_dtype(dL_dy.dtype(), [&]<typename T>(std::type_identity<T>) {
    const auto reduce_into = [&]<typename Out>(Out* out) {
      channel_reduction::launch(BiasReduction<T, Out>{memory_elements<T>(dL_dy), out}, extent, stream,
                                "conv2d_backward_bias");
    };
    if (dL_dbias.dtype() == DType::f32) {
      reduce_into(dL_dbias.data<float>());
    } else {
      reduce_into(dL_dbias.data<T>());
    }
  });
}

Tensor conv2d_backward_bias(const Tensor& dL_dy, cudaStream_t stream) {
  expect_rank(dL_dy, 4, "conv2d_backward_bias", "dL_dy");
  Tensor dL_dbias = Tensor::empty({dL_dy.size(1)}, dL_dy.dtype(), stream);  // (K)
  conv2d_backward_bias(dL_dy, dL_dbias, stream);
  return dL_dbias;
}

}  // namespace strata::kernels
