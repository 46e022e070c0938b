// The state of one simulated mbarrier (core/sim/tma.h): its phase, the arrivals and the
// transaction bytes the phase still expects, and the bulk tensor copies that will complete
// bytes on it. A block's mbarriers live in its BlockRunner, by address, not in the 8 bytes of
// shared memory the kernel gives them (a GPU's opaque object).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "core/sim/tensor_map.h"

namespace strata::sim {

// A cp.async.bulk.tensor not yet performed: a box of `map` from `coordinates` into
// `destination` (dynamic shared memory at shared address `shared_address`).
struct BulkTensorCopy {
  TensorMapContents map;
  std::array<std::int32_t, 5> coordinates;
  unsigned char* destination;
  std::uint32_t shared_address;
  std::uint32_t bytes;
};

struct MbarrierState {
  std::uint32_t arrivals = 0;         // per phase, as initialised
  std::uint32_t pending_arrivals = 0;  // of the current phase
  std::int64_t pending_bytes = 0;      // transaction bytes expected and not yet completed
  std::uint64_t phase = 0;             // phases completed
  std::vector<BulkTensorCopy> copies;  // issued, to be performed at a wait on this barrier
};

}  // namespace strata::sim
