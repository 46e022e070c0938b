// Which 16-byte vector of a shared-memory slice each thread of a tensor-core block copies
// (kernels/conv2d_tensor_core_async.cuh). A slice is `outer` rows of per_row vectors along its
// contiguous index; vector v (thread t's load l: v = t + l * threads) is one of them. Host and
// device code, so that the host tests check the bank pattern of the copies.
//
// Neighbouring threads take neighbouring vectors of a row: a warp reads whole 32-byte
// sectors of global memory. Its 16-byte stores to shared memory go in phases of 8 threads,
// free of bank conflicts when the 8 vectors lie in 8 different 16-byte columns of the
// 128-byte bank row: in a wgmma block's swizzled slices (conv2d_tensor_core_async.cuh) the
// swizzle spreads them so, where unswizzled core matrices would put 4 (K-major) or 8
// (MN-major) of them in one column; the padded wmma slices are padded for the fragment loads.
#pragma once

#include <cuda_runtime_api.h>  // __host__ __device__ in both builds

namespace strata::kernels::conv2d_tensor_core {

// A vector of a slice: its row (`outer`) and the index of its first element along the
// contiguous one (`inner`).
struct SliceVector {
  int outer;
  int inner;
};

// Vector v, rows of per_row vectors of `lanes` elements taken in turn.
__host__ __device__ constexpr SliceVector vector_along_rows(int v, int per_row, int lanes) {
  return {v / per_row, v % per_row * lanes};
}

}  // namespace strata::kernels::conv2d_tensor_core
