// conv2d forward on the tensor cores: the implicit GEMM of conv2d_forward.cu (per group,
// y (N*P*Q pixels x K/groups channels) = im2col(x) (pixels x C/groups*R*S) * weight^T), on
// the block tile of conv2d_tensor_core.cuh (f32 x and weight rounded to tf32 or bf16 as they
// are staged, f16 and bf16 copied as they are; f32 accumulators), the bias added in f32 and the
// Conv2dEpilogue applied in the epilogue, y rounded once to the storage type; with
// kStatistics, the shifted sums of each channel's stored values in each 64 rows of the block
// tile go to that row group's slot of the partials. A channels-last x whose channels per group
// fill whole 16-byte vectors takes the asynchronous-copy pipeline of
// conv2d_tensor_core_async.cuh (the weight read as (K, R, S, C/groups): its channels-last
// format, copied into it first when it comes contiguous), in a 64x64, 128x128 or 128x64
// block, where the math multiplies the stored values; the result is the same bits on every
// path.
#include <cstdint>
#include <type_traits>

#include "kernels/conv2d_forward_tensor_core.h"
#include "kernels/conv2d_tensor_core.cuh"
#include "kernels/conv2d_tensor_core_async.cuh"
#include "kernels/conv2d_tensor_core_wgmma.cuh"
#include "strata/core/device.h"

namespace strata::kernels {

namespace {

using conv2d_detail::Conv2dGeometry;
using namespace conv2d_tensor_core;

// Path::async: x channels-last, weight (K, R, S, C/groups), the slices copied asynchronously.
template <typename Path, bool kStatistics, typename Math = typename Path::Math, typename Block = typename Path::Block,
          typename T = typename Math::Storage>
__global__ void __launch_bounds__(Block::threads)
    conv2d_forward_tensor_core_kernel(const T* __restrict__ x,       // (N, C, H, W), g.input's format
                                      const T* __restrict__ weight,  // (K, C/groups, R, S); async: (K, R, S, C/g)
                                      const __grid_constant__ tma::TensorMap weight_map,  // forward_weight_map's
                                      const T* __restrict__ bias,    // (K), or null
                                      T* __restrict__ y,             // (N, K, P, Q), g.output's format
                                      Conv2dGeometry g,
                                      ChannelPartials partials,      // (6, 64-row slots, K), with kStatistics
                                      Conv2dEpilogueArgs<T> epilogue) {
  STRATA_DYNAMIC_SHARED(unsigned char, shared);  // Path::shared_bytes

  const conv2d_detail::GemmSizes gemm = conv2d_detail::forward_gemm(g);
  const int reduction = static_cast<int>(gemm.reduction);
  const conv2d_detail::GemmBlockTile tile = conv2d_detail::gemm_block_tile(gemm, g.groups, Block::m, Block::n);

  BlockAccumulators<Math, Block> accumulators;
  if constexpr (Path::async) {
    const auto loader = channels_last_forward_loader<Block>(x, weight, weight_map, g, gemm, tile,
                                                            [&](int m) { return forward_output_pixel(g, m); });
    accumulate_block_tile_async<Math>(loader, 0, reduction, shared, accumulators);
  } else {
    // The output pixel whose input patch this thread gathers, the same for every slice.
    const GatheredPixel a_pixel = gathered_pixel(tile.m0, gemm.m);
    const OutputPixel a_at = forward_output_pixel(g, a_pixel.pixel);
    auto loader = forward_pixel_loader(x, weight, g, gemm, tile, a_pixel.valid, a_at.image, a_at.p, a_at.q);
    accumulate_block_tile<Math>(loader, 0, reduction, shared, accumulators);
  }
  const std::int64_t first_channel = tile.block.group * g.out_channels_per_group + tile.n0;
  // y at (pixel m_local, channel n_local) of the tile: the epilogue of value plus the bias,
  // rounded to T; returns it as stored.
  const auto store = [&](int m_local, int n_local, float value) {
    const auto [image, pq] = g.dividers.out_plane.divide_with_remainder(static_cast<int>(tile.m0 + m_local));
    const std::int64_t channel = first_channel + n_local;
    const float bias_value = bias != nullptr ? conv2d_detail::to_float(bias[channel]) : 0.0f;
    return epilogue.store(y, g.output.offset(image, channel, pq), value + bias_value, channel);
  };
  const Contiguous contiguous = contiguous_for(g.output_channels_last);
  if constexpr (kStatistics) {
    write_block_tile_with_column_sums(
        accumulators, shared, gemm.m - tile.m0, gemm.n - tile.n0, contiguous, store,
        [&](int row_group, int n_local, const channel_stats::ShiftedSums& sums) {
          const std::int64_t slot = std::int64_t{tile.block.m_tile} * (Block::m / kStatisticsRows) + row_group;
          channel_stats::store_partial(partials, slot, first_channel + n_local, sums);
        });
  } else {
    write_block_tile(accumulators, shared, gemm.m - tile.m0, gemm.n - tile.n0, contiguous,
                     [&](int m_local, int n_local, float value) { store(m_local, n_local, value); });
  }
}

}  // namespace

bool conv2d_tensor_cores_available() {
  // tf32 and bf16 wmma need compute capability 8.0 (the default build targets 9.0 only).
  return device_properties().compute_capability_major >= 8;
}

bool conv2d_forward_uses_tensor_cores(const Conv2dShape& shape) {
  return shape.params.math != ConvMath::fp32 &&
         shape.out_channels_per_group() >= kConv2dTensorCoreMinChannelsPerGroup && conv2d_tensor_cores_available();
}

namespace {

// Whether a forward of shape on storage T, x in x_format, copies its slices asynchronously
// when x is 16-byte aligned.
template <typename T>
bool forward_layout_copies_asynchronously(const Conv2dShape& shape, MemoryFormat x_format) {
  return math_copies_storage<T>(shape) && x_format == MemoryFormat::channels_last &&
         whole_vectors_of<T>(shape.in_channels_per_group());
}

}  // namespace

template <typename T>
bool conv2d_forward_copies_asynchronously(const Conv2dShape& shape, const Conv2dFormats& formats, const T* x) {
  return forward_layout_copies_asynchronously<T>(shape, formats.input) && is_16_byte_aligned(x);
}

MemoryFormat conv2d_weight_format(const Conv2dShape& shape, DType dtype, MemoryFormat x_format) {
  bool asynchronous = false;
  if (conv2d_forward_uses_tensor_cores(shape)) {
    conv2d_detail::dispatch_conv2d_dtype(dtype, [&]<typename T>(std::type_identity<T>) {
      asynchronous = forward_layout_copies_asynchronously<T>(shape, x_format);
    });
  }
  return asynchronous ? MemoryFormat::channels_last : MemoryFormat::contiguous;
}

template <typename T>
void conv2d_forward_tensor_core(const Conv2dShape& shape, const Conv2dFormats& formats, const T* x,
                                const Tensor& weight, const T* bias, T* y, const ChannelPartials& partials,
                                const Conv2dEpilogueArgs<T>& epilogue, cudaStream_t stream) {
  const Conv2dGeometry geometry = conv2d_detail::make_conv2d_geometry(shape, formats);
  const conv2d_detail::GemmSizes gemm = conv2d_detail::forward_gemm(geometry);
  constexpr const char* kName = "conv2d_forward_tensor_core";
  const auto run = [&]<bool kAsync>(std::bool_constant<kAsync>, const T* weight_data) {
    const Conv2dTensorCoreTile tile = pass_tile(kAsync, gemm, shape.params.groups, TileShapes::any_and_wgmma_tma);
    const tma::TensorMap weight_map = forward_weight_map(tile, gemm, shape.params.groups, weight_data, kName);
    if (partials.data == nullptr) {
      launch_block_tiles<T, kAsync, TileShapes::any_and_wgmma_tma>(
          shape, gemm, 1, tile, stream, kName,
          []<typename Path>(std::type_identity<Path>) { return conv2d_forward_tensor_core_kernel<Path, false>; }, x,
          weight_data, weight_map, bias, y, geometry, partials, epilogue);
    } else {
      launch_block_tiles<T, kAsync, TileShapes::any_and_wgmma_tma>(
          shape, gemm, 1, tile, stream, kName,
          []<typename Path>(std::type_identity<Path>) { return conv2d_forward_tensor_core_kernel<Path, true>; }, x,
          weight_data, weight_map, bias, y, geometry, partials, epilogue);
    }
  };
  run_with_weights<T>(conv2d_forward_copies_asynchronously(shape, formats, x), weight, stream, run);
}

template bool conv2d_forward_copies_asynchronously<float>(const Conv2dShape&, const Conv2dFormats&, const float*);
template bool conv2d_forward_copies_asynchronously<__half>(const Conv2dShape&, const Conv2dFormats&, const __half*);
template bool conv2d_forward_copies_asynchronously<__nv_bfloat16>(const Conv2dShape&, const Conv2dFormats&,
                                                                  const __nv_bfloat16*);
template void conv2d_forward_tensor_core<float>(const Conv2dShape&, const Conv2dFormats&, const float*, const Tensor&,
                                                const float*, float*, const ChannelPartials&,
                                                const Conv2dEpilogueArgs<float>&, cudaStream_t);
template void conv2d_forward_tensor_core<__half>(const Conv2dShape&, const Conv2dFormats&, const __half*,
                                                 const Tensor&, const __half*, __half*, const ChannelPartials&,
                                                 const Conv2dEpilogueArgs<__half>&, cudaStream_t);
template void conv2d_forward_tensor_core<__nv_bfloat16>(const Conv2dShape&, const Conv2dFormats&,
                                                        const __nv_bfloat16*, const Tensor&,
                                                        const __nv_bfloat16*, __nv_bfloat16*, const ChannelPartials&,
                                                        const Conv2dEpilogueArgs<__nv_bfloat16>&, cudaStream_t);

}  // namespace strata::kernels
