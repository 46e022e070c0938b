// CUDA's asynchronous-copy primitives (<cuda_pipeline_primitives.h>: __pipeline_memcpy_async,
// __pipeline_commit, __pipeline_wait_prior; cp.async on the GPU) for kernels compiled by the
// host compiler. Kernels include core/pipeline.cuh, which picks CUDA's header under nvcc and
// this file otherwise. Each copy is checked as CUDA asserts it (size 4, 8 or 16 bytes, zfill
// at most the size, both addresses aligned to the size), and where its bytes are: the ones
// copied must lie inside one device allocation, the destination outside device and host
// allocations (shared memory). It is deferred to the wait that covers its group
// (core/sim/async_copy_queue.h): reading a stage before its wait reads stale bytes.
#pragma once

#include <cstddef>
#include <source_location>

namespace strata::sim {

void pipeline_memcpy_async(void* destination, const void* source, std::size_t size_and_align, std::size_t zfill,
                           const std::source_location& where);
void pipeline_commit(const std::source_location& where);
void pipeline_wait_prior(std::size_t prior, const std::source_location& where);

}  // namespace strata::sim

// Copies size_and_align - zfill bytes from src_global to dst_shared and zeros the rest, when
// the group it joins is waited for.
inline void __pipeline_memcpy_async(void* __restrict__ dst_shared, const void* __restrict__ src_global,
                                    std::size_t size_and_align, std::size_t zfill = 0,
                                    const std::source_location& where = std::source_location::current()) {
  ::strata::sim::pipeline_memcpy_async(dst_shared, src_global, size_and_align, zfill, where);
}
inline void __pipeline_commit(const std::source_location& where = std::source_location::current()) {
  ::strata::sim::pipeline_commit(where);
}
// Waits until at most `prior` of this thread's committed groups are pending.
inline void __pipeline_wait_prior(std::size_t prior,
                                  const std::source_location& where = std::source_location::current()) {
  ::strata::sim::pipeline_wait_prior(prior, where);
}
