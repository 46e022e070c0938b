// The cp.async copies a simulated thread has issued and not yet waited for (core/sim/pipeline.h):
// each copy is deferred to the __pipeline_wait_prior that covers its group, the latest moment
// a GPU may land it, so that a kernel which reads a stage before waiting for it reads stale
// bytes in the simulator as it could on a GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace strata::sim {

class AsyncCopyQueue {
 public:
  // Queues a copy of source_bytes from source, then zeros up to bytes, into destination.
  void issue(void* destination, const void* source, std::size_t bytes, std::size_t source_bytes);
  // Closes the group of the copies issued since the last commit (an empty group too).
  void commit();
  // Performs every copy of the committed groups but the newest `newest_pending` ones, and
  // appends each one's destination to landed.
  void wait_prior(std::size_t newest_pending, std::vector<void*>& landed);

 private:
  struct Copy {
    void* destination;
    const void* source;
    std::uint8_t bytes;
    std::uint8_t source_bytes;
  };
  std::vector<Copy> copies_;             // in issue order, the oldest first
  std::vector<std::size_t> group_ends_;  // of each committed, pending group: its end in copies_
};

}  // namespace strata::sim
