// The caching, stream-ordered device allocator behind allocate_device (see allocator.h
// for the rules). One pool of blocks per device, all under one mutex.
#include "strata/core/allocator.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/check.h"
#include "strata/core/device.h"

namespace strata {
namespace detail {

namespace {

// An event recorded when a block was freed, on one stream that had used it.
struct PendingUse {
  cudaStream_t stream;
  cudaEvent_t event;
};

struct Block {
  void* ptr = nullptr;
  std::size_t size = 0;               // rounded, as given to cudaMalloc
  cudaStream_t stream = nullptr;      // stream of the latest allocation
  std::vector<cudaStream_t> used_on;  // record_stream() while allocated
  std::vector<PendingUse> pending;    // while free: what must finish before another stream may use it
  bool allocated = false;
};

// Free blocks ordered by size, then address; transparent, so lower_bound(bytes) finds the best fit.
struct BySizeThenAddress {
  using is_transparent = void;
  bool operator()(const Block* a, const Block* b) const {
    if (a->size != b->size) return a->size < b->size;
    return std::less<const void*>{}(a->ptr, b->ptr);
  }
  bool operator()(const Block* a, std::size_t size) const { return a->size < size; }
  bool operator()(std::size_t size, const Block* b) const { return size < b->size; }
};

struct DevicePool {
  std::unordered_map<void*, std::unique_ptr<Block>> blocks;  // every block of the device
  std::set<Block*, BySizeThenAddress> free_blocks;
  std::vector<cudaEvent_t> spare_events;
  DeviceMemoryStats stats;
};

std::size_t round_up(std::size_t bytes) {
  STRATA_CHECK(bytes <= std::numeric_limits<std::size_t>::max() - kDeviceAllocationGranularity,
               "allocate_device: {} bytes is not a size any device has", bytes);
  return (bytes + kDeviceAllocationGranularity - 1) / kDeviceAllocationGranularity * kDeviceAllocationGranularity;
}

// The largest cached block worth reusing for a request: at most a quarter wasted.
std::size_t max_reusable_size(std::size_t size) { return size + size / 4; }

// Switches the current device without throwing, for the free path.
class NoThrowDeviceSwitch {
 public:
  explicit NoThrowDeviceSwitch(int device) noexcept {
    if (cudaGetDevice(&previous_) == cudaSuccess && previous_ != device) {
      switched_ = cudaSetDevice(device) == cudaSuccess;
    }
  }
  ~NoThrowDeviceSwitch() {
    if (switched_) STRATA_CUDA_WARN(cudaSetDevice(previous_));
  }
  NoThrowDeviceSwitch(const NoThrowDeviceSwitch&) = delete;
  NoThrowDeviceSwitch& operator=(const NoThrowDeviceSwitch&) = delete;

 private:
  int previous_ = 0;
  bool switched_ = false;
};

}  // namespace

class DeviceCachingAllocator {
 public:
  // Leaked on purpose: buffers destroyed during static destruction still find it.
  static DeviceCachingAllocator& instance() {
    static auto* allocator = new DeviceCachingAllocator;
    return *allocator;
  }

  DeviceBuffer allocate(std::size_t bytes, cudaStream_t stream) {
    if (bytes == 0) return {};
    STRATA_CHECK(stream != nullptr, "allocate_device({} bytes): no stream given; Strata never uses the default stream",
                 bytes);
    const std::size_t size = round_up(bytes);
    const int device = current_device();

    std::lock_guard lock(mutex_);
    DevicePool& pool = pool_of(device);
    Block* block = take_cached(pool, size, stream);
    if (block != nullptr) {
      ++pool.stats.cache_hits;
    } else {
      void* ptr = cuda_malloc(pool, device, size, bytes, stream);
      auto owned = std::make_unique<Block>();
      owned->ptr = ptr;
      owned->size = size;
      block = owned.get();
      pool.blocks.emplace(ptr, std::move(owned));
    }
    block->allocated = true;
    block->stream = stream;
    ++pool.stats.allocations;
    pool.stats.in_use_bytes += block->size;
    pool.stats.peak_in_use_bytes = std::max(pool.stats.peak_in_use_bytes, pool.stats.in_use_bytes);
    return DeviceBuffer(block->ptr, bytes, device, stream);
  }

  void free(void* ptr, int device) noexcept {
    try {
      std::lock_guard lock(mutex_);
      DevicePool& pool = pool_of(device);
      const auto it = pool.blocks.find(ptr);
      if (it == pool.blocks.end() || !it->second->allocated) {
        log_warning(fmt::format("allocator: freeing {} on device {}, which it did not hand out", ptr, device));
        return;
      }
      Block& block = *it->second;
      block.allocated = false;
      pool.stats.in_use_bytes -= block.size;

      NoThrowDeviceSwitch on_device(device);
      bool recorded = record_free_event(pool, block, block.stream);
      for (cudaStream_t stream : block.used_on) recorded = record_free_event(pool, block, stream) && recorded;
      block.used_on.clear();
      // Without its events nobody can tell when the block is idle: leave it out of the cache
      // for good (still counted as reserved).
      if (recorded) pool.free_blocks.insert(&block);
    } catch (const std::exception& error) {
      log_warning(fmt::format("allocator: could not cache a freed block of device {}: {}", device, error.what()));
    }
  }

  void record_stream(void* ptr, int device, cudaStream_t stream) {
    STRATA_CHECK(stream != nullptr, "DeviceBuffer::record_stream: no stream given");
    std::lock_guard lock(mutex_);
    DevicePool& pool = pool_of(device);
    const auto it = pool.blocks.find(ptr);
    STRATA_CHECK(it != pool.blocks.end() && it->second->allocated,
                 "DeviceBuffer::record_stream: {} is not an allocated block of device {}", ptr, device);
    Block& block = *it->second;
    if (stream != block.stream && std::ranges::find(block.used_on, stream) == block.used_on.end()) {
      block.used_on.push_back(stream);
    }
  }

  void empty_cache() {
    std::lock_guard lock(mutex_);
    for (std::size_t device = 0; device < pools_.size(); ++device) {
      if (pools_[device] == nullptr) continue;
      DeviceGuard on_device(static_cast<int>(device));
      release_cached(*pools_[device]);
    }
  }

  DeviceMemoryStats stats(int device) {
    std::lock_guard lock(mutex_);
    return pool_of(device).stats;
  }

  void reset_peak(int device) {
    std::lock_guard lock(mutex_);
    DeviceMemoryStats& stats = pool_of(device).stats;
    stats.peak_in_use_bytes = stats.in_use_bytes;
  }

 private:
  DeviceCachingAllocator() = default;

  DevicePool& pool_of(int device) {
    STRATA_CHECK(device >= 0 && device < 1024, "allocator: invalid device index {}", device);
    if (pools_.size() <= static_cast<std::size_t>(device)) pools_.resize(static_cast<std::size_t>(device) + 1);
    auto& pool = pools_[static_cast<std::size_t>(device)];
    if (pool == nullptr) pool = std::make_unique<DevicePool>();
    return *pool;
  }

  // Best fit among the cached blocks that stream may use now; removed from the cache.
  Block* take_cached(DevicePool& pool, std::size_t size, cudaStream_t stream) {
    for (auto it = pool.free_blocks.lower_bound(size);
         it != pool.free_blocks.end() && (*it)->size <= max_reusable_size(size); ++it) {
      Block* block = *it;
      if (!usable_on(pool, *block, stream)) continue;
      pool.free_blocks.erase(it);
      // Whatever remains was recorded on stream itself, which orders it already.
      for (const PendingUse& use : block->pending) pool.spare_events.push_back(use.event);
      block->pending.clear();
      return block;
    }
    return nullptr;
  }

  // True when every use of the block on a stream other than `stream` has completed.
  // Completed events go back to the spare list as they are found.
  bool usable_on(DevicePool& pool, Block& block, cudaStream_t stream) {
    auto& pending = block.pending;
    for (auto it = pending.begin(); it != pending.end();) {
      if (it->stream == stream) {
        ++it;
        continue;
      }
      const cudaError_t status = cudaEventQuery(it->event);
      if (status == cudaErrorNotReady) {
        static_cast<void>(cudaGetLastError());  // "not yet" must not reach the next launch check
        return false;
      }
      STRATA_CUDA_CHECK(status, "checking whether a cached block of {} bytes is idle", block.size);
      pool.spare_events.push_back(it->event);
      it = pending.erase(it);
    }
    return true;
  }

  // Records on stream that the block is freed there; false (after a warning) on failure.
  bool record_free_event(DevicePool& pool, Block& block, cudaStream_t stream) noexcept {
    cudaEvent_t event = nullptr;
    if (!pool.spare_events.empty()) {
      event = pool.spare_events.back();
      pool.spare_events.pop_back();
    } else {
      const cudaError_t status = cudaEventCreateWithFlags(&event, cudaEventDisableTiming);
      if (status != cudaSuccess) {
        STRATA_CUDA_WARN(status);
        return false;
      }
    }
    const cudaError_t status = cudaEventRecord(event, stream);
    if (status != cudaSuccess) {
      STRATA_CUDA_WARN(status);
      STRATA_CUDA_WARN(cudaEventDestroy(event));
      return false;
    }
    try {
      block.pending.push_back(PendingUse{stream, event});
    } catch (...) {
      STRATA_CUDA_WARN(cudaEventDestroy(event));
      return false;
    }
    return true;
  }

  void* cuda_malloc(DevicePool& pool, int device, std::size_t size, std::size_t requested, cudaStream_t stream) {
    void* ptr = nullptr;
    cudaError_t status = cudaMalloc(&ptr, size);
    if (status == cudaErrorMemoryAllocation) {
      static_cast<void>(cudaGetLastError());  // handled here; must not surface at the next launch
      release_cached(pool);
      ++pool.stats.cache_flushes;
      status = cudaMalloc(&ptr, size);
      if (status == cudaErrorMemoryAllocation) {
        static_cast<void>(cudaGetLastError());
        throw_out_of_memory(pool, device, size, requested, stream);
      }
    }
    STRATA_CUDA_CHECK(status, "allocating {} bytes on device {}", size, device);
    ++pool.stats.cuda_malloc_calls;
    pool.stats.reserved_bytes += size;
    return ptr;
  }

  [[noreturn]] static void throw_out_of_memory(const DevicePool& pool, int device, std::size_t size,
                                               std::size_t requested, cudaStream_t stream) {
    std::size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) static_cast<void>(cudaGetLastError());
    throw OutOfMemoryError(
        fmt::format("out of device memory: allocate_device could not get {} bytes ({} rounded) on cuda:{} for "
                    "stream {} even after emptying its cache; {} bytes in use, {} bytes reserved by Strata's "
                    "allocator, {} bytes free of {} on the device. Free tensors that are no longer needed or use "
                    "smaller batches.",
                    requested, size, device, static_cast<const void*>(stream), pool.stats.in_use_bytes,
                    pool.stats.reserved_bytes, free_bytes, total_bytes),
        requested, pool.stats.in_use_bytes, free_bytes);
  }

  // Waits for the events guarding cached blocks, then gives those blocks back to CUDA.
  // The caller has made the pool's device current.
  void release_cached(DevicePool& pool) {
    while (!pool.free_blocks.empty()) {
      Block* block = *pool.free_blocks.begin();
      for (const PendingUse& use : block->pending) {
        STRATA_CUDA_CHECK(cudaEventSynchronize(use.event), "waiting for a cached block before cudaFree");
        pool.spare_events.push_back(use.event);
      }
      block->pending.clear();
      STRATA_CUDA_CHECK(cudaFree(block->ptr), "releasing a cached block of {} bytes", block->size);
      ++pool.stats.cuda_free_calls;
      pool.stats.reserved_bytes -= block->size;
      pool.free_blocks.erase(pool.free_blocks.begin());
      pool.blocks.erase(block->ptr);
    }
  }

  std::mutex mutex_;
  std::vector<std::unique_ptr<DevicePool>> pools_;
};

}  // namespace detail

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      device_(other.device_),
      stream_(std::exchange(other.stream_, nullptr)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    reset();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    device_ = other.device_;
    stream_ = std::exchange(other.stream_, nullptr);
  }
  return *this;
}

void DeviceBuffer::record_stream(cudaStream_t stream) const {
  STRATA_CHECK(data_ != nullptr, "DeviceBuffer::record_stream: the buffer is empty");
  detail::DeviceCachingAllocator::instance().record_stream(data_, device_, stream);
}

void DeviceBuffer::reset() noexcept {
  if (data_ == nullptr) return;
  detail::DeviceCachingAllocator::instance().free(data_, device_);
  data_ = nullptr;
  size_ = 0;
  stream_ = nullptr;
}

DeviceBuffer allocate_device(std::size_t bytes, cudaStream_t stream) {
  return detail::DeviceCachingAllocator::instance().allocate(bytes, stream);
}

DeviceMemoryStats device_memory_stats(int device) { return detail::DeviceCachingAllocator::instance().stats(device); }

void reset_peak_device_memory(int device) { detail::DeviceCachingAllocator::instance().reset_peak(device); }

void empty_device_cache() { detail::DeviceCachingAllocator::instance().empty_cache(); }

}  // namespace strata
