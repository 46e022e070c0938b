// Hopper's warpgroup matrix multiply (wgmma.mma_async) for kernels compiled by the host
// compiler; kernels call it through core/wgmma.cuh. Each warp of the warpgroup is one warp
// task (strata::sim::warp_task) computing its 16 rows of the 64 x N tile from the shared-memory
// descriptors as the GPU reads them (the PTX ISA's canonical layouts, K- or MN-major,
// unswizzled or swizzled); what the GPU would leave undefined fails the block instead: lanes
// passing different descriptors, a partial warpgroup, a descriptor with a base offset, operands
// outside dynamic shared memory, a thread that exits with operations not waited for. Each
// operation is checked when issued and performed at the wait_group that covers its group
// (core/sim/wgmma_queue.h), the latest moment a GPU may perform it: shared memory is read,
// and the accumulators written, then.
// An operation whose operands hold a line that a cp.async landed in, and whose thread has not
// run fence_shared_to_async_proxy since, fails at its issue (on a GPU, wgmma may read the line's
// old bytes); lines written by ordinary stores are not tracked. wgmma.fence does nothing.
#pragma once

#include <cstdint>
#include <source_location>

namespace strata::sim::wgmma {

// Where the simulator's dynamic shared memory starts in the shared state space: 16-byte
// aligned, as a GPU's, but not at a swizzle pattern's 1024-byte boundary, so that a kernel
// that takes that alignment for granted reads wrong elements here
// (wgmma::align_to_swizzle_pattern).
constexpr std::uint32_t kDynamicSharedAddress = 0x410;

// The shared-memory address of a pointer into the block's dynamic shared memory (the address
// a descriptor holds); fails the block for any other pointer.
std::uint32_t shared_address(const void* shared, const std::source_location& where = std::source_location::current());

// d (64 x n, this thread's n / 2 accumulators) = A * B (+ d when accumulate), A and B f16
// (half) or bf16, each K-major or, transposed, MN-major.
void mma_async(bool half, int n, float* d, std::uint64_t a, std::uint64_t b, bool accumulate, bool transpose_a,
               bool transpose_b, const std::source_location& where = std::source_location::current());

// fence.proxy.async.shared::cta: this thread's landed copies may be read by wgmma (after a barrier).
void fence_shared_to_async_proxy(const std::source_location& where = std::source_location::current());

// Closes the group of this thread's operations issued since the last commit.
void commit_group(const std::source_location& where = std::source_location::current());

// Performs the operations of this warp's committed groups but the newest `newest_pending`.
void wait_group(int newest_pending, const std::source_location& where = std::source_location::current());

}  // namespace strata::sim::wgmma
