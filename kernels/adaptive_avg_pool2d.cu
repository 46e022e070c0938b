// adaptive_avg_pool2d forward and backward with PyTorch's bins (pool2d_windows.cuh), on the
// kernels it shares with avg_pool2d (avg_pool2d_kernels.cuh): one thread per output averages
// its bin; one thread per input gathers from the bins that contain it (a range computed in
// closed form), with no atomics and a fixed summation order, deterministic.
#include <cstdint>

#include "core/nvtx.h"
#include "kernels/avg_pool2d_kernels.cuh"
#include "kernels/pool2d_windows.cuh"
#include "strata/kernels/adaptive_pool2d.h"

namespace strata::kernels {

namespace {

using pool2d::AvgWindow;
using pool2d::IndexRange;
using pool2d::PoolAxis;

// PyTorch's adaptive bins, never empty and without padding, so a bin's padded extent is its
// size. Divided by the bin's height, then its width, as PyTorch does.
struct AdaptiveAvgBins {
  __device__ static AvgWindow window(const PoolAxis& axis, std::int64_t o) {
    const IndexRange bin = pool2d::adaptive_bin(axis, o);
    return {bin, bin.end - bin.begin};
  }
  __device__ static IndexRange covering(const PoolAxis& axis, std::int64_t i) {
    return pool2d::bins_containing(axis, i);
  }
  __device__ static float average(float sum, const AvgWindow& rows, const AvgWindow& cols) {
    return sum / static_cast<float>(rows.padded_extent) / static_cast<float>(cols.padded_extent);
  }
};

}  // namespace

void adaptive_avg_pool2d_forward(const Tensor& x, Tensor& y, const AdaptivePool2dParams& params,
                                 cudaStream_t stream) {
  constexpr const char* op = "adaptive_avg_pool2d_forward";
  const NvtxRange range(op);
  const pool2d::PoolGeometry geometry = pool2d::checked_forward(op, pool2d::adaptive_pool2d_geometry, x, y, params);
  pool2d::launch_avg_pool2d_forward(op, x, y, geometry, AdaptiveAvgBins{}, stream);
}

Tensor adaptive_avg_pool2d_forward(const Tensor& x, const AdaptivePool2dParams& params, cudaStream_t stream) {
  Tensor y =
      pool2d::empty_output("adaptive_avg_pool2d_forward", pool2d::adaptive_pool2d_geometry, x, params, stream);
  adaptive_avg_pool2d_forward(x, y, params, stream);
  return y;
}

void adaptive_avg_pool2d_backward(const Tensor& dL_dy, Tensor& dL_dx, const AdaptivePool2dParams& params,
                                  cudaStream_t stream) {
  constexpr const char* op = "adaptive_avg_pool2d_backward";
  const NvtxRange range(op);
  const pool2d::PoolGeometry geometry =
      pool2d::checked_backward(op, pool2d::adaptive_pool2d_geometry, dL_dy, dL_dx, params);
  pool2d::launch_avg_pool2d_backward(op, dL_dy, dL_dx, geometry, AdaptiveAvgBins{}, stream);
}

Tensor adaptive_avg_pool2d_backward(const Tensor& dL_dy, const Shape& x_shape, const AdaptivePool2dParams& params,
                                    cudaStream_t stream) {
  Tensor dL_dx = pool2d::empty_input_gradient("adaptive_avg_pool2d_backward", pool2d::adaptive_pool2d_geometry, dL_dy,
                                              x_shape, params, stream);
  adaptive_avg_pool2d_backward(dL_dy, dL_dx, params, stream);
  return dL_dx;
}

}  // namespace strata::kernels
