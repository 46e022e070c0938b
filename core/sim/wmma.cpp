// The warp-wide operations behind the simulator's nvcuda::wmma (core/sim/wmma.h). Each lane
// hands over its operands; the last lane to arrive checks that the warp called the operation
// as CUDA requires and then does the work for all 32 lanes, reading and writing their
// fragments (their stacks stay alive while they wait).
#include "core/sim/wmma.h"

#include <array>
#include <cstring>
#include <string>

#include <fmt/format.h>

namespace strata::sim::tensor_core {

namespace {

constexpr int kLanes = 32;
constexpr uintptr_t kPointerAlignment = 32;  // CUDA: "a 256-bit aligned pointer"
constexpr unsigned kStrideBytes = 16;        // CUDA: ldm a multiple of 8 __half or 4 float elements
constexpr int kMaxMatrixElements = 32 * 16;  // the largest matrix of a supported shape

size_t element_bytes(Element element) { return element == Element::f16 || element == Element::bf16 ? 2 : 4; }

const char* element_name(Element element) {
  switch (element) {
    case Element::f16: return "__half";
    case Element::bf16: return "__nv_bfloat16";
    case Element::tf32: return "precision::tf32";
    case Element::f32: return "float";
  }
  return "?";
}

std::string describe(const FragmentKind& kind) {
  const char* use = kind.use == Use::matrix_a ? "matrix_a" : (kind.use == Use::matrix_b ? "matrix_b" : "accumulator");
  const char* layout = kind.use == Use::accumulator ? "" : (kind.col_major ? " col_major" : " row_major");
  return fmt::format("{} {}x{} {}{}", use, kind.rows, kind.cols, element_name(kind.element), layout);
}

// The element mapping of the simulator: the matrix's elements, numbered in row-major order,
// are dealt out to lanes 0, 1, 2, ... num_elements at a time. A fragment that holds more than
// the matrix (__half inputs: 16 a lane) starts over, so that later lanes hold copies.
struct Position {
  int row;
  int col;
};
int flat_index(const FragmentKind& kind, int lane, int i) {
  return (lane * kind.num_elements + i) % (kind.rows * kind.cols);
}
Position position(const FragmentKind& kind, int flat) { return {flat / kind.cols, flat % kind.cols}; }

// Lanes that hold no operands (exited, or beyond the end of a partial last warp), as "16-31".
std::string missing_lanes(void* const* lanes) {
  std::string text;
  for (int lane = 0; lane < kLanes;) {
    if (lanes[lane] != nullptr) {
      ++lane;
      continue;
    }
    int last = lane;
    while (last + 1 < kLanes && lanes[last + 1] == nullptr) ++last;
    if (!text.empty()) text += ",";
    text += lane == last ? fmt::format("{}", lane) : fmt::format("{}-{}", lane, last);
    lane = last + 1;
  }
  if (text.empty()) return text;
  return fmt::format(
      "all 32 lanes of the warp must call it, but lanes {} did not (they have exited, or the block's last warp is "
      "partial)",
      text);
}

float to_float(Element element, const unsigned char* stored) {
  switch (element) {
    case Element::f16: {
      __half value;
      std::memcpy(&value, stored, sizeof(value));
      return __half2float(value);
    }
    case Element::bf16: {
      __nv_bfloat16 value;
      std::memcpy(&value, stored, sizeof(value));
      return __bfloat162float(value);
    }
    case Element::tf32: {
      // The tensor core reads the sign, the exponent and the top 10 mantissa bits.
      uint32_t bits;
      std::memcpy(&bits, stored, sizeof(bits));
      return std::bit_cast<float>(bits & ~0x1fffu);
    }
    case Element::f32: {
      float value;
      std::memcpy(&value, stored, sizeof(value));
      return value;
    }
  }
  return 0.0f;
}

void from_float(Element element, float value, unsigned char* stored) {
  if (element == Element::f16) {
    const __half rounded = __float2half_rn(value);
    std::memcpy(stored, &rounded, sizeof(rounded));
  } else {
    std::memcpy(stored, &value, sizeof(value));
  }
}

// ---- load_matrix_sync / store_matrix_sync ------------------------------------------------------

struct MemoryOperands {
  FragmentKind kind;
  const unsigned char* memory;  // first element of the tile
  unsigned ldm;
  bool memory_col_major;
  unsigned char* load_into = nullptr;         // load: the lane's x[]
  const unsigned char* store_from = nullptr;  // store: the lane's x[]
  unsigned char* store_to = nullptr;          // store: memory
};

// What CUDA requires of the arguments, which real hardware does not check.
std::string check_memory_operands(void* const* lanes, bool store) {
  if (std::string missing = missing_lanes(lanes); !missing.empty()) return missing;
  const auto& first = *static_cast<const MemoryOperands*>(lanes[0]);
  for (int lane = 1; lane < kLanes; ++lane) {
    const auto& other = *static_cast<const MemoryOperands*>(lanes[lane]);
    if (!(other.kind == first.kind)) {
      return fmt::format("lanes pass different fragment types: lane 0 a {}, lane {} a {}", describe(first.kind), lane,
                         describe(other.kind));
    }
    if (other.memory != first.memory) {
      return fmt::format(
          "lanes pass different pointers: lane 0 passes {}, lane {} passes {} (every lane of the warp must pass the "
          "same arguments)",
          static_cast<const void*>(first.memory), lane, static_cast<const void*>(other.memory));
    }
    if (other.ldm != first.ldm) {
      return fmt::format("lanes pass different ldm: lane 0 passes {}, lane {} passes {}", first.ldm, lane, other.ldm);
    }
    if (other.memory_col_major != first.memory_col_major) {
      return fmt::format("lanes pass different layouts: lane 0 passes {}, lane {} passes {}",
                         first.memory_col_major ? "mem_col_major" : "mem_row_major", lane,
                         other.memory_col_major ? "mem_col_major" : "mem_row_major");
    }
  }
  const FragmentKind& kind = first.kind;
  const size_t bytes = element_bytes(kind.element);
  const auto address = reinterpret_cast<uintptr_t>(first.memory);
  if (address % kPointerAlignment != 0) {
    return fmt::format("pointer {} ({} {}) is not 32-byte aligned; CUDA requires 256-bit alignment",
                       static_cast<const void*>(first.memory), describe(kind), store ? "destination" : "source");
  }
  if (first.ldm * bytes % kStrideBytes != 0) {
    return fmt::format("ldm {} is not a multiple of {} elements; CUDA requires a multiple of 16 bytes ({})", first.ldm,
                       kStrideBytes / bytes, describe(kind));
  }
  const unsigned extent = static_cast<unsigned>(first.memory_col_major ? kind.rows : kind.cols);
  if (store && first.ldm < extent) {
    return fmt::format("ldm {} is less than the {} {} of the {}x{} tile: the stored {} would overlap", first.ldm,
                       extent, first.memory_col_major ? "rows" : "columns", kind.rows, kind.cols,
                       first.memory_col_major ? "columns" : "rows");
  }
  return {};
}

size_t memory_offset(const MemoryOperands& operands, Position at) {
  const size_t major = static_cast<size_t>(operands.memory_col_major ? at.col : at.row);
  const size_t minor = static_cast<size_t>(operands.memory_col_major ? at.row : at.col);
  return (major * operands.ldm + minor) * element_bytes(operands.kind.element);
}

std::string load_task(void* const* lanes) {
  if (std::string error = check_memory_operands(lanes, /*store=*/false); !error.empty()) return error;
  for (int lane = 0; lane < kLanes; ++lane) {
    const auto& operands = *static_cast<const MemoryOperands*>(lanes[lane]);
    const size_t bytes = element_bytes(operands.kind.element);
    for (int i = 0; i < operands.kind.num_elements; ++i) {
      const Position at = position(operands.kind, flat_index(operands.kind, lane, i));
      std::memcpy(operands.load_into + i * bytes, operands.memory + memory_offset(operands, at), bytes);
    }
  }
  return {};
}

std::string store_task(void* const* lanes) {
  if (std::string error = check_memory_operands(lanes, /*store=*/true); !error.empty()) return error;
  for (int lane = 0; lane < kLanes; ++lane) {
    const auto& operands = *static_cast<const MemoryOperands*>(lanes[lane]);
    const size_t bytes = element_bytes(operands.kind.element);
    for (int i = 0; i < operands.kind.num_elements; ++i) {
      const Position at = position(operands.kind, flat_index(operands.kind, lane, i));
      std::memcpy(operands.store_to + memory_offset(operands, at), operands.store_from + i * bytes, bytes);
    }
  }
  return {};
}

// ---- mma_sync ------------------------------------------------------------------------------------

struct MmaOperands {
  std::array<FragmentKind, 4> kinds;  // d, a, b, c
  unsigned char* d;                   // the lanes' x[]
  std::array<const unsigned char*, 4> inputs;  // [0] unused, then a, b, c
};

// Gathers the matrix held by operand `which` of all lanes into matrix (row-major, as float).
// Inputs whose fragments hold copies must hold the same bits in every copy.
std::string gather(void* const* lanes, int which, const char* label, float* matrix) {
  const FragmentKind& kind = static_cast<const MmaOperands*>(lanes[0])->kinds[static_cast<size_t>(which)];
  const size_t bytes = element_bytes(kind.element);
  const int total = kind.rows * kind.cols;
  auto stored = [&](int lane, int i) {
    return static_cast<const MmaOperands*>(lanes[lane])->inputs[static_cast<size_t>(which)] + i * bytes;
  };
  for (int flat = 0; flat < total; ++flat) {
    matrix[flat] = to_float(kind.element, stored(flat / kind.num_elements, flat % kind.num_elements));
  }
  for (int copy = total; copy < kLanes * kind.num_elements; ++copy) {
    const int flat = copy % total;
    const int lane = copy / kind.num_elements, i = copy % kind.num_elements;
    const int first_lane = flat / kind.num_elements, first_i = flat % kind.num_elements;
    if (std::memcmp(stored(lane, i), stored(first_lane, first_i), bytes) != 0) {
      const Position at = position(kind, flat);
      return fmt::format(
          "the {} fragment ({}) holds element ({}, {}) twice, as lane {} x[{}] = {} and lane {} x[{}] = {}: an "
          "elementwise operation on x[] did not treat every element alike, so the result would depend on CUDA's "
          "unspecified mapping of x[] to the matrix",
          label, describe(kind), at.row, at.col, first_lane, first_i, matrix[flat], lane, i,
          to_float(kind.element, stored(lane, i)));
    }
  }
  return {};
}

std::string mma_task(void* const* lanes) {
  if (std::string missing = missing_lanes(lanes); !missing.empty()) return missing;
  const auto& first = *static_cast<const MmaOperands*>(lanes[0]);
  for (int lane = 1; lane < kLanes; ++lane) {
    const auto& other = *static_cast<const MmaOperands*>(lanes[lane]);
    if (other.kinds != first.kinds) {
      return fmt::format("lanes pass different fragment types: lane 0 a {} and b {}, lane {} a {} and b {}",
                         describe(first.kinds[1]), describe(first.kinds[2]), lane, describe(other.kinds[1]),
                         describe(other.kinds[2]));
    }
  }
  const FragmentKind& d_kind = first.kinds[0];
  const int m = first.kinds[1].rows, k = first.kinds[1].cols, n = first.kinds[2].cols;
  std::array<float, kMaxMatrixElements> a{}, b{}, c{};
  if (std::string error = gather(lanes, 1, "a", a.data()); !error.empty()) return error;
  if (std::string error = gather(lanes, 2, "b", b.data()); !error.empty()) return error;
  if (std::string error = gather(lanes, 3, "c", c.data()); !error.empty()) return error;
  // Products of the inputs are exact in float; each element's sum runs in k order from c,
  // each step rounded to float. (Loops in row, k, column order: a row of d at a time, with
  // unit strides, the same sums.)
  std::array<float, kMaxMatrixElements> d = c;
  for (int row = 0; row < m; ++row) {
    float* d_row = d.data() + row * n;
    for (int i = 0; i < k; ++i) {
      const float a_value = a[static_cast<size_t>(row * k + i)];
      const float* b_row = b.data() + i * n;
      for (int col = 0; col < n; ++col) d_row[col] += a_value * b_row[col];
    }
  }
  const size_t bytes = element_bytes(d_kind.element);
  for (int lane = 0; lane < kLanes; ++lane) {
    unsigned char* out = static_cast<const MmaOperands*>(lanes[lane])->d;
    for (int i = 0; i < d_kind.num_elements; ++i) {
      from_float(d_kind.element, d[static_cast<size_t>(flat_index(d_kind, lane, i))], out + i * bytes);
    }
  }
  return {};
}

}  // namespace

void load_matrix(const FragmentKind& kind, void* elements, const void* memory, unsigned ldm, bool memory_col_major,
                 const std::source_location& where) {
  MemoryOperands operands{kind, static_cast<const unsigned char*>(memory), ldm, memory_col_major};
  operands.load_into = static_cast<unsigned char*>(elements);
  warp_task("wmma::load_matrix_sync", &load_task, &operands, where);
}

void store_matrix(const FragmentKind& kind, const void* elements, void* memory, unsigned ldm, bool memory_col_major,
                  const std::source_location& where) {
  MemoryOperands operands{kind, static_cast<const unsigned char*>(memory), ldm, memory_col_major};
  operands.store_from = static_cast<const unsigned char*>(elements);
  operands.store_to = static_cast<unsigned char*>(memory);
  warp_task("wmma::store_matrix_sync", &store_task, &operands, where);
}

void mma(const FragmentKind& d_kind, void* d, const FragmentKind& a_kind, const void* a, const FragmentKind& b_kind,
         const void* b, const FragmentKind& c_kind, const void* c, const std::source_location& where) {
  MmaOperands operands{{d_kind, a_kind, b_kind, c_kind},
                       static_cast<unsigned char*>(d),
                       {nullptr, static_cast<const unsigned char*>(a), static_cast<const unsigned char*>(b),
                        static_cast<const unsigned char*>(c)}};
  warp_task("wmma::mma_sync", &mma_task, &operands, where);
}

}  // namespace strata::sim::tensor_core
