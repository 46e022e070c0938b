// The caching, stream-ordered device allocator behind allocate_device (see allocator.h
// for the rules). One pool of blocks per device and the private pools of CUDA graphs, all
// under one mutex.
//
// Capture mode, as PyTorch's allocator has it: while any GraphMemoryPool serves a capture,
// every allocation and free asks CUDA whether its stream captures (cheap, and only then).
// Events are never recorded on a capturing stream (they would become captured events, which
// the cache could no longer query), so a block freed during a capture either stays with the
// graph's pool or, for an invalidated capture, waits until no capture runs to get its events.
#include "strata/core/allocator.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/allocation_watch.h"
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
  std::vector<cudaStream_t> used_on;  // record_stream() while allocated; kept while a graph pool holds it
  std::vector<PendingUse> pending;    // while free: what must finish before another stream may use it
  bool allocated = false;
  std::uint64_t graph_pool = 0;  // the GraphMemoryPool holding it; 0: the device's cache
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

// The state behind a GraphMemoryPool.
struct GraphPool {
  std::uint64_t id = 0;
  int device = 0;
  std::optional<unsigned long long> capture_id;  // the capture it serves, until end_capture
  bool served_a_capture = false;
  std::vector<Block*> blocks;                         // every block it holds, in use or not
  std::set<Block*, BySizeThenAddress> reusable;       // freed during the capture, for the same stream
  std::vector<cudaStream_t> replay_streams;
  bool released = false;  // the GraphMemoryPool is gone; waiting for the captures to end
};

// The capture a stream takes part in: nullopt when it is not capturing. Throws CudaError for
// a stream whose capture was invalidated: no graph will come of it.
std::optional<unsigned long long> capture_id_of(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  unsigned long long id = 0;
  STRATA_CUDA_CHECK(cudaStreamGetCaptureInfo(stream, &status, &id), "allocator: is stream {} capturing?",
                    static_cast<const void*>(stream));
  if (status == cudaStreamCaptureStatusNone) return std::nullopt;
  if (status == cudaStreamCaptureStatusInvalidated) {
    throw_cuda_error(cudaErrorStreamCaptureInvalidated, "allocate_device", __FILE__, __LINE__,
                     fmt::format("stream {} takes part in a CUDA graph capture that an earlier error invalidated",
                                 static_cast<const void*>(stream)));
  }
  return id;
}

// Makes the calling thread's stream capture mode relaxed for the guard's scope: cudaMalloc
// during a capture is legal then, and not recorded into the graph.
class RelaxedCaptureMode {
 public:
  RelaxedCaptureMode() { STRATA_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&previous_)); }
  ~RelaxedCaptureMode() { STRATA_CUDA_WARN(cudaThreadExchangeStreamCaptureMode(&previous_)); }
  RelaxedCaptureMode(const RelaxedCaptureMode&) = delete;
  RelaxedCaptureMode& operator=(const RelaxedCaptureMode&) = delete;

 private:
  cudaStreamCaptureMode previous_ = cudaStreamCaptureModeRelaxed;
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
    GraphPool* graph_pool = capturing_pools_ > 0 ? graph_pool_capturing(stream, device) : nullptr;
    Block* block = graph_pool != nullptr ? take_for_graph(pool, *graph_pool, size, stream)
                                         : take_cached(pool, size, stream);
    if (block != nullptr) {
      ++pool.stats.cache_hits;
    } else {
      void* ptr = cuda_malloc(pool, device, size, bytes, stream, /*during_capture=*/capturing_pools_ > 0);
      auto owned = std::make_unique<Block>();
      owned->ptr = ptr;
      owned->size = size;
      block = owned.get();
      pool.blocks.emplace(ptr, std::move(owned));
    }
    if (graph_pool != nullptr && block->graph_pool == 0) adopt(pool, *graph_pool, *block);
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

      if (block.graph_pool != 0) {
        free_graph_block(graph_pools_.at(block.graph_pool), block);
        return;
      }
      if (capturing_pools_ > 0 && kept_from_capture(pool, block)) return;
      NoThrowDeviceSwitch on_device(device);
      cache_with_events(pool, block, {});
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

  std::uint64_t create_graph_pool(int device) {
    std::lock_guard lock(mutex_);
    pool_of(device);
    const std::uint64_t id = next_graph_pool_id_++;
    graph_pools_[id].id = id;
    graph_pools_[id].device = device;
    return id;
  }

  void begin_capture(std::uint64_t id, cudaStream_t stream) {
    STRATA_CHECK(stream != nullptr, "GraphMemoryPool::begin_capture: no stream given");
    const std::optional<unsigned long long> capture = capture_id_of(stream);
    STRATA_CHECK(capture.has_value(),
                 "GraphMemoryPool::begin_capture: stream {} is not capturing; call cudaStreamBeginCapture first",
                 static_cast<const void*>(stream));
    std::lock_guard lock(mutex_);
    GraphPool& graph_pool = graph_pools_.at(id);
    STRATA_CHECK(!graph_pool.served_a_capture,
                 "GraphMemoryPool::begin_capture: the pool has served a capture already; each graph needs a pool of "
                 "its own");
    for (const auto& [other_id, other] : graph_pools_) {
      STRATA_CHECK(other.capture_id != capture, "GraphMemoryPool::begin_capture: capture {} of stream {} is served by "
                   "another pool already", *capture, static_cast<const void*>(stream));
    }
    graph_pool.capture_id = capture;
    graph_pool.served_a_capture = true;
    ++capturing_pools_;
  }

  void end_capture(std::uint64_t id) noexcept {
    std::lock_guard lock(mutex_);
    GraphPool& graph_pool = graph_pools_.at(id);
    if (!graph_pool.capture_id) return;
    graph_pool.capture_id.reset();
    graph_pool.reusable.clear();
    if (--capturing_pools_ == 0) after_last_capture();
  }

  void record_replay(std::uint64_t id, cudaStream_t stream) {
    STRATA_CHECK(stream != nullptr, "GraphMemoryPool::record_replay: no stream given");
    std::lock_guard lock(mutex_);
    std::vector<cudaStream_t>& streams = graph_pools_.at(id).replay_streams;
    if (std::ranges::find(streams, stream) == streams.end()) streams.push_back(stream);
  }

  std::size_t graph_pool_bytes(std::uint64_t id) {
    std::lock_guard lock(mutex_);
    std::size_t bytes = 0;
    for (const Block* block : graph_pools_.at(id).blocks) bytes += block->size;
    return bytes;
  }

  // The pool's blocks go to the device's cache, guarded by events on every stream that used
  // them or replayed the graph; blocks still in use go there when they are freed. Deferred
  // while captures run: the events could land on a capturing stream.
  void release_graph_pool(std::uint64_t id) noexcept {
    std::lock_guard lock(mutex_);
    const auto it = graph_pools_.find(id);
    if (it == graph_pools_.end()) return;
    it->second.released = true;
    if (capturing_pools_ == 0) dissolve(it);
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

  // ---- Capture mode --------------------------------------------------------------------

  // The pool serving the capture stream takes part in, or null when stream is not capturing.
  // Throws for a capture no pool serves: its allocations would have nowhere safe to go.
  GraphPool* graph_pool_capturing(cudaStream_t stream, int device) {
    const std::optional<unsigned long long> capture = capture_id_of(stream);
    if (!capture) return nullptr;
    for (auto& [id, graph_pool] : graph_pools_) {
      if (graph_pool.capture_id != capture) continue;
      STRATA_CHECK(graph_pool.device == device,
                   "allocate_device: stream {} captures a CUDA graph whose memory pool is on device {}, but the current "
                   "device is {}",
                   static_cast<const void*>(stream), graph_pool.device, device);
      return &graph_pool;
    }
    STRATA_CHECK(false,
                 "allocate_device on stream {}, which is capturing a CUDA graph that no GraphMemoryPool serves: capture "
                 "through strata::CudaGraph (strata/core/cuda_graph.h) so that the graph's memory stays its own",
                 static_cast<const void*>(stream));
    return nullptr;
  }

  // For an allocation in a capture: a block the capture freed on the same stream, else a
  // cached block no queued work uses any more (all its events complete: the same-stream
  // exemption does not hold, the graph will run on another stream). Null: cudaMalloc.
  Block* take_for_graph(DevicePool& pool, GraphPool& graph_pool, std::size_t size, cudaStream_t stream) {
    for (auto it = graph_pool.reusable.lower_bound(size);
         it != graph_pool.reusable.end() && (*it)->size <= max_reusable_size(size); ++it) {
      if ((*it)->stream != stream) continue;
      Block* block = *it;
      graph_pool.reusable.erase(it);
      return block;
    }
    for (auto it = pool.free_blocks.lower_bound(size);
         it != pool.free_blocks.end() && (*it)->size <= max_reusable_size(size); ++it) {
      Block* block = *it;
      if (!usable_on(pool, *block, nullptr)) continue;
      pool.free_blocks.erase(it);
      return block;
    }
    return nullptr;
  }

  void adopt(DevicePool& pool, GraphPool& graph_pool, Block& block) {
    block.graph_pool = graph_pool.id;
    graph_pool.blocks.push_back(&block);
    pool.stats.graph_pool_bytes += block.size;
  }

  // A pool block freed: reusable later in the capture, by its own stream only, when nothing
  // else used it; otherwise kept idle for the graph.
  static void free_graph_block(GraphPool& graph_pool, Block& block) {
    if (graph_pool.capture_id && block.used_on.empty()) graph_pool.reusable.insert(&block);
  }

  // A cache block freed while captures run. If one of its streams captures, no event can be
  // recorded there: in a capture that a pool serves, the graph may read the block at every
  // replay, so the pool keeps it; in an invalidated capture it waits for the captures to end.
  bool kept_from_capture(DevicePool& pool, Block& block) noexcept {
    std::vector<cudaStream_t> streams = block.used_on;
    streams.push_back(block.stream);
    bool invalidated = false;
    for (cudaStream_t stream : streams) {
      cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
      unsigned long long capture = 0;
      if (cudaStreamGetCaptureInfo(stream, &status, &capture) != cudaSuccess) {
        static_cast<void>(cudaGetLastError());
        continue;  // a stream destroyed since: recording on it will warn
      }
      if (status == cudaStreamCaptureStatusInvalidated) invalidated = true;
      if (status != cudaStreamCaptureStatusActive) continue;
      for (auto& [id, graph_pool] : graph_pools_) {
        if (graph_pool.capture_id == capture) {
          adopt(pool, graph_pool, block);
          return true;
        }
      }
      log_warning(fmt::format("allocator: a block of {} bytes was freed on stream {}, which captures a CUDA graph no "
                              "GraphMemoryPool serves; it is not reused",
                              block.size, static_cast<const void*>(stream)));
      return true;
    }
    if (invalidated) deferred_.push_back(&block);
    return invalidated;
  }

  // Records the free events of a block on its streams and extra ones, then caches it.
  // Without its events nobody can tell when the block is idle: it is then left out of the
  // cache for good (still counted as reserved).
  void cache_with_events(DevicePool& pool, Block& block, const std::vector<cudaStream_t>& extra) noexcept {
    std::vector<cudaStream_t> streams{block.stream};
    for (cudaStream_t stream : block.used_on) {
      if (std::ranges::find(streams, stream) == streams.end()) streams.push_back(stream);
    }
    for (cudaStream_t stream : extra) {
      if (std::ranges::find(streams, stream) == streams.end()) streams.push_back(stream);
    }
    block.used_on.clear();
    bool recorded = true;
    for (cudaStream_t stream : streams) recorded = record_free_event(pool, block, stream) && recorded;
    if (recorded) pool.free_blocks.insert(&block);
  }

  void after_last_capture() noexcept {
    for (Block* block : std::exchange(deferred_, {})) {
      DevicePool& pool = *pool_containing(block);
      cache_with_events(pool, *block, {});
    }
    for (auto it = graph_pools_.begin(); it != graph_pools_.end();) {
      auto next = std::next(it);
      if (it->second.released) dissolve(it);
      it = next;
    }
  }

  DevicePool* pool_containing(const Block* block) {
    for (const auto& pool : pools_) {
      if (pool != nullptr && pool->blocks.contains(block->ptr)) return pool.get();
    }
    return nullptr;
  }

  void dissolve(std::unordered_map<std::uint64_t, GraphPool>::iterator it) noexcept {
    GraphPool& graph_pool = it->second;
    DevicePool& pool = *pools_[static_cast<std::size_t>(graph_pool.device)];
    NoThrowDeviceSwitch on_device(graph_pool.device);
    for (Block* block : graph_pool.blocks) {
      block->graph_pool = 0;
      pool.stats.graph_pool_bytes -= block->size;
      if (block->allocated) {
        for (cudaStream_t stream : graph_pool.replay_streams) {
          if (stream != block->stream && std::ranges::find(block->used_on, stream) == block->used_on.end()) {
            block->used_on.push_back(stream);
          }
        }
      } else {
        cache_with_events(pool, *block, graph_pool.replay_streams);
      }
    }
    graph_pools_.erase(it);
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

  // True when every use of the block on a stream other than `stream` (null: on any stream)
  // has completed.
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

  // While a graph is captured, cudaMalloc runs in relaxed capture mode (the capturing
  // thread's mode forbids it otherwise, for the graph's allocations as for eager ones on other
  // streams), and the cache cannot be emptied (that synchronises with the device), so an
  // allocation that does not fit fails at once.
  void* cuda_malloc(DevicePool& pool, int device, std::size_t size, std::size_t requested, cudaStream_t stream,
                    bool during_capture) {
    void* ptr = nullptr;
    if (during_capture) {
      cudaError_t status = cudaSuccess;
      {
        RelaxedCaptureMode relaxed;
        status = cudaMalloc(&ptr, size);
      }
      if (status == cudaErrorMemoryAllocation) {
        static_cast<void>(cudaGetLastError());
        throw_out_of_memory(pool, device, size, requested, stream, /*capturing=*/true);
      }
      STRATA_CUDA_CHECK(status, "allocating {} bytes on device {} while a CUDA graph is captured", size, device);
      ++pool.stats.cuda_malloc_calls;
      pool.stats.reserved_bytes += size;
      return ptr;
    }
    cudaError_t status = cudaMalloc(&ptr, size);
    if (status == cudaErrorMemoryAllocation) {
      static_cast<void>(cudaGetLastError());  // handled here; must not surface at the next launch
      release_cached(pool);
      ++pool.stats.cache_flushes;
      status = cudaMalloc(&ptr, size);
      if (status == cudaErrorMemoryAllocation) {
        static_cast<void>(cudaGetLastError());
        throw_out_of_memory(pool, device, size, requested, stream, /*capturing=*/false);
      }
    }
    STRATA_CUDA_CHECK(status, "allocating {} bytes on device {}", size, device);
    ++pool.stats.cuda_malloc_calls;
    pool.stats.reserved_bytes += size;
    return ptr;
  }

  [[noreturn]] static void throw_out_of_memory(const DevicePool& pool, int device, std::size_t size,
                                               std::size_t requested, cudaStream_t stream, bool capturing) {
    std::size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) static_cast<void>(cudaGetLastError());
    throw OutOfMemoryError(
        fmt::format("out of device memory: allocate_device could not get {} bytes ({} rounded) on cuda:{} for "
                    "stream {} {}; {} bytes in use, {} bytes reserved by Strata's allocator, {} bytes free of {} on "
                    "the device. Free tensors that are no longer needed or use smaller batches{}.",
                    requested, size, device, static_cast<const void*>(stream),
                    capturing ? "while capturing a CUDA graph, when the cache cannot be emptied"
                              : "even after emptying its cache",
                    pool.stats.in_use_bytes, pool.stats.reserved_bytes, free_bytes, total_bytes,
                    capturing ? ", or call empty_device_cache() before the capture" : ""),
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
  std::unordered_map<std::uint64_t, GraphPool> graph_pools_;  // by GraphMemoryPool id
  std::uint64_t next_graph_pool_id_ = 1;
  int capturing_pools_ = 0;      // graph pools between begin_capture and end_capture
  std::vector<Block*> deferred_;  // freed during an invalidated capture: cached once no capture runs
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
  detail::AllocationWatch::note(-static_cast<std::int64_t>(size_));
  detail::DeviceCachingAllocator::instance().free(data_, device_);
  data_ = nullptr;
  size_ = 0;
  stream_ = nullptr;
}

DeviceBuffer allocate_device(std::size_t bytes, cudaStream_t stream) {
  DeviceBuffer buffer = detail::DeviceCachingAllocator::instance().allocate(bytes, stream);
  detail::AllocationWatch::note(static_cast<std::int64_t>(buffer.size()));
  return buffer;
}

DeviceMemoryStats device_memory_stats(int device) { return detail::DeviceCachingAllocator::instance().stats(device); }

void reset_peak_device_memory(int device) { detail::DeviceCachingAllocator::instance().reset_peak(device); }

void empty_device_cache() { detail::DeviceCachingAllocator::instance().empty_cache(); }

GraphMemoryPool::GraphMemoryPool()
    : id_(detail::DeviceCachingAllocator::instance().create_graph_pool(current_device())), device_(current_device()) {}

GraphMemoryPool::~GraphMemoryPool() { release(); }

GraphMemoryPool::GraphMemoryPool(GraphMemoryPool&& other) noexcept
    : id_(std::exchange(other.id_, 0)), device_(other.device_) {}

GraphMemoryPool& GraphMemoryPool::operator=(GraphMemoryPool&& other) noexcept {
  if (this != &other) {
    release();
    id_ = std::exchange(other.id_, 0);
    device_ = other.device_;
  }
  return *this;
}

void GraphMemoryPool::begin_capture(cudaStream_t stream) {
  STRATA_CHECK(id_ != 0, "GraphMemoryPool::begin_capture: the pool was moved from");
  detail::DeviceCachingAllocator::instance().begin_capture(id_, stream);
}

void GraphMemoryPool::end_capture() noexcept {
  if (id_ != 0) detail::DeviceCachingAllocator::instance().end_capture(id_);
}

void GraphMemoryPool::record_replay(cudaStream_t stream) {
  STRATA_CHECK(id_ != 0, "GraphMemoryPool::record_replay: the pool was moved from");
  detail::DeviceCachingAllocator::instance().record_replay(id_, stream);
}

std::size_t GraphMemoryPool::reserved_bytes() const {
  return id_ == 0 ? 0 : detail::DeviceCachingAllocator::instance().graph_pool_bytes(id_);
}

void GraphMemoryPool::release() noexcept {
  if (id_ == 0) return;
  end_capture();
  detail::DeviceCachingAllocator::instance().release_graph_pool(std::exchange(id_, 0));
}

}  // namespace strata
