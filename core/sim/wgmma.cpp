// The simulator's wgmma.mma_async, commit_group and wait_group (core/sim/wgmma.h).
#include "core/sim/wgmma.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <memory>
#include <vector>

#include "core/sim/block_runner.h"
#include "core/sim/simt.h"
#include "core/sim/wgmma_queue.h"

namespace strata::sim::wgmma {

namespace {

constexpr int kLanes = 32;
constexpr int kWarpgroupWarps = 4;
constexpr int kRowsPerWarp = 16;
constexpr int kStepK = 16;

// A descriptor's fields (PTX ISA, "Matrix Descriptor Format"), in bytes.
struct Descriptor {
  std::uint32_t start;
  std::uint32_t leading;
  std::uint32_t stride;
  unsigned base_offset;
  unsigned swizzle;
  bool operator==(const Descriptor&) const = default;
};

Descriptor decode(std::uint64_t bits) {
  return {static_cast<std::uint32_t>(bits & 0x3fffu) << 4, static_cast<std::uint32_t>((bits >> 16) & 0x3fffu) << 4,
          static_cast<std::uint32_t>((bits >> 32) & 0x3fffu) << 4, static_cast<unsigned>((bits >> 49) & 0x7u),
          static_cast<unsigned>((bits >> 62) & 0x3u)};
}

struct LaneOperands {
  WgmmaOperation operation;
  bool whole_group;    // the block holds every thread of the warpgroup
  std::size_t shared_bytes;
  WgmmaQueue* queue;   // this lane's pending operations
};

// Bytes of a swizzled row under the descriptor's swizzle mode (1: 128, 2: 64, 3: 32), 0 unswizzled.
std::uint32_t swizzle_row_bytes(unsigned swizzle) { return swizzle == 0 ? 0u : 256u >> swizzle; }

// The byte offset in dynamic shared memory of (row, k) under descriptor `operand` (MN-major
// when transposed), as the PTX ISA's canonical layouts place it: unswizzled core matrices, or
// rows of W swizzled bytes whose 16-byte chunks are XORed, by address, with the row's index in
// its 8-row pattern. Negative before the start of dynamic shared memory.
std::int64_t element_offset(const Descriptor& operand, bool transposed, int row, int k) {
  const auto r = static_cast<std::uint32_t>(row), c = static_cast<std::uint32_t>(k);
  const std::uint32_t width = swizzle_row_bytes(operand.swizzle);
  std::uint32_t address = operand.start;
  if (width == 0) {
    const std::uint32_t line = transposed ? c % 8 : r % 8;
    const std::uint32_t within = transposed ? r % 8 : c % 8;
    address += r / 8 * operand.stride + c / 8 * operand.leading + line * 16 + within * 2;
  } else if (!transposed) {  // K-major: a row's k values along one swizzled row
    address += r / 8 * operand.stride + r % 8 * width + c * 2;
  } else {  // MN-major: W / 2 rows along one swizzled row, a row per k
    const std::uint32_t rows_per_line = width / 2;
    address += r / rows_per_line * operand.leading + c / 8 * operand.stride + c % 8 * width + r % rows_per_line * 2;
  }
  if (width != 0) address ^= (address >> 3) & (width - 16);
  return static_cast<std::int64_t>(address) - kDynamicSharedAddress;
}

// "" when element (row, k) lies in dynamic shared memory, else what is wrong.
std::string check_element(const Descriptor& operand, bool transposed, const char* name, int row, int k,
                          std::size_t shared_bytes) {
  const std::int64_t offset = element_offset(operand, transposed, row, k);
  if (offset < 0 || static_cast<std::size_t>(offset) + 2 > shared_bytes) {
    return fmt::format("{}'s element ({}, {}) lies at byte {} of the {} bytes of dynamic shared memory "
                       "(start {}, leading byte offset {}, stride byte offset {}, swizzle mode {})",
                       name, row, k, offset, shared_bytes,
                       static_cast<std::int64_t>(operand.start) - kDynamicSharedAddress, operand.leading, operand.stride,
                       operand.swizzle);
  }
  return {};
}

float load(bool half, const unsigned char* at) {
  if (half) {
    __half value;
    std::memcpy(&value, at, sizeof value);
    return __half2float(value);
  }
  __nv_bfloat16 value;
  std::memcpy(&value, at, sizeof value);
  return __bfloat162float(value);
}

std::string check_descriptor(const Descriptor& operand, const char* name) {
  if (operand.base_offset != 0) {
    return fmt::format("{}'s descriptor has base offset {}: the simulator takes swizzled patterns that start at "
                       "1024-byte boundaries only (base offset 0; wgmma::align_to_swizzle_pattern)",
                       name, operand.base_offset);
  }
  return {};
}

// Every element a warp's 16 rows of A and all of B's columns read lies in dynamic shared memory.
std::string check_elements(const WgmmaOperation& operation, std::size_t shared_bytes) {
  const Descriptor a = decode(operation.a), b = decode(operation.b);
  const int row0 = operation.warp_in_group * kRowsPerWarp;
  for (int k = 0; k < kStepK; ++k) {
    for (int r = 0; r < kRowsPerWarp; ++r) {
      if (std::string error = check_element(a, operation.transpose_a, "A", row0 + r, k, shared_bytes);
          !error.empty()) {
        return error;
      }
    }
    for (int c = 0; c < operation.n; ++c) {
      if (std::string error = check_element(b, operation.transpose_b, "B", c, k, shared_bytes); !error.empty()) {
        return error;
      }
    }
  }
  return {};
}

// The 16-byte lines of dynamic shared memory a warp's operation reads (checked to lie there).
std::vector<std::uint32_t> lines_read(const WgmmaOperation& operation) {
  const Descriptor a = decode(operation.a), b = decode(operation.b);
  const int row0 = operation.warp_in_group * kRowsPerWarp;
  std::vector<std::uint32_t> lines;
  for (int k = 0; k < kStepK; ++k) {
    for (int r = 0; r < kRowsPerWarp; ++r) {
      lines.push_back(static_cast<std::uint32_t>(element_offset(a, operation.transpose_a, row0 + r, k) / 16));
    }
    for (int c = 0; c < operation.n; ++c) {
      lines.push_back(static_cast<std::uint32_t>(element_offset(b, operation.transpose_b, c, k) / 16));
    }
  }
  std::sort(lines.begin(), lines.end());
  lines.erase(std::unique(lines.begin(), lines.end()), lines.end());
  return lines;
}

// At the issue: checks the warp's operands, then queues each lane's share and counts the
// lines it reads as read until it is performed.
std::string issue_task(void* const* lanes) {
  for (int lane = 0; lane < kLanes; ++lane) {
    if (lanes[lane] == nullptr) {
      return fmt::format("lane {} did not take part: wgmma needs all 128 threads of the warpgroup", lane);
    }
  }
  const auto& first = *static_cast<const LaneOperands*>(lanes[0]);
  const WgmmaOperation& operation = first.operation;
  for (int lane = 1; lane < kLanes; ++lane) {
    const WgmmaOperation& other = static_cast<const LaneOperands*>(lanes[lane])->operation;
    if (other.a != operation.a || other.b != operation.b || other.accumulate != operation.accumulate ||
        other.n != operation.n || other.half != operation.half || other.transpose_a != operation.transpose_a ||
        other.transpose_b != operation.transpose_b) {
      return fmt::format("lanes 0 and {} pass different operands (descriptors {:#x}/{:#x} and {:#x}/{:#x}, "
                         "accumulate {} and {}): wgmma's operands are uniform over the warpgroup",
                         lane, operation.a, operation.b, other.a, other.b, operation.accumulate, other.accumulate);
    }
  }
  if (!first.whole_group) {
    return "the block does not hold the whole warpgroup (a multiple of 128 threads)";
  }
  if (std::string error = check_descriptor(decode(operation.a), "A"); !error.empty()) return error;
  if (std::string error = check_descriptor(decode(operation.b), "B"); !error.empty()) return error;
  if (std::string error = check_elements(operation, first.shared_bytes); !error.empty()) return error;
  const auto lines = std::make_shared<const std::vector<std::uint32_t>>(lines_read(operation));
  BlockRunner* const runner = BlockRunner::current();
  for (const std::uint32_t line : *lines) {
    if (const int writer = runner->unfenced_writer(line); writer >= 0) {
      return fmt::format("an operand holds bytes {}..{} of dynamic shared memory, where thread {}'s cp.async "
                         "landed with no fence.proxy.async of that thread since (wgmma::fence_shared_to_async_proxy "
                         "after the copies' wait, before the barrier that precedes the mma_async)",
                         16 * line, 16 * line + 15, writer);
    }
  }
  std::vector<std::uint16_t>& reads = runner->wgmma_reads();
  for (const std::uint32_t line : *lines) ++reads[line];
  for (int lane = 0; lane < kLanes; ++lane) {
    const auto& operands = *static_cast<const LaneOperands*>(lanes[lane]);
    WgmmaOperation queued = operands.operation;
    queued.lines = lines;
    operands.queue->issue(queued);
  }
  return {};
}

// Performs one operation of the warp (lanes[l]: lane l's share), reading shared memory now.
void perform(const std::array<const WgmmaOperation*, kLanes>& lanes) {
  const WgmmaOperation& operation = *lanes[0];
  const Descriptor a = decode(operation.a), b = decode(operation.b);
  const int row0 = operation.warp_in_group * kRowsPerWarp;
  const int n = operation.n;
  // This warp's 16 rows of A and all n columns of B, as float (their offsets checked at the issue).
  std::array<float, kRowsPerWarp * kStepK> a_rows{};
  std::array<float, 128 * kStepK> b_columns{};
  for (int r = 0; r < kRowsPerWarp; ++r) {
    for (int k = 0; k < kStepK; ++k) {
      a_rows[static_cast<std::size_t>(r * kStepK + k)] =
          load(operation.half, operation.shared + element_offset(a, operation.transpose_a, row0 + r, k));
    }
  }
  for (int c = 0; c < n; ++c) {
    for (int k = 0; k < kStepK; ++k) {
      b_columns[static_cast<std::size_t>(c * kStepK + k)] =
          load(operation.half, operation.shared + element_offset(b, operation.transpose_b, c, k));
    }
  }
  // Products are exact in float; each sum runs in k order from d (or 0), rounded to float
  // at each step, as the simulator's wmma does.
  for (int lane = 0; lane < kLanes; ++lane) {
    float* d = lanes[static_cast<std::size_t>(lane)]->d;
    for (int index = 0; index < n / 2; ++index) {
      const int row = lane / 4 + 8 * ((index % 4) / 2);
      const int column = 8 * (index / 4) + 2 * (lane % 4) + index % 2;
      float sum = operation.accumulate ? d[index] : 0.0f;
      for (int k = 0; k < kStepK; ++k) {
        sum += a_rows[static_cast<std::size_t>(row * kStepK + k)] *
               b_columns[static_cast<std::size_t>(column * kStepK + k)];
      }
      d[index] = sum;
    }
  }
}

struct LaneWait {
  std::size_t newest_pending;
  WgmmaQueue* queue;
};

// At wgmma.wait_group: performs, in issue order, the operations of every committed group but
// the newest ones, for all lanes together.
std::string wait_task(void* const* lanes) {
  std::array<std::vector<WgmmaOperation>, kLanes> completed;
  for (int lane = 0; lane < kLanes; ++lane) {
    if (lanes[lane] == nullptr) {
      return fmt::format("lane {} did not take part: wgmma.wait_group is executed by the whole warp", lane);
    }
    const auto& wait = *static_cast<const LaneWait*>(lanes[lane]);
    completed[static_cast<std::size_t>(lane)] = wait.queue->take_completed(wait.newest_pending);
    if (completed[static_cast<std::size_t>(lane)].size() != completed[0].size()) {
      return fmt::format("lanes 0 and {} complete {} and {} operations: the warp's lanes issued, committed or "
                         "waited for different ones",
                         lane, completed[0].size(), completed[static_cast<std::size_t>(lane)].size());
    }
  }
  std::vector<std::uint16_t>& reads = BlockRunner::current()->wgmma_reads();
  for (std::size_t i = 0; i < completed[0].size(); ++i) {
    std::array<const WgmmaOperation*, kLanes> operation{};
    for (int lane = 0; lane < kLanes; ++lane) operation[static_cast<std::size_t>(lane)] = &completed[lane][i];
    perform(operation);
    for (const std::uint32_t line : *completed[0][i].lines) --reads[line];
  }
  return {};
}

WgmmaQueue& queue_of_this_thread(const char* what, const std::source_location& where) {
  BlockRunner* const runner = BlockRunner::current();
  if (runner == nullptr) fail_thread(fmt::format("{} called outside a kernel", what).c_str(), where);
  return runner->wgmma_operations();
}

}  // namespace

std::uint32_t shared_address(const void* shared, const std::source_location& where) {
  const auto* base = dynamic_shared_memory();
  const auto* pointer = static_cast<const unsigned char*>(shared);
  const std::size_t bytes = dynamic_shared_bytes();
  if (base == nullptr || pointer < base || pointer >= base + bytes) {
    fail_thread("wgmma::descriptor: the operand is not in the block's dynamic shared memory (the simulator "
                "addresses wgmma operands there only)",
                where);
  }
  const auto offset = static_cast<std::uint32_t>(pointer - base);
  if (offset % 16 != 0) fail_thread("wgmma::descriptor: the operand is not 16-byte aligned", where);
  return kDynamicSharedAddress + offset;
}

void mma_async(bool half, int n, float* d, std::uint64_t a, std::uint64_t b, bool accumulate, bool transpose_a,
               bool transpose_b, const std::source_location& where) {
  const ThreadCoordinates& at = *current_coordinates;
  const unsigned threads = at.block_dim.x * at.block_dim.y * at.block_dim.z;
  const unsigned thread = at.thread_idx.x + at.block_dim.x * (at.thread_idx.y + at.block_dim.y * at.thread_idx.z);
  const unsigned warp = thread / kLanes;
  LaneOperands operands{WgmmaOperation{half, n, d, a, b, accumulate, transpose_a, transpose_b,
                                       static_cast<int>(warp % kWarpgroupWarps), dynamic_shared_memory(), nullptr},
                        (warp / kWarpgroupWarps + 1) * kWarpgroupWarps * kLanes <= threads, dynamic_shared_bytes(),
                        &queue_of_this_thread("wgmma::mma_async", where)};
  warp_task("wgmma::mma_async", &issue_task, &operands, where);
}

void fence_shared_to_async_proxy(const std::source_location& where) {
  BlockRunner* const runner = BlockRunner::current();
  if (runner == nullptr) fail_thread("wgmma::fence_shared_to_async_proxy called outside a kernel", where);
  runner->fence_async_proxy();
}

void commit_group(const std::source_location& where) { queue_of_this_thread("wgmma::commit_group", where).commit(); }

void wait_group(int newest_pending, const std::source_location& where) {
  LaneWait wait{static_cast<std::size_t>(newest_pending), &queue_of_this_thread("wgmma::wait_group", where)};
  warp_task("wgmma::wait_group", &wait_task, &wait, where);
}

}  // namespace strata::sim::wgmma
