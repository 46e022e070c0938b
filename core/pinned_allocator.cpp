// The caching allocator behind allocate_pinned (see pinned.h for the reuse rule).
#include "strata/core/pinned.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/check.h"
#include "strata/core/allocator.h"
#include "strata/core/device.h"

namespace strata {
namespace detail {

namespace {

struct StreamUse {
  cudaStream_t stream;
  int device;
};

struct PinnedBlock {
  void* ptr = nullptr;
  std::size_t size = 0;
  std::vector<StreamUse> used_on;     // record_stream() while allocated
  std::vector<cudaEvent_t> pending;  // while free: recorded at free time on each of those streams
  bool allocated = false;
};

struct BySizeThenAddress {
  using is_transparent = void;
  bool operator()(const PinnedBlock* a, const PinnedBlock* b) const {
    if (a->size != b->size) return a->size < b->size;
    return std::less<const void*>{}(a->ptr, b->ptr);
  }
  bool operator()(const PinnedBlock* a, std::size_t size) const { return a->size < size; }
  bool operator()(std::size_t size, const PinnedBlock* b) const { return size < b->size; }
};

std::size_t round_up(std::size_t bytes) {
  STRATA_CHECK(bytes <= std::numeric_limits<std::size_t>::max() - kDeviceAllocationGranularity,
               "allocate_pinned: {} bytes is not a size any host has", bytes);
  return (bytes + kDeviceAllocationGranularity - 1) / kDeviceAllocationGranularity * kDeviceAllocationGranularity;
}

}  // namespace

class PinnedCachingAllocator {
 public:
  // Leaked on purpose, as the device allocator.
  static PinnedCachingAllocator& instance() {
    static auto* allocator = new PinnedCachingAllocator;
    return *allocator;
  }

  PinnedBuffer allocate(std::size_t bytes) {
    if (bytes == 0) return {};
    const std::size_t size = round_up(bytes);
    std::lock_guard lock(mutex_);
    PinnedBlock* block = take_cached(size);
    if (block != nullptr) {
      ++stats_.cache_hits;
    } else {
      auto owned = std::make_unique<PinnedBlock>();
      owned->ptr = cuda_malloc_host(size, bytes);
      owned->size = size;
      block = owned.get();
      blocks_.emplace(block->ptr, std::move(owned));
    }
    block->allocated = true;
    ++stats_.allocations;
    stats_.in_use_bytes += block->size;
    stats_.peak_in_use_bytes = std::max(stats_.peak_in_use_bytes, stats_.in_use_bytes);
    return PinnedBuffer(block->ptr, bytes);
  }

  void free(void* ptr) noexcept {
    try {
      std::lock_guard lock(mutex_);
      const auto it = blocks_.find(ptr);
      if (it == blocks_.end() || !it->second->allocated) {
        log_warning(fmt::format("pinned allocator: freeing {}, which it did not hand out", ptr));
        return;
      }
      PinnedBlock& block = *it->second;
      block.allocated = false;
      stats_.in_use_bytes -= block.size;
      bool recorded = true;
      for (const StreamUse& use : block.used_on) recorded = record_free_event(block, use) && recorded;
      block.used_on.clear();
      if (recorded) free_blocks_.insert(&block);  // else nobody can tell when it is idle: never reuse
    } catch (const std::exception& error) {
      log_warning(fmt::format("pinned allocator: could not cache a freed block: {}", error.what()));
    }
  }

  void record_stream(void* ptr, cudaStream_t stream) {
    STRATA_CHECK(stream != nullptr, "PinnedBuffer::record_stream: no stream given");
    const int device = current_device();
    std::lock_guard lock(mutex_);
    const auto it = blocks_.find(ptr);
    STRATA_CHECK(it != blocks_.end() && it->second->allocated,
                 "PinnedBuffer::record_stream: {} is not an allocated pinned block", ptr);
    auto& used_on = it->second->used_on;
    const bool known = std::ranges::any_of(used_on, [&](const StreamUse& use) { return use.stream == stream; });
    if (!known) used_on.push_back(StreamUse{stream, device});
  }

  void empty_cache() {
    std::lock_guard lock(mutex_);
    release_cached();
  }

  PinnedMemoryStats stats() {
    std::lock_guard lock(mutex_);
    return stats_;
  }

 private:
  PinnedCachingAllocator() = default;

  PinnedBlock* take_cached(std::size_t size) {
    for (auto it = free_blocks_.lower_bound(size); it != free_blocks_.end() && (*it)->size <= size + size / 4; ++it) {
      PinnedBlock* block = *it;
      if (!idle(*block)) continue;
      free_blocks_.erase(it);
      return block;
    }
    return nullptr;
  }

  // True when all work recorded on the block has finished; completed events are destroyed.
  static bool idle(PinnedBlock& block) {
    auto& pending = block.pending;
    while (!pending.empty()) {
      const cudaError_t status = cudaEventQuery(pending.back());
      if (status == cudaErrorNotReady) {
        static_cast<void>(cudaGetLastError());
        return false;
      }
      STRATA_CUDA_CHECK(status, "checking whether a cached pinned block of {} bytes is idle", block.size);
      STRATA_CUDA_WARN(cudaEventDestroy(pending.back()));
      pending.pop_back();
    }
    return true;
  }

  static bool record_free_event(PinnedBlock& block, const StreamUse& use) noexcept {
    int previous_device = 0;
    if (cudaGetDevice(&previous_device) != cudaSuccess) return false;
    if (previous_device != use.device && cudaSetDevice(use.device) != cudaSuccess) return false;
    cudaEvent_t event = nullptr;
    bool recorded = false;
    cudaError_t status = cudaEventCreateWithFlags(&event, cudaEventDisableTiming);
    if (status == cudaSuccess) status = cudaEventRecord(event, use.stream);
    if (status == cudaSuccess) {
      try {
        block.pending.push_back(event);
        recorded = true;
      } catch (...) {
      }
    } else {
      STRATA_CUDA_WARN(status);
    }
    if (!recorded && event != nullptr) STRATA_CUDA_WARN(cudaEventDestroy(event));
    if (previous_device != use.device) STRATA_CUDA_WARN(cudaSetDevice(previous_device));
    return recorded;
  }

  void* cuda_malloc_host(std::size_t size, std::size_t requested) {
    void* ptr = nullptr;
    cudaError_t status = cudaMallocHost(&ptr, size);
    if (status == cudaErrorMemoryAllocation) {
      static_cast<void>(cudaGetLastError());
      release_cached();
      status = cudaMallocHost(&ptr, size);
      if (status == cudaErrorMemoryAllocation) {
        static_cast<void>(cudaGetLastError());
        throw OutOfMemoryError(
            fmt::format("out of pinned host memory: allocate_pinned could not get {} bytes ({} rounded) even after "
                        "emptying its cache; {} bytes in use, {} bytes reserved. Stage smaller chunks or free "
                        "pinned tensors that are no longer needed.",
                        requested, size, stats_.in_use_bytes, stats_.reserved_bytes),
            requested, stats_.in_use_bytes, 0);
      }
    }
    STRATA_CUDA_CHECK(status, "allocating {} bytes of pinned host memory", size);
    ++stats_.cuda_malloc_host_calls;
    stats_.reserved_bytes += size;
    return ptr;
  }

  void release_cached() {
    while (!free_blocks_.empty()) {
      PinnedBlock* block = *free_blocks_.begin();
      for (cudaEvent_t event : block->pending) {
        STRATA_CUDA_CHECK(cudaEventSynchronize(event), "waiting for a cached pinned block before cudaFreeHost");
        STRATA_CUDA_WARN(cudaEventDestroy(event));
      }
      block->pending.clear();
      STRATA_CUDA_CHECK(cudaFreeHost(block->ptr), "releasing a cached pinned block of {} bytes", block->size);
      stats_.reserved_bytes -= block->size;
      free_blocks_.erase(free_blocks_.begin());
      blocks_.erase(block->ptr);
    }
  }

  std::mutex mutex_;
  std::unordered_map<void*, std::unique_ptr<PinnedBlock>> blocks_;
  std::set<PinnedBlock*, BySizeThenAddress> free_blocks_;
  PinnedMemoryStats stats_;
};

}  // namespace detail

PinnedBuffer::PinnedBuffer(PinnedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
  if (this != &other) {
    reset();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void PinnedBuffer::record_stream(cudaStream_t stream) const {
  STRATA_CHECK(data_ != nullptr, "PinnedBuffer::record_stream: the buffer is empty");
  detail::PinnedCachingAllocator::instance().record_stream(data_, stream);
}

void PinnedBuffer::reset() noexcept {
  if (data_ == nullptr) return;
  detail::PinnedCachingAllocator::instance().free(data_);
  data_ = nullptr;
  size_ = 0;
}

PinnedBuffer allocate_pinned(std::size_t bytes) { return detail::PinnedCachingAllocator::instance().allocate(bytes); }

PinnedMemoryStats pinned_memory_stats() { return detail::PinnedCachingAllocator::instance().stats(); }

void empty_pinned_cache() { detail::PinnedCachingAllocator::instance().empty_cache(); }

}  // namespace strata
