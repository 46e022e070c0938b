// The Tensor Memory Accelerator (TMA, compute capability 9.0) in both builds: boxes of a global
// tensor copied into shared memory by cp.async.bulk.tensor, their arrival counted on an
// mbarrier. Inline PTX under nvcc for compute capability 9.0 and later, the simulator's
// implementation (core/sim/tma.h) in the simulator build. The tensor map comes from the host
// (core/tma_map.h) as a `const __grid_constant__ tma::TensorMap` kernel parameter.
//
//   __shared__ tma::Mbarrier full;
//   if (threadIdx.x == 0) tma::init(full, 1);          // one arrival a phase: the issuing thread's
//   __syncthreads();
//   if (threadIdx.x == 0) {
//     tma::arrive_expect_tx(full, map_box_bytes);      // the bytes this phase's copies bring
//     tma::copy_tile(tile, map, full, column, row);    // tile: 128-byte aligned dynamic shared memory
//   }
//   tma::wait(full, 0);                                // phase 0 done: the box has landed
//
// A box lands in shared memory as its elements are ordered (dimension 0 fastest), swizzled by
// shared-memory address as the map says (core/shared_swizzle.h): a box of 8-row groups of one
// swizzled row each is a K-major wgmma operand (core/wgmma.cuh) as it lands; the asynchronous
// proxy writes it, so wgmma reads it after the wait without a proxy fence. Elements outside the
// tensor land as zeros. A wait returns when the phase of the given parity (0, 1, 0, ... as
// phases complete) has completed.
#pragma once

#include <cstdint>

#include "core/launch.cuh"
#include "core/tma_map.h"
#include "strata/core/config.h"

#if STRATA_BACKEND_SIM
#include "core/sim/tma.h"
#endif

// Whether this device pass emits the TMA instructions (compute capability 9.0+).
#if !STRATA_BACKEND_SIM && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define STRATA_TMA_PTX 1
#else
#define STRATA_TMA_PTX 0
#endif

namespace strata::tma {

// An mbarrier: 8 bytes of shared memory (static or dynamic), opaque.
struct alignas(8) Mbarrier {
  std::uint64_t state;
};

#if STRATA_TMA_PTX
__device__ __forceinline__ std::uint32_t shared_address_of(const void* shared) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(shared));
}
#endif

// Initialises barrier for `arrivals` arrivals a phase (one thread; a barrier before any other
// thread uses it), and makes the initialisation visible to the asynchronous proxy.
__device__ __forceinline__ void init(Mbarrier& barrier, std::uint32_t arrivals) {
#if STRATA_BACKEND_SIM
  sim::tma::mbarrier_init(&barrier.state, arrivals);
#elif STRATA_TMA_PTX
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(shared_address_of(&barrier)), "r"(arrivals)
               : "memory");
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#elif defined(__CUDA_ARCH__)
  (void)barrier, (void)arrivals;
  __trap();  // not compiled for compute capability 9.0: launchers check the device first
#else
  (void)barrier, (void)arrivals;
#endif
}

// This thread's arrival on the current phase, which then also expects `bytes` transaction
// bytes (the boxes its copies bring).
__device__ __forceinline__ void arrive_expect_tx(Mbarrier& barrier, std::uint32_t bytes) {
#if STRATA_BACKEND_SIM
  sim::tma::mbarrier_arrive_expect_tx(&barrier.state, bytes);
#elif STRATA_TMA_PTX
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(shared_address_of(&barrier)),
               "r"(bytes)
               : "memory");
#else
  (void)barrier, (void)bytes;
#endif
}

// Returns once the phase of parity `parity` has completed (its copies' bytes are visible).
__device__ __forceinline__ void wait(Mbarrier& barrier, std::uint32_t parity) {
#if STRATA_BACKEND_SIM
  sim::tma::mbarrier_wait(&barrier.state, parity);
#elif STRATA_TMA_PTX
  const std::uint32_t address = shared_address_of(&barrier);
  std::uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred complete;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 complete, [%1], %2;\n"
        "selp.u32 %0, 1, 0, complete;\n}\n"
        : "=r"(done)
        : "r"(address), "r"(parity)
        : "memory");
  } while (done == 0);
#else
  (void)barrier, (void)parity;
#endif
}

// Copies the box of `map` whose first element is at (c0, c1[, c2]) (dimension 0 first) into
// `destination` (dynamic shared memory, 128-byte aligned; a swizzled box from a swizzle
// pattern's boundary to be a wgmma operand), completing its bytes on barrier.
__device__ __forceinline__ void copy_tile(void* destination, const TensorMap& map, Mbarrier& barrier, int c0,
                                          int c1) {
#if STRATA_BACKEND_SIM
  const std::int32_t coordinates[] = {c0, c1};
  sim::tma::copy_tile(destination, map, coordinates, &barrier.state);
#elif STRATA_TMA_PTX
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];\n" ::
          "r"(shared_address_of(destination)),
      "l"(reinterpret_cast<std::uint64_t>(&map)), "r"(shared_address_of(&barrier)), "r"(c0), "r"(c1)
      : "memory");
#else
  (void)destination, (void)map, (void)barrier, (void)c0, (void)c1;
#endif
}

__device__ __forceinline__ void copy_tile(void* destination, const TensorMap& map, Mbarrier& barrier, int c0, int c1,
                                          int c2) {
#if STRATA_BACKEND_SIM
  const std::int32_t coordinates[] = {c0, c1, c2};
  sim::tma::copy_tile(destination, map, coordinates, &barrier.state);
#elif STRATA_TMA_PTX
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], "
      "[%2];\n" ::"r"(shared_address_of(destination)),
      "l"(reinterpret_cast<std::uint64_t>(&map)), "r"(shared_address_of(&barrier)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
#else
  (void)destination, (void)map, (void)barrier, (void)c0, (void)c1, (void)c2;
#endif
}

}  // namespace strata::tma
