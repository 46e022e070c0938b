// Tests of core/tma.cuh and core/tma_map.h, the Tensor Memory Accelerator: boxes of 2-D and
// 3-D tensors copied into shared memory in each swizzle mode, partly outside the tensor (zeros);
// an mbarrier taken through several phases by two arriving threads; and boxes landed by TMA
// multiplied by wgmma as they lie, the path the conv tiles will take. Against host
// expectations, in the simulator and, where wgmma::available() (an sm_90a build on an
// H100/H200), on the GPU: the test that tells whether the simulator's box layouts are the
// GPU's. The encoder's rules are host checks; the simulator's reports of misuse run in the
// simulator only.
#include <cuda_runtime_api.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/launch.cuh"
#include "core/tma.cuh"
#include "core/wgmma.cuh"
#include "core/wgmma_available.h"
#include "strata/core/config.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "tests/support/device_buffer.h"
#include "tests/support/device_test.h"

#if STRATA_BACKEND_SIM
#include "core/sim/runtime.h"
#endif

namespace {

namespace tma = strata::tma;
namespace wgmma = strata::wgmma;

constexpr int kMaxCopies = 4;

// Where the boxes of one launch start: copy c at coordinates[c] (dimension 0 first).
struct BoxOrigins {
  int copies = 0;
  int rank = 2;
  int coordinates[kMaxCopies][3] = {};
};

// Each box's bytes in shared memory rounded up to a swizzle pattern, so that every box starts
// at a pattern's boundary.
__host__ __device__ constexpr std::uint32_t box_stride(std::uint32_t box_bytes) {
  return (box_bytes + wgmma::kSwizzlePatternBytes - 1) / wgmma::kSwizzlePatternBytes * wgmma::kSwizzlePatternBytes;
}

// Thread 0 copies every box of `origins` on one phase of an mbarrier; all threads wait for it
// and copy the boxes' shared memory, as it lies, to out (box_stride bytes a box).
__global__ void boxes_kernel(const __grid_constant__ tma::TensorMap map, BoxOrigins origins, std::uint32_t box_bytes,
                             unsigned char* out) {
  STRATA_DYNAMIC_SHARED(unsigned char, shared);
  __shared__ tma::Mbarrier landed;
  unsigned char* boxes = wgmma::align_to_swizzle_pattern(shared);
  if (threadIdx.x == 0) tma::init(landed, 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    tma::arrive_expect_tx(landed, static_cast<std::uint32_t>(origins.copies) * box_bytes);
    for (int c = 0; c < origins.copies; ++c) {
      const int* at = origins.coordinates[c];
      unsigned char* destination = boxes + c * box_stride(box_bytes);
      if (origins.rank == 2) {
        tma::copy_tile(destination, map, landed, at[0], at[1]);
      } else {
        tma::copy_tile(destination, map, landed, at[0], at[1], at[2]);
      }
    }
  }
  tma::wait(landed, 0);
  const std::uint32_t bytes = static_cast<std::uint32_t>(origins.copies) * box_stride(box_bytes);
  for (std::uint32_t i = threadIdx.x; i < bytes; i += blockDim.x) out[i] = boxes[i];
}

// Box `phase` of the 2-D map (origin (0, phase)) in each of `phases` phases of one mbarrier that
// two threads arrive on (thread 0 with the bytes, thread 32 with none), into the same shared
// memory, copied out after each phase's wait.
__global__ void phases_kernel(const __grid_constant__ tma::TensorMap map, int phases, std::uint32_t box_bytes,
                              unsigned char* out) {
  STRATA_DYNAMIC_SHARED(unsigned char, shared);
  __shared__ tma::Mbarrier landed;
  unsigned char* box = wgmma::align_to_swizzle_pattern(shared);
  if (threadIdx.x == 0) tma::init(landed, 2);
  __syncthreads();
  for (int phase = 0; phase < phases; ++phase) {
    if (threadIdx.x == 0) {
      tma::arrive_expect_tx(landed, box_bytes);
      tma::copy_tile(box, map, landed, 0, phase);
    }
    if (threadIdx.x == 32) tma::arrive_expect_tx(landed, 0);
    tma::wait(landed, static_cast<std::uint32_t>(phase) & 1u);
    for (std::uint32_t i = threadIdx.x; i < box_bytes; i += blockDim.x) out[phase * box_bytes + i] = box[i];
    __syncthreads();  // every thread has read the box before the next phase overwrites it
  }
}

// d (64, N) row-major = A (64, k) * B (k, N) where the maps' boxes are A (k contiguous, 64 rows)
// and B (k contiguous, N rows), both landed by TMA in K-major swizzled rows of k * 2 bytes and
// multiplied as they lie.
template <int N>
__global__ void __launch_bounds__(wgmma::kWarpgroupThreads)
    tma_wgmma_kernel(const __grid_constant__ tma::TensorMap a_map, const __grid_constant__ tma::TensorMap b_map, int k,
                     wgmma::OperandLayout layout, float* d) {
  STRATA_DYNAMIC_SHARED(unsigned char, shared);
  __shared__ tma::Mbarrier landed;
  unsigned char* a = wgmma::align_to_swizzle_pattern(shared);
  const std::uint32_t a_bytes = static_cast<std::uint32_t>(wgmma::kRows * k * 2);
  unsigned char* b = a + box_stride(a_bytes);
  if (threadIdx.x == 0) tma::init(landed, 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    tma::arrive_expect_tx(landed, a_bytes + static_cast<std::uint32_t>(N * k * 2));
    tma::copy_tile(a, a_map, landed, 0, 0);
    tma::copy_tile(b, b_map, landed, 0, 0);
  }
  tma::wait(landed, 0);

  float accumulators[N / 2];
  for (float& value : accumulators) value = __int_as_float(0x7fc00000);  // NaN: the first step overwrites
  wgmma::fence_operands(accumulators);
  for (int step = 0; step < k / wgmma::kStepK; ++step) {
    const int k0 = step * wgmma::kStepK;
    const std::uint64_t a_descriptor = wgmma::descriptor(a + layout.start_offset(0, k0), layout);
    const std::uint64_t b_descriptor = wgmma::descriptor(b + layout.start_offset(0, k0), layout);
    wgmma::fence();
    wgmma::mma_async<__nv_bfloat16, N>(accumulators, a_descriptor, b_descriptor, step > 0);
    wgmma::commit_group();
  }
  wgmma::wait_group<0>();
  wgmma::fence_operands(accumulators);
  const int t = static_cast<int>(threadIdx.x);
  for (int index = 0; index < N / 2; ++index) {
    d[wgmma::accumulator_row(t, index) * N + wgmma::accumulator_column(t, index)] = accumulators[index];
  }
}

using strata::testing::DeviceBuffer;

// A (rows, columns) bf16 tensor with rows `pitch` elements apart, filled with distinct values.
struct Matrix2d {
  int rows;
  int columns;
  int pitch;
  std::vector<std::uint16_t> bits;  // bf16 bit patterns, never zero

  Matrix2d(int rows_, int columns_, int pitch_) : rows(rows_), columns(columns_), pitch(pitch_) {
    bits.resize(static_cast<std::size_t>(rows * pitch));
    for (std::size_t i = 0; i < bits.size(); ++i) bits[i] = static_cast<std::uint16_t>(0x3c00 + i % 0x3000);
  }
  tma::TiledMap map(const void* global, std::uint32_t box_columns, std::uint32_t box_rows,
                    wgmma::Swizzle swizzle) const {
    return tma::TiledMap{.element = tma::Element::bf16,
                         .global = global,
                         .rank = 2,
                         .extents = {static_cast<std::uint64_t>(columns), static_cast<std::uint64_t>(rows)},
                         .strides = {static_cast<std::uint64_t>(pitch) * 2},
                         .box = {box_columns, box_rows},
                         .swizzle = swizzle};
  }
  // The element at (column, row), 0 outside the tensor.
  std::uint16_t at(std::int64_t column, std::int64_t row) const {
    if (column < 0 || column >= columns || row < 0 || row >= rows) return 0;
    return bits[static_cast<std::size_t>(row * pitch + column)];
  }
};

class TmaTest : public strata::testing::DeviceTest {
 protected:
  void SetUp() override {
    DeviceTest::SetUp();
    if (IsSkipped()) return;
    if (!wgmma::available()) {
      GTEST_SKIP() << "TMA and wgmma cannot run here: the kernels need an sm_90a build (STRATA_WGMMA_BUILT "
                   << STRATA_WGMMA_BUILT << ") and a device of compute capability 9.0";
    }
  }

  // Launches boxes_kernel and returns its out, box_stride(map.box_bytes()) bytes a box.
  static std::vector<unsigned char> land_boxes(const tma::TiledMap& map, const BoxOrigins& origins) {
    const std::uint32_t box_bytes = map.box_bytes();
    const std::size_t bytes = static_cast<std::size_t>(origins.copies) * box_stride(box_bytes);
    DeviceBuffer<unsigned char> out(bytes);
    STRATA_CUDA_CHECK(cudaMemsetAsync(out.data(), 0xee, bytes, strata::current_stream()), "poison out");
    const std::size_t shared_bytes = bytes + wgmma::kSwizzlePatternBytes;
    strata::allow_dynamic_shared_memory(boxes_kernel, shared_bytes, "tma_boxes");
    strata::launch(boxes_kernel,
                   strata::LaunchConfig{.grid = 1, .block = 128, .shared_bytes = shared_bytes,
                                        .stream = strata::current_stream(), .name = "tma_boxes"},
                   tma::encode_tiled(map, "tma test"), origins, box_bytes, out.data());
    STRATA_CUDA_CHECK(cudaStreamSynchronize(strata::current_stream()), "tma boxes");
    return out.download();
  }
};

// Element i of a box (dimension 0 fastest) lies at byte i * 2 of the box, swizzled.
std::uint16_t landed_element(const std::vector<unsigned char>& out, std::size_t box_start, std::uint32_t i,
                             wgmma::Swizzle swizzle) {
  std::uint16_t value = 0;
  std::memcpy(&value, out.data() + box_start + wgmma::swizzle_address(i * 2, swizzle), sizeof value);
  return value;
}

struct BoxCase {
  std::uint32_t columns;  // box extent along dimension 0
  std::uint32_t rows;
  wgmma::Swizzle swizzle;
};

// Boxes inside the tensor, across its last column and row, and before its first: each element
// where the swizzle puts it, zeros outside.
TEST_F(TmaTest, Copies2dBoxesInEachSwizzleMode) {
  const Matrix2d matrix(40, 72, 80);  // rows 160 bytes apart, past the 144 of a row
  DeviceBuffer<std::uint16_t> global(matrix.bits.size());
  global.upload(matrix.bits);
  for (const BoxCase& box : {BoxCase{16, 12, wgmma::Swizzle::none}, BoxCase{64, 8, wgmma::Swizzle::bytes128},
                             BoxCase{32, 16, wgmma::Swizzle::bytes64}, BoxCase{16, 24, wgmma::Swizzle::bytes32}}) {
    SCOPED_TRACE(testing::Message() << "box " << box.columns << " x " << box.rows << ", swizzle rows of "
                                    << wgmma::swizzle_row_bytes(box.swizzle) << " bytes");
    BoxOrigins origins{.copies = 4, .rank = 2, .coordinates = {{8, 3}, {72 - 10, 40 - 3}, {-8, -2}, {0, 0}}};
    const tma::TiledMap map = matrix.map(global.data(), box.columns, box.rows, box.swizzle);
    const std::vector<unsigned char> out = land_boxes(map, origins);
    int mismatches = 0;
    for (int c = 0; c < origins.copies; ++c) {
      const std::size_t start = static_cast<std::size_t>(c) * box_stride(map.box_bytes());
      for (std::uint32_t i = 0; i < box.columns * box.rows; ++i) {
        const std::int64_t column = origins.coordinates[c][0] + i % box.columns;
        const std::int64_t row = origins.coordinates[c][1] + i / box.columns;
        const std::uint16_t expected = matrix.at(column, row);
        const std::uint16_t actual = landed_element(out, start, i, box.swizzle);
        if (actual != expected && ++mismatches <= 8) {
          ADD_FAILURE() << "box " << c << " element (" << column << ", " << row << "): " << actual << ", expected "
                        << expected;
        }
      }
    }
    EXPECT_EQ(mismatches, 0);
  }
}

// f32, three dimensions with padded strides; boxes across the end of each dimension.
TEST_F(TmaTest, Copies3dBoxesOfPaddedF32) {
  constexpr int kExtents[3] = {12, 7, 5};
  constexpr int kStrides[3] = {1, 16, 16 * 8};  // elements: rows of 64 bytes, planes of 8 rows
  std::vector<float> values(static_cast<std::size_t>(kStrides[2] * kExtents[2]));
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = 1.0f + static_cast<float>(i);
  DeviceBuffer<float> global(values.size());
  global.upload(values);
  const tma::TiledMap map{.element = tma::Element::f32,
                          .global = global.data(),
                          .rank = 3,
                          .extents = {12, 7, 5},
                          .strides = {kStrides[1] * 4, kStrides[2] * 4},
                          .box = {8, 3, 2},
                          .swizzle = wgmma::Swizzle::none};
  const BoxOrigins origins{.copies = 3, .rank = 3, .coordinates = {{0, 0, 0}, {8, 5, 4}, {4, -1, 1}}};
  const std::vector<unsigned char> out = land_boxes(map, origins);
  for (int c = 0; c < origins.copies; ++c) {
    const std::size_t start = static_cast<std::size_t>(c) * box_stride(map.box_bytes());
    for (std::uint32_t i = 0; i < 8 * 3 * 2; ++i) {
      const int at[3] = {origins.coordinates[c][0] + static_cast<int>(i % 8),
                         origins.coordinates[c][1] + static_cast<int>(i / 8 % 3),
                         origins.coordinates[c][2] + static_cast<int>(i / 24)};
      bool inside = true;
      int offset = 0;
      for (int d = 0; d < 3; ++d) {
        inside = inside && at[d] >= 0 && at[d] < kExtents[d];
        offset += at[d] * kStrides[d];
      }
      float actual = 0.0f;
      std::memcpy(&actual, out.data() + start + i * 4, sizeof actual);
      ASSERT_EQ(actual, inside ? values[static_cast<std::size_t>(offset)] : 0.0f)
          << "box " << c << " element (" << at[0] << ", " << at[1] << ", " << at[2] << ")";
    }
  }
}

// One mbarrier through five phases (parity 0, 1, 0, ...), two arrivals each.
TEST_F(TmaTest, AnMbarrierCompletesPhaseAfterPhase) {
  const Matrix2d matrix(8, 64, 64);
  DeviceBuffer<std::uint16_t> global(matrix.bits.size());
  global.upload(matrix.bits);
  const tma::TiledMap map = matrix.map(global.data(), 64, 1, wgmma::Swizzle::none);
  constexpr int kPhases = 5;
  const std::uint32_t box_bytes = map.box_bytes();
  DeviceBuffer<unsigned char> out(kPhases * box_bytes);
  const std::size_t shared_bytes = box_bytes + wgmma::kSwizzlePatternBytes;
  strata::launch(phases_kernel,
                 strata::LaunchConfig{.grid = 1, .block = 64, .shared_bytes = shared_bytes,
                                      .stream = strata::current_stream(), .name = "tma_phases"},
                 tma::encode_tiled(map, "tma phases"), kPhases, box_bytes, out.data());
  STRATA_CUDA_CHECK(cudaStreamSynchronize(strata::current_stream()), "tma phases");
  const std::vector<unsigned char> landed = out.download();
  for (int phase = 0; phase < kPhases; ++phase) {
    for (int column = 0; column < 64; ++column) {
      std::uint16_t actual = 0;
      std::memcpy(&actual, landed.data() + phase * box_bytes + column * 2, sizeof actual);
      ASSERT_EQ(actual, matrix.at(column, phase)) << "phase " << phase << ", column " << column;
    }
  }
}

// A and B landed by TMA in 128-byte (k 64) and 64-byte (k 32) swizzled rows are wgmma's
// K-major operands of that swizzle as they lie.
TEST_F(TmaTest, LandedBoxesAreWgmmaOperands) {
  for (const int k : {64, 32}) {
    const wgmma::Swizzle swizzle = k == 64 ? wgmma::Swizzle::bytes128 : wgmma::Swizzle::bytes64;
    SCOPED_TRACE(testing::Message() << "k " << k);
    constexpr int kN = 128;
    std::mt19937 generator(static_cast<std::uint32_t>(k));
    std::uniform_real_distribution<float> uniform(-2.0f, 2.0f);
    std::vector<__nv_bfloat16> a(static_cast<std::size_t>(wgmma::kRows * k)), b(static_cast<std::size_t>(kN * k));
    for (auto& value : a) value = __float2bfloat16(uniform(generator));
    for (auto& value : b) value = __float2bfloat16(uniform(generator));
    DeviceBuffer<__nv_bfloat16> a_device(a.size()), b_device(b.size());
    a_device.upload(a);
    b_device.upload(b);
    DeviceBuffer<float> d_device(static_cast<std::size_t>(wgmma::kRows * kN));
    const auto map_of = [&](const void* global, int rows) {
      return tma::encode_tiled(
          tma::TiledMap{.element = tma::Element::bf16,
                        .global = global,
                        .rank = 2,
                        .extents = {static_cast<std::uint64_t>(k), static_cast<std::uint64_t>(rows)},
                        .strides = {static_cast<std::uint64_t>(k) * 2},
                        .box = {static_cast<std::uint32_t>(k), static_cast<std::uint32_t>(rows)},
                        .swizzle = swizzle},
          "tma wgmma operand");
    };
    const wgmma::OperandLayout layout{wgmma::Major::k, swizzle, 0, 8 * wgmma::swizzle_row_bytes(swizzle)};
    const auto kernel = tma_wgmma_kernel<kN>;
    const std::size_t shared_bytes =
        box_stride(static_cast<std::uint32_t>(wgmma::kRows * k * 2)) + kN * k * 2 + wgmma::kSwizzlePatternBytes;
    strata::allow_dynamic_shared_memory(kernel, shared_bytes, "tma_wgmma");
    strata::launch(kernel,
                   strata::LaunchConfig{.grid = 1, .block = wgmma::kWarpgroupThreads, .shared_bytes = shared_bytes,
                                        .stream = strata::current_stream(), .name = "tma_wgmma"},
                   map_of(a_device.data(), wgmma::kRows), map_of(b_device.data(), kN), k, layout, d_device.data());
    STRATA_CUDA_CHECK(cudaStreamSynchronize(strata::current_stream()), "tma wgmma");
    const std::vector<float> d = d_device.download();
    int mismatches = 0;
    for (int row = 0; row < wgmma::kRows; ++row) {
      for (int column = 0; column < kN; ++column) {
        double expected = 0.0, magnitude = 0.0;
        for (int i = 0; i < k; ++i) {
          const double product = static_cast<double>(__bfloat162float(a[static_cast<std::size_t>(row * k + i)])) *
                                 __bfloat162float(b[static_cast<std::size_t>(column * k + i)]);
          expected += product;
          magnitude += std::abs(product);
        }
        const float actual = d[static_cast<std::size_t>(row * kN + column)];
        const double bound = 4.0 * k * std::numeric_limits<float>::epsilon() * magnitude + 1e-30;
        if (!(std::abs(actual - expected) <= bound) && ++mismatches <= 8) {
          ADD_FAILURE() << "d(" << row << ", " << column << ") = " << actual << ", expected " << expected;
        }
      }
    }
    EXPECT_EQ(mismatches, 0);
  }
}

// ---- The encoder's rules (host code in both builds) ----------------------------------------

TEST(TmaMap, EncodeRefusesWhatTheDriverWouldWithTheRule) {
  alignas(16) static const unsigned char memory[64] = {};
  const tma::TiledMap good{.element = tma::Element::bf16,
                           .global = memory,
                           .rank = 2,
                           .extents = {64, 8},
                           .strides = {128},
                           .box = {64, 8},
                           .swizzle = wgmma::Swizzle::bytes128};
  EXPECT_EQ(tma::check_tiled(good), "");
  EXPECT_EQ(good.box_bytes(), 64u * 8u * 2u);
  const auto problem = [&](auto&& change) {
    tma::TiledMap map = good;
    change(map);
    return tma::check_tiled(map);
  };
  EXPECT_NE(problem([](tma::TiledMap& m) { m.rank = 6; }).find("rank 6"), std::string::npos);
  EXPECT_NE(problem([&](tma::TiledMap& m) { m.global = memory + 8; }).find("not 16-byte aligned"), std::string::npos);
  EXPECT_NE(problem([](tma::TiledMap& m) { m.extents[1] = 0; }).find("extent 0 of dimension 1"), std::string::npos);
  EXPECT_NE(problem([](tma::TiledMap& m) { m.box[1] = 257; }).find("box extent 257"), std::string::npos);
  EXPECT_NE(problem([](tma::TiledMap& m) { m.strides[0] = 136; }).find("a multiple of 16"), std::string::npos);
  EXPECT_NE(problem([](tma::TiledMap& m) { m.strides[0] = 112; }).find("overlaps"), std::string::npos);
  EXPECT_NE(problem([](tma::TiledMap& m) { m.box[0] = 4; }).find("a box row of 8 bytes"), std::string::npos);
  EXPECT_NE(problem([](tma::TiledMap& m) { m.box[0] = 32; }).find("under a 128-byte swizzle"), std::string::npos);
  tma::TiledMap unaligned = good;
  unaligned.global = memory + 8;
  try {
    tma::encode_tiled(unaligned, "conv2d_forward weights");
    FAIL() << "encode_tiled accepted an unaligned address";
  } catch (const strata::InvalidArgument& error) {
    EXPECT_NE(std::string(error.what()).find("tensor map for conv2d_forward weights"), std::string::npos)
        << error.what();
  }
}

#if STRATA_BACKEND_SIM

// ---- Misuse that the simulator reports (on a GPU: undefined results or a hang) ------------

enum class Misuse { no_init, no_wait, too_few_bytes, no_arrival, unaligned, read_before_wait };

// One box of 64 bf16 (one 128-byte row) into shared memory, with the given mistake; thread 0,
// the only one to wait, puts the box's first 4 bytes in out before its wait and after it.
__global__ void misuse_kernel(const __grid_constant__ tma::TensorMap map, Misuse misuse, std::uint32_t* out) {
  STRATA_DYNAMIC_SHARED(unsigned char, shared);
  __shared__ tma::Mbarrier landed;
  unsigned char* box = wgmma::align_to_swizzle_pattern(shared) + (misuse == Misuse::unaligned ? 64 : 0);
  if (threadIdx.x == 0 && misuse != Misuse::no_init) tma::init(landed, 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    if (misuse != Misuse::no_arrival) tma::arrive_expect_tx(landed, misuse == Misuse::too_few_bytes ? 64 : 128);
    tma::copy_tile(box, map, landed, 0, 0);
  }
  if (threadIdx.x == 0) {
    std::memcpy(&out[0], box, 4);
    if (misuse != Misuse::no_wait) tma::wait(landed, 0);
    std::memcpy(&out[1], box, 4);
  }
}

class TmaMisuseTest : public ::testing::Test {
 protected:
  void SetUp() override { global_.upload(matrix_.bits); }
  void TearDown() override { strata::sim::clear_device_error(); }

  void launch(Misuse misuse) {
    strata::launch(misuse_kernel,
                   strata::LaunchConfig{.grid = 1, .block = 64, .shared_bytes = 2048,
                                        .stream = strata::current_stream(), .name = "tma_misuse"},
                   tma::encode_tiled(matrix_.map(global_.data(), 64, 1, wgmma::Swizzle::none), "tma misuse"), misuse,
                   out_.data());
  }

  // The simulator's report of the block that misuse fails.
  std::string failure(Misuse misuse) {
    try {
      launch(misuse);
    } catch (const strata::CudaError&) {
    }
    EXPECT_EQ(cudaStreamSynchronize(strata::current_stream()), cudaErrorLaunchFailure);
    std::string detail = strata::sim::failure_detail();
    strata::sim::clear_device_error();
    return detail;
  }

  Matrix2d matrix_{1, 64, 64};
  DeviceBuffer<std::uint16_t> global_{64};
  DeviceBuffer<std::uint32_t> out_{2};
};

// A box lands at the wait that covers it: read before, shared memory holds what it held.
TEST_F(TmaMisuseTest, BoxesLandAtTheWait) {
  launch(Misuse::read_before_wait);
  ASSERT_EQ(cudaStreamSynchronize(strata::current_stream()), cudaSuccess) << strata::sim::failure_detail();
  const std::vector<std::uint32_t> out = out_.download();
  EXPECT_EQ(out[0], 0xffffffffu) << "the simulator's uninitialised shared memory, not the box";
  EXPECT_EQ(out[1], static_cast<std::uint32_t>(matrix_.at(0, 0)) | static_cast<std::uint32_t>(matrix_.at(1, 0)) << 16);
}

TEST_F(TmaMisuseTest, ReportsMisuse) {
  EXPECT_NE(failure(Misuse::no_init).find("that no tma::init initialised"), std::string::npos);
  EXPECT_NE(failure(Misuse::no_wait).find("the block ended with 1 cp.async.bulk.tensor copies"), std::string::npos);
  EXPECT_NE(failure(Misuse::too_few_bytes).find("64 bytes more than arrive_expect_tx announced"), std::string::npos);
  const std::string deadlock = failure(Misuse::no_arrival);
  EXPECT_NE(deadlock.find("deadlock"), std::string::npos) << deadlock;
  EXPECT_NE(deadlock.find("wait at an mbarrier"), std::string::npos) << deadlock;
  EXPECT_NE(failure(Misuse::unaligned).find("is not 128-byte aligned"), std::string::npos);
}

#endif

}  // namespace
