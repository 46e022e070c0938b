// How much device memory code on this thread allocates at most while a watch is alive: the
// host graph measures each recorded op's temporaries (workspaces its kernels allocate and
// free inside the op) this way, for the memory plan's peak.
#pragma once

#include <cstddef>
#include <cstdint>

namespace strata::detail {

class AllocationWatch {
 public:
  AllocationWatch() noexcept;
  ~AllocationWatch();
  AllocationWatch(const AllocationWatch&) = delete;
  AllocationWatch& operator=(const AllocationWatch&) = delete;

  // The largest amount allocated and not yet freed on this thread since the watch began.
  std::size_t peak_bytes() const noexcept { return static_cast<std::size_t>(peak_); }

  // Called by the allocator for allocations and frees of device buffers on this thread.
  static void note(std::int64_t bytes) noexcept;

 private:
  AllocationWatch* previous_;
  std::int64_t net_ = 0;
  std::int64_t peak_ = 0;
};

}  // namespace strata::detail
