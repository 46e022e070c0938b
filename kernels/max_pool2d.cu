// max_pool2d forward and backward. The forward gives each output element one thread, which
// scans its window in row-major order; the backward gives each input element one thread,
// which gathers dL_dy from the few outputs whose window may hold it and whose argmax is it:
// no atomics, and a fixed summation order, so the result is deterministic. Where the windows
// tile the input (kernel == stride, no padding or dilation: MaxPool2d(k)), each input is in at
// most one window, and the backward gives each output one thread that writes its window's
// inputs instead: the same values, without the gather's index arithmetic per input. Asked for the
// per-channel statistics of y, the forward runs its statistics form instead, whose blocks each
// cover a chunk of one channel (max_pool2d_kernels.cuh).
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

#include "core/check.h"
#include "core/elementwise_map.cuh"
#include "core/format.h"
#include "core/nvtx.h"
#include "kernels/channel_stats.h"
#include "kernels/common.cuh"
#include "kernels/max_pool2d_kernels.cuh"
#include "kernels/pool2d_windows.cuh"
#include "strata/kernels/pool2d.h"

namespace strata::kernels {

namespace {

using pool2d::IndexRange;
using pool2d::PoolGeometry;

constexpr int kThreadsPerBlock = 256;
// Outputs of one channel per statistics slot: 8 per thread of a block.
constexpr std::int64_t kStatisticsValuesPerSlot = 8 * pool2d::kMaxPoolStatisticsThreads;

// Fixed windows: kernel, stride, padding and dilation (pool2d_windows.cuh).
struct FixedWindows {
  __device__ static IndexRange rows(const PoolGeometry& g, std::int64_t oh) {
    return pool2d::dilated_window(g.rows, oh);
  }
  __device__ static IndexRange cols(const PoolGeometry& g, std::int64_t ow) {
    return pool2d::dilated_window(g.cols, ow);
  }
  __device__ static std::int64_t row_step(const PoolGeometry& g) { return g.rows.dilation; }
  __device__ static std::int64_t col_step(const PoolGeometry& g) { return g.cols.dilation; }
  __device__ static IndexRange rows_covering(const PoolGeometry& g, std::int64_t h) {
    return pool2d::outputs_covering(g.rows, h);
  }
  __device__ static IndexRange cols_covering(const PoolGeometry& g, std::int64_t w) {
    return pool2d::outputs_covering(g.cols, w);
  }
};

LaunchConfig config_for(std::int64_t threads, cudaStream_t stream, const char* name) {
  return LaunchConfig{.grid = grid_stride_blocks(threads, kThreadsPerBlock), .block = kThreadsPerBlock,
                      .stream = stream, .name = name};
}

// In x's (dL_dx's) dtype: f32, f16 or bf16. With statistics, the statistics form of the kernel.
template <typename Index>
void launch_forward(const Tensor& x, Tensor& y, Index* argmax, const PoolGeometry& geometry,
                    ChannelStatistics* statistics, cudaStream_t stream) {
  constexpr const char* op = "max_pool2d_forward";
  const std::int64_t channels = y.size(1);
  const std::int64_t slots = max_pool2d_forward_statistics_slots(y.shape());
  const ChannelPartials partials = prepare_channel_statistics(statistics, slots, channels, op, stream);
  if (y.numel() == 0) return;
  detail::dispatch_floating_dtype(x.dtype(), op, [&]<typename T>(std::type_identity<T>) {
    if (statistics == nullptr) {
      launch(pool2d::max_pool2d_forward_kernel<FixedWindows, T, Index>, config_for(y.numel(), stream, op),
             memory_elements<T>(x), memory_elements<T>(y), argmax, geometry, pool2d::output_indexer(geometry));
      return;
    }
    const std::int64_t blocks = slots * channels;
    STRATA_CHECK(blocks <= std::numeric_limits<std::int32_t>::max(),
                 "{}: {} statistics blocks ({} slots of {} channels) exceed the grid limit (y {})", op, blocks, slots,
                 channels, y.shape());
    launch(pool2d::max_pool2d_forward_statistics_kernel<FixedWindows, T, Index>,
           LaunchConfig{.grid = static_cast<unsigned>(blocks), .block = pool2d::kMaxPoolStatisticsThreads,
                        .stream = stream, .name = "max_pool2d_forward_statistics"},
           memory_elements<T>(x), memory_elements<T>(y), argmax, geometry, pool2d::output_indexer(geometry),
           kStatisticsValuesPerSlot, partials);
  });
}

template <typename Index>
void launch_backward(const Tensor& dL_dy, const Index* argmax, Tensor& dL_dx, const PoolGeometry& geometry,
                     cudaStream_t stream) {
  constexpr const char* op = "max_pool2d_backward";
  if (dL_dx.numel() == 0) return;
  const bool tiled = pool2d::windows_tile(geometry.rows) && pool2d::windows_tile(geometry.cols);
  detail::dispatch_floating_dtype(dL_dx.dtype(), op, [&]<typename T>(std::type_identity<T>) {
    if (tiled) {
      launch(pool2d::max_pool2d_backward_tiled_kernel<T, Index>, config_for(dL_dy.numel(), stream, op),
             memory_elements<T>(dL_dy), argmax, memory_elements<T>(dL_dx), geometry, pool2d::output_indexer(geometry));
      return;
    }
    launch(pool2d::max_pool2d_backward_kernel<FixedWindows, T, Index>, config_for(dL_dx.numel(), stream, op),
           memory_elements<T>(dL_dy), argmax, memory_elements<T>(dL_dx), geometry, pool2d::input_indexer(geometry));
  });
}

}  // namespace

std::int64_t max_pool2d_forward_statistics_slots(const Shape& y) {
  return ceil_div(y[0] * y[2] * y[3], kStatisticsValuesPerSlot);
}

void max_pool2d_forward(const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dParams& params,
                        cudaStream_t stream, ChannelStatistics* statistics) {
  constexpr const char* op = "max_pool2d_forward";
  const NvtxRange range(op);
  PoolGeometry geometry = pool2d::checked_forward(op, pool2d::max_pool2d_geometry, x, y, params);
  pool2d::expect_forward_argmax(argmax, x, y, geometry, op);
  geometry.layout = pool2d::plane_layout(op, {{x, "x"}, {y, "y"}, {argmax, "argmax"}});
  if (!argmax.defined()) {
    launch_forward<std::int64_t>(x, y, nullptr, geometry, statistics, stream);
  } else if (argmax.dtype() == DType::i64) {
    launch_forward(x, y, memory_elements<std::int64_t>(argmax), geometry, statistics, stream);
  } else {
    launch_forward(x, y, memory_elements<std::int32_t>(argmax), geometry, statistics, stream);
  }
}

MaxPool2dResult max_pool2d_forward(const Tensor& x, const Pool2dParams& params, cudaStream_t stream,
                                   ChannelStatistics* statistics) {
  Tensor y = pool2d::empty_output("max_pool2d_forward", pool2d::max_pool2d_geometry, x, params, stream);
  Tensor argmax = Tensor::empty(y.shape(), DType::i64, stream, y.memory_format());
  MaxPool2dResult result{std::move(y), std::move(argmax)};
  max_pool2d_forward(x, result.y, result.argmax, params, stream, statistics);
  return result;
}

void max_pool2d_backward(const Tensor& dL_dy, const Tensor& argmax, Tensor& dL_dx, const Pool2dParams& params,
                         cudaStream_t stream) {
  constexpr const char* op = "max_pool2d_backward";
  const NvtxRange range(op);
  PoolGeometry geometry = pool2d::checked_backward(op, pool2d::max_pool2d_geometry, dL_dy, dL_dx, params);
  pool2d::expect_backward_argmax(argmax, dL_dy, dL_dx, geometry, op);
  geometry.layout = pool2d::plane_layout(op, {{dL_dy, "dL_dy"}, {argmax, "argmax"}, {dL_dx, "dL_dx"}});
  if (dL_dx.numel() == 0) return;
  if (argmax.dtype() == DType::i64) {
    launch_backward(dL_dy, memory_elements<std::int64_t>(argmax), dL_dx, geometry, stream);
  } else {
    launch_backward(dL_dy, memory_elements<std::int32_t>(argmax), dL_dx, geometry, stream);
  }
}

Tensor max_pool2d_backward(const Tensor& dL_dy, const Tensor& argmax, const Shape& x_shape,
                           const Pool2dParams& params, cudaStream_t stream) {
  Tensor dL_dx =
      pool2d::empty_input_gradient("max_pool2d_backward", pool2d::max_pool2d_geometry, dL_dy, x_shape, params, stream);
  max_pool2d_backward(dL_dy, argmax, dL_dx, params, stream);
  return dL_dx;
}

}  // namespace strata::kernels
