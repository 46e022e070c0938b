// Which 16-byte vector of a shared-memory slice each thread of a tensor-core block copies
// (kernels/conv2d_tensor_core_async.cuh). A slice is `outer` rows of per_row vectors along its
// contiguous index; vector v (thread t's load l: v = t + l * threads) is one of them. Host and
// device code, so that the host tests check the bank pattern of the copies.
//
// A warp's 16-byte stores to shared memory go in phases of 8 threads, free of bank conflicts
// when the 8 vectors lie in 8 different 16-byte columns of the 128-byte bank row:
// - along rows, neighbouring threads take neighbouring vectors of a row: the padded wmma
//   layouts' order;
// - across rows, neighbouring threads take one vector column of 8 neighbouring rows: in the
//   unswizzled core matrices of a wgmma block (core/wgmma.cuh) those are the 8 lines of one
//   core matrix, 128 contiguous bytes, where along rows put 4 (K-major) or 8 (MN-major) of a
//   phase's vectors in the same column. A warp still reads 8 rows x 64 bytes of global memory,
//   the same sectors either way.
#pragma once

#include <cuda_runtime_api.h>  // __host__ __device__ in both builds

namespace strata::kernels::conv2d_tensor_core {

// A vector of a slice: its row (`outer`) and the index of its first element along the
// contiguous one (`inner`).
struct SliceVector {
  int outer;
  int inner;
};

constexpr int kRowsAcross = 8;  // rows per column of vectors across rows: a core matrix's lines

// Vector v, rows of per_row vectors of `lanes` elements taken in turn.
__host__ __device__ constexpr SliceVector vector_along_rows(int v, int per_row, int lanes) {
  return {v / per_row, v % per_row * lanes};
}

// Vector v, groups of 8 rows taken in turn, each a column at a time (rows fastest); the
// slice's rows are a multiple of 8.
__host__ __device__ constexpr SliceVector vector_across_rows(int v, int per_row, int lanes) {
  const int group_vectors = kRowsAcross * per_row;
  const int within = v % group_vectors;
  return {v / group_vectors * kRowsAcross + within % kRowsAcross, within / kRowsAcross * lanes};
}

}  // namespace strata::kernels::conv2d_tensor_core
