// Tensor cores through CUDA's warp matrix API, nvcuda::wmma, in both builds: <mma.h> under
// nvcc, the simulator's implementation (core/sim/wmma.h) in the simulator build. Kernels
// include this file instead of <mma.h>:
//
//   #include "core/wmma.cuh"
//   namespace wmma = nvcuda::wmma;
//   wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
//
// Only what CUDA guarantees holds in both: the mapping of a fragment's x[] to matrix
// elements is unspecified, and the sums of mma_sync may differ by a few ulps (docs/simulator.md).
#pragma once

#include "core/launch.cuh"
#include "strata/core/config.h"

#if STRATA_BACKEND_SIM
#include "core/sim/wmma.h"
#else
#include <mma.h>
#endif
