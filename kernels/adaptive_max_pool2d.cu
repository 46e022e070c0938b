// adaptive_max_pool2d forward and backward with PyTorch's bins (pool2d_windows.cuh). The
// forward gives each output element one thread, which scans its bin in row-major order; the
// backward gives each input element one thread, which gathers dL_dy from the bins that
// contain it and whose argmax is it: no atomics, a fixed summation order, deterministic.
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "core/elementwise_map.cuh"
#include "core/nvtx.h"
#include "kernels/common.cuh"
#include "kernels/max_pool2d_kernels.cuh"
#include "kernels/pool2d_windows.cuh"
#include "strata/kernels/adaptive_pool2d.h"

namespace strata::kernels {

namespace {

using pool2d::IndexRange;
using pool2d::PoolGeometry;

constexpr int kThreadsPerBlock = 256;

// PyTorch's adaptive bins; they are never empty and have no dilation.
struct AdaptiveBins {
  __device__ static IndexRange rows(const PoolGeometry& g, std::int64_t oh) {
    return pool2d::adaptive_bin(g.rows, oh);
  }
  __device__ static IndexRange cols(const PoolGeometry& g, std::int64_t ow) {
    return pool2d::adaptive_bin(g.cols, ow);
  }
  __device__ static std::int64_t row_step(const PoolGeometry&) { return 1; }
  __device__ static std::int64_t col_step(const PoolGeometry&) { return 1; }
  __device__ static IndexRange rows_covering(const PoolGeometry& g, std::int64_t h) {
    return pool2d::bins_containing(g.rows, h);
  }
  __device__ static IndexRange cols_covering(const PoolGeometry& g, std::int64_t w) {
    return pool2d::bins_containing(g.cols, w);
  }
};

LaunchConfig config_for(std::int64_t threads, cudaStream_t stream, const char* name) {
  return LaunchConfig{.grid = grid_stride_blocks(threads, kThreadsPerBlock), .block = kThreadsPerBlock,
                      .stream = stream, .name = name};
}

// In x's (dL_dx's) dtype: f32, f16 or bf16.
template <typename Index>
void launch_forward(const Tensor& x, Tensor& y, Index* argmax, const PoolGeometry& geometry, cudaStream_t stream) {
  constexpr const char* op = "adaptive_max_pool2d_forward";
  if (y.numel() == 0) return;
  detail::dispatch_floating_dtype(x.dtype(), op, [&]<typename T>(std::type_identity<T>) {
    launch(pool2d::max_pool2d_forward_kernel<AdaptiveBins, T, Index>, config_for(y.numel(), stream, op),
           memory_elements<T>(x), memory_elements<T>(y), argmax, geometry, pool2d::output_indexer(geometry));
  });
}

template <typename Index>
void launch_backward(const Tensor& dL_dy, const Index* argmax, Tensor& dL_dx, const PoolGeometry& geometry,
                     cudaStream_t stream) {
  constexpr const char* op = "adaptive_max_pool2d_backward";
  if (dL_dx.numel() == 0) return;
  detail::dispatch_floating_dtype(dL_dx.dtype(), op, [&]<typename T>(std::type_identity<T>) {
    launch(pool2d::max_pool2d_backward_kernel<AdaptiveBins, T, Index>, config_for(dL_dx.numel(), stream, op),
           memory_elements<T>(dL_dy), argmax, memory_elements<T>(dL_dx), geometry, pool2d::input_indexer(geometry));
  });
}

}  // namespace

void adaptive_max_pool2d_forward(const Tensor& x, Tensor& y, Tensor& argmax, const AdaptivePool2dParams& params,
                                 cudaStream_t stream) {
  constexpr const char* op = "adaptive_max_pool2d_forward";
  const NvtxRange range(op);
  PoolGeometry geometry = pool2d::checked_forward(op, pool2d::adaptive_pool2d_geometry, x, y, params);
  pool2d::expect_forward_argmax(argmax, x, y, geometry, op);
  geometry.layout = pool2d::plane_layout(op, {{x, "x"}, {y, "y"}, {argmax, "argmax"}});
  if (y.numel() == 0) return;
  if (!argmax.defined()) {
    launch_forward<std::int64_t>(x, y, nullptr, geometry, stream);
  } else if (argmax.dtype() == DType::i64) {
    launch_forward(x, y, memory_elements<std::int64_t>(argmax), geometry, stream);
  } else {
    launch_forward(x, y, memory_elements<std::int32_t>(argmax), geometry, stream);
  }
}

MaxPool2dResult adaptive_max_pool2d_forward(const Tensor& x, const AdaptivePool2dParams& params,
                                            cudaStream_t stream) {
  Tensor y = pool2d::empty_output("adaptive_max_pool2d_forward", pool2d::adaptive_pool2d_geometry, x, params, stream);
  Tensor argmax = Tensor::empty(y.shape(), DType::i64, stream, y.memory_format());
  MaxPool2dResult result{std::move(y), std::move(argmax)};
  adaptive_max_pool2d_forward(x, result.y, result.argmax, params, stream);
  return result;
}

void adaptive_max_pool2d_backward(const Tensor& dL_dy, const Tensor& argmax, Tensor& dL_dx,
                                  const AdaptivePool2dParams& params, cudaStream_t stream) {
  constexpr const char* op = "adaptive_max_pool2d_backward";
  const NvtxRange range(op);
  PoolGeometry geometry = pool2d::checked_backward(op, pool2d::adaptive_pool2d_geometry, dL_dy, dL_dx, params);
  pool2d::expect_backward_argmax(argmax, dL_dy, dL_dx, geometry, op);
  geometry.layout = pool2d::plane_layout(op, {{dL_dy, "dL_dy"}, {argmax, "argmax"}, {dL_dx, "dL_dx"}});
  if (dL_dx.numel() == 0) return;
  if (argmax.dtype() == DType::i64) {
    launch_backward(dL_dy, memory_elements<std::int64_t>(argmax), dL_dx, geometry, stream);
  } else {
    launch_backward(dL_dy, memory_elements<std::int32_t>(argmax), dL_dx, geometry, stream);
  }
}

Tensor adaptive_max_pool2d_backward(const Tensor& dL_dy, const Tensor& argmax, const Shape& x_shape,
                                    const AdaptivePool2dParams& params, cudaStream_t stream) {
  Tensor dL_dx = pool2d::empty_input_gradient("adaptive_max_pool2d_backward", pool2d::adaptive_pool2d_geometry, dL_dy,
                                              x_shape, params, stream);
  adaptive_max_pool2d_backward(dL_dy, argmax, dL_dx, params, stream);
  return dL_dx;
}

}  // namespace strata::kernels
