// Deferred wgmma operations of one simulated thread; see wgmma_queue.h.
#include "core/sim/wgmma_queue.h"

namespace strata::sim {

std::vector<WgmmaOperation> WgmmaQueue::take_completed(std::size_t newest_pending) {
  if (group_ends_.size() <= newest_pending) return {};
  const std::size_t complete_groups = group_ends_.size() - newest_pending;
  const auto complete = static_cast<std::ptrdiff_t>(group_ends_[complete_groups - 1]);
  std::vector<WgmmaOperation> completed(operations_.begin(), operations_.begin() + complete);
  operations_.erase(operations_.begin(), operations_.begin() + complete);
  group_ends_.erase(group_ends_.begin(), group_ends_.begin() + static_cast<std::ptrdiff_t>(complete_groups));
  for (std::size_t& end : group_ends_) end -= static_cast<std::size_t>(complete);
  return completed;
}

}  // namespace strata::sim
