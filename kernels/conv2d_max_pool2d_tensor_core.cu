// conv2d fused with a 2x2 max pool (strata/kernels/conv2d_max_pool2d.h): the forward's
// implicit GEMM on the tensor-core block tile of conv2d_tensor_core.cuh, with its rows ordered
// so that each block tile holds whole pooling windows (conv2d_max_pool2d_tensor_core.cuh): 16
// in a 64x64 block, 32 in the 128x128 one that the asynchronous path may take.
// The reduction is conv2d_forward_tensor_core.cu's (the same loader, the same slices in the
// same order), so each conv value is the same f32 sum; the epilogue adds the bias, rounds to
// the storage type as conv2d_forward's store does, and pools the four values of each window
// from the shared-memory tile as max_pool2d_forward scans them, writing y, the argmax and,
// with statistics, the shifted sums of each channel's pooled values per 16 windows (64 conv
// rows) to their slot, whichever the block. Shapes
// that do not fuse run conv2d_forward then max_pool2d_forward. A channels-last x copies its
// slices asynchronously where the forward does (conv2d_tensor_core_async.cuh): the same bits.
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "core/check.h"
#include "core/nvtx.h"
#include "kernels/channel_stats.h"
#include "kernels/conv2d_checks.h"
#include "kernels/conv2d_max_pool2d_tensor_core.cuh"
#include "kernels/conv2d_tensor_core.cuh"
#include "kernels/conv2d_tensor_core_async.cuh"
#include "kernels/conv2d_tensor_core_wgmma.cuh"
#include "kernels/pool2d_windows.cuh"
#include "kernels/tensor_checks.h"
#include "strata/kernels/conv2d_max_pool2d.h"

namespace strata::kernels {

namespace {

using conv2d_detail::Conv2dGeometry;
using conv2d_max_pool2d::kWindowPixels;
using conv2d_max_pool2d::PooledPlane;
using conv2d_max_pool2d::WindowPixel;
using namespace conv2d_tensor_core;

// The windows of a statistics slot (kStatisticsRows conv rows): 16; a block tile holds one or
// two such groups.
constexpr int kSlotWindows = kStatisticsRows / kWindowPixels;
static_assert(kStatisticsRows % kWindowPixels == 0, "a statistics slot holds whole windows");

// The GEMM per group: the pixels of the N*Ho*Wo windows (four each) x K/groups channels,
// reduction C/groups*R*S as the forward's.
__host__ __device__ __forceinline__ conv2d_detail::GemmSizes pooled_gemm(const Conv2dGeometry& g,
                                                                        const PooledPlane& plane) {
  const conv2d_detail::GemmSizes forward = conv2d_detail::forward_gemm(g);
  return {static_cast<std::int64_t>(g.batch) * plane.area * kWindowPixels, forward.n, forward.reduction};
}

// Path::async: x channels-last, weight (K, R, S, C/groups), the slices copied asynchronously.
template <typename Path, typename Index, bool kStatistics, typename Math = typename Path::Math,
          typename Block = typename Path::Block, typename T = typename Math::Storage>
__global__ void __launch_bounds__(Block::threads)
    conv2d_max_pool2d_tensor_core_kernel(const T* __restrict__ x,       // (N, C, H, W), g.input's format
                                         const T* __restrict__ weight,  // (K, C/groups, R, S); async: (K, R, S, C/g)
                                         const __grid_constant__ tma::TensorMap weight_map,  // forward_weight_map's
                                         const T* __restrict__ bias,    // (K), or null
                                         T* __restrict__ y,             // (N, K, Ho, Wo), in y_layout
                                         Index* __restrict__ argmax,    // (N, K, Ho, Wo), in y_layout, or null
                                         Conv2dGeometry g, PooledPlane plane,
                                         conv2d_detail::ActivationLayout y_layout,
                                         ChannelPartials partials) {    // (6, 16-window slots, K), with kStatistics
  constexpr int kTileWindows = Block::m / kWindowPixels;  // whole windows per block tile: 16 or 32
  constexpr int kLdC = Block::ld_c;
  STRATA_DYNAMIC_SHARED(unsigned char, shared);  // Path::shared_bytes

  const conv2d_detail::GemmSizes gemm = pooled_gemm(g, plane);
  const int reduction = static_cast<int>(gemm.reduction);
  const conv2d_detail::GemmBlockTile tile = conv2d_detail::gemm_block_tile(gemm, g.groups, Block::m, Block::n);

  // conv2d_forward_tensor_core.cu's loaders, rows by window: the same slices of the same products.
  BlockAccumulators<Math, Block> accumulators;
  if constexpr (Path::async) {
    const auto loader = channels_last_forward_loader<Block>(x, weight, weight_map, g, gemm, tile, [&](int m) {
      const WindowPixel pixel = conv2d_max_pool2d::window_pixel</*kDividers=*/false>(m, plane);
      return OutputPixel{pixel.image, pixel.p, pixel.q};
    });
    accumulate_block_tile_async<Math>(loader, 0, reduction, shared, accumulators);
  } else {
    // The conv pixel whose input patch this thread gathers, the same for every slice.
    const GatheredPixel a_row = gathered_pixel(tile.m0, gemm.m);
    const WindowPixel a_pixel = conv2d_max_pool2d::window_pixel(a_row.pixel, plane);
    auto loader = forward_pixel_loader(x, weight, g, gemm, tile, a_row.valid, a_pixel.image, a_pixel.p, a_pixel.q);
    accumulate_block_tile<Math>(loader, 0, reduction, shared, accumulators);
  }
  float* c_tile = store_block_tile(accumulators, shared);  // (Block::n, kLdC): (n, m)

  const std::int64_t first_channel = tile.block.group * g.out_channels_per_group + tile.n0;
  const int first_window = static_cast<int>(tile.m0 / kWindowPixels);
  // Windows from the tile's first to y's last: the tile's first `windows` are valid (all of
  // them but in the last m tile).
  const std::int64_t windows = gemm.m / kWindowPixels - first_window;
  const std::int64_t columns = gemm.n - tile.n0;
  // Neighbouring threads take neighbouring elements of y: windows of one channel (contiguous
  // y) or channels of one window (channels-last y). The order changes no value.
  for (int e = static_cast<int>(threadIdx.x); e < kTileWindows * Block::n; e += Block::threads) {
    const int window_local = g.output_channels_last ? e / Block::n : e % kTileWindows;
    const int n_local = g.output_channels_last ? e % Block::n : e / kTileWindows;
    if (window_local >= windows || n_local >= columns) continue;
    const std::int64_t channel = first_channel + n_local;
    // conv2d_forward's store: the bias added in f32 (0 without one), one rounding to T.
    const float shift = bias != nullptr ? conv2d_detail::to_float(bias[channel]) : 0.0f;
    float* window = c_tile + n_local * kLdC + window_local * kWindowPixels;  // the 4 values, 16-byte aligned
    const float4 sums = *reinterpret_cast<const float4*>(window);
    const float values[kWindowPixels] = {sums.x, sums.y, sums.z, sums.w};
    // max_of_window's scan (max_pool2d_kernels.cuh): from -inf at the first tap; NaN wins, and
    // a tie keeps the earlier position.
    float best = -INFINITY;
    int best_position = 0;
    STRATA_UNROLL
    for (int position = 0; position < kWindowPixels; ++position) {
      const float stored = conv2d_detail::to_float(conv2d_detail::from_float<T>(values[position] + shift));
      if (pool2d::replaces_max(stored, best)) {
        best = stored;
        best_position = position;
      }
    }
    const WindowPixel at = conv2d_max_pool2d::window_pixel((first_window + window_local) * kWindowPixels, plane);
    const std::int64_t out = y_layout.offset(at.image, channel, at.window - at.image * plane.area);  // (n, k, oh, ow)
    y[out] = conv2d_detail::from_float<T>(best);
    if (argmax != nullptr) {
      argmax[out] = static_cast<Index>((at.p + best_position / 2) * g.out_width + at.q + best_position % 2);
    }
    if constexpr (kStatistics) window[0] = best;  // y as stored, for the column sums below
  }

  if constexpr (kStatistics) {
    __syncthreads();
    // A slot's sums per channel: its 16 windows, one a lane of a half warp, combined by a
    // butterfly (a fixed order) and written by the first lane. Each warp takes two (channel,
    // slot) pairs at a time: two channels in the small block, a channel's two slots in the
    // large one; either way a slot sums as in the small block.
    constexpr int kSlotsPerTile = kTileWindows / kSlotWindows;  // 1 or 2
    constexpr int kWarps = Block::threads / kWarpSize;
    constexpr int kPairsPerWarp = kWarpSize / kSlotWindows;
    constexpr int kPairs = kSlotsPerTile * Block::n;
    static_assert(kWarpSize % kSlotWindows == 0 && kPairs % (kWarps * kPairsPerWarp) == 0, "whole pairs per pass");
    const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
    const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
    for (int pass = 0; pass < kPairs / (kWarps * kPairsPerWarp); ++pass) {
      const int pair = (pass * kWarps + warp) * kPairsPerWarp + lane / kSlotWindows;
      const int slot_in_tile = pair % kSlotsPerTile;
      const int n_local = pair / kSlotsPerTile;
      const int window_local = slot_in_tile * kSlotWindows + lane % kSlotWindows;
      channel_stats::ShiftedSums sums = channel_stats::empty_sums();
      if (window_local < windows && n_local < columns) {
        channel_stats::add_value(sums, c_tile[n_local * kLdC + window_local * kWindowPixels]);
      }
      sums = channel_stats::combine_lanes<kSlotWindows>(sums);
      // A slot past y's last window (the second of the last tile) is not written: it is not there.
      if (lane % kSlotWindows == 0 && n_local < columns && slot_in_tile * kSlotWindows < windows) {
        const std::int64_t slot = std::int64_t{tile.block.m_tile} * kSlotsPerTile + slot_in_tile;
        channel_stats::store_partial(partials, slot, first_channel + n_local, sums);
      }
    }
  }
}

// The dtype's kernel for argmax of Index (null: not written) and with or without statistics.
template <typename T, typename Index>
void launch_fused(const Conv2dShape& shape, const Conv2dFormats& formats, const T* x, const Tensor& weight,
                  const T* bias, T* y, Index* argmax, const ChannelPartials& partials, cudaStream_t stream) {
  // The output layout is the pooled y's (and the argmax's); the conv plane's is never stored.
  const Conv2dGeometry geometry = conv2d_detail::make_conv2d_geometry(shape, formats);
  const PooledPlane plane = conv2d_max_pool2d::pooled_plane(geometry.out_height, geometry.out_width);
  const conv2d_detail::ActivationLayout y_layout =
      conv2d_detail::activation_layout(formats.output, shape.out_channels, plane.area);
  const conv2d_detail::GemmSizes gemm = pooled_gemm(geometry, plane);
  constexpr const char* kName = "conv2d_max_pool2d_tensor_core";
  const auto run = [&]<bool kAsync>(std::bool_constant<kAsync>, const T* weight_data) {
    const Conv2dTensorCoreTile tile = pass_tile(kAsync, gemm, shape.params.groups, TileShapes::any_and_wgmma_tma);
    const tma::TensorMap weight_map = forward_weight_map(tile, gemm, shape.params.groups, weight_data, kName);
    if (partials.data == nullptr) {
      launch_block_tiles<T, kAsync, TileShapes::any_and_wgmma_tma>(
          shape, gemm, 1, tile, stream, kName,
          []<typename Path>(std::type_identity<Path>) {
            return conv2d_max_pool2d_tensor_core_kernel<Path, Index, false>;
          },
          x, weight_data, weight_map, bias, y, argmax, geometry, plane, y_layout, partials);
    } else {
      launch_block_tiles<T, kAsync, TileShapes::any_and_wgmma_tma>(
          shape, gemm, 1, tile, stream, kName,
          []<typename Path>(std::type_identity<Path>) {
            return conv2d_max_pool2d_tensor_core_kernel<Path, Index, true>;
          },
          x, weight_data, weight_map, bias, y, argmax, geometry, plane, y_layout, partials);
    }
  };
  run_with_weights<T>(conv2d_forward_copies_asynchronously(shape, formats, x), weight, stream, run);
}

// The checks of the in-place forward, as conv2d_forward's and max_pool2d_forward's: returns
// the conv shape.
Conv2dShape expect_arguments(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& y,
                             const Tensor& argmax, const Conv2dParams& conv, const Pool2dParams& pool,
                             std::string_view op) {
  expect_floating_device_tensor(x, op, "x");
  const auto expect_operand = [&](const Tensor& tensor, std::string_view name) {
    expect_floating_device_tensor(tensor, op, name);
    expect_same_dtype(tensor, x, op, name, "x");
  };
  expect_operand(weight, "weight");  // either format (strata/kernels/conv2d.h)
  const Conv2dShape shape = conv2d_shape(x.shape(), weight.shape(), conv, op);
  if (bias.defined()) {
    expect_operand(bias, "bias");
    expect_shape(bias, shape.bias(), op, "bias");
  }
  const pool2d::PoolGeometry geometry = pool2d::max_pool2d_geometry(op, shape.output(), pool);
  expect_operand(y, "y");
  expect_shape(y, pool2d::output_shape(shape.output(), geometry), op, "y");
  expect_distinct(y, x, op, "y", "x");
  expect_distinct(y, weight, op, "y", "weight");
  if (bias.defined()) expect_distinct(y, bias, op, "y", "bias");
  // The kernel stores y and the argmax at one index.
  if (argmax.defined()) expect_same_memory_order(argmax, y, op, "argmax", "y");
  pool2d::expect_forward_argmax(argmax, x, y, geometry, op);
  if (argmax.defined()) {
    expect_distinct(argmax, weight, op, "argmax", "weight");
    if (bias.defined()) expect_distinct(argmax, bias, op, "argmax", "bias");
  }
  return shape;
}

}  // namespace

bool conv2d_max_pool2d_fuses(const Conv2dShape& shape, const Pool2dParams& pool) {
  constexpr Size2d kTwo{2, 2};
  return pool.kernel == kTwo && pool.effective_stride() == kTwo && pool.padding == Size2d{0, 0} &&
         pool.dilation == Size2d{1, 1} && !pool.ceil_mode && conv2d_forward_uses_tensor_cores(shape);
}

Shape conv2d_max_pool2d_output_shape(const Conv2dShape& shape, const Pool2dParams& pool) {
  return max_pool2d_output_shape(shape.output(), pool);
}

std::int64_t conv2d_max_pool2d_forward_statistics_slots(const Conv2dShape& shape, const Pool2dParams& pool) {
  const Shape y = conv2d_max_pool2d_output_shape(shape, pool);
  if (!conv2d_max_pool2d_fuses(shape, pool)) return max_pool2d_forward_statistics_slots(y);
  return ceil_div(y[0] * y[2] * y[3], kSlotWindows);
}

void conv2d_max_pool2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y, Tensor& argmax,
                               const Conv2dParams& conv, const Pool2dParams& pool, cudaStream_t stream,
                               ChannelStatistics* statistics) {
  constexpr const char* op = "conv2d_max_pool2d_forward";
  const NvtxRange range(op);
  const Conv2dShape shape = expect_arguments(x, weight, bias, y, argmax, conv, pool, op);
  if (!conv2d_max_pool2d_fuses(shape, pool)) {
    // (N, K, P, Q) in y's format, stream-ordered: max_pool2d_forward reads it as it reads any x.
    Tensor convolved = Tensor::empty(shape.output(), x.dtype(), stream, y.memory_format());
    conv2d_forward(x, weight, bias, convolved, conv, stream);
    max_pool2d_forward(convolved, y, argmax, pool, stream, statistics);
    return;
  }
  const ChannelPartials partials = prepare_channel_statistics(
      statistics, conv2d_max_pool2d_forward_statistics_slots(shape, pool), shape.out_channels, op, stream);
  const Conv2dFormats formats = conv2d_detail::conv2d_formats(x, y);
  conv2d_detail::dispatch_conv2d_dtype(x.dtype(), [&]<typename T>(std::type_identity<T>) {
    const T* bias_data = bias.defined() ? bias.data<T>() : nullptr;
    const T* x_data = memory_elements<T>(x);  // (N, C, H, W), either format
    T* y_data = memory_elements<T>(y);        // (N, K, Ho, Wo), either format
    if (!argmax.defined()) {
      launch_fused<T, std::int64_t>(shape, formats, x_data, weight, bias_data, y_data, nullptr, partials, stream);
    } else if (argmax.dtype() == DType::i64) {
      launch_fused(shape, formats, x_data, weight, bias_data, y_data,
                   static_cast<std::int64_t*>(argmax.memory_ptr()), partials, stream);
    } else {
      launch_fused(shape, formats, x_data, weight, bias_data, y_data,
                   static_cast<std::int32_t*>(argmax.memory_ptr()), partials, stream);
    }
  });
}

MaxPool2dResult conv2d_max_pool2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                          const Conv2dParams& conv, const Pool2dParams& pool, cudaStream_t stream,
                                          ChannelStatistics* statistics) {
  constexpr const char* op = "conv2d_max_pool2d_forward";
  expect_floating_device_tensor(x, op, "x");
  const Conv2dShape shape = conv2d_shape(x.shape(), weight.shape(), conv, op);
  const Shape y_shape = pool2d::output_shape(shape.output(), pool2d::max_pool2d_geometry(op, shape.output(), pool));
  MaxPool2dResult result{Tensor::empty(y_shape, x.dtype(), stream, x.memory_format()),
                         Tensor::empty(y_shape, DType::i64, stream, x.memory_format())};
  conv2d_max_pool2d_forward(x, weight, bias, result.y, result.argmax, conv, pool, stream, statistics);
  return result;
}

}  // namespace strata::kernels
