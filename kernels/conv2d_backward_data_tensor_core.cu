// conv2d backward-data on the tensor cores: the implicit GEMM of conv2d_backward_data.cu (per
// group, dL_dx (N*H*W pixels x C/groups channels) = gather(dL_dy) (pixels x K/groups*R*S) *
// weight (K/groups*R*S x C/groups)), on the block tile of conv2d_tensor_core.cuh (f32 dL_dy
// and weight rounded to tf32 or bf16 as they are staged, f16 and bf16 copied as they are; f32
// accumulators, dL_dx rounded once to the storage type). The gather is
// the fp32 kernel's: input pixel h receives output row p = (h + pad - r*dilation) / stride of
// kernel row r where that division is exact, so with stride > 1 most steps read zeros.
#include <cstdint>

#include "kernels/conv2d_tensor_core.cuh"

namespace strata::kernels {

namespace {

using conv2d_detail::Conv2dGeometry;
using namespace conv2d_tensor_core;

template <typename Math, typename T = typename Math::Storage>
__global__ void __launch_bounds__(kThreads)
    conv2d_backward_data_tensor_core_kernel(const T* __restrict__ dL_dy,   // (N, K, P, Q), g.output's format
                                            const T* __restrict__ weight,  // (K, C/groups, R, S)
                                            T* __restrict__ dL_dx,         // (N, C, H, W), g.input's format
                                            Conv2dGeometry g) {
  __shared__ __align__(32) unsigned char shared[kSharedBytes<Math>];

  const conv2d_detail::GemmSizes gemm = conv2d_detail::backward_data_gemm(g);
  const conv2d_detail::GemmBlockTile tile = conv2d_detail::gemm_block_tile(gemm, g.groups, kBlockM, kBlockN);

  // The input pixel this thread gathers gradients for, the same for every slice.
  const GatheredPixel a_pixel = gathered_pixel(tile.m0, gemm.m);
  const int a_image = a_pixel.pixel / g.in_plane;
  const int a_hw = a_pixel.pixel - a_image * g.in_plane;
  const int a_h = a_hw / g.in_width;
  const int h_shifted = a_h + g.pad_h;
  const int w_shifted = a_hw - a_h * g.in_width + g.pad_w;
  const std::int64_t group = tile.block.group;
  const T* dL_dy_group = dL_dy + g.output.offset(a_image, group * g.out_channels_per_group, 0);  // (K/groups, P, Q)
  const T* weight_group = weight + group * g.out_channels_per_group * g.in_channels_per_group *
                                           g.kernel_area;  // (K/groups, C/groups, R, S)

  auto loader = pixel_row_loader(
      [=](int k) {  // dL_dy of output channel k / (R*S) at the pixel that tap (r, s) of k takes from this one
        if (!a_pixel.valid) return zero<T>();
        const int out_channel = k / g.kernel_area;
        const int rs = k - out_channel * g.kernel_area;
        const int r = rs / g.kernel_width;
        const int p = conv2d_detail::source_output_index(h_shifted, r * g.dilation_h, g.stride_h, g.out_height);
        const int q = conv2d_detail::source_output_index(w_shifted, (rs - r * g.kernel_width) * g.dilation_w,
                                                         g.stride_w, g.out_width);
        return (p >= 0 && q >= 0) ? dL_dy_group[g.output.offset(0, out_channel, p * g.out_width + q)] : zero<T>();
      },
      [=](int n_local, int k) {  // weight (k = (K/groups channel, r, s), input channel tile.n0 + n_local)
        const std::int64_t channel = tile.n0 + n_local;
        if (channel >= gemm.n) return zero<T>();
        const int out_channel = k / g.kernel_area;
        const int rs = k - out_channel * g.kernel_area;
        return weight_group[(out_channel * g.in_channels_per_group + channel) * g.kernel_area + rs];
      });
  WarpAccumulators<Math> accumulators;
  accumulate_block_tile<Math>(loader, 0, gemm.reduction, shared, accumulators);
  write_block_tile(accumulators, shared, gemm.m - tile.m0, gemm.n - tile.n0, contiguous_for(g.input_channels_last),
                   [&](int m_local, int n_local, float value) {
                     const int pixel = static_cast<int>(tile.m0 + m_local);
                     const int image = pixel / g.in_plane;
                     const int hw = pixel - image * g.in_plane;
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
void conv2d_backward_data_tensor_core(const Conv2dShape& shape, const Conv2dFormats& formats, const T* dL_dy,
                                      const T* weight, T* dL_dx, cudaStream_t stream) {
  const Conv2dGeometry geometry = conv2d_detail::make_conv2d_geometry(shape, formats);
  launch_block_tiles<T>(
      shape, conv2d_detail::backward_data_gemm(geometry), 1, stream, "conv2d_backward_data_tensor_core",
      []<typename Math>(std::type_identity<Math>) { return conv2d_backward_data_tensor_core_kernel<Math>; }, dL_dy,
      weight, dL_dx, geometry);
}

template void conv2d_backward_data_tensor_core<float>(const Conv2dShape&, const Conv2dFormats&, const float*,
                                                      const float*, float*, cudaStream_t);
template void conv2d_backward_data_tensor_core<__half>(const Conv2dShape&, const Conv2dFormats&, const __half*,
                                                       const __half*, __half*, cudaStream_t);
template void conv2d_backward_data_tensor_core<__nv_bfloat16>(const Conv2dShape&, const Conv2dFormats&,
                                                              const __nv_bfloat16*, const __nv_bfloat16*,
                                                              __nv_bfloat16*, cudaStream_t);

}  // namespace strata::kernels
