// conv2d backward-data on the tensor cores: the implicit GEMM of conv2d_backward_data.cu (per
// group, dL_dx (N*H*W pixels x C/groups channels) = gather(dL_dy) (pixels x K/groups*R*S) *
// weight (K/groups*R*S x C/groups)), on the block tile of conv2d_tensor_core.cuh (f32 dL_dy
// and weight rounded to tf32 or bf16 as they are staged, f16 and bf16 copied as they are; f32
// accumulators, dL_dx rounded once to the storage type). The gather is
// the fp32 kernel's: input pixel h receives output row p = (h + pad - r*dilation) / stride of
// kernel row r where that division is exact, so with stride > 1 most steps read zeros. The
// reduction runs over k = (r, s, output channel), the channel fastest, so that a channels-last
// dL_dy whose channels per group fill whole 16-byte vectors can be copied asynchronously
// (conv2d_tensor_core_async.cuh), the weights then read as (K, R, S, C/groups); the same bits.
#include <cstdint>
#include <type_traits>

#include "kernels/conv2d_tensor_core.cuh"
#include "kernels/conv2d_tensor_core_async.cuh"
#include "kernels/conv2d_tensor_core_wgmma.cuh"

namespace strata::kernels {

namespace {

using conv2d_detail::Conv2dGeometry;
using namespace conv2d_tensor_core;

// The reduction index k = (r, s, output channel in the group), the channel fastest.
struct DataReductionIndex {
  int r, s, out_channel;
  int rs;
};

__device__ __forceinline__ DataReductionIndex data_reduction_index(const Conv2dGeometry& g, int k) {
  const auto [rs, out_channel] = g.dividers.out_channels_per_group.divide_with_remainder(k);
  const auto [r, s] = g.dividers.kernel_width.divide_with_remainder(rs);
  return {r, s, out_channel, rs};
}

// The register path's loader: the input pixel (valid, image, h + pad, w + pad) this thread
// gathers gradients for, the same for every slice; B from weight (K, C/groups, R, S).
template <typename T>
__device__ __forceinline__ auto data_pixel_loader(const T* dL_dy, const T* weight, const Conv2dGeometry& g,
                                                  const conv2d_detail::GemmSizes& gemm,
                                                  const conv2d_detail::GemmBlockTile& tile) {
  const GatheredPixel a_pixel = gathered_pixel(tile.m0, gemm.m);
  const auto [a_image, a_hw] = g.dividers.in_plane.divide_with_remainder(a_pixel.pixel);
  const auto [a_h, a_w] = g.dividers.in_width.divide_with_remainder(a_hw);
  const int h_shifted = a_h + g.pad_h;
  const int w_shifted = a_w + g.pad_w;
  const std::int64_t group = tile.block.group;
  const T* dL_dy_group = dL_dy + g.output.offset(a_image, group * g.out_channels_per_group, 0);  // (K/groups, P, Q)
  const T* weight_group = weight + group * g.out_channels_per_group * g.in_channels_per_group *
                                       g.kernel_area;  // (K/groups, C/groups, R, S)
  const std::int64_t n0 = tile.n0;
  const std::int64_t columns = gemm.n;
  return pixel_row_loader(
      [=](int k) {  // dL_dy of the output channel at the pixel that tap (r, s) takes from this one
        if (!a_pixel.valid) return zero<T>();
        const DataReductionIndex index = data_reduction_index(g, k);
        const int p =
            conv2d_detail::source_output_index(h_shifted, index.r * g.dilation_h, g.dividers.stride_h, g.out_height);
        const int q =
            conv2d_detail::source_output_index(w_shifted, index.s * g.dilation_w, g.dividers.stride_w, g.out_width);
        return (p >= 0 && q >= 0) ? dL_dy_group[g.output.offset(0, index.out_channel, p * g.out_width + q)]
                                  : zero<T>();
      },
      [=](int n_local, int k) {  // weight (output channel, input channel n0 + n_local, r, s)
        const std::int64_t channel = n0 + n_local;
        if (channel >= columns) return zero<T>();
        const DataReductionIndex index = data_reduction_index(g, k);
        return weight_group[(index.out_channel * g.in_channels_per_group + channel) * g.kernel_area + index.rs];
      });
}

// The asynchronous path's copies: A (input pixel, k) vectors along k (output channels of a
// channels-last dL_dy at one pixel), B (k, input channel) vectors along the input channels of
// the weights stored (K, R, S, C/groups): MN-major swizzled slices in a wgmma block, multiplied
// with wgmma's transpose. Taps that reach no output pixel, rows past the GEMM and steps past
// the reduction are zero-filled (whole vectors: K/groups and C/groups are multiples of the
// vector).
template <typename T, typename Block>
struct ChannelsLastDataLoader {
  using ALayout = AAlongK<T, Block>;
  using BLayout = BAlongN<T, Block>;
  static constexpr int kALoads = kAVectorLoads<T, Block>;
  static constexpr int kBLoads = kBVectorLoads<T, Block>;

  const T* dL_dy;       // (N, P, Q, K) in memory
  const T* weight;      // (K, R, S, C/groups)
  Conv2dGeometry g;
  std::int64_t out_channel_begin;  // the group's first output channel
  std::int64_t in_channel_begin;   // the block tile's first input channel in the group: n0
  bool a_valid[kALoads];
  int a_image[kALoads];
  int h_shifted[kALoads];  // h + pad of this load's input pixel
  int w_shifted[kALoads];

  __device__ __forceinline__ void issue(std::int64_t k0, std::int64_t k_end, T* a_slice, T* b_slice) const {
    STRATA_UNROLL
    for (int load = 0; load < kALoads; ++load) {
      const SliceVector a_vector = slice_vector<T, kAsyncStepK<T>, Block>(load);  // (pixel row, first step)
      const std::int64_t a_k = k0 + a_vector.inner;
      const DataReductionIndex a_index = data_reduction_index(g, static_cast<int>(a_k));
      const int p = conv2d_detail::source_output_index(h_shifted[load], a_index.r * g.dilation_h,
                                                       g.dividers.stride_h, g.out_height);
      const int q = conv2d_detail::source_output_index(w_shifted[load], a_index.s * g.dilation_w,
                                                       g.dividers.stride_w, g.out_width);
      const bool a_inside = a_valid[load] && a_k < k_end && p >= 0 && q >= 0;
      const std::int64_t out_channel = out_channel_begin + a_index.out_channel;
      const T* a_source =
          a_inside ? dL_dy + g.output.offset(a_image[load], out_channel, p * g.out_width + q) : dL_dy;
      async_copy<16>(a_slice + ALayout::offset(a_vector.outer, a_vector.inner), a_source, a_inside);
    }
    STRATA_UNROLL
    for (int load = 0; load < kBLoads; ++load) {
      const SliceVector b_vector = slice_vector<T, Block::n, Block>(load);  // (step row, first input channel)
      const std::int64_t b_k = k0 + b_vector.outer;
      const std::int64_t in_channel = in_channel_begin + b_vector.inner;
      const bool b_inside = b_k < k_end && in_channel < g.in_channels_per_group;
      const DataReductionIndex b_index = data_reduction_index(g, static_cast<int>(b_inside ? b_k : 0));
      const T* b_source =
          b_inside ? weight + ((out_channel_begin + b_index.out_channel) * g.kernel_area + b_index.rs) *
                                  g.in_channels_per_group +
                              in_channel
                   : weight;
      async_copy<16>(b_slice + BLayout::offset(b_vector.outer, b_vector.inner), b_source, b_inside);
    }
  }
};

template <typename Block, typename T>
__device__ __forceinline__ ChannelsLastDataLoader<T, Block> channels_last_data_loader(
    const T* dL_dy, const T* weight, const Conv2dGeometry& g, const conv2d_detail::GemmSizes& gemm,
    const conv2d_detail::GemmBlockTile& tile) {
  ChannelsLastDataLoader<T, Block> loader{};
  loader.dL_dy = dL_dy;
  loader.weight = weight;
  loader.g = g;
  loader.out_channel_begin = tile.block.group * g.out_channels_per_group;
  loader.in_channel_begin = tile.n0;
  STRATA_UNROLL
  for (int load = 0; load < ChannelsLastDataLoader<T, Block>::kALoads; ++load) {
    const std::int64_t m = tile.m0 + slice_vector<T, kAsyncStepK<T>, Block>(load).outer;
    const bool valid = m < gemm.m;
    const auto [image, hw] = g.dividers.in_plane.divide_with_remainder(valid ? static_cast<int>(m) : 0);
    const auto [h, w] = g.dividers.in_width.divide_with_remainder(hw);
    loader.a_valid[load] = valid;
    loader.a_image[load] = image;
    loader.h_shifted[load] = h + g.pad_h;
    loader.w_shifted[load] = w + g.pad_w;
  }
  return loader;
}

// Path::async: dL_dy channels-last, weight (K, R, S, C/groups), the slices copied asynchronously.
template <typename Path, typename Math = typename Path::Math, typename Block = typename Path::Block,
          typename T = typename Math::Storage>
__global__ void __launch_bounds__(Block::threads)
    conv2d_backward_data_tensor_core_kernel(const T* __restrict__ dL_dy,   // (N, K, P, Q), g.output's format
                                            const T* __restrict__ weight,  // (K, C/groups, R, S); async: above
                                            T* __restrict__ dL_dx,         // (N, C, H, W), g.input's format
                                            Conv2dGeometry g) {
  STRATA_DYNAMIC_SHARED(unsigned char, shared);  // Path::shared_bytes

  const conv2d_detail::GemmSizes gemm = conv2d_detail::backward_data_gemm(g);
  const conv2d_detail::GemmBlockTile tile = conv2d_detail::gemm_block_tile(gemm, g.groups, Block::m, Block::n);
  BlockAccumulators<Math, Block> accumulators;
  if constexpr (Path::async) {
    const auto loader = channels_last_data_loader<Block>(dL_dy, weight, g, gemm, tile);
    accumulate_block_tile_async<Math>(loader, 0, gemm.reduction, shared, accumulators);
  } else {
    auto loader = data_pixel_loader(dL_dy, weight, g, gemm, tile);
    accumulate_block_tile<Math>(loader, 0, gemm.reduction, shared, accumulators);
  }
  const std::int64_t group = tile.block.group;
  write_block_tile(accumulators, shared, gemm.m - tile.m0, gemm.n - tile.n0, contiguous_for(g.input_channels_last),
                   [&](int m_local, int n_local, float value) {
                     const auto [image, hw] =
                         g.dividers.in_plane.divide_with_remainder(static_cast<int>(tile.m0 + m_local));
                     const std::int64_t channel = group * g.in_channels_per_group + tile.n0 + n_local;
                     dL_dx[g.input.offset(image, channel, hw)] = conv2d_detail::from_float<T>(value);
                   });
}

}  // namespace

bool conv2d_backward_data_uses_tensor_cores(const Conv2dShape& shape) {
  return shape.params.math != ConvMath::fp32 &&
         shape.in_channels_per_group() >= kConv2dTensorCoreMinChannelsPerGroup && conv2d_tensor_cores_available();
}

template <typename T>
bool conv2d_backward_data_copies_asynchronously(const Conv2dShape& shape, const Conv2dFormats& formats,
                                                const T* dL_dy) {
  return math_copies_storage<T>(shape) && formats.output == MemoryFormat::channels_last &&
         whole_vectors_of<T>(shape.out_channels_per_group()) && whole_vectors_of<T>(shape.in_channels_per_group()) &&
         is_16_byte_aligned(dL_dy);
}

template <typename T>
void conv2d_backward_data_tensor_core(const Conv2dShape& shape, const Conv2dFormats& formats, const T* dL_dy,
                                      const Tensor& weight, T* dL_dx, cudaStream_t stream) {
  const Conv2dGeometry geometry = conv2d_detail::make_conv2d_geometry(shape, formats);
  const conv2d_detail::GemmSizes gemm = conv2d_detail::backward_data_gemm(geometry);
  const bool asynchronous = conv2d_backward_data_copies_asynchronously(shape, formats, dL_dy);
  const Conv2dTensorCoreTile tile = pass_tile(asynchronous, gemm, shape.params.groups, TileShapes::any_and_wgmma);
  const auto run = [&]<bool kAsync>(std::bool_constant<kAsync>, const T* weight_data) {
    launch_block_tiles<T, kAsync, TileShapes::any_and_wgmma>(
        shape, gemm, 1, tile, stream, "conv2d_backward_data_tensor_core",
        []<typename Path>(std::type_identity<Path>) { return conv2d_backward_data_tensor_core_kernel<Path>; }, dL_dy,
        weight_data, dL_dx, geometry);
  };
  run_with_weights<T>(asynchronous, weight, stream, run);
}

template bool conv2d_backward_data_copies_asynchronously<float>(const Conv2dShape&, const Conv2dFormats&,
                                                                const float*);
template bool conv2d_backward_data_copies_asynchronously<__half>(const Conv2dShape&, const Conv2dFormats&,
                                                                 const __half*);
template bool conv2d_backward_data_copies_asynchronously<__nv_bfloat16>(const Conv2dShape&, const Conv2dFormats&,
                                                                        const __nv_bfloat16*);
template void conv2d_backward_data_tensor_core<float>(const Conv2dShape&, const Conv2dFormats&, const float*,
                                                      const Tensor&, float*, cudaStream_t);
template void conv2d_backward_data_tensor_core<__half>(const Conv2dShape&, const Conv2dFormats&, const __half*,
                                                       const Tensor&, __half*, cudaStream_t);
template void conv2d_backward_data_tensor_core<__nv_bfloat16>(const Conv2dShape&, const Conv2dFormats&,
                                                              const __nv_bfloat16*, const Tensor&, __nv_bfloat16*,
                                                              cudaStream_t);

}  // namespace strata::kernels
