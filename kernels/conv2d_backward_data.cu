// conv2d backward-data as an implicit GEMM per group: dL_dx (N*H*W pixels x C/groups
// channels) = gather(dL_dy) (pixels x K/groups*R*S) * weight (K/groups*R*S x C/groups). The
// gather is the transposed convolution: input pixel h receives output row p = (h + pad -
// r*dilation) / stride of kernel row r whenever that division is exact and p is in range.
// One kernel for every storage dtype (f32, f16, bf16): loads convert to float, the sums are
// f32, dL_dx rounds once to the dtype. The launcher hands suitable shapes to the tensor-core
// kernel (conv2d_backward_data_tensor_core.cu).
#include "core/nvtx.h"
#include "kernels/conv2d_checks.h"
#include "kernels/conv2d_tensor_core.h"
#include "kernels/conv2d_weight_layout.h"
#include "kernels/conv2d_tiling.cuh"
#include "strata/kernels/conv2d.h"

namespace strata::kernels {

namespace {

using conv2d_detail::Conv2dGeometry;

using conv2d_detail::from_float;
using conv2d_detail::to_float;

template <typename Tile, typename T>
__global__ void __launch_bounds__(Tile::threads)
    conv2d_backward_data_kernel(const T* __restrict__ dL_dy,   // (N, K, P, Q), g.output's format
                                const T* __restrict__ weight,  // (K, C/groups, R, S)
                                T* __restrict__ dL_dx,         // (N, C, H, W), g.input's format
                                Conv2dGeometry g) {
  constexpr int kThreads = Tile::threads;
  constexpr int kBlockM = Tile::block_m;
  constexpr int kBlockN = Tile::block_n;
  constexpr int kBlockK = Tile::block_k;
  static_assert(kThreads % kBlockM == 0, "each thread gathers for one fixed input pixel");
  constexpr int kRowsOfKPerPass = kThreads / kBlockM;
  constexpr int kALoads = (kBlockK + kRowsOfKPerPass - 1) / kRowsOfKPerPass;
  constexpr int kBLoads = (kBlockK * kBlockN + kThreads - 1) / kThreads;

  __shared__ float a_tile[kBlockK][kBlockM];  // gathered dL_dy: (reduction, input pixel)
  __shared__ float b_tile[kBlockK][kBlockN];  // weight: (reduction, input channel)

  const std::int64_t gemm_m = static_cast<std::int64_t>(g.batch) * g.in_plane;  // < 2^31
  const std::int64_t gemm_n = g.in_channels_per_group;
  const int reduction = static_cast<int>(g.out_channels_per_group) * g.kernel_area;
  const conv2d_detail::GemmBlock block =
      conv2d_detail::gemm_block(static_cast<unsigned>(ceil_div(gemm_m, kBlockM)),
                                static_cast<unsigned>(ceil_div(gemm_n, kBlockN)), static_cast<unsigned>(g.groups));
  const std::int64_t m0 = static_cast<std::int64_t>(block.m_tile) * kBlockM;
  const std::int64_t n0 = static_cast<std::int64_t>(block.n_tile) * kBlockN;
  const int tid = static_cast<int>(threadIdx.x);
  const int thread_row = tid % Tile::threads_m;  // rows fastest: neighbouring pixels of dL_dx
  const int thread_col = tid / Tile::threads_m;

  // The input pixel this thread gathers gradients for, the same for every slice.
  const int a_row = tid % kBlockM;
  const int a_first_k = tid / kBlockM;
  const bool a_pixel_valid = m0 + a_row < gemm_m;
  const int a_pixel = a_pixel_valid ? static_cast<int>(m0 + a_row) : 0;
  const auto [a_image, a_hw] = g.dividers.in_plane.divide_with_remainder(a_pixel);
  const auto [a_h, a_w] = g.dividers.in_width.divide_with_remainder(a_hw);
  const int h_shifted = a_h + g.pad_h;
  const int w_shifted = a_w + g.pad_w;
  const T* dL_dy_group =
      dL_dy + g.output.offset(a_image, block.group * g.out_channels_per_group, 0);  // (K/groups, P, Q)
  const T* weight_group =
      weight + block.group * g.out_channels_per_group * g.in_channels_per_group * g.kernel_area;  // (K/groups, C/groups, R, S)

  float acc[Tile::thread_m][Tile::thread_n] = {};
  for (int k0 = 0; k0 < reduction; k0 += kBlockK) {
    STRATA_UNROLL
    for (int load = 0; load < kALoads; ++load) {
      const int k_local = a_first_k + load * kRowsOfKPerPass;
      if (k_local >= kBlockK) break;
      const int k = k0 + k_local;
      float value = 0.0f;
      if (a_pixel_valid && k < reduction) {
        const auto [out_channel, rs] = g.dividers.kernel_area.divide_with_remainder(k);
        const auto [r, s] = g.dividers.kernel_width.divide_with_remainder(rs);
        const int p =
            conv2d_detail::source_output_index(h_shifted, r * g.dilation_h, g.dividers.stride_h, g.out_height);
        const int q =
            conv2d_detail::source_output_index(w_shifted, s * g.dilation_w, g.dividers.stride_w, g.out_width);
        if (p >= 0 && q >= 0) {
          value = to_float(dL_dy_group[g.output.offset(0, out_channel, p * g.out_width + q)]);
        }
      }
      a_tile[k_local][a_row] = value;
    }
    STRATA_UNROLL
    for (int load = 0; load < kBLoads; ++load) {
      const int index = tid + load * kThreads;
      if (index >= kBlockK * kBlockN) break;
      const int k_local = index % kBlockK;  // fastest: (r, s) are contiguous in the weight
      const int n_local = index / kBlockK;
      const int k = k0 + k_local;
      const std::int64_t channel = n0 + n_local;
      float value = 0.0f;
      if (k < reduction && channel < gemm_n) {
        const auto [out_channel, rs] = g.dividers.kernel_area.divide_with_remainder(k);
        value = to_float(weight_group[(out_channel * g.in_channels_per_group + channel) * g.kernel_area + rs]);
      }
      b_tile[k_local][n_local] = value;
    }
    __syncthreads();
    conv2d_detail::multiply_tiles<Tile>(a_tile, b_tile, thread_row, thread_col, acc);
    __syncthreads();  // before the next slice overwrites the tiles
  }

  STRATA_UNROLL
  for (int i = 0; i < Tile::thread_m; ++i) {
    const std::int64_t m = m0 + thread_row + i * Tile::threads_m;
    if (m >= gemm_m) continue;
    const auto [image, hw] = g.dividers.in_plane.divide_with_remainder(static_cast<int>(m));
    STRATA_UNROLL
    for (int j = 0; j < Tile::thread_n; ++j) {
      const std::int64_t channel_in_group = n0 + thread_col + j * Tile::threads_n;
      if (channel_in_group >= gemm_n) continue;
      const std::int64_t channel = block.group * g.in_channels_per_group + channel_in_group;
      dL_dx[g.input.offset(image, channel, hw)] = from_float<T>(acc[i][j]);
    }
  }
}

}  // namespace

void conv2d_backward_data(const Tensor& dL_dy, const Tensor& weight, Tensor& dL_dx, const Conv2dParams& params,
                          cudaStream_t stream) {
  NvtxRange range("conv2d_backward_data");
  const Conv2dShape shape = expect_conv2d_backward_data_arguments(dL_dy, weight, dL_dx, params);
  const Conv2dFormats formats = conv2d_detail::conv2d_formats(dL_dx, dL_dy);
  conv2d_detail::dispatch_conv2d_dtype(dL_dy.dtype(), [&]<typename T>(std::type_identity<T>) {
    const T* dL_dy_data = memory_elements<T>(dL_dy);  // (N, K, P, Q), either format
    T* dL_dx_data = memory_elements<T>(dL_dx);        // (N, C, H, W), either format
    if (conv2d_backward_data_uses_tensor_cores(shape)) {
      conv2d_backward_data_tensor_core(shape, formats, dL_dy_data, weight, dL_dx_data, stream);
      return;
    }
    const Conv2dGeometry geometry = conv2d_detail::make_conv2d_geometry(shape, formats);
    const Tensor weight_kcrs = weight_in_kcrs_order(weight, stream);
    const std::int64_t gemm_m = shape.batch * shape.in_height * shape.in_width;
    const std::int64_t gemm_n = shape.in_channels_per_group();
    const Conv2dTileKind tile = select_conv2d_tile(gemm_m, gemm_n);
    conv2d_detail::dispatch_conv2d_tile(tile, [&]<typename Tile>(std::type_identity<Tile>) {
      const unsigned blocks = conv2d_detail::gemm_grid(ceil_div(gemm_m, Tile::block_m),
                                                       ceil_div(gemm_n, Tile::block_n), shape.params.groups, 1,
                                                       "conv2d_backward_data");
      launch(conv2d_backward_data_kernel<Tile, T>,
             LaunchConfig{.grid = blocks, .block = Tile::threads, .stream = stream, .name = "conv2d_backward_data"},
             dL_dy_data, weight_kcrs.data<T>(), dL_dx_data, geometry);
    });
  });
}

Tensor conv2d_backward_data(const Tensor& dL_dy, const Tensor& weight, const Shape& input_shape,
                            const Conv2dParams& params, cudaStream_t stream) {
  conv2d_shape(input_shape, weight.shape(), params, "conv2d_backward_data");
  Tensor dL_dx = Tensor::empty(input_shape, dL_dy.dtype(), stream, dL_dy.memory_format());  // (N, C, H, W)
  conv2d_backward_data(dL_dy, weight, dL_dx, params, stream);
  return dL_dx;
}

}  // namespace strata::kernels
