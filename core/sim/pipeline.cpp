// The simulator's asynchronous copies; see pipeline.h.
#include "core/sim/pipeline.h"

#include <cstdint>
#include <vector>

#include <fmt/format.h>

#include "core/sim/block_runner.h"
#include "core/sim/runtime_internal.h"

namespace strata::sim {

namespace {

AsyncCopyQueue& queue_of_this_thread(const std::source_location& where) {
  BlockRunner* const runner = BlockRunner::current();
  if (runner == nullptr) fail_thread("__pipeline_* called outside a kernel", where);
  return runner->async_copies();
}

bool aligned(const void* address, std::size_t alignment) {
  return reinterpret_cast<std::uintptr_t>(address) % alignment == 0;
}

// A copy may land any time before its wait: into dynamic shared memory that a wgmma
// operation not yet performed reads (core/sim/wgmma.h), it races with that operation.
void check_no_pending_wgmma_reads(const void* destination, std::size_t bytes, const std::source_location& where) {
  BlockRunner* const runner = BlockRunner::current();
  const unsigned char* base = runner->dynamic_shared_memory();
  const auto* at = static_cast<const unsigned char*>(destination);
  if (base == nullptr || at < base || at >= base + runner->dynamic_shared_bytes()) return;
  const auto offset = static_cast<std::size_t>(at - base);
  if (runner->wgmma_reads_any(offset, bytes)) {
    fail_thread(fmt::format("__pipeline_memcpy_async writes {} bytes at byte {} of dynamic shared memory, which a "
                            "wgmma.mma_async not yet waited for reads (wgmma::wait_group before refilling it)",
                            bytes, offset)
                    .c_str(),
                where);
  }
}

}  // namespace

void pipeline_memcpy_async(void* destination, const void* source, std::size_t size_and_align, std::size_t zfill,
                           const std::source_location& where) {
  AsyncCopyQueue& queue = queue_of_this_thread(where);
  if (size_and_align != 4 && size_and_align != 8 && size_and_align != 16) {
    fail_thread(fmt::format("__pipeline_memcpy_async of {} bytes (4, 8 or 16 only)", size_and_align).c_str(), where);
  }
  if (zfill > size_and_align) {
    fail_thread(fmt::format("__pipeline_memcpy_async zfill {} exceeds its size {}", zfill, size_and_align).c_str(),
                where);
  }
  if (!aligned(destination, size_and_align) || !aligned(source, size_and_align)) {
    fail_thread(fmt::format("__pipeline_memcpy_async of {} bytes from {} to {}: both must be aligned to the size",
                            size_and_align, source, destination)
                    .c_str(),
                where);
  }
  // The GPU's source is global memory, the destination shared memory: a copy that reads past
  // its allocation, or writes into device memory, fails here instead of corrupting memory.
  const std::size_t source_bytes = size_and_align - zfill;
  if (source_bytes > 0) {
    const runtime_internal::MemoryRange range = runtime_internal::locate_memory(source, source_bytes);
    if (range.space != runtime_internal::MemorySpace::device || !range.fits) {
      fail_thread(fmt::format("__pipeline_memcpy_async reads {} bytes at {}, which {}", source_bytes, source,
                              range.space == runtime_internal::MemorySpace::device
                                  ? "run past the end of its device allocation"
                                  : "are not in a device allocation")
                      .c_str(),
                  where);
    }
  }
  const runtime_internal::MemorySpace destination_space =
      runtime_internal::locate_memory(destination, size_and_align).space;
  if (destination_space != runtime_internal::MemorySpace::unregistered) {
    fail_thread(fmt::format("__pipeline_memcpy_async writes to {}, which is device or host memory, not shared memory",
                            destination)
                    .c_str(),
                where);
  }
  check_no_pending_wgmma_reads(destination, size_and_align, where);
  queue.issue(destination, source, size_and_align, source_bytes);
}

void pipeline_commit(const std::source_location& where) { queue_of_this_thread(where).commit(); }

void pipeline_wait_prior(std::size_t prior, const std::source_location& where) {
  thread_local std::vector<void*> landed;
  landed.clear();
  queue_of_this_thread(where).wait_prior(prior, landed);
  BlockRunner* const runner = BlockRunner::current();
  for (const void* destination : landed) runner->copy_landed(destination);
}

}  // namespace strata::sim
