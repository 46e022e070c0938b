// conv2d backward-filter as an implicit GEMM per group: dL_dweight (K/groups x C/groups*R*S)
// = dL_dy (K/groups x N*P*Q) * im2col(x) (N*P*Q x C/groups*R*S). The long N*P*Q reduction
// is split into fixed chunks (blocks of their own); deterministically, each chunk writes its
// partial sums to a workspace that a second kernel adds up in chunk order. The atomic variant
// runs only when the caller asks for it and strata::is_deterministic() is off. The tensor-core
// kernel (conv2d_backward_filter_tensor_core.cu) takes suitable shapes, split and added up
// the same way. One kernel for every storage dtype (f32, f16, bf16): loads convert to float
// and the sums are f32; f16 and bf16 always go through the f32 workspace (one slab when the
// reduction is not split), whose adding kernel rounds once to the dtype, so that a split
// never rounds its partial sums (and atomics are for f32 only).
#include <type_traits>

#include "core/nvtx.h"
#include "kernels/conv2d_checks.h"
#include "kernels/conv2d_tensor_core.h"
#include "kernels/conv2d_tiling.cuh"
#include "strata/core/determinism.h"
#include "strata/kernels/conv2d.h"

namespace strata::kernels {

namespace {

using conv2d_detail::Conv2dGeometry;

using conv2d_detail::from_float;
using conv2d_detail::to_float;

template <typename Tile, typename T>
__global__ void __launch_bounds__(Tile::threads)
    conv2d_backward_filter_kernel(const T* __restrict__ x,      // (N, C, H, W), g.input's format
                                  const T* __restrict__ dL_dy,  // (N, K, P, Q), g.output's format
                                  Conv2dFilterOutput output,        // (splits or 1, K, C/groups, R, S)
                                  std::int64_t chunk, Conv2dGeometry g) {
  constexpr int kThreads = Tile::threads;
  constexpr int kBlockM = Tile::block_m;
  constexpr int kBlockN = Tile::block_n;
  constexpr int kBlockK = Tile::block_k;
  static_assert(kThreads % kBlockK == 0, "each thread loads one fixed reduction step of every slice");
  constexpr int kColumnsPerPass = kThreads / kBlockK;
  constexpr int kALoads = (kBlockK * kBlockM + kThreads - 1) / kThreads;
  constexpr int kBLoads = (kBlockN + kColumnsPerPass - 1) / kColumnsPerPass;

  __shared__ float a_tile[kBlockK][kBlockM];  // dL_dy: (reduction, output channel)
  __shared__ float b_tile[kBlockK][kBlockN];  // im2col slice: (reduction, (c, r, s))

  const std::int64_t gemm_m = g.out_channels_per_group;
  const int gemm_n = static_cast<int>(g.in_channels_per_group) * g.kernel_area;
  const std::int64_t reduction = static_cast<std::int64_t>(g.batch) * g.out_plane;  // < 2^31
  const conv2d_detail::GemmBlock block =
      conv2d_detail::gemm_block(static_cast<unsigned>(ceil_div(gemm_m, kBlockM)),
                                static_cast<unsigned>(ceil_div(gemm_n, kBlockN)), static_cast<unsigned>(g.groups));
  const std::int64_t m0 = static_cast<std::int64_t>(block.m_tile) * kBlockM;
  const int n0 = static_cast<int>(block.n_tile) * kBlockN;
  const std::int64_t reduction_begin = block.split * chunk;
  const std::int64_t reduction_end = reduction_begin + chunk < reduction ? reduction_begin + chunk : reduction;
  const int tid = static_cast<int>(threadIdx.x);
  const int thread_row = tid / Tile::threads_n;
  const int thread_col = tid % Tile::threads_n;  // columns fastest: dL_dweight rows are contiguous in (c, r, s)

  // Every load of this thread is at reduction step tid % kBlockK of the slice. Its columns
  // of the im2col tile are fixed: decompose them into (c, r, s) once.
  const int k_local = tid % kBlockK;
  const int first_column = tid / kBlockK;
  std::int64_t column_offset[kBLoads];  // offset of the column's input channel c
  int column_dh[kBLoads];               // r * dilation_h
  int column_dw[kBLoads];               // s * dilation_w
  bool column_valid[kBLoads];
  STRATA_UNROLL
  for (int load = 0; load < kBLoads; ++load) {
    const int n_local = first_column + load * kColumnsPerPass;
    const int column = n0 + n_local;
    column_valid[load] = n_local < kBlockN && column < gemm_n;
    const auto [c, rs] = g.dividers.kernel_area.divide_with_remainder(column_valid[load] ? column : 0);
    const auto [r, s] = g.dividers.kernel_width.divide_with_remainder(rs);
    column_offset[load] = c * g.input.channel;
    column_dh[load] = r * g.dilation_h;
    column_dw[load] = s * g.dilation_w;
  }
  const std::int64_t first_channel = block.group * g.out_channels_per_group;

  float acc[Tile::thread_m][Tile::thread_n] = {};
  for (std::int64_t k0 = reduction_begin; k0 < reduction_end; k0 += kBlockK) {
    // This thread's reduction step: output pixel (image, p, q).
    const bool step_valid = k0 + k_local < reduction_end;
    const int step = step_valid ? static_cast<int>(k0 + k_local) : 0;
    const auto [image, pq] = g.dividers.out_plane.divide_with_remainder(step);
    const auto [p, q] = g.dividers.out_width.divide_with_remainder(pq);
    const int h_origin = p * g.stride_h - g.pad_h;
    const int w_origin = q * g.stride_w - g.pad_w;
    const T* dL_dy_pixel = dL_dy + g.output.offset(image, first_channel, pq);  // (K/groups) at (p, q)
    const T* x_group = x + g.input.offset(image, block.group * g.in_channels_per_group, 0);  // (C/groups, H, W)

    STRATA_UNROLL
    for (int load = 0; load < kALoads; ++load) {
      const int index = tid + load * kThreads;
      if (index >= kBlockK * kBlockM) break;
      const int m_local = index / kBlockK;  // index % kBlockK == k_local since kThreads % kBlockK == 0
      const std::int64_t channel = m0 + m_local;
      a_tile[k_local][m_local] =
          (step_valid && channel < gemm_m) ? to_float(dL_dy_pixel[channel * g.output.channel]) : 0.0f;
    }
    STRATA_UNROLL
    for (int load = 0; load < kBLoads; ++load) {
      const int n_local = first_column + load * kColumnsPerPass;
      if (n_local >= kBlockN) break;
      const int h = h_origin + column_dh[load];
      const int w = w_origin + column_dw[load];
      const bool inside = step_valid && column_valid[load] && h >= 0 && h < g.in_height && w >= 0 && w < g.in_width;
      b_tile[k_local][n_local] =
          inside ? to_float(x_group[column_offset[load] + (h * g.in_width + w) * g.input.pixel]) : 0.0f;
    }
    __syncthreads();
    conv2d_detail::multiply_tiles<Tile>(a_tile, b_tile, thread_row, thread_col, acc);
    __syncthreads();  // before the next slice overwrites the tiles
  }

  float* out = output.out + block.split * output.split_stride;  // (K, C/groups*R*S)
  STRATA_UNROLL
  for (int i = 0; i < Tile::thread_m; ++i) {
    const std::int64_t channel = m0 + thread_row + i * Tile::threads_m;
    if (channel >= gemm_m) continue;
    STRATA_UNROLL
    for (int j = 0; j < Tile::thread_n; ++j) {
      const int column = n0 + thread_col + j * Tile::threads_n;
      if (column >= gemm_n) continue;
      const std::int64_t index = (first_channel + channel) * gemm_n + column;
      if (output.atomic) {
        atomicAdd(out + index, acc[i][j]);
      } else {
        out[index] = acc[i][j];
      }
    }
  }
}

// dL_dweight[i] = sum over split of partial[split][i], in split order: the same float
// additions in the same order on every run, rounded once to T, and stored as Out (T, or f32:
// the T value widened exactly, as autocast's cast back to an f32 weight would).
template <typename T, typename Out>
__global__ void conv2d_filter_reduce_kernel(const float* __restrict__ partial,  // (splits, K*C/groups*R*S)
                                            Out* __restrict__ dL_dweight,       // (K*C/groups*R*S)
                                            std::int64_t count, std::int64_t splits) {
  for (std::int64_t i = global_thread_index(); i < count; i += global_thread_count()) {
    float sum = 0.0f;
    for (std::int64_t split = 0; split < splits; ++split) sum += partial[split * count + i];
    dL_dweight[i] = from_float<Out>(to_float(from_float<T>(sum)));
  }
}

}  // namespace

void conv2d_backward_filter(const Tensor& x, const Tensor& dL_dy, Tensor& dL_dweight, const Conv2dParams& params,
                            cudaStream_t stream) {
  NvtxRange range("conv2d_backward_filter");
  const Conv2dShape shape = expect_conv2d_backward_filter_arguments(x, dL_dy, dL_dweight, params);
  // The switch overrides a request for atomics (strata/core/determinism.h). Read on every
  // call, whatever the split, so that a malformed STRATA_DETERMINISTIC fails the first call.
  const bool deterministic = is_deterministic() || params.deterministic;

  const std::int64_t gemm_m = shape.out_channels_per_group();
  const std::int64_t gemm_n = shape.in_channels_per_group() * shape.kernel_height * shape.kernel_width;
  const std::int64_t reduction = shape.batch * shape.out_height * shape.out_width;
  const std::int64_t weight_count = shape.out_channels * gemm_n;
  const Conv2dFormats formats = conv2d_detail::conv2d_formats(x, dL_dy);
  conv2d_detail::dispatch_conv2d_dtype(x.dtype(), [&]<typename T>(std::type_identity<T>) {
    const T* x_data = memory_elements<T>(x);          // (N, C, H, W), either format
    const T* dL_dy_data = memory_elements<T>(dL_dy);  // (N, K, P, Q), either format
    constexpr bool kF32 = std::is_same_v<T, float>;
    // The reduction in chunks for a block tile of block_m x block_n, block_k steps a stage;
    // launch_chunks(Conv2dFilterOutput, split) runs the GEMM.
    const auto in_chunks = [&](std::int64_t block_m, std::int64_t block_n, int block_k, const auto& launch_chunks) {
      const Conv2dReductionSplit split = split_conv2d_reduction(
          reduction, ceil_div(gemm_m, block_m) * ceil_div(gemm_n, block_n) * shape.params.groups, block_k);
      if (kF32 && split.splits == 1) {
        launch_chunks(Conv2dFilterOutput{dL_dweight.data<float>(), 0, false}, split);
      } else if (kF32 && !deterministic) {
        dL_dweight.fill(0.0, stream);
        launch_chunks(Conv2dFilterOutput{dL_dweight.data<float>(), 0, true}, split);
      } else {
        // Freed at the end of this scope, stream-ordered: reused only by later work on stream.
        Tensor partial = Tensor::empty({split.splits, weight_count}, DType::f32, stream);  // (splits, K*C/groups*R*S)
        launch_chunks(Conv2dFilterOutput{partial.data<float>(), weight_count, false}, split);
        constexpr int kReduceThreads = 256;
        const LaunchConfig config{.grid = grid_stride_blocks(weight_count, kReduceThreads), .block = kReduceThreads,
                                  .stream = stream, .name = "conv2d_backward_filter_reduce"};
        if (dL_dweight.dtype() == DType::f32) {
          launch(conv2d_filter_reduce_kernel<T, float>, config, partial.data<float>(), dL_dweight.data<float>(),
                 weight_count, split.splits);
        } else {
          launch(conv2d_filter_reduce_kernel<T, T>, config, partial.data<float>(), dL_dweight.data<T>(), weight_count,
                 split.splits);
        }
      }
    };

    if (conv2d_backward_filter_uses_tensor_cores(shape)) {
      // The chunks are cut for the tile's blocks, so the tile comes first.
      const Conv2dTensorCoreTile tile = conv2d_backward_filter_tensor_core_tile(shape, formats, x_data, dL_dy_data);
      in_chunks(conv2d_tensor_core_block_m(tile), conv2d_tensor_core_block_n(tile), kConv2dTensorCoreStepK,
                [&](Conv2dFilterOutput output, const Conv2dReductionSplit& split) {
                  conv2d_backward_filter_tensor_core(shape, formats, x_data, dL_dy_data, output, split, tile, stream);
                });
      return;
    }
    const Conv2dGeometry geometry = conv2d_detail::make_conv2d_geometry(shape, formats);
    conv2d_detail::dispatch_conv2d_tile(
        select_conv2d_tile(gemm_m, gemm_n), [&]<typename Tile>(std::type_identity<Tile>) {
          in_chunks(Tile::block_m, Tile::block_n, Tile::block_k,
                    [&](Conv2dFilterOutput output, const Conv2dReductionSplit& split) {
                      const unsigned blocks =
                          conv2d_detail::gemm_grid(ceil_div(gemm_m, Tile::block_m), ceil_div(gemm_n, Tile::block_n),
                                                   shape.params.groups, split.splits, "conv2d_backward_filter");
                      launch(conv2d_backward_filter_kernel<Tile, T>,
                             LaunchConfig{.grid = blocks, .block = Tile::threads, .stream = stream,
                                          .name = "conv2d_backward_filter"},
                             x_data, dL_dy_data, output, split.chunk, geometry);
                    });
        });
  });
}

Tensor conv2d_backward_filter(const Tensor& x, const Tensor& dL_dy, const Shape& weight_shape,
                              const Conv2dParams& params, cudaStream_t stream) {
  conv2d_shape(x.shape(), weight_shape, params, "conv2d_backward_filter");
  Tensor dL_dweight = Tensor::empty(weight_shape, x.dtype(), stream);  // (K, C/groups, R, S)
  conv2d_backward_filter(x, dL_dy, dL_dweight, params, stream);
  return dL_dweight;
}

}  // namespace strata::kernels
