// The swizzled layouts of shared memory that Hopper's asynchronous units share: wgmma reads
// its operands through them (core/wgmma.cuh) and the Tensor Memory Accelerator writes its boxes
// through them (core/tma.cuh), so a tile that TMA lands is an operand wgmma reads as it is.
// A swizzled layout is made of patterns of 8 rows of W bytes (W = 128, 64 or 32): within each
// 128-byte span of shared-memory address, the 16-byte chunk (address bits 4..) is XORed with
// the span's index (bits 7..), as many bits as a row has chunks to choose from. Host and device
// code.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace strata::wgmma {

// The swizzle modes, valued as a descriptor's bits 62-63 encode them.
enum class Swizzle : std::uint8_t { none = 0, bytes128 = 1, bytes64 = 2, bytes32 = 3 };

// Bytes of a swizzled row (W), 16 (one line) unswizzled.
__host__ __device__ constexpr std::uint32_t swizzle_row_bytes(Swizzle swizzle) {
  switch (swizzle) {
    case Swizzle::bytes128: return 128u;
    case Swizzle::bytes64: return 64u;
    case Swizzle::bytes32: return 32u;
    case Swizzle::none: break;
  }
  return 16u;
}

// The widest pattern's extent (8 rows of 128 bytes): where every swizzled pattern may start.
constexpr std::uint32_t kSwizzlePatternBytes = 1024;

// The address at which the swizzled layout stores what the unswizzled one puts at `address`.
__host__ __device__ constexpr std::uint32_t swizzle_address(std::uint32_t address, Swizzle swizzle) {
  const std::uint32_t chunk_mask = swizzle_row_bytes(swizzle) - 16u;  // bits 4.. of the chunk in a row
  return address ^ ((address >> 3) & chunk_mask);
}

}  // namespace strata::wgmma
