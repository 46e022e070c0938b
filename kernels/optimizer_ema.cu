// The moving average of weights, and the copy and swap of tensor lists, as multi-tensor
// maps (kernels/multi_tensor.cuh).
#include "strata/kernels/optimizer_ema.h"

#include <cmath>

#include "core/check.h"
#include "core/nvtx.h"
#include "kernels/multi_tensor.cuh"

namespace strata::kernels {

namespace {

// Values: average (written), parameter.
struct EmaOp {
  static constexpr int kDepth = 2;
  static constexpr unsigned kWrittenLists = 0b01;
  DeviceScalar decay;

  __device__ EmaOp resolve() const { return EmaOp{DeviceScalar{decay.get()}}; }
  __device__ bool is_identity() const { return false; }
  __device__ void operator()(float (&v)[kDepth]) const {
    // 1 - decay is exact in float for decay in [0.5, 1], the usual range.
    v[0] = fmaf(decay.value, v[0], (1.0f - decay.value) * v[1]);
  }
};

// Values: destination (written), source.
struct CopyOp {
  static constexpr int kDepth = 2;
  static constexpr unsigned kWrittenLists = 0b01;

  __device__ CopyOp resolve() const { return *this; }
  __device__ bool is_identity() const { return false; }
  __device__ void operator()(float (&v)[kDepth]) const { v[0] = v[1]; }
};

// Values: a and b (both written).
struct SwapOp {
  static constexpr int kDepth = 2;
  static constexpr unsigned kWrittenLists = 0b11;

  __device__ SwapOp resolve() const { return *this; }
  __device__ bool is_identity() const { return false; }
  __device__ void operator()(float (&v)[kDepth]) const {
    const float a = v[0];
    v[0] = v[1];
    v[1] = a;
  }
};

}  // namespace

void ema_update(std::span<Tensor> averages, std::span<const Tensor> parameters, const EmaParams& params,
                cudaStream_t stream) {
  NvtxRange range("ema_update");
  if (params.decay_device == nullptr) {
    STRATA_CHECK(params.decay >= 0.0 && params.decay <= 1.0, "ema_update: decay must be in [0, 1], got {}",
                 params.decay);
  }
  const NamedTensorList lists[] = {{"averages", averages, true}, {"parameters", parameters, false}};
  expect_parallel_lists("ema_update", lists);
  const EmaOp op{
      DeviceScalar{static_cast<float>(params.decay_device == nullptr ? params.decay : 0.0), params.decay_device}};
  launch_multi_tensor_map(std::array{std::span<const Tensor>(averages), parameters}, op, stream, "ema_update");
}

void copy_tensors(std::span<const Tensor> sources, std::span<Tensor> destinations, cudaStream_t stream) {
  NvtxRange range("copy_tensors");
  const NamedTensorList lists[] = {{"destinations", destinations, true}, {"sources", sources, false}};
  expect_parallel_lists("copy_tensors", lists);
  launch_multi_tensor_map(std::array{std::span<const Tensor>(destinations), sources}, CopyOp{}, stream, "copy_tensors");
}

void swap_tensors(std::span<Tensor> a, std::span<Tensor> b, cudaStream_t stream) {
  NvtxRange range("swap_tensors");
  const NamedTensorList lists[] = {{"a", a, true}, {"b", b, true}};
  expect_parallel_lists("swap_tensors", lists);
  launch_multi_tensor_map(std::array{std::span<const Tensor>(a), std::span<const Tensor>(b)}, SwapOp{}, stream,
                          "swap_tensors");
}

}  // namespace strata::kernels
