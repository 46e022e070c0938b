// Tensor-core kernels written against CUDA's wmma API, shared by the simulator's tests
// (test_wmma.cu runs them) and the CUDA flavour (wmma_nvcc_check.cu compiles them for sm_90),
// so the source the simulator checks is CUDA. They rely on nothing CUDA leaves unspecified:
// not on the mapping of x[] to the matrix, not on the order of the sums.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "core/launch.cuh"
#include "core/wmma.cuh"

namespace strata::testing::wmma_kernels {

namespace wmma = nvcuda::wmma;

// Strides (in elements) and memory layouts of one tile product d = a * b + c; each tile may
// lie inside a larger matrix.
struct TileArguments {
  unsigned lda = 16;
  unsigned ldb = 16;
  unsigned ldc = 16;
  unsigned ldd = 16;
  wmma::layout_t c_layout = wmma::mem_row_major;
  wmma::layout_t d_layout = wmma::mem_row_major;
};

// One warp: d (16, 16) = a (16, 16) * b (16, 16) + c (16, 16). a and b are in the layouts the
// fragment types name, c and d in the layouts of args.
template <typename Input, typename LayoutA, typename LayoutB, typename C, typename D>
__global__ void wmma_tile_kernel(const Input* a, const Input* b, const C* c, D* d, TileArguments args) {
  wmma::fragment<wmma::matrix_a, 16, 16, 16, Input, LayoutA> a_fragment;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, Input, LayoutB> b_fragment;
  wmma::fragment<wmma::accumulator, 16, 16, 16, C> c_fragment;
  wmma::fragment<wmma::accumulator, 16, 16, 16, D> d_fragment;
  wmma::load_matrix_sync(a_fragment, a, args.lda);
  wmma::load_matrix_sync(b_fragment, b, args.ldb);
  wmma::load_matrix_sync(c_fragment, c, args.ldc, args.c_layout);
  wmma::mma_sync(d_fragment, a_fragment, b_fragment, c_fragment);
  wmma::store_matrix_sync(d, d_fragment, args.ldd, args.d_layout);
}

// One warp, tf32 inputs: d (16, 16) = a (16, 8) * b (8, 16) + c (16, 16), all row-major. The
// inputs are rounded to tf32 in the fragments, as CUDA's programming guide does.
__global__ void wmma_tf32_tile_kernel(const float* a, const float* b, const float* c, float* d, TileArguments args) {
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a_fragment;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b_fragment;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> accumulator;
  wmma::load_matrix_sync(a_fragment, a, args.lda);
  wmma::load_matrix_sync(b_fragment, b, args.ldb);
  wmma::load_matrix_sync(accumulator, c, args.ldc, args.c_layout);
  for (int i = 0; i < a_fragment.num_elements; ++i) a_fragment.x[i] = wmma::__float_to_tf32(a_fragment.x[i]);
  for (int i = 0; i < b_fragment.num_elements; ++i) b_fragment.x[i] = wmma::__float_to_tf32(b_fragment.x[i]);
  wmma::mma_sync(accumulator, a_fragment, b_fragment, accumulator);
  wmma::store_matrix_sync(d, accumulator, args.ldd, args.d_layout);
}

// y[i] = x[i] rounded to tf32.
__global__ void float_to_tf32_kernel(const float* x, float* y, int count) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < count) y[i] = wmma::__float_to_tf32(x[i]);
}

// ---- A tiled GEMM on the tensor cores ------------------------------------------------------

struct GemmShape {
  int m = 0;
  int n = 0;
  int k = 0;
  float alpha = 1.0f;
};

inline constexpr int kGemmBlockTile = 64;  // a block computes (64, 64) of C
inline constexpr int kGemmWarpTile = 32;   // four warps of (32, 32): 2 x 2 fragments each
inline constexpr int kGemmStepK = 16;      // columns of A (rows of B) staged per step
inline constexpr int kGemmThreads = 128;

// Which of the K loop's two __syncthreads the GEMM leaves out. Only the simulator's tests of
// its schedules (test_wmma.cu) launch the racy variants, to show that they are caught.
enum class GemmBarriers {
  all,
  missing_after_staging,     // warps may load fragments before the others have staged the tiles
  missing_before_overwrite,  // warps may stage the next step's tiles while others still load these
};

// c (M, N) = alpha * a (M, K) * b (K, N), all row-major, float results. The tiles of a and b
// for one K step are staged in shared memory, zero-filled beyond the edges of the matrices,
// so M, N and K need not be multiples of the tile; the results pass through shared memory so
// that only the valid part of an edge tile is written.
template <typename Input, GemmBarriers kBarriers = GemmBarriers::all>
__global__ void __launch_bounds__(kGemmThreads) wmma_gemm_kernel(const Input* a, const Input* b, float* c,
                                                                    GemmShape shape) {
  // Rows padded by 8 elements (16 bytes for __half, 32 for float): ldm stays a multiple of
  // 16 bytes, every fragment's first element stays 32-byte aligned.
  constexpr int kLdA = kGemmStepK + 8;
  constexpr int kLdB = kGemmBlockTile + 8;
  constexpr int kLdC = kGemmBlockTile + 8;
  __shared__ __align__(32) Input a_tile[kGemmBlockTile * kLdA];  // (64, 16) of a
  __shared__ __align__(32) Input b_tile[kGemmStepK * kLdB];      // (16, 64) of b
  __shared__ __align__(32) float c_tile[kGemmBlockTile * kLdC];  // (64, 64) of c

  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int warp_row = warp / 2 * kGemmWarpTile;
  const int warp_col = warp % 2 * kGemmWarpTile;
  const int block_row = static_cast<int>(blockIdx.y) * kGemmBlockTile;
  const int block_col = static_cast<int>(blockIdx.x) * kGemmBlockTile;
  const Input zero = static_cast<Input>(0.0f);

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> accumulators[2][2];
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(accumulators[i][j], 0.0f);
  }

  for (int k0 = 0; k0 < shape.k; k0 += kGemmStepK) {
    for (int e = static_cast<int>(threadIdx.x); e < kGemmBlockTile * kGemmStepK; e += kGemmThreads) {
      const int row = e / kGemmStepK, col = e % kGemmStepK;
      const int global_row = block_row + row, global_col = k0 + col;
      a_tile[row * kLdA + col] =
          global_row < shape.m && global_col < shape.k ? a[global_row * shape.k + global_col] : zero;
    }
    for (int e = static_cast<int>(threadIdx.x); e < kGemmStepK * kGemmBlockTile; e += kGemmThreads) {
      const int row = e / kGemmBlockTile, col = e % kGemmBlockTile;
      const int global_row = k0 + row, global_col = block_col + col;
      b_tile[row * kLdB + col] =
          global_row < shape.k && global_col < shape.n ? b[global_row * shape.n + global_col] : zero;
    }
    if constexpr (kBarriers != GemmBarriers::missing_after_staging) __syncthreads();
    for (int i = 0; i < 2; ++i) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, Input, wmma::row_major> a_fragment;
      wmma::load_matrix_sync(a_fragment, a_tile + (warp_row + 16 * i) * kLdA, kLdA);
      for (int j = 0; j < 2; ++j) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, Input, wmma::row_major> b_fragment;
        wmma::load_matrix_sync(b_fragment, b_tile + warp_col + 16 * j, kLdB);
        wmma::mma_sync(accumulators[i][j], a_fragment, b_fragment, accumulators[i][j]);
      }
    }
    // The next step overwrites the tiles.
    if constexpr (kBarriers != GemmBarriers::missing_before_overwrite) __syncthreads();
  }

  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 2; ++j) {
      // An elementwise operation applied to every element alike: what CUDA allows on x[].
      for (int t = 0; t < accumulators[i][j].num_elements; ++t) accumulators[i][j].x[t] *= shape.alpha;
      wmma::store_matrix_sync(c_tile + (warp_row + 16 * i) * kLdC + warp_col + 16 * j, accumulators[i][j], kLdC,
                              wmma::mem_row_major);
    }
  }
  __syncthreads();
  for (int e = static_cast<int>(threadIdx.x); e < kGemmBlockTile * kGemmBlockTile; e += kGemmThreads) {
    const int row = e / kGemmBlockTile, col = e % kGemmBlockTile;
    const int global_row = block_row + row, global_col = block_col + col;
    if (global_row < shape.m && global_col < shape.n) c[global_row * shape.n + global_col] = c_tile[row * kLdC + col];
  }
}

}  // namespace strata::testing::wmma_kernels
