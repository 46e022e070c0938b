// Deferred cp.async copies of one simulated thread; see async_copy_queue.h.
#include "core/sim/async_copy_queue.h"

#include <algorithm>
#include <cstring>

namespace strata::sim {

void AsyncCopyQueue::issue(void* destination, const void* source, std::size_t bytes, std::size_t source_bytes) {
  copies_.push_back(
      Copy{destination, source, static_cast<std::uint8_t>(bytes), static_cast<std::uint8_t>(source_bytes)});
}

void AsyncCopyQueue::commit() { group_ends_.push_back(copies_.size()); }

void AsyncCopyQueue::wait_prior(std::size_t newest_pending, std::vector<void*>& landed) {
  if (group_ends_.size() <= newest_pending) return;
  const std::size_t complete_groups = group_ends_.size() - newest_pending;
  const std::size_t complete_copies = group_ends_[complete_groups - 1];
  for (std::size_t i = 0; i < complete_copies; ++i) {
    const Copy& copy = copies_[i];
    auto* destination = static_cast<unsigned char*>(copy.destination);
    std::memcpy(destination, copy.source, copy.source_bytes);
    std::memset(destination + copy.source_bytes, 0, copy.bytes - copy.source_bytes);
    landed.push_back(copy.destination);
  }
  copies_.erase(copies_.begin(), copies_.begin() + static_cast<std::ptrdiff_t>(complete_copies));
  group_ends_.erase(group_ends_.begin(), group_ends_.begin() + static_cast<std::ptrdiff_t>(complete_groups));
  for (std::size_t& end : group_ends_) end -= complete_copies;
}

}  // namespace strata::sim
