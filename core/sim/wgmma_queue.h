// The wgmma.mma_async operations a simulated thread has issued and not yet waited for
// (core/sim/wgmma.h): each is deferred to the wgmma.wait_group that covers its group, the
// latest moment a GPU may perform it, so that a kernel which overwrites an operand's shared
// memory, or reads or writes its accumulators, before that wait computes with the wrong values
// in the simulator as it could on a GPU. The same scheme as the cp.async queue
// (core/sim/async_copy_queue.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace strata::sim {

// One lane's share of an mma_async: its accumulators and the warpgroup's operands.
struct WgmmaOperation {
  bool half;  // f16 inputs, else bf16
  int n;
  float* d;  // this lane's n / 2 accumulators
  std::uint64_t a;
  std::uint64_t b;
  bool accumulate;
  bool transpose_a;  // MN-major
  bool transpose_b;
  int warp_in_group;  // 0..3
  const unsigned char* shared;  // the block's dynamic shared memory
  // The 16-byte lines of it that the warp's operation reads (shared by its 32 lanes).
  std::shared_ptr<const std::vector<std::uint32_t>> lines;
};

class WgmmaQueue {
 public:
  void issue(const WgmmaOperation& operation) { operations_.push_back(operation); }
  // Closes the group of the operations issued since the last commit (an empty group too).
  void commit() { group_ends_.push_back(operations_.size()); }
  // Removes and returns, oldest first, the operations of every committed group but the newest
  // `newest_pending` ones.
  std::vector<WgmmaOperation> take_completed(std::size_t newest_pending);
  std::size_t pending() const { return operations_.size(); }

 private:
  std::vector<WgmmaOperation> operations_;  // in issue order, the oldest first
  std::vector<std::size_t> group_ends_;     // of each committed, pending group: its end in operations_
};

}  // namespace strata::sim
