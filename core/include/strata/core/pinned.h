// Page-locked ("pinned") host memory for staging copies between host and device: only
// copies from and to pinned memory run asynchronously. A caching allocator like the device
// one (cudaMallocHost is slower still), but simpler: host code may write a block as soon
// as it is handed out, so a freed block is reused only after every stream recorded on it
// (record_stream) has finished the work queued before the free.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

namespace strata {

namespace detail {
class PinnedCachingAllocator;
}

// Move-only owner of one block of pinned host memory; destruction gives it back to the cache.
class PinnedBuffer {
 public:
  PinnedBuffer() noexcept = default;
  ~PinnedBuffer() { reset(); }
  PinnedBuffer(PinnedBuffer&& other) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  void* data() const noexcept { return data_; }
  template <typename T>
  T* as() const noexcept {
    return static_cast<T*>(data_);
  }
  std::size_t size() const noexcept { return size_; }  // bytes requested
  explicit operator bool() const noexcept { return data_ != nullptr; }

  // Declares that work queued on stream (of the current device) reads or writes this
  // memory: the block is not reused before that work has finished.
  void record_stream(cudaStream_t stream) const;

  void reset() noexcept;

 private:
  friend class detail::PinnedCachingAllocator;
  PinnedBuffer(void* data, std::size_t size) noexcept : data_(data), size_(size) {}

  void* data_ = nullptr;
  std::size_t size_ = 0;
};

// Throws OutOfMemoryError when cudaMallocHost fails even after the cache was emptied.
PinnedBuffer allocate_pinned(std::size_t bytes);

struct PinnedMemoryStats {
  std::size_t in_use_bytes = 0;
  std::size_t reserved_bytes = 0;  // obtained from cudaMallocHost: in use + cached
  std::size_t peak_in_use_bytes = 0;
  std::uint64_t allocations = 0;
  std::uint64_t cache_hits = 0;
  std::uint64_t cuda_malloc_host_calls = 0;
};

PinnedMemoryStats pinned_memory_stats();

// Frees every cached pinned block, waiting first for the streams recorded on it.
void empty_pinned_cache();

}  // namespace strata
