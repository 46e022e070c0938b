// avg_pool2d forward and backward on the kernels it shares with adaptive_avg_pool2d
// (avg_pool2d_kernels.cuh): one thread per output sums its window; one thread per input
// gathers dL_dy / divisor from the outputs whose windows hold it, with no atomics and a fixed
// summation order, so the result is deterministic. The divisor follows PyTorch
// (pool2d_windows.cuh).
#include <cstdint>

#include "core/nvtx.h"
#include "kernels/avg_pool2d_kernels.cuh"
#include "kernels/pool2d_windows.cuh"
#include "strata/kernels/pool2d.h"

namespace strata::kernels {

namespace {

using pool2d::AvgDivisorRule;
using pool2d::AvgWindow;
using pool2d::IndexRange;
using pool2d::PoolAxis;

// Fixed windows with padding, divided by one count as PyTorch's count_include_pad and
// divisor_override say. A window never lies wholly in the padding: padding <= kernel / 2 and
// the ceil_mode rule keep at least one input element in each (pool2d_shape_test checks this
// on a sweep), so the count_include_pad = false divisor is never 0.
struct FixedAvgWindows {
  AvgDivisorRule rule;

  __device__ static AvgWindow window(const PoolAxis& axis, std::int64_t o) { return pool2d::avg_window(axis, o); }
  __device__ static IndexRange covering(const PoolAxis& axis, std::int64_t i) {
    return pool2d::outputs_covering(axis, i);
  }
  __device__ float average(float sum, const AvgWindow& rows, const AvgWindow& cols) const {
    return sum / static_cast<float>(pool2d::avg_divisor(rule, rows, cols));
  }
};

FixedAvgWindows windows_of(const AvgPool2dParams& params) {
  return FixedAvgWindows{.rule = AvgDivisorRule{.count_include_pad = params.count_include_pad,
                                                .divisor_override = params.divisor_override.value_or(0)}};
}

}  // namespace

void avg_pool2d_forward(const Tensor& x, Tensor& y, const AvgPool2dParams& params, cudaStream_t stream) {
  constexpr const char* op = "avg_pool2d_forward";
  const NvtxRange range(op);
  const pool2d::PoolGeometry geometry = pool2d::checked_forward(op, pool2d::avg_pool2d_geometry, x, y, params);
  pool2d::launch_avg_pool2d_forward(op, x, y, geometry, windows_of(params), stream);
}

Tensor avg_pool2d_forward(const Tensor& x, const AvgPool2dParams& params, cudaStream_t stream) {
  Tensor y = pool2d::empty_output("avg_pool2d_forward", pool2d::avg_pool2d_geometry, x, params, stream);
  avg_pool2d_forward(x, y, params, stream);
  return y;
}

void avg_pool2d_backward(const Tensor& dL_dy, Tensor& dL_dx, const AvgPool2dParams& params, cudaStream_t stream) {
  constexpr const char* op = "avg_pool2d_backward";
  const NvtxRange range(op);
  const pool2d::PoolGeometry geometry = pool2d::checked_backward(op, pool2d::avg_pool2d_geometry, dL_dy, dL_dx, params);
  pool2d::launch_avg_pool2d_backward(op, dL_dy, dL_dx, geometry, windows_of(params), stream);
}

Tensor avg_pool2d_backward(const Tensor& dL_dy, const Shape& x_shape, const AvgPool2dParams& params,
                           cudaStream_t stream) {
  Tensor dL_dx =
      pool2d::empty_input_gradient("avg_pool2d_backward", pool2d::avg_pool2d_geometry, dL_dy, x_shape, params, stream);
  avg_pool2d_backward(dL_dy, dL_dx, params, stream);
  return dL_dx;
}

}  // namespace strata::kernels
