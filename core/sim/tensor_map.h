// What the simulator's tensor maps hold (core/tma_map.h): the fields that encode_tiled checked
// and that a simulated cp.async.bulk.tensor reads. A kernel takes it by value, as the GPU's
// opaque CUtensorMap; unlike that one it needs no 64-byte alignment (which the host compiler's
// by-value passing would warn of).
#pragma once

#include <cstdint>

namespace strata::sim {

struct TensorMapContents {
  static constexpr std::uint32_t kEncoded = 0x544d4150;  // "TMAP": made by tma::encode_tiled
  std::uint32_t encoded = 0;
  std::uint8_t rank = 0;
  std::uint8_t element_bytes = 0;
  std::uint8_t swizzle = 0;  // a wgmma::Swizzle
  const unsigned char* global = nullptr;
  std::uint64_t extents[5] = {};  // elements, innermost first
  std::uint64_t strides[5] = {};  // bytes between neighbours along each dimension
  std::uint32_t box[5] = {};      // elements of a box along each dimension
};
static_assert(sizeof(TensorMapContents) <= 128, "no larger than a CUtensorMap");

}  // namespace strata::sim
