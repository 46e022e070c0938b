// Memory of the simulated device: device and pinned allocations, cudaMemcpy*/cudaMemset*
// with CUDA's synchronisation rules, and the accounting behind cudaMemGetInfo.
//
// Device memory is ordinary host memory of exactly the requested size (so AddressSanitizer
// catches a kernel that runs past the end), 256-byte aligned as cudaMalloc guarantees. A
// registry of allocations lets copies tell device, pinned and pageable memory apart, check
// that device ranges lie inside one allocation, and apply CUDA's rules: an async copy from
// pageable memory to the device stages (snapshots) the source at call time; an async copy
// from the device to pageable memory returns only when done; pinned memory is truly async.
// Under stream capture, async copies and memsets on device and pinned memory become graph
// nodes; copies that involve pageable memory, synchronous calls, allocation and freeing are
// refused as CUDA refuses them (see runtime_capture.cpp).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <vector>

#include "core/sim/runtime.h"
#include "core/sim/runtime_internal.h"

using namespace strata::sim::runtime_internal;

namespace {

constexpr size_t kDeviceAlignment = 256;  // cudaMalloc's guarantee

enum class Space { device, pinned, pageable };

struct Allocation {
  enum class Kind { device, pinned_allocated, pinned_registered };
  size_t size = 0;
  Kind kind = Kind::device;
  bool free_queued = false;  // cudaFreeAsync issued, not yet executed
};

// Where a range lies: the space of its first byte, and whether the whole range fits in the
// allocation holding that byte (always true for pageable memory, which is not tracked).
struct Location {
  Space space = Space::pageable;
  bool fits = true;
};

class MemoryRegistry {
 public:
  static MemoryRegistry& instance() {
    // Leaked on purpose: stream workers may free memory during static destruction.
    static MemoryRegistry* registry = new MemoryRegistry();
    return *registry;
  }

  cudaError_t allocate(void** pointer, size_t size, Allocation::Kind kind) {
    std::lock_guard lock(mutex_);
    const bool is_device = kind == Allocation::Kind::device;
    const size_t limit = strata::sim::device_memory_limit();
    if (is_device && size > limit - std::min(device_bytes_, limit)) return cudaErrorMemoryAllocation;
    void* memory = nullptr;
    if (posix_memalign(&memory, kDeviceAlignment, size) != 0) return cudaErrorMemoryAllocation;
    allocations_.emplace(address(memory), Allocation{size, kind, false});
    if (is_device) device_bytes_ += size;
    *pointer = memory;
    return cudaSuccess;
  }

  // Removes the allocation that starts at pointer if it is of the given kind.
  bool release(void* pointer, Allocation::Kind kind) {
    std::lock_guard lock(mutex_);
    const auto it = allocations_.find(address(pointer));
    if (it == allocations_.end() || it->second.kind != kind || it->second.free_queued) return false;
    erase(it);
    return true;
  }

  // Marks a device allocation as about to be freed in stream order; false if it is not one.
  bool queue_free(void* pointer) {
    std::lock_guard lock(mutex_);
    const auto it = allocations_.find(address(pointer));
    if (it == allocations_.end() || it->second.kind != Allocation::Kind::device || it->second.free_queued) return false;
    it->second.free_queued = true;
    return true;
  }

  void release_queued(void* pointer) {
    std::lock_guard lock(mutex_);
    if (const auto it = allocations_.find(address(pointer)); it != allocations_.end()) erase(it);
  }

  cudaError_t register_host(void* pointer, size_t size) {
    std::lock_guard lock(mutex_);
    const uintptr_t begin = address(pointer);
    const auto next = allocations_.lower_bound(begin);
    const bool overlaps_next = next != allocations_.end() && next->first < begin + size;
    const bool overlaps_previous =
        next != allocations_.begin() && std::prev(next)->first + std::prev(next)->second.size > begin;
    if (overlaps_next || overlaps_previous) return cudaErrorHostMemoryAlreadyRegistered;
    allocations_.emplace(begin, Allocation{size, Allocation::Kind::pinned_registered, false});
    return cudaSuccess;
  }

  Location locate(const void* pointer, size_t extent) {
    std::lock_guard lock(mutex_);
    const uintptr_t begin = address(pointer);
    auto it = allocations_.upper_bound(begin);
    if (it == allocations_.begin()) return {};
    --it;
    const uintptr_t end = it->first + it->second.size;
    if (begin >= end) return {};
    const Space space = it->second.kind == Allocation::Kind::device ? Space::device : Space::pinned;
    return {space, extent <= end - begin};
  }

  size_t device_bytes() {
    std::lock_guard lock(mutex_);
    return device_bytes_;
  }

 private:
  static uintptr_t address(const void* pointer) { return reinterpret_cast<uintptr_t>(pointer); }

  void erase(std::map<uintptr_t, Allocation>::iterator it) {
    if (it->second.kind == Allocation::Kind::device) device_bytes_ -= it->second.size;
    if (it->second.kind != Allocation::Kind::pinned_registered) std::free(reinterpret_cast<void*>(it->first));
    allocations_.erase(it);
  }

  std::mutex mutex_;  // guards everything below
  std::map<uintptr_t, Allocation> allocations_;  // by start address
  size_t device_bytes_ = 0;
};

// A rectangle of bytes: height rows of width bytes, rows pitch bytes apart. Plain copies
// are one row.
struct Copy2D {
  void* dst = nullptr;
  size_t dst_pitch = 0;
  const void* src = nullptr;
  size_t src_pitch = 0;
  size_t width = 0;
  size_t height = 1;
};

size_t extent_of(size_t pitch, size_t width, size_t height) { return (height - 1) * pitch + width; }

void perform(const Copy2D& copy) {
  for (size_t row = 0; row < copy.height; ++row) {
    // memmove: CUDA leaves overlapping copies undefined; the simulator need not punish them.
    std::memmove(static_cast<char*>(copy.dst) + row * copy.dst_pitch,
                 static_cast<const char*>(copy.src) + row * copy.src_pitch, copy.width);
  }
}

// The copy kind must agree with where the pointers lie; cudaMemcpyDefault infers it.
cudaError_t check_kind(cudaMemcpyKind kind, Space dst, Space src) {
  const bool dst_device = dst == Space::device;
  const bool src_device = src == Space::device;
  switch (kind) {
    case cudaMemcpyDefault: return cudaSuccess;
    case cudaMemcpyHostToHost: return !src_device && !dst_device ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyHostToDevice: return !src_device && dst_device ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyDeviceToHost: return src_device && !dst_device ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyDeviceToDevice: return src_device && dst_device ? cudaSuccess : cudaErrorInvalidValue;
  }
  return cudaErrorInvalidMemcpyDirection;
}

// Shared by every cudaMemcpy*: synchronous calls run on the legacy default stream.
cudaError_t copy_memory(Copy2D copy, cudaMemcpyKind kind, cudaStream_t stream, bool synchronous_call) {
  if (copy.width > copy.dst_pitch || copy.width > copy.src_pitch) return fail(cudaErrorInvalidPitchValue);
  if (synchronous_call) {
    if (const cudaError_t forbidden = check_unsafe_call(); forbidden != cudaSuccess) return forbidden;
  }
  const std::shared_ptr<CUstream_st> target = synchronous_call ? legacy_stream() : resolve_stream(stream);
  if (target == nullptr) return fail(cudaErrorInvalidResourceHandle);
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) return fail(cudaErrorInvalidMemcpyDirection);
  if (copy.width == 0 || copy.height == 0) return cudaSuccess;
  if (copy.dst == nullptr || copy.src == nullptr) return fail(cudaErrorInvalidValue);

  MemoryRegistry& registry = MemoryRegistry::instance();
  const Location dst = registry.locate(copy.dst, extent_of(copy.dst_pitch, copy.width, copy.height));
  const Location src = registry.locate(copy.src, extent_of(copy.src_pitch, copy.width, copy.height));
  if (!dst.fits || !src.fits) return fail(cudaErrorInvalidValue);
  if (const cudaError_t mismatch = check_kind(kind, dst.space, src.space); mismatch != cudaSuccess) {
    return fail(mismatch);
  }
  if (synchronous_call) {
    if (const cudaError_t sticky = sticky_error(); sticky != cudaSuccess) return sticky;
  }

  const bool dst_device = dst.space == Space::device;
  const bool src_device = src.space == Space::device;
  bool wait = false;
  std::shared_ptr<std::vector<char>> staging;
  if (synchronous_call) {
    // Only device-to-device copies leave the host before they are done.
    wait = !(dst_device && src_device);
  } else if (src.space == Space::pageable && dst_device) {
    // CUDA stages pageable memory in a pinned buffer before returning: later writes to the
    // source do not affect the copy.
    staging = std::make_shared<std::vector<char>>(copy.width * copy.height);
    perform(Copy2D{staging->data(), copy.width, copy.src, copy.src_pitch, copy.width, copy.height});
    copy.src = staging->data();
    copy.src_pitch = copy.width;
  } else {
    // Into pageable memory, or host to host: returns only once the copy is done.
    wait = (dst.space == Space::pageable && src_device) || (!dst_device && !src_device);
  }
  const bool pageable = src.space == Space::pageable || dst.space == Space::pageable;
  const Queued queued = queue_operation(target, cudaGraphNodeTypeMemcpy, [copy, staging] { perform(copy); },
                                        AfterFailure::skip, pageable ? Capturable::no : Capturable::yes);
  if (queued.status != cudaSuccess) return queued.status;
  if (wait && queued.point) wait_for(*queued.point);
  return synchronous_call || wait ? sticky_error() : cudaSuccess;
}

cudaError_t set_memory(void* pointer, int value, size_t count, cudaStream_t stream, bool synchronous_call) {
  if (synchronous_call) {
    if (const cudaError_t forbidden = check_unsafe_call(); forbidden != cudaSuccess) return forbidden;
  }
  const std::shared_ptr<CUstream_st> target = synchronous_call ? legacy_stream() : resolve_stream(stream);
  if (target == nullptr) return fail(cudaErrorInvalidResourceHandle);
  if (count == 0) return cudaSuccess;
  if (pointer == nullptr) return fail(cudaErrorInvalidValue);
  const Location location = MemoryRegistry::instance().locate(pointer, count);
  // The device can only write memory it can address: its own and pinned host memory.
  if (location.space == Space::pageable || !location.fits) return fail(cudaErrorInvalidValue);
  if (synchronous_call) {
    if (const cudaError_t sticky = sticky_error(); sticky != cudaSuccess) return sticky;
  }
  // cudaMemset is asynchronous to the host except on pinned host memory.
  const bool wait = synchronous_call && location.space == Space::pinned;
  const Queued queued = queue_operation(
      target, cudaGraphNodeTypeMemset, [pointer, value, count] { std::memset(pointer, value, count); },
      AfterFailure::skip);
  if (queued.status != cudaSuccess) return queued.status;
  if (wait && queued.point) wait_for(*queued.point);
  return synchronous_call ? sticky_error() : cudaSuccess;
}

}  // namespace

// ---- Allocation ------------------------------------------------------------------------

cudaError_t CUDARTAPI cudaMalloc(void** devPtr, size_t size) {
  if (devPtr == nullptr) return fail(cudaErrorInvalidValue);
  if (const cudaError_t forbidden = check_unsafe_call(); forbidden != cudaSuccess) return forbidden;
  if (size == 0) {
    *devPtr = nullptr;
    return cudaSuccess;
  }
  return fail(MemoryRegistry::instance().allocate(devPtr, size, Allocation::Kind::device));
}

// Like CUDA's, cudaFree waits for the device first: memory still in use by queued work is
// never released under it.
cudaError_t CUDARTAPI cudaFree(void* devPtr) {
  if (devPtr == nullptr) return cudaSuccess;
  if (const cudaError_t forbidden = check_unsafe_call(); forbidden != cudaSuccess) return forbidden;
  synchronize_all_streams();
  if (!MemoryRegistry::instance().release(devPtr, Allocation::Kind::device)) return fail(cudaErrorInvalidValue);
  return cudaSuccess;
}

// Graph memory nodes (cudaMallocAsync / cudaFreeAsync in a capturing stream) are not
// simulated: both are refused during capture.
cudaError_t CUDARTAPI cudaMallocAsync(void** devPtr, size_t size, cudaStream_t hStream) {
  if (devPtr == nullptr) return fail(cudaErrorInvalidValue);
  const std::shared_ptr<CUstream_st> stream = resolve_stream(hStream);
  if (stream == nullptr) return fail(cudaErrorInvalidResourceHandle);
  if (const cudaError_t capturing = check_stream_not_capturing(stream); capturing != cudaSuccess) return capturing;
  // Allocating at call time is a valid stream-ordered allocation: the memory is usable by
  // the time the stream reaches this point.
  if (size == 0) {
    *devPtr = nullptr;
    return cudaSuccess;
  }
  return fail(MemoryRegistry::instance().allocate(devPtr, size, Allocation::Kind::device));
}

// The memory is released when the stream reaches the free, so a later use of it from
// another stream without synchronisation reads freed memory, as it can on a GPU.
cudaError_t CUDARTAPI cudaFreeAsync(void* devPtr, cudaStream_t hStream) {
  if (devPtr == nullptr) return cudaSuccess;
  const std::shared_ptr<CUstream_st> stream = resolve_stream(hStream);
  if (stream == nullptr) return fail(cudaErrorInvalidResourceHandle);
  if (const cudaError_t capturing = check_stream_not_capturing(stream); capturing != cudaSuccess) return capturing;
  if (!MemoryRegistry::instance().queue_free(devPtr)) return fail(cudaErrorInvalidValue);
  submit(stream, [devPtr] { MemoryRegistry::instance().release_queued(devPtr); }, AfterFailure::run);
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaHostAlloc(void** pHost, size_t size, unsigned int flags) {
  constexpr unsigned kKnownFlags = cudaHostAllocPortable | cudaHostAllocMapped | cudaHostAllocWriteCombined;
  if (pHost == nullptr || (flags & ~kKnownFlags) != 0) return fail(cudaErrorInvalidValue);
  if (const cudaError_t forbidden = check_unsafe_call(); forbidden != cudaSuccess) return forbidden;
  if (size == 0) {
    *pHost = nullptr;
    return cudaSuccess;
  }
  return fail(MemoryRegistry::instance().allocate(pHost, size, Allocation::Kind::pinned_allocated));
}

cudaError_t CUDARTAPI cudaMallocHost(void** ptr, size_t size) { return cudaHostAlloc(ptr, size, cudaHostAllocDefault); }

// Waits for the device like cudaFree: async copies may still be reading the buffer.
cudaError_t CUDARTAPI cudaFreeHost(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  if (const cudaError_t forbidden = check_unsafe_call(); forbidden != cudaSuccess) return forbidden;
  synchronize_all_streams();
  if (!MemoryRegistry::instance().release(ptr, Allocation::Kind::pinned_allocated)) return fail(cudaErrorInvalidValue);
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaHostRegister(void* ptr, size_t size, unsigned int flags) {
  constexpr unsigned kKnownFlags =
      cudaHostRegisterPortable | cudaHostRegisterMapped | cudaHostRegisterIoMemory | cudaHostRegisterReadOnly;
  if (ptr == nullptr || size == 0 || (flags & ~kKnownFlags) != 0) return fail(cudaErrorInvalidValue);
  if (const cudaError_t forbidden = check_unsafe_call(); forbidden != cudaSuccess) return forbidden;
  return fail(MemoryRegistry::instance().register_host(ptr, size));
}

cudaError_t CUDARTAPI cudaHostUnregister(void* ptr) {
  if (ptr == nullptr) return fail(cudaErrorInvalidValue);
  if (const cudaError_t forbidden = check_unsafe_call(); forbidden != cudaSuccess) return forbidden;
  synchronize_all_streams();
  if (!MemoryRegistry::instance().release(ptr, Allocation::Kind::pinned_registered)) {
    return fail(cudaErrorHostMemoryNotRegistered);
  }
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMemGetInfo(size_t* free, size_t* total) {
  if (free == nullptr || total == nullptr) return fail(cudaErrorInvalidValue);
  const size_t limit = strata::sim::device_memory_limit();
  const size_t used = MemoryRegistry::instance().device_bytes();
  *free = used < limit ? limit - used : 0;
  *total = limit;
  return cudaSuccess;
}

namespace strata::sim::runtime_internal {

MemoryRange locate_memory(const void* pointer, size_t bytes) {
  const Location location = MemoryRegistry::instance().locate(pointer, bytes);
  switch (location.space) {
    case Space::device: return {MemorySpace::device, location.fits};
    case Space::pinned: return {MemorySpace::pinned, location.fits};
    case Space::pageable: break;
  }
  return {};
}

}  // namespace strata::sim::runtime_internal

cudaError_t CUDARTAPI cudaPointerGetAttributes(cudaPointerAttributes* attributes, const void* ptr) {
  if (attributes == nullptr) return fail(cudaErrorInvalidValue);
  *attributes = cudaPointerAttributes{};
  void* pointer = const_cast<void*>(ptr);
  switch (MemoryRegistry::instance().locate(ptr, 0).space) {
    case Space::device:
      *attributes = cudaPointerAttributes{cudaMemoryTypeDevice, 0, pointer, nullptr, {}};
      break;
    case Space::pinned:  // mapped into the device's address space at the same address (UVA)
      *attributes = cudaPointerAttributes{cudaMemoryTypeHost, 0, pointer, pointer, {}};
      break;
    case Space::pageable:  // -2: CUDA's device number for memory it does not know
      *attributes = cudaPointerAttributes{cudaMemoryTypeUnregistered, -2, nullptr, pointer, {}};
      break;
  }
  return cudaSuccess;
}

// ---- Copies ----------------------------------------------------------------------------

cudaError_t CUDARTAPI cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  return copy_memory(Copy2D{dst, count, src, count, count, 1}, kind, nullptr, /*synchronous_call=*/true);
}

cudaError_t CUDARTAPI cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                                      cudaStream_t stream) {
  return copy_memory(Copy2D{dst, count, src, count, count, 1}, kind, stream, /*synchronous_call=*/false);
}

cudaError_t CUDARTAPI cudaMemcpy2D(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                                   size_t height, cudaMemcpyKind kind) {
  return copy_memory(Copy2D{dst, dpitch, src, spitch, width, height}, kind, nullptr, /*synchronous_call=*/true);
}

cudaError_t CUDARTAPI cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                                        size_t height, cudaMemcpyKind kind, cudaStream_t stream) {
  return copy_memory(Copy2D{dst, dpitch, src, spitch, width, height}, kind, stream, /*synchronous_call=*/false);
}

cudaError_t CUDARTAPI cudaMemset(void* devPtr, int value, size_t count) {
  return set_memory(devPtr, value, count, nullptr, /*synchronous_call=*/true);
}

cudaError_t CUDARTAPI cudaMemsetAsync(void* devPtr, int value, size_t count, cudaStream_t stream) {
  return set_memory(devPtr, value, count, stream, /*synchronous_call=*/false);
}
