// conv2d forward as an implicit GEMM per group: y (N*P*Q pixels x K/groups channels) =
// im2col(x) (pixels x C/groups*R*S) * weight^T, with im2col gathered on the fly into
// shared memory and the bias, then the Conv2dEpilogue (per-channel scale and shift, an
// activation; Conv2dEpilogueArgs in conv2d_forward_tensor_core.h), applied in the epilogue.
// One kernel for every storage dtype (f32, f16, bf16): loads convert to float, the tiles and
// sums are f32, y rounds once to the dtype.
// With Conv2dParams::math tf32 or bf16 the launcher hands suitable shapes to the tensor-core
// kernel (conv2d_forward_tensor_core.cu). Asked for per-channel statistics of y, each block
// also writes the moments of the values it stored, per channel, to slot m_tile of the partials
// (channel_stats.cuh); without, the kernel instantiated has no statistics code at all. The
// epilogue's element-wise kernels live here too: the cuDNN engine's forward applies it to
// cuDNN's output, and every backward starts with its derivative.
#include <string_view>

#include "core/nvtx.h"
#include "kernels/channel_indexer.h"
#include "kernels/channel_stats.cuh"
#include "kernels/conv2d_checks.h"
#include "kernels/conv2d_forward_tensor_core.h"
#include "kernels/conv2d_tensor_core.h"
#include "kernels/conv2d_weight_layout.h"
#include "kernels/conv2d_tiling.cuh"
#include "kernels/tensor_checks.h"
#include "strata/kernels/conv2d.h"

namespace strata::kernels {

namespace {

using conv2d_detail::Conv2dGeometry;

using conv2d_detail::from_float;
using conv2d_detail::to_float;

template <typename Tile, typename T, bool kStatistics>
__global__ void __launch_bounds__(Tile::threads)
    conv2d_forward_kernel(const T* __restrict__ x,       // (N, C, H, W), g.input's format
                          const T* __restrict__ weight,  // (K, C/groups, R, S)
                          const T* __restrict__ bias,    // (K), or null
                          T* __restrict__ y,             // (N, K, P, Q), g.output's format
                          Conv2dGeometry g,
                          ChannelPartials partials,      // (6, M tiles, K), with kStatistics
                          Conv2dEpilogueArgs<T> epilogue) {
  constexpr int kThreads = Tile::threads;
  constexpr int kBlockM = Tile::block_m;
  constexpr int kBlockN = Tile::block_n;
  constexpr int kBlockK = Tile::block_k;
  static_assert(kThreads % kBlockM == 0, "each thread gathers the patch of one fixed output pixel");
  constexpr int kRowsOfKPerPass = kThreads / kBlockM;
  constexpr int kALoads = (kBlockK + kRowsOfKPerPass - 1) / kRowsOfKPerPass;
  constexpr int kBLoads = (kBlockK * kBlockN + kThreads - 1) / kThreads;

  __shared__ float a_tile[kBlockK][kBlockM];  // im2col slice: (reduction, output pixel)
  __shared__ float b_tile[kBlockK][kBlockN];  // weight slice: (reduction, output channel)

  const std::int64_t gemm_m = static_cast<std::int64_t>(g.batch) * g.out_plane;  // < 2^31
  const std::int64_t gemm_n = g.out_channels_per_group;
  const int reduction = static_cast<int>(g.in_channels_per_group) * g.kernel_area;
  const conv2d_detail::GemmBlock block =
      conv2d_detail::gemm_block(static_cast<unsigned>(ceil_div(gemm_m, kBlockM)),
                                static_cast<unsigned>(ceil_div(gemm_n, kBlockN)), static_cast<unsigned>(g.groups));
  const std::int64_t m0 = static_cast<std::int64_t>(block.m_tile) * kBlockM;
  const std::int64_t n0 = static_cast<std::int64_t>(block.n_tile) * kBlockN;
  const int tid = static_cast<int>(threadIdx.x);
  const int thread_row = tid % Tile::threads_m;  // rows fastest: neighbouring pixels of y
  const int thread_col = tid / Tile::threads_m;

  // The output pixel whose input patch this thread gathers, the same for every slice.
  const int a_row = tid % kBlockM;
  const int a_first_k = tid / kBlockM;
  const bool a_pixel_valid = m0 + a_row < gemm_m;
  const int a_pixel = a_pixel_valid ? static_cast<int>(m0 + a_row) : 0;
  const auto [a_image, a_pq] = g.dividers.out_plane.divide_with_remainder(a_pixel);
  const auto [a_p, a_q] = g.dividers.out_width.divide_with_remainder(a_pq);
  const int h_origin = a_p * g.stride_h - g.pad_h;
  const int w_origin = a_q * g.stride_w - g.pad_w;
  const T* x_group = x + g.input.offset(a_image, block.group * g.in_channels_per_group, 0);  // (C/groups, H, W)
  const T* weight_group = weight + block.group * g.out_channels_per_group * reduction;  // (K/groups, C/groups*R*S)

  float acc[Tile::thread_m][Tile::thread_n] = {};
  for (int k0 = 0; k0 < reduction; k0 += kBlockK) {
    STRATA_UNROLL
    for (int load = 0; load < kALoads; ++load) {
      const int k_local = a_first_k + load * kRowsOfKPerPass;
      if (k_local >= kBlockK) break;
      const int k = k0 + k_local;
      float value = 0.0f;  // padding and the tails of the GEMM read as zero
      if (a_pixel_valid && k < reduction) {
        const auto [c, rs] = g.dividers.kernel_area.divide_with_remainder(k);
        const auto [r, s] = g.dividers.kernel_width.divide_with_remainder(rs);
        const int h = h_origin + r * g.dilation_h;
        const int w = w_origin + s * g.dilation_w;
        if (h >= 0 && h < g.in_height && w >= 0 && w < g.in_width) {
          value = to_float(x_group[g.input.offset(0, c, h * g.in_width + w)]);
        }
      }
      a_tile[k_local][a_row] = value;
    }
    STRATA_UNROLL
    for (int load = 0; load < kBLoads; ++load) {
      const int index = tid + load * kThreads;
      if (index >= kBlockK * kBlockN) break;
      const int k_local = index % kBlockK;  // fastest: the weight row is contiguous in k
      const int n_local = index / kBlockK;
      const int k = k0 + k_local;
      const std::int64_t channel = n0 + n_local;
      b_tile[k_local][n_local] =
          (k < reduction && channel < gemm_n) ? to_float(weight_group[channel * reduction + k]) : 0.0f;
    }
    __syncthreads();
    conv2d_detail::multiply_tiles<Tile>(a_tile, b_tile, thread_row, thread_col, acc);
    __syncthreads();  // before the next slice overwrites the tiles
  }

  STRATA_UNROLL
  for (int i = 0; i < Tile::thread_m; ++i) {
    const std::int64_t m = m0 + thread_row + i * Tile::threads_m;
    if (m >= gemm_m) continue;
    const auto [image, pq] = g.dividers.out_plane.divide_with_remainder(static_cast<int>(m));
    STRATA_UNROLL
    for (int j = 0; j < Tile::thread_n; ++j) {
      const std::int64_t channel_in_group = n0 + thread_col + j * Tile::threads_n;
      if (channel_in_group >= gemm_n) continue;
      const std::int64_t channel = block.group * g.out_channels_per_group + channel_in_group;
      const float bias_value = bias != nullptr ? to_float(bias[channel]) : 0.0f;
      const float stored =
          epilogue.store(y, g.output.offset(image, channel, pq), acc[i][j] + bias_value, channel);
      if constexpr (kStatistics) acc[i][j] = stored;  // the statistics are of y as stored
    }
  }

  if constexpr (kStatistics) {
    // A channel's threads (one thread_col) are threads_m consecutive lanes of one warp: each
    // adds its rows, then the lanes combine theirs, and the first writes the block's partial.
    static_assert(kWarpSize % Tile::threads_m == 0, "a column of threads within one warp");
    STRATA_UNROLL
    for (int j = 0; j < Tile::thread_n; ++j) {
      const std::int64_t channel_in_group = n0 + thread_col + j * Tile::threads_n;
      channel_stats::ShiftedSums sums = channel_stats::empty_sums();
      STRATA_UNROLL
      for (int i = 0; i < Tile::thread_m; ++i) {
        if (m0 + thread_row + i * Tile::threads_m < gemm_m && channel_in_group < gemm_n) {
          channel_stats::add_value(sums, acc[i][j]);
        }
      }
      sums = channel_stats::combine_lanes<Tile::threads_m>(sums);
      if (thread_row == 0 && channel_in_group < gemm_n) {
        channel_stats::store_partial(partials, block.m_tile, block.group * g.out_channels_per_group + channel_in_group,
                                     sums);
      }
    }
  }
}

// The element-wise epilogue kernels (the cuDNN engine's forward and every backward): an
// (N, K, P, Q) tensor walked linearly in memory, each element's channel from its index
// (all the tensors of one call share the layout).
constexpr int kEpilogueThreads = 256;

struct EpilogueLayout {
  ChannelIndexer channels;
  std::int64_t size;  // N*K*P*Q
};

EpilogueLayout epilogue_layout(const Tensor& tensor) {  // (N, K, P, Q)
  return {.channels = ChannelIndexer(tensor.size(1), tensor.size(2) * tensor.size(3), !tensor.is_contiguous()),
          .size = tensor.numel()};
}

// y = epilogue(z); y may be z (each element is read before it is written, by one thread).
template <typename T>
__global__ void conv2d_epilogue_forward_kernel(const T* z,  // (N, K, P, Q)
                                               EpilogueLayout layout, Conv2dEpilogueArgs<T> epilogue,
                                               T* y) {      // (N, K, P, Q)
  for (std::int64_t i = global_thread_index(); i < layout.size; i += global_thread_count()) {
    epilogue.store(y, i, to_float(z[i]), layout.channels.channel_of(i));
  }
}

// dL_dz = scale * activation'(dL_dy, saved), the activation's product rounded to f32 first.
template <typename T>
__global__ void conv2d_epilogue_backward_kernel(const T* dL_dy,          // (N, K, P, Q)
                                                const T* saved,          // (N, K, P, Q): y or v, or null
                                                EpilogueLayout layout,
                                                const float* scale,      // (K), or null
                                                FusedActivation activation,
                                                T* dL_dz) {              // (N, K, P, Q)
  for (std::int64_t i = global_thread_index(); i < layout.size; i += global_thread_count()) {
    const float saved_value = saved != nullptr ? to_float(saved[i]) : 0.0f;
    float value = fused_activation_backward(activation, to_float(dL_dy[i]), saved_value);
    if (scale != nullptr) value = __fmul_rn(value, scale[layout.channels.channel_of(i)]);
    dL_dz[i] = from_float<T>(value);
  }
}

}  // namespace

// One slot per block row of the GEMM: ceil(N*P*Q / block_m) of the tile the forward runs.
std::int64_t conv2d_forward_statistics_slots(const Conv2dShape& shape) {
  const std::int64_t gemm_m = shape.batch * shape.out_height * shape.out_width;
  if (conv2d_forward_uses_tensor_cores(shape)) return ceil_div(gemm_m, kConv2dTensorCoreBlockM);
  std::int64_t slots = 0;
  conv2d_detail::dispatch_conv2d_tile(select_conv2d_tile(gemm_m, shape.out_channels_per_group()),
                                      [&]<typename Tile>(std::type_identity<Tile>) {
                                        slots = ceil_div(gemm_m, Tile::block_m);
                                      });
  return slots;
}

void conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y, const Conv2dParams& params,
                    cudaStream_t stream, ChannelStatistics* statistics) {
  conv2d_forward(x, weight, bias, y, params, Conv2dEpilogue{}, stream, statistics);
}

void conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y, const Conv2dParams& params,
                    const Conv2dEpilogue& epilogue, cudaStream_t stream, ChannelStatistics* statistics,
                    Tensor* preactivation) {
  NvtxRange range("conv2d_forward");
  const Conv2dShape shape =
      expect_conv2d_forward_epilogue_arguments(x, weight, bias, y, params, epilogue, preactivation);
  const std::int64_t gemm_m = shape.batch * shape.out_height * shape.out_width;
  conv2d_detail::dispatch_conv2d_dtype(x.dtype(), [&]<typename T>(std::type_identity<T>) {
    const T* bias_data = bias.defined() ? bias.data<T>() : nullptr;
    const Conv2dEpilogueArgs<T> epilogue_args = conv2d_epilogue_args<T>(epilogue, preactivation);
    if (conv2d_forward_uses_tensor_cores(shape)) {
      const ChannelPartials partials = prepare_channel_statistics(
          statistics, conv2d_forward_statistics_slots(shape), shape.out_channels, "conv2d_forward", stream);
      conv2d_forward_tensor_core(shape, conv2d_detail::conv2d_formats(x, y), memory_elements<T>(x), weight,
                                 bias_data, memory_elements<T>(y), partials, epilogue_args, stream);
      return;
    }
    const Conv2dGeometry geometry = conv2d_detail::make_conv2d_geometry(shape, conv2d_detail::conv2d_formats(x, y));
    const std::int64_t gemm_n = shape.out_channels_per_group();
    const Tensor weight_kcrs = weight_in_kcrs_order(weight, stream);
    const T* x_data = memory_elements<T>(x);  // (N, C, H, W), either format
    T* y_data = memory_elements<T>(y);        // (N, K, P, Q), either format
    const Conv2dTileKind tile = select_conv2d_tile(gemm_m, gemm_n);
    conv2d_detail::dispatch_conv2d_tile(tile, [&]<typename Tile>(std::type_identity<Tile>) {
      const std::int64_t m_tiles = ceil_div(gemm_m, Tile::block_m);
      const unsigned blocks =
          conv2d_detail::gemm_grid(m_tiles, ceil_div(gemm_n, Tile::block_n), shape.params.groups, 1, "conv2d_forward");
      const LaunchConfig config{.grid = blocks, .block = Tile::threads, .stream = stream, .name = "conv2d_forward"};
      if (statistics == nullptr) {
        launch(conv2d_forward_kernel<Tile, T, false>, config, x_data, weight_kcrs.data<T>(), bias_data, y_data,
               geometry, no_channel_partials(), epilogue_args);
      } else {
        const ChannelPartials partials = prepare_channel_statistics(
            statistics, conv2d_forward_statistics_slots(shape), shape.out_channels, "conv2d_forward", stream);
        launch(conv2d_forward_kernel<Tile, T, true>, config, x_data, weight_kcrs.data<T>(), bias_data, y_data, geometry,
               partials, epilogue_args);
      }
    });
  });
}

Tensor conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& params,
                      cudaStream_t stream, ChannelStatistics* statistics) {
  const Conv2dShape shape = conv2d_shape(x.shape(), weight.shape(), params, "conv2d_forward");
  Tensor y = Tensor::empty(shape.output(), x.dtype(), stream, x.memory_format());  // (N, K, P, Q)
  conv2d_forward(x, weight, bias, y, params, stream, statistics);
  return y;
}

Tensor conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& params,
                      const Conv2dEpilogue& epilogue, cudaStream_t stream, ChannelStatistics* statistics) {
  const Conv2dShape shape = conv2d_shape(x.shape(), weight.shape(), params, "conv2d_forward");
  Tensor y = Tensor::empty(shape.output(), x.dtype(), stream, x.memory_format());  // (N, K, P, Q)
  conv2d_forward(x, weight, bias, y, params, epilogue, stream, statistics);
  return y;
}

void conv2d_epilogue_forward(const Tensor& z, const Conv2dEpilogue& epilogue, Tensor& y, cudaStream_t stream,
                             Tensor* preactivation) {
  constexpr std::string_view kOp = "conv2d_epilogue_forward";
  NvtxRange range("conv2d_epilogue_forward");
  expect_floating_device_tensor(z, kOp, "z");
  expect_rank(z, 4, kOp, "z");
  expect_conv2d_epilogue(epilogue, z.shape(), kOp, "z");
  expect_same_dtype(y, z, kOp, "y", "z");
  expect_shape(y, z.shape(), kOp, "y");
  expect_same_or_distinct(y, z, kOp, "y", "z");
  if (preactivation != nullptr) {
    expect_same_dtype(*preactivation, z, kOp, "preactivation", "z");
    expect_shape(*preactivation, z.shape(), kOp, "preactivation");
    expect_same_or_distinct(*preactivation, z, kOp, "preactivation", "z");
    expect_distinct(*preactivation, y, kOp, "preactivation", "y");
    expect_same_memory_order(*preactivation, z, kOp, "preactivation", "z");
  }
  expect_same_memory_order(y, z, kOp, "y", "z");
  if (z.numel() == 0) return;
  const EpilogueLayout layout = epilogue_layout(z);
  conv2d_detail::dispatch_conv2d_dtype(z.dtype(), [&]<typename T>(std::type_identity<T>) {
    launch(conv2d_epilogue_forward_kernel<T>,
           LaunchConfig{.grid = grid_stride_blocks(layout.size, kEpilogueThreads), .block = kEpilogueThreads,
                        .stream = stream, .name = "conv2d_epilogue_forward"},
           memory_elements<T>(z), layout, conv2d_epilogue_args<T>(epilogue, preactivation),
           memory_elements<T>(y));
  });
}

void conv2d_epilogue_backward(const Tensor& dL_dy, const Tensor& saved, const Conv2dEpilogue& epilogue,
                              Tensor& dL_dz, cudaStream_t stream) {
  constexpr std::string_view kOp = "conv2d_epilogue_backward";
  NvtxRange range("conv2d_epilogue_backward");
  expect_floating_device_tensor(dL_dy, kOp, "dL_dy");
  expect_rank(dL_dy, 4, kOp, "dL_dy");
  expect_conv2d_epilogue(epilogue, dL_dy.shape(), kOp, "dL_dy");
  const bool reads_saved = epilogue.activation != FusedActivation::none;
  if (reads_saved) {
    expect_same_dtype(saved, dL_dy, kOp, "saved", "dL_dy");
    expect_shape(saved, dL_dy.shape(), kOp, "saved");
    expect_same_or_distinct(dL_dz, saved, kOp, "dL_dz", "saved");
    expect_same_memory_order(saved, dL_dy, kOp, "saved", "dL_dy");
  }
  expect_same_dtype(dL_dz, dL_dy, kOp, "dL_dz", "dL_dy");
  expect_shape(dL_dz, dL_dy.shape(), kOp, "dL_dz");
  expect_same_or_distinct(dL_dz, dL_dy, kOp, "dL_dz", "dL_dy");
  expect_same_memory_order(dL_dz, dL_dy, kOp, "dL_dz", "dL_dy");
  if (dL_dy.numel() == 0) return;
  const EpilogueLayout layout = epilogue_layout(dL_dy);
  conv2d_detail::dispatch_conv2d_dtype(dL_dy.dtype(), [&]<typename T>(std::type_identity<T>) {
    launch(conv2d_epilogue_backward_kernel<T>,
           LaunchConfig{.grid = grid_stride_blocks(layout.size, kEpilogueThreads), .block = kEpilogueThreads,
                        .stream = stream, .name = "conv2d_epilogue_backward"},
           memory_elements<T>(dL_dy), reads_saved ? memory_elements<T>(saved) : nullptr,
           layout, epilogue.scale.defined() ? epilogue.scale.data<float>() : nullptr, epilogue.activation,
           memory_elements<T>(dL_dz));
  });
}

}  // namespace strata::kernels
