// The simulator's mbarriers and cp.async.bulk.tensor copies (core/sim/tma.h).
#include "core/sim/tma.h"

#include <fmt/format.h>

#include <cstring>
#include <string>

#include "core/shared_swizzle.h"
#include "core/sim/block_runner.h"
#include "core/sim/runtime_internal.h"
#include "core/sim/wgmma.h"

namespace strata::sim::tma {

namespace {

BlockRunner& runner_of_this_thread(const char* what, const std::source_location& where) {
  BlockRunner* const runner = BlockRunner::current();
  if (runner == nullptr) fail_thread(fmt::format("{} called outside a kernel", what).c_str(), where);
  return *runner;
}

MbarrierState& initialised(BlockRunner& runner, const std::uint64_t* barrier, const char* what,
                           const std::source_location& where) {
  const auto found = runner.mbarriers().find(barrier);
  if (found == runner.mbarriers().end()) {
    fail_thread(fmt::format("{} on an mbarrier at {} that no tma::init initialised in this block", what,
                            static_cast<const void*>(barrier))
                    .c_str(),
                where);
  }
  return found->second;
}

// Ends the current phase when nothing more is expected of it.
void complete_phase_if_done(BlockRunner& runner, const std::uint64_t* barrier, MbarrierState& state) {
  if (state.pending_arrivals != 0 || state.pending_bytes != 0) return;
  ++state.phase;
  state.pending_arrivals = state.arrivals;
  runner.mbarrier_phase_completed(barrier);
}

// The source bytes of every element of the map lie in one device allocation.
std::string check_source(const TensorMapContents& map) {
  std::uint64_t last = 0;
  for (int d = 0; d < map.rank; ++d) last += (map.extents[d] - 1) * map.strides[d];
  const auto range = runtime_internal::locate_memory(map.global, last + map.element_bytes);
  if (range.space == runtime_internal::MemorySpace::device && range.fits) return {};
  const bool device = range.space == runtime_internal::MemorySpace::device;
  return fmt::format("the tensor map's {} bytes at {} {}", last + map.element_bytes,
                     static_cast<const void*>(map.global),
                     device ? "run past the end of their device allocation" : "are not in a device allocation");
}

// Lands a box: element i of the box (dimension 0 fastest) goes to byte i * element_bytes of the
// box, swizzled by its shared-memory address; elements outside the tensor land as zeros. Row by
// row (a run along dimension 0), whose outer coordinates decide once whether it is inside.
void perform(const BulkTensorCopy& copy, unsigned char* shared_base) {
  const TensorMapContents& map = copy.map;
  const auto swizzle = static_cast<strata::wgmma::Swizzle>(map.swizzle);
  const std::uint32_t row_elements = map.box[0];
  std::uint32_t rows = 1;
  for (int d = 1; d < map.rank; ++d) rows *= map.box[d];
  for (std::uint32_t row = 0; row < rows; ++row) {
    std::uint32_t rest = row;
    bool inside = true;
    std::uint64_t row_source = 0;
    for (int d = 1; d < map.rank; ++d) {
      const std::int64_t coordinate = copy.coordinates[static_cast<std::size_t>(d)] + rest % map.box[d];
      rest /= map.box[d];
      inside = inside && coordinate >= 0 && static_cast<std::uint64_t>(coordinate) < map.extents[d];
      if (inside) row_source += static_cast<std::uint64_t>(coordinate) * map.strides[d];
    }
    for (std::uint32_t e = 0; e < row_elements; ++e) {
      const std::int64_t column = copy.coordinates[0] + static_cast<std::int64_t>(e);
      const std::uint32_t unswizzled = copy.shared_address + (row * row_elements + e) * map.element_bytes;
      unsigned char* target =
          shared_base + (strata::wgmma::swizzle_address(unswizzled, swizzle) - sim::wgmma::kDynamicSharedAddress);
      if (inside && column >= 0 && static_cast<std::uint64_t>(column) < map.extents[0]) {
        std::memcpy(target, map.global + row_source + static_cast<std::uint64_t>(column) * map.element_bytes,
                    map.element_bytes);
      } else {
        std::memset(target, 0, map.element_bytes);
      }
    }
  }
}

}  // namespace

void mbarrier_init(std::uint64_t* barrier, std::uint32_t arrivals, const std::source_location& where) {
  BlockRunner& runner = runner_of_this_thread("tma::init", where);
  if (arrivals == 0 || arrivals >= (1u << 20)) {
    fail_thread(fmt::format("tma::init with {} arrivals (1 to 2^20 - 1)", arrivals).c_str(), where);
  }
  if (reinterpret_cast<std::uintptr_t>(barrier) % 8 != 0) {
    fail_thread("tma::init: an mbarrier is 8-byte aligned", where);
  }
  MbarrierState& state = runner.mbarriers()[barrier];
  if (!state.copies.empty()) {
    fail_thread(fmt::format("tma::init on an mbarrier with {} copies not yet waited for", state.copies.size()).c_str(),
                where);
  }
  state = MbarrierState{arrivals, arrivals, 0, 0, {}};
}

void mbarrier_arrive_expect_tx(std::uint64_t* barrier, std::uint32_t bytes, const std::source_location& where) {
  BlockRunner& runner = runner_of_this_thread("tma::arrive_expect_tx", where);
  MbarrierState& state = initialised(runner, barrier, "tma::arrive_expect_tx", where);
  if (state.pending_arrivals == 0) {
    fail_thread(fmt::format("tma::arrive_expect_tx: more arrivals than the {} the mbarrier was initialised with",
                            state.arrivals)
                    .c_str(),
                where);
  }
  state.pending_bytes += bytes;
  --state.pending_arrivals;
  complete_phase_if_done(runner, barrier, state);
}

void mbarrier_wait(std::uint64_t* barrier, std::uint32_t parity, const std::source_location& where) {
  BlockRunner& runner = runner_of_this_thread("tma::wait", where);
  for (;;) {
    MbarrierState& state = initialised(runner, barrier, "tma::wait", where);
    if ((state.phase & 1u) != (parity & 1u)) return;  // the phase of that parity has completed
    // The latest moment the copies may land: now.
    for (const BulkTensorCopy& copy : state.copies) {
      perform(copy, runner.dynamic_shared_memory());
      state.pending_bytes -= copy.bytes;
    }
    state.copies.clear();
    if (state.pending_arrivals == 0 && state.pending_bytes < 0) {
      fail_thread(fmt::format("tma::wait: the copies completed {} bytes more than arrive_expect_tx announced",
                              -state.pending_bytes)
                      .c_str(),
                  where);
    }
    complete_phase_if_done(runner, barrier, state);
    if ((state.phase & 1u) != (parity & 1u)) return;
    runner.wait_for_mbarrier(barrier, where);
  }
}

void copy_tile(void* destination, const TensorMapContents& map, const std::int32_t* coordinates,
               std::uint64_t* barrier, const std::source_location& where) {
  BlockRunner& runner = runner_of_this_thread("tma::copy_tile", where);
  MbarrierState& state = initialised(runner, barrier, "tma::copy_tile", where);
  if (map.encoded != TensorMapContents::kEncoded) {
    fail_thread("tma::copy_tile: the tensor map was not made by tma::encode_tiled", where);
  }
  std::uint32_t bytes = map.element_bytes;
  for (int d = 0; d < map.rank; ++d) bytes *= map.box[d];
  unsigned char* const base = runner.dynamic_shared_memory();
  const auto* at = static_cast<unsigned char*>(destination);
  if (base == nullptr || at < base || at + bytes > base + runner.dynamic_shared_bytes()) {
    fail_thread(fmt::format("tma::copy_tile: the box of {} bytes at {} does not lie in the block's {} bytes of dynamic "
                            "shared memory",
                            bytes, destination, runner.dynamic_shared_bytes())
                    .c_str(),
                where);
  }
  const auto offset = static_cast<std::uint32_t>(at - base);
  const std::uint32_t shared_address = sim::wgmma::kDynamicSharedAddress + offset;
  if (shared_address % 128 != 0) {
    fail_thread(fmt::format("tma::copy_tile: the destination, shared address {:#x}, is not 128-byte aligned",
                            shared_address)
                    .c_str(),
                where);
  }
  if (const std::string problem = check_source(map); !problem.empty()) {
    fail_thread(fmt::format("tma::copy_tile: {}", problem).c_str(), where);
  }
  // The box may land any time from now: on lines that a wgmma not yet waited for reads, it races.
  if (runner.wgmma_reads_any(offset, bytes)) {
    fail_thread(fmt::format("tma::copy_tile writes {} bytes at byte {} of dynamic shared memory, which a "
                            "wgmma.mma_async not yet waited for reads (wgmma::wait_group before refilling it)",
                            bytes, offset)
                    .c_str(),
                where);
  }
  BulkTensorCopy copy{map, {}, static_cast<unsigned char*>(destination), shared_address, bytes};
  for (int d = 0; d < map.rank; ++d) copy.coordinates[static_cast<std::size_t>(d)] = coordinates[d];
  state.copies.push_back(copy);
}

}  // namespace strata::sim::tma
