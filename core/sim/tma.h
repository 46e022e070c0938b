// The Tensor Memory Accelerator's asynchronous copies and the mbarriers they complete on, for
// kernels compiled by the host compiler; kernels call them through core/tma.cuh.
//
// An mbarrier's phase completes when all its arrivals have come and all the transaction bytes
// announced (arrive.expect_tx) have landed. A cp.async.bulk.tensor copy is checked when issued
// and performed at the first wait on its mbarrier, the latest moment a GPU may land it: a
// kernel that reads a box before waiting reads stale bytes here as on a GPU. A wait for a
// phase that cannot complete yet suspends the thread until another one's arrival completes it
// (a wait no arrival can complete is reported as a deadlock). What a GPU leaves undefined fails
// the block: an mbarrier used before its init, more arrivals or bytes than the phase expects, a
// box that lands outside dynamic shared memory or on bytes a pending wgmma reads, a source
// outside its device allocation, a map not made by tma::encode_tiled, a block that ends with
// copies no wait performed.
#pragma once

#include <cstdint>
#include <source_location>

#include "core/sim/tensor_map.h"

namespace strata::sim::tma {

void mbarrier_init(std::uint64_t* barrier, std::uint32_t arrivals,
                   const std::source_location& where = std::source_location::current());
// One arrival, after announcing `bytes` more transaction bytes for the current phase.
void mbarrier_arrive_expect_tx(std::uint64_t* barrier, std::uint32_t bytes,
                               const std::source_location& where = std::source_location::current());
// Returns once the phase of the given parity (0 or 1) has completed: the barrier's current
// phase is the other parity.
void mbarrier_wait(std::uint64_t* barrier, std::uint32_t parity,
                   const std::source_location& where = std::source_location::current());
// A box of `map` at `coordinates` (map.rank of them) into `destination`, completing its bytes
// on `barrier`.
void copy_tile(void* destination, const TensorMapContents& map, const std::int32_t* coordinates,
               std::uint64_t* barrier, const std::source_location& where = std::source_location::current());

}  // namespace strata::sim::tma
