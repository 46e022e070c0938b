// Hopper's warpgroup matrix multiply (wgmma.mma_async) for kernels compiled by the host
// compiler; kernels call it through core/wgmma.cuh. Each warp of the warpgroup is one warp
// task (strata::sim::warp_task) computing its 16 rows of the 64 x N tile from the shared-memory
// descriptors as the GPU reads them (unswizzled core matrices, K- or MN-major); what the GPU would
// leave undefined fails the block instead: lanes passing different descriptors, a partial
// warpgroup, a swizzled or misaligned descriptor, operands outside dynamic shared memory.
// It runs when issued: the fences, commits and waits around it are not simulated.
#pragma once

#include <cstdint>
#include <source_location>

namespace strata::sim::wgmma {

// The address a descriptor holds for a pointer into the block's dynamic shared memory (its
// byte offset there); fails the block for any other pointer.
std::uint32_t shared_address(const void* shared, const std::source_location& where = std::source_location::current());

// d (64 x n, this thread's n / 2 accumulators) = A * B (+ d when accumulate), A and B f16
// (half) or bf16, each K-major or, transposed, MN-major.
void mma_async(bool half, int n, float* d, std::uint64_t a, std::uint64_t b, bool accumulate, bool transpose_a,
               bool transpose_b, const std::source_location& where = std::source_location::current());

}  // namespace strata::sim::wgmma
