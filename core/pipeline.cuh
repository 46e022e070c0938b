// Asynchronous global-to-shared copies (cp.async, compute capability 8.0+) through CUDA's
// pipeline primitives, in both builds: <cuda_pipeline_primitives.h> under nvcc, the
// simulator's implementation (core/sim/pipeline.h) in the simulator build, which defers each
// copy to the wait that covers it. Kernels include this file instead of CUDA's header:
//
//   #include "core/pipeline.cuh"
//   async_copy<16>(stage + offset, source, inside);  // zeros instead when !inside
//   __pipeline_commit();
//   __pipeline_wait_prior(kStages - 2);
//   __syncthreads();
#pragma once

#include <cstddef>

#include "core/launch.cuh"
#include "strata/core/config.h"

#if STRATA_BACKEND_SIM
#include "core/sim/pipeline.h"
#else
#include <cuda_pipeline_primitives.h>
#endif

namespace strata {

// Copies kBytes (4, 8 or 16; both addresses aligned to it) from global memory to shared
// memory, or writes kBytes of zeros when !copy (source must still be a valid, aligned address:
// nothing is read from it). Lands when a __pipeline_wait_prior covers the group it joins.
template <std::size_t kBytes>
__device__ __forceinline__ void async_copy(void* destination, const void* source, bool copy) {
  static_assert(kBytes == 4 || kBytes == 8 || kBytes == 16, "cp.async copies 4, 8 or 16 bytes");
  __pipeline_memcpy_async(destination, source, kBytes, copy ? 0 : kBytes);
}

}  // namespace strata
