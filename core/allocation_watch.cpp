// The thread's innermost allocation watch; outer watches see what inner ones saw when they end.
#include "core/allocation_watch.h"

#include <algorithm>

namespace strata::detail {

namespace {
thread_local AllocationWatch* active_watch = nullptr;
}  // namespace

AllocationWatch::AllocationWatch() noexcept : previous_(active_watch) { active_watch = this; }

AllocationWatch::~AllocationWatch() {
  active_watch = previous_;
  if (previous_ != nullptr) {
    previous_->peak_ = std::max(previous_->peak_, previous_->net_ + peak_);
    previous_->net_ += net_;
  }
}

void AllocationWatch::note(std::int64_t bytes) noexcept {
  AllocationWatch* watch = active_watch;
  if (watch == nullptr) return;
  watch->net_ += bytes;
  watch->peak_ = std::max(watch->peak_, watch->net_);
}

}  // namespace strata::detail
