// Device memory for all of Strata: a caching allocator, stream-ordered like PyTorch's.
// cudaMalloc and cudaFree are slow and synchronise the device, so freed blocks are kept and
// handed out again:
//   - a block freed while in use on stream S is reusable at once by allocations on S,
//     since S runs its work in order;
//   - on another stream only after the events recorded at free time, on S and on every
//     stream given to record_stream(), have completed; until then a fresh block is used;
//   - when cudaMalloc fails, the allocator waits for those events, returns all cached
//     blocks to CUDA and retries once before throwing OutOfMemoryError.
// Thread-safe. Blocks are never split; sizes are rounded up to kDeviceAllocationGranularity
// and a cached block is reused only if it wastes at most a quarter of the request.
//
// While a CUDA graph is captured (strata/core/cuda_graph.h), allocations on the capturing
// streams come from the graph's private pool instead (GraphMemoryPool below), and no event
// is recorded or queried on a capturing stream.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

namespace strata {

namespace detail {
class DeviceCachingAllocator;
}

inline constexpr std::size_t kDeviceAllocationGranularity = 512;

// Move-only owner of one block of device memory. Destruction gives the block back to the
// cache (never throws); work queued before that on the block's streams may still use it.
class DeviceBuffer {
 public:
  DeviceBuffer() noexcept = default;
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const noexcept { return data_; }
  template <typename T>
  T* as() const noexcept {
    return static_cast<T*>(data_);
  }
  std::size_t size() const noexcept { return size_; }  // bytes requested
  int device() const noexcept { return device_; }
  cudaStream_t stream() const noexcept { return stream_; }  // the stream it was allocated on
  explicit operator bool() const noexcept { return data_ != nullptr; }

  // Declares that work on stream (besides the allocation stream) uses this memory, so the
  // block is not handed to anyone else before that work is done. As torch's record_stream.
  void record_stream(cudaStream_t stream) const;

  // Gives the block back now; the buffer becomes empty.
  void reset() noexcept;

 private:
  friend class detail::DeviceCachingAllocator;
  DeviceBuffer(void* data, std::size_t size, int device, cudaStream_t stream) noexcept
      : data_(data), size_(size), device_(device), stream_(stream) {}

  void* data_ = nullptr;
  std::size_t size_ = 0;
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
};

// bytes of device memory on the current device for use on stream (never the default
// stream). Zero bytes give an empty buffer. Throws OutOfMemoryError when even an emptied
// cache does not make room; its message has the bytes requested, in use, reserved and free.
DeviceBuffer allocate_device(std::size_t bytes, cudaStream_t stream);

struct DeviceMemoryStats {
  std::size_t in_use_bytes = 0;       // blocks handed out (rounded sizes)
  std::size_t reserved_bytes = 0;     // obtained from cudaMalloc: in use + cached
  std::size_t peak_in_use_bytes = 0;  // since start or reset_peak_device_memory()
  std::uint64_t allocations = 0;      // non-empty allocate_device calls
  std::uint64_t cache_hits = 0;       // ... served from the cache
  std::uint64_t cuda_malloc_calls = 0;
  std::uint64_t cuda_free_calls = 0;
  std::uint64_t cache_flushes = 0;  // times the cache was emptied because cudaMalloc failed
  std::size_t graph_pool_bytes = 0;  // reserved bytes held by CUDA graphs' private pools (in use or not)

  std::size_t cached_bytes() const noexcept { return reserved_bytes - in_use_bytes; }
};

DeviceMemoryStats device_memory_stats(int device);
void reset_peak_device_memory(int device);

// Returns every cached block of every device to CUDA, first waiting for the events that
// still guard them. Blocks in use are untouched.
void empty_device_cache();

// The private memory of one captured CUDA graph, modelled on PyTorch's graph memory pools.
// A graph's kernels keep the addresses they were captured with, so that memory must stay
// the graph's for as long as it can be replayed. Between begin_capture() and end_capture(),
// allocate_device on any stream taking part in that capture (the stream it began on and
// the streams forked from it through events) is served by the pool:
//   - from a block the same capture freed earlier on the same stream (stream order makes
//     that safe; a block used on other streams through record_stream is not reused), else
//     from a cached block that no queued work uses any more, else from cudaMalloc, which
//     the allocator calls in relaxed capture mode, as CUDA permits: the allocation happens
//     at capture time and is not part of the graph, so replays reuse it;
//   - a block freed while its stream captures, the pool's own or one allocated before the
//     capture, stays with the pool (the graph may read it at every replay): the pool's
//     blocks are never handed to allocations outside the pool while it lives.
// Destroying the pool gives its blocks back to the cache, to be reused once the work queued
// on the streams given to record_replay() has completed. One capture per pool.
class GraphMemoryPool {
 public:
  GraphMemoryPool();  // on the current device
  ~GraphMemoryPool();
  GraphMemoryPool(GraphMemoryPool&& other) noexcept;
  GraphMemoryPool& operator=(GraphMemoryPool&& other) noexcept;
  GraphMemoryPool(const GraphMemoryPool&) = delete;
  GraphMemoryPool& operator=(const GraphMemoryPool&) = delete;

  // Serves the capture that stream takes part in (cudaStreamBeginCapture before); throws
  // InvalidArgument when stream is not capturing or the pool has served a capture already.
  void begin_capture(cudaStream_t stream);
  // After cudaStreamEndCapture: blocks freed from now on are kept for the graph but no
  // longer reused, and blocks freed during an invalidated capture go back to the cache.
  void end_capture() noexcept;
  // A replay of the graph was queued on stream.
  void record_replay(cudaStream_t stream);

  int device() const noexcept { return device_; }
  std::size_t reserved_bytes() const;  // blocks the pool holds, in use or not

 private:
  void release() noexcept;

  std::uint64_t id_ = 0;  // 0: moved from
  int device_ = 0;
};

}  // namespace strata
