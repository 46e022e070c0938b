// Tensor maps of the Tensor Memory Accelerator (TMA, compute capability 9.0): the description
// of a tiled global tensor whose boxes cp.async.bulk.tensor copies into shared memory
// (core/tma.cuh). A map is made on the host by encode_tiled and passed to a kernel by value, as
// a `const __grid_constant__ tma::TensorMap` parameter, whose address the copies name. Host code.
//
//   // the weights (K, R * S * C) bf16, boxes of 128 filters x 32 steps in 64-byte swizzled rows
//   const tma::TensorMap map = tma::encode_tiled(
//       {.element = tma::Element::bf16, .global = weights, .rank = 2, .extents = {rsc, k},
//        .strides = {rsc * 2}, .box = {32, 128}, .swizzle = wgmma::Swizzle::bytes64},
//       "conv2d_forward weights");
//
// encode_tiled checks what cuTensorMapEncodeTiled requires (and, for swizzled maps, that a box's
// row is exactly one swizzled row, the only swizzled boxes Strata's operands use), so a wrong
// map throws with the rule it breaks in both builds; on a GPU it then asks the driver.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "core/shared_swizzle.h"
#include "strata/core/config.h"

#if STRATA_BACKEND_SIM
#include "core/sim/tensor_map.h"
#else
#include <cuda.h>
#endif

namespace strata::tma {

#if STRATA_BACKEND_SIM
using TensorMap = sim::TensorMapContents;
#else
using TensorMap = CUtensorMap;
#endif

constexpr int kMaxRank = 5;
constexpr std::uint32_t kMaxBoxExtent = 256;

enum class Element : std::uint8_t { f16, bf16, f32 };

constexpr std::uint32_t element_bytes(Element element) { return element == Element::f32 ? 4u : 2u; }

// A tiled map: dimensions innermost (contiguous) first. Out-of-bounds elements of a box,
// negative coordinates included, land as zeros.
struct TiledMap {
  Element element = Element::bf16;
  const void* global = nullptr;  // device memory, 16-byte aligned
  int rank = 2;                  // 1..5
  std::array<std::uint64_t, kMaxRank> extents{};  // elements along each dimension (1 .. 2^32)
  // Bytes between neighbours along dimensions 1 .. rank - 1 (dimension 0 is contiguous):
  // multiples of 16, each dimension past the extent of the one inside it.
  std::array<std::uint64_t, kMaxRank - 1> strides{};
  std::array<std::uint32_t, kMaxRank> box{};  // elements of a box along each dimension (1 .. 256)
  wgmma::Swizzle swizzle = wgmma::Swizzle::none;

  // Bytes of one box in shared memory (what a copy of it completes on its mbarrier).
  std::uint32_t box_bytes() const;
};

// "" when map can be encoded, else the rule it breaks.
std::string check_tiled(const TiledMap& map);

// The tensor map of `map`; throws InvalidArgument naming `name` and the broken rule, or
// CudaError when the driver refuses it.
TensorMap encode_tiled(const TiledMap& map, const char* name);

}  // namespace strata::tma
