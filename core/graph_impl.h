// What a Graph keeps besides its public description: the bodies to replay, a handle on
// every buffer (keeping it alive, and letting the memory plan move it), reachability.
#pragma once

#include <cstdint>
#include <vector>

#include "strata/core/graph.h"

namespace strata::graph {

struct Graph::Impl {
  std::vector<OpBody> bodies;                         // per node
  std::vector<Tensor> buffer_tensors;                 // per buffer
  std::vector<std::vector<std::uint64_t>> ancestors;  // per node: bitset of the nodes that precede it
};

}  // namespace strata::graph
