// The simulator's wgmma.mma_async (core/sim/wgmma.h).
#include "core/sim/wgmma.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <fmt/format.h>

#include <array>
#include <cstring>
#include <string>

#include "core/sim/simt.h"

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
  bool half;
  int n;
  float* d;
  std::uint64_t a;
  std::uint64_t b;
  bool accumulate;
  bool transpose_a;    // MN-major
  bool transpose_b;
  int warp_in_group;   // this lane's warp, 0..3, in its warpgroup
  bool whole_group;    // the block holds every thread of the warpgroup
  const unsigned char* shared;
  std::size_t shared_bytes;
};

// The byte offset of (row, k) under descriptor `operand` (MN-major when transposed: a core
// matrix's 16-byte lines run along the rows), checked against dynamic shared memory.
std::string element_offset(const Descriptor& operand, bool transposed, const char* name, int row, int k,
                           std::size_t shared_bytes, std::size_t& offset) {
  const int line = transposed ? k % 8 : row % 8;
  const int within = transposed ? row % 8 : k % 8;
  offset = operand.start + static_cast<std::size_t>(row / 8) * operand.stride +
           static_cast<std::size_t>(k / 8) * operand.leading + static_cast<std::size_t>(line) * 16 +
           static_cast<std::size_t>(within) * 2;
  if (offset + 2 > shared_bytes) {
    return fmt::format("{}'s element ({}, {}) lies at byte {}, past the {} bytes of dynamic shared memory "
                       "(start {}, leading byte offset {}, stride byte offset {})",
                       name, row, k, offset, shared_bytes, operand.start, operand.leading, operand.stride);
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
  if (operand.swizzle != 0 || operand.base_offset != 0) {
    return fmt::format("{}'s descriptor asks for swizzle mode {} and base offset {}: the simulator has the "
                       "unswizzled layout only",
                       name, operand.swizzle, operand.base_offset);
  }
  return {};
}

std::string mma_task(void* const* lanes) {
  for (int lane = 0; lane < kLanes; ++lane) {
    if (lanes[lane] == nullptr) {
      return fmt::format("lane {} did not take part: wgmma needs all 128 threads of the warpgroup", lane);
    }
  }
  const auto& first = *static_cast<const LaneOperands*>(lanes[0]);
  for (int lane = 1; lane < kLanes; ++lane) {
    const auto& other = *static_cast<const LaneOperands*>(lanes[lane]);
    if (other.a != first.a || other.b != first.b || other.accumulate != first.accumulate || other.n != first.n ||
        other.half != first.half || other.transpose_a != first.transpose_a || other.transpose_b != first.transpose_b) {
      return fmt::format("lanes 0 and {} pass different operands (descriptors {:#x}/{:#x} and {:#x}/{:#x}, "
                         "accumulate {} and {}): wgmma's operands are uniform over the warpgroup",
                         lane, first.a, first.b, other.a, other.b, first.accumulate, other.accumulate);
    }
  }
  if (!first.whole_group) {
    return "the block does not hold the whole warpgroup (a multiple of 128 threads)";
  }
  const Descriptor a = decode(first.a), b = decode(first.b);
  if (std::string error = check_descriptor(a, "A"); !error.empty()) return error;
  if (std::string error = check_descriptor(b, "B"); !error.empty()) return error;
  const int n = first.n;
  const int row0 = first.warp_in_group * kRowsPerWarp;
  // This warp's 16 rows of A and all n columns of B, as float.
  std::array<float, kRowsPerWarp * kStepK> a_rows{};
  std::array<float, 128 * kStepK> b_columns{};
  for (int r = 0; r < kRowsPerWarp; ++r) {
    for (int k = 0; k < kStepK; ++k) {
      std::size_t offset = 0;
      if (std::string error = element_offset(a, first.transpose_a, "A", row0 + r, k, first.shared_bytes, offset); !error.empty()) {
        return error;
      }
      a_rows[static_cast<std::size_t>(r * kStepK + k)] = load(first.half, first.shared + offset);
    }
  }
  for (int c = 0; c < n; ++c) {
    for (int k = 0; k < kStepK; ++k) {
      std::size_t offset = 0;
      if (std::string error = element_offset(b, first.transpose_b, "B", c, k, first.shared_bytes, offset); !error.empty()) {
        return error;
      }
      b_columns[static_cast<std::size_t>(c * kStepK + k)] = load(first.half, first.shared + offset);
    }
  }
  // Products are exact in float; each sum runs in k order from d (or 0), rounded to float
  // at each step, as the simulator's wmma does.
  for (int lane = 0; lane < kLanes; ++lane) {
    float* d = static_cast<const LaneOperands*>(lanes[lane])->d;
    for (int index = 0; index < n / 2; ++index) {
      const int row = lane / 4 + 8 * ((index % 4) / 2);
      const int column = 8 * (index / 4) + 2 * (lane % 4) + index % 2;
      float sum = first.accumulate ? d[index] : 0.0f;
      for (int k = 0; k < kStepK; ++k) {
        sum += a_rows[static_cast<std::size_t>(row * kStepK + k)] *
               b_columns[static_cast<std::size_t>(column * kStepK + k)];
      }
      d[index] = sum;
    }
  }
  return {};
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
  return offset;
}

void mma_async(bool half, int n, float* d, std::uint64_t a, std::uint64_t b, bool accumulate, bool transpose_a,
               bool transpose_b, const std::source_location& where) {
  const ThreadCoordinates& at = *current_coordinates;
  const unsigned threads = at.block_dim.x * at.block_dim.y * at.block_dim.z;
  const unsigned thread = at.thread_idx.x + at.block_dim.x * (at.thread_idx.y + at.block_dim.y * at.thread_idx.z);
  const unsigned warp = thread / kLanes;
  LaneOperands operands{half,
                        n,
                        d,
                        a,
                        b,
                        accumulate,
                        transpose_a,
                        transpose_b,
                        static_cast<int>(warp % kWarpgroupWarps),
                        (warp / kWarpgroupWarps + 1) * kWarpgroupWarps * kLanes <= threads,
                        dynamic_shared_memory(),
                        dynamic_shared_bytes()};
  warp_task("wgmma::mma_async", &mma_task, &operands, where);
}

}  // namespace strata::sim::wgmma
