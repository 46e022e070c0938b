// Tests of core/wgmma.cuh, the warpgroup matrix multiply: one warpgroup multiplies a (64, K)
// A by a (K, N) B held in shared memory, K-major and MN-major (transposed) operands, in the
// unswizzled core-matrix layout (arranged along k or along the rows) and in each swizzled
// layout, and writes the accumulators to d through their documented mapping. Against a
// double reference, in the simulator and, where wgmma::available() (an sm_90a build on an
// H100/H200), on the GPU: the test that tells whether the descriptors, the swizzles and the
// mapping are the GPU's. The simulator's checks of misuse run in the simulator only.
#include <cuda_runtime_api.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/launch.cuh"
#include "core/pipeline.cuh"
#include "core/wgmma.cuh"
#include "strata/core/config.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "tests/support/device_buffer.h"
#include "tests/support/device_test.h"

#if STRATA_BACKEND_SIM
#include "core/sim/runtime.h"
#endif

namespace {

namespace wgmma = strata::wgmma;

// How an operand of (rows, k) lies in shared memory: unswizzled core matrices, k_fastest
// putting the k-neighbours next to each other (leading 128 bytes) and rows_fastest the
// row-neighbours (stride 128 bytes); or swizzled rows of W bytes, K-major (k <= W / 2, the
// 8-row patterns one after another) or MN-major (W / 2 rows along a row; the patterns of 8 k
// values next to each other when k_fastest, those of W / 2 rows when rows_fastest). Either
// way rows * k * 2 bytes.
__host__ __device__ wgmma::OperandLayout layout_for(wgmma::Major major, wgmma::Swizzle swizzle, int rows, int k,
                                                    bool rows_fastest) {
  const auto row_count = static_cast<std::uint32_t>(rows), k_groups = static_cast<std::uint32_t>(k / 8);
  if (swizzle == wgmma::Swizzle::none) {
    constexpr auto kCore = static_cast<std::uint32_t>(wgmma::kCoreMatrixBytes);
    return rows_fastest ? wgmma::OperandLayout{major, swizzle, row_count / 8 * kCore, kCore}
                        : wgmma::OperandLayout{major, swizzle, kCore, k_groups * kCore};
  }
  const std::uint32_t pattern = 8 * wgmma::swizzle_row_bytes(swizzle);
  if (major == wgmma::Major::k) return wgmma::OperandLayout{major, swizzle, 0, pattern};
  const std::uint32_t rows_per_line = wgmma::swizzle_row_bytes(swizzle) / 2;
  return rows_fastest ? wgmma::OperandLayout{major, swizzle, pattern, row_count / rows_per_line * pattern}
                      : wgmma::OperandLayout{major, swizzle, k_groups * pattern, pattern};
}

// Bytes of a (rows, k) operand, rounded up to whole swizzle patterns so that the next starts
// at a pattern's boundary.
__host__ __device__ constexpr int operand_bytes(int rows, int k) {
  const int bytes = rows * k * 2;
  constexpr int kPattern = static_cast<int>(wgmma::kSwizzlePatternBytes);
  return (bytes + kPattern - 1) / kPattern * kPattern;
}

// d (64, N) row-major = a (64, k) row-major * b, b given as (N, k) row-major; in shared
// memory A laid out as a_layout (kMajorA), B as b_layout (kMajorB), from the first swizzle
// pattern boundary of dynamic shared memory.
template <typename T, int N, wgmma::Major kMajorA, wgmma::Major kMajorB>
__global__ void __launch_bounds__(wgmma::kWarpgroupThreads)
    wgmma_tile_kernel(const T* a, const T* b, float* d, int k, wgmma::OperandLayout a_layout,
                      wgmma::OperandLayout b_layout) {
  STRATA_DYNAMIC_SHARED(unsigned char, shared);
  unsigned char* a_shared = wgmma::align_to_swizzle_pattern(shared);
  unsigned char* b_shared = a_shared + operand_bytes(wgmma::kRows, k);
  const int t = static_cast<int>(threadIdx.x);
  for (int i = t; i < wgmma::kRows * k; i += wgmma::kWarpgroupThreads) {
    *reinterpret_cast<T*>(a_shared + a_layout.offset(i / k, i % k)) = a[i];
  }
  for (int i = t; i < N * k; i += wgmma::kWarpgroupThreads) {
    *reinterpret_cast<T*>(b_shared + b_layout.offset(i / k, i % k)) = b[i];
  }
  wgmma::fence_shared_to_async_proxy();
  __syncthreads();

  float accumulators[N / 2];
  // NaN: the first step must not accumulate.
  for (float& value : accumulators) value = __int_as_float(0x7fc00000);
  wgmma::fence_operands(accumulators);
  // Each step from its fence to its commit without a branch, as the conv kernels run a slice:
  // a loop that commits once after all steps draws ptxas's injected warpgroup.arrive (C7520).
  // A step's descriptors name the unswizzled place of its first element.
  for (int step = 0; step < k / wgmma::kStepK; ++step) {
    const int k0 = step * wgmma::kStepK;
    const std::uint64_t a_descriptor = wgmma::descriptor(a_shared + a_layout.start_offset(0, k0), a_layout);
    const std::uint64_t b_descriptor = wgmma::descriptor(b_shared + b_layout.start_offset(0, k0), b_layout);
    wgmma::fence();
    wgmma::mma_async<T, N, kMajorA, kMajorB>(accumulators, a_descriptor, b_descriptor, step > 0);
    wgmma::commit_group();
  }
  wgmma::wait_group<0>();
  wgmma::fence_operands(accumulators);
  for (int index = 0; index < N / 2; ++index) {
    d[wgmma::accumulator_row(t, index) * N + wgmma::accumulator_column(t, index)] = accumulators[index];
  }
}

template <typename T>
std::vector<T> random_values(std::size_t count, std::mt19937& generator) {
  std::uniform_real_distribution<float> uniform(-2.0f, 2.0f);
  std::vector<T> values(count);
  for (T& value : values) value = T(uniform(generator));
  return values;
}

using strata::testing::DeviceBuffer;

struct TileCase {
  int k;
  bool rows_fastest;
  wgmma::Swizzle swizzle = wgmma::Swizzle::none;
};

class WgmmaTest : public strata::testing::DeviceTest {
 protected:
  void SetUp() override {
    DeviceTest::SetUp();
    if (IsSkipped()) return;
    if (!wgmma::available()) {
      GTEST_SKIP() << "wgmma cannot run here: the kernels need an sm_90a build (STRATA_WGMMA_BUILT "
                   << STRATA_WGMMA_BUILT << ") and a device of compute capability 9.0";
    }
  }

  // Runs the tile kernel and compares every element of d with the double reference, within
  // the bound of an f32 sum of k exact products.
  template <typename T, int N, wgmma::Major kMajorA = wgmma::Major::k, wgmma::Major kMajorB = wgmma::Major::k>
  void expect_tile_product(const TileCase& tile, std::uint32_t seed) {
    const auto major = [](wgmma::Major m) { return m == wgmma::Major::k ? "K-major" : "MN-major"; };
    SCOPED_TRACE(testing::Message() << "N " << N << ", k " << tile.k << (tile.rows_fastest ? ", rows" : ", k")
                                    << " fastest, swizzle rows of " << wgmma::swizzle_row_bytes(tile.swizzle)
                                    << " bytes, A " << major(kMajorA) << ", B " << major(kMajorB) << ", seed "
                                    << seed);
    const auto kernel = wgmma_tile_kernel<T, N, kMajorA, kMajorB>;
    std::mt19937 generator(seed);
    const std::vector<T> a = random_values<T>(static_cast<std::size_t>(wgmma::kRows * tile.k), generator);
    const std::vector<T> b = random_values<T>(static_cast<std::size_t>(N * tile.k), generator);
    const cudaStream_t stream = strata::current_stream();
    DeviceBuffer<T> a_device(a.size()), b_device(b.size());
    DeviceBuffer<float> d_device(static_cast<std::size_t>(wgmma::kRows * N));
    STRATA_CUDA_CHECK(cudaMemcpyAsync(a_device.data(), a.data(), a.size() * sizeof(T), cudaMemcpyHostToDevice, stream),
                      "a");
    STRATA_CUDA_CHECK(cudaMemcpyAsync(b_device.data(), b.data(), b.size() * sizeof(T), cudaMemcpyHostToDevice, stream),
                      "b");
    STRATA_CUDA_CHECK(cudaMemsetAsync(d_device.data(), 0xff, d_device.count() * sizeof(float), stream), "poison d");
    const std::size_t shared_bytes =
        static_cast<std::size_t>(operand_bytes(wgmma::kRows, tile.k) + operand_bytes(N, tile.k)) +
        wgmma::kSwizzlePatternBytes;
    strata::allow_dynamic_shared_memory(kernel, shared_bytes, "wgmma_tile");
    strata::launch(kernel,
                   strata::LaunchConfig{.grid = 1,
                                        .block = wgmma::kWarpgroupThreads,
                                        .shared_bytes = shared_bytes,
                                        .stream = stream,
                                        .name = "wgmma_tile"},
                   a_device.data(), b_device.data(), d_device.data(), tile.k,
                   layout_for(kMajorA, tile.swizzle, wgmma::kRows, tile.k, tile.rows_fastest),
                   layout_for(kMajorB, tile.swizzle, N, tile.k, tile.rows_fastest));
    std::vector<float> d(d_device.count());
    STRATA_CUDA_CHECK(cudaMemcpyAsync(d.data(), d_device.data(), d.size() * sizeof(float), cudaMemcpyDeviceToHost,
                                      stream),
                      "d");
    STRATA_CUDA_CHECK(cudaStreamSynchronize(stream), "wgmma tile");
    int mismatches = 0;
    for (int row = 0; row < wgmma::kRows; ++row) {
      for (int column = 0; column < N; ++column) {
        double expected = 0.0, magnitude = 0.0;
        for (int i = 0; i < tile.k; ++i) {
          const double product = static_cast<double>(static_cast<float>(a[static_cast<std::size_t>(row * tile.k + i)])) *
                                 static_cast<float>(b[static_cast<std::size_t>(column * tile.k + i)]);
          expected += product;
          magnitude += std::abs(product);
        }
        const float actual = d[static_cast<std::size_t>(row * N + column)];
        const double bound = 4.0 * tile.k * std::numeric_limits<float>::epsilon() * magnitude + 1e-30;
        if (!(std::abs(actual - expected) <= bound) && ++mismatches <= 8) {
          ADD_FAILURE() << "d(" << row << ", " << column << ") = " << actual << ", expected " << expected
                        << " (bound " << bound << ")";
        }
      }
    }
    EXPECT_EQ(mismatches, 0);
  }
};

// Unswizzled, then each swizzle mode over a whole swizzled row of k (W / 2 values): the
// steps' descriptors start within a row, the swizzle acting on their addresses.
constexpr TileCase kTileCases[] = {{16, false},
                                   {16, true},
                                   {48, false},
                                   {64, true},
                                   {64, false, wgmma::Swizzle::bytes128},
                                   {32, true, wgmma::Swizzle::bytes64},
                                   {16, false, wgmma::Swizzle::bytes32}};

TEST_F(WgmmaTest, Bf16TilesOf64Columns) {
  std::uint32_t seed = 1;
  for (const TileCase& tile : kTileCases) expect_tile_product<__nv_bfloat16, 64>(tile, seed++);
}

TEST_F(WgmmaTest, Bf16TilesOf128Columns) {
  std::uint32_t seed = 11;
  for (const TileCase& tile : kTileCases) expect_tile_product<__nv_bfloat16, 128>(tile, seed++);
}

TEST_F(WgmmaTest, F16TilesOf64And128Columns) {
  std::uint32_t seed = 21;
  for (const TileCase& tile : kTileCases) {
    expect_tile_product<__half, 64>(tile, seed++);
    expect_tile_product<__half, 128>(tile, seed++);
  }
}

// MN-major (transposed) operands, as the filter gradient's slices are laid out: each alone
// and both, so that each transpose flag matters.
TEST_F(WgmmaTest, Bf16MnMajorOperands) {
  using wgmma::Major;
  std::uint32_t seed = 31;
  for (const TileCase& tile : kTileCases) {
    expect_tile_product<__nv_bfloat16, 128, Major::mn, Major::mn>(tile, seed++);
    expect_tile_product<__nv_bfloat16, 128, Major::mn, Major::k>(tile, seed++);
    expect_tile_product<__nv_bfloat16, 64, Major::k, Major::mn>(tile, seed++);
  }
}

// Swizzled MN-major operands hold any multiple of 8 k values: more than a swizzled row's.
TEST_F(WgmmaTest, SwizzledMnMajorOperandsOfLongK) {
  using wgmma::Major, wgmma::Swizzle;
  expect_tile_product<__nv_bfloat16, 128, Major::mn, Major::mn>({48, true, Swizzle::bytes128}, 51);
  expect_tile_product<__nv_bfloat16, 64, Major::mn, Major::mn>({64, false, Swizzle::bytes32}, 52);
  expect_tile_product<__half, 128, Major::mn, Major::mn>({80, false, Swizzle::bytes64}, 53);
}

TEST_F(WgmmaTest, F16MnMajorOperands) {
  using wgmma::Major;
  std::uint32_t seed = 41;
  for (const TileCase& tile : kTileCases) {
    expect_tile_product<__half, 64, Major::mn, Major::mn>(tile, seed++);
    expect_tile_product<__half, 128, Major::k, Major::mn>(tile, seed++);
  }
}

TEST(WgmmaLayout, AccumulatorsCoverTheTileOnce) {
  for (const int n : {64, 128}) {
    std::vector<int> owners(static_cast<std::size_t>(wgmma::kRows * n), 0);
    for (int t = 0; t < wgmma::kWarpgroupThreads; ++t) {
      for (int index = 0; index < n / 2; ++index) {
        ++owners[static_cast<std::size_t>(wgmma::accumulator_row(t, index) * n + wgmma::accumulator_column(t, index))];
      }
    }
    for (const int count : owners) ASSERT_EQ(count, 1) << "N " << n;
  }
  // The documented corners: thread 0's first pair, thread 37's (warp 1, lane 5) third.
  EXPECT_EQ(wgmma::accumulator_row(0, 0), 0);
  EXPECT_EQ(wgmma::accumulator_column(0, 1), 1);
  EXPECT_EQ(wgmma::accumulator_row(37, 2), 16 + 1 + 8);
  EXPECT_EQ(wgmma::accumulator_column(37, 6), 8 + 2 + 0);
  // Core matrices: (9, 10) is row 1 of core matrix (1, 1), column 2.
  EXPECT_EQ(wgmma::core_matrix_offset(9, 10, 128, 1024), 1024u + 128u + 16u + 4u);
  // MN-major: the same core matrix, its line k % 8 = 2, element row % 8 = 1.
  EXPECT_EQ(wgmma::core_matrix_offset(9, 10, 128, 1024, wgmma::Major::mn), 1024u + 128u + 32u + 2u);
}

// A CuTe-style swizzle Swizzle<kBits, 4, 3> of a byte address: its bits 4.. (kBits of them, the
// 16-byte chunk) XORed with the bits 3 above.
template <int kBits>
std::uint32_t cute_swizzle(std::uint32_t address) {
  constexpr std::uint32_t kMask = ((1u << kBits) - 1u) << 4;
  return address ^ ((address >> 3) & kMask);
}

// The element index of coordinate `index` in a mode of `shape` (first fastest) and `stride`.
std::uint32_t mode_offset(int index, std::initializer_list<int> shape, std::initializer_list<int> stride) {
  std::uint32_t offset = 0;
  auto extent = shape.begin();
  for (const int step : stride) {
    offset += static_cast<std::uint32_t>(index % *extent * step);
    index /= *extent++;
  }
  return offset;
}

// OperandLayout's swizzled offsets against the canonical layouts of the PTX ISA (its section
// on shared memory matrix layouts, in CuTe's notation, elements of 2 bytes), written out here
// independently: K-major Swizzle<3|2, 4, 3> o ((8, 2), W / 2) : ((W / 2, 8 W / 2), 1), and
// MN-major Swizzle<1, 4, 3> o ((8, 2, 2), (8, 2)) : ((1, 8, 128), (16, 256)) and
// Swizzle<2, 4, 3> o ((8, 4, 2), (8, 2)) : ((1, 8, 256), (32, 512)).
TEST(WgmmaLayout, SwizzledOffsetsAreThePtxIsaLayouts) {
  using wgmma::Major, wgmma::Swizzle;
  const wgmma::OperandLayout k128{Major::k, Swizzle::bytes128, 0, 1024};
  const wgmma::OperandLayout k64{Major::k, Swizzle::bytes64, 0, 512};
  const wgmma::OperandLayout mn32{Major::mn, Swizzle::bytes32, 256, 512};
  const wgmma::OperandLayout mn64{Major::mn, Swizzle::bytes64, 512, 1024};
  for (int row = 0; row < 16; ++row) {
    for (int k = 0; k < 64; ++k) {
      const std::uint32_t element = mode_offset(row, {8, 2}, {64, 512}) + static_cast<std::uint32_t>(k);
      ASSERT_EQ(k128.offset(row, k), cute_swizzle<3>(2 * element)) << "K-major 128: (" << row << ", " << k << ")";
    }
    for (int k = 0; k < 32; ++k) {
      const std::uint32_t element = mode_offset(row, {8, 2}, {32, 256}) + static_cast<std::uint32_t>(k);
      ASSERT_EQ(k64.offset(row, k), cute_swizzle<2>(2 * element)) << "K-major 64: (" << row << ", " << k << ")";
    }
  }
  for (int row = 0; row < 64; ++row) {
    for (int k = 0; k < 16; ++k) {
      if (row < 32) {
        const std::uint32_t element = mode_offset(row, {8, 2, 2}, {1, 8, 128}) + mode_offset(k, {8, 2}, {16, 256});
        ASSERT_EQ(mn32.offset(row, k), cute_swizzle<1>(2 * element)) << "MN-major 32: (" << row << ", " << k << ")";
      }
      const std::uint32_t element = mode_offset(row, {8, 4, 2}, {1, 8, 256}) + mode_offset(k, {8, 2}, {32, 512});
      ASSERT_EQ(mn64.offset(row, k), cute_swizzle<2>(2 * element)) << "MN-major 64: (" << row << ", " << k << ")";
    }
  }
  // Unswizzled, the offset is the core-matrix layout's and the start offset is the offset.
  const wgmma::OperandLayout plain{Major::k, Swizzle::none, 128, 1024};
  EXPECT_EQ(plain.offset(9, 10), wgmma::core_matrix_offset(9, 10, 128, 1024));
  EXPECT_EQ(k128.start_offset(3, 16), 3u * 128u + 32u);
}

#if STRATA_BACKEND_SIM

// ---- Misuse that the simulator reports (on a GPU: undefined results or a hang) ------------

// A warpgroup of which only `threads` exist or take part. The warps whose operation is sound
// wait for it, so that under any schedule the block's failure is the misuse, not their exit.
__global__ void partial_warpgroup_kernel(int taking_part, bool divergent_descriptors, unsigned base_offset) {
  STRATA_DYNAMIC_SHARED(unsigned char, shared);
  if (static_cast<int>(threadIdx.x) >= taking_part) return;
  float accumulators[32];
  std::uint64_t a = wgmma::descriptor(shared, 128, 256) | (static_cast<std::uint64_t>(base_offset) << 49);
  if (divergent_descriptors && threadIdx.x == 3) a = wgmma::descriptor(shared + 16, 128, 256);
  wgmma::mma_async<__nv_bfloat16, 64>(accumulators, a, wgmma::descriptor(shared, 128, 256), false);
  wgmma::commit_group();
  wgmma::wait_group<0>();
}

// How deferred_kernel overwrites B before the wait: with stores, or with asynchronous copies
// of `twos`.
enum class Overwrite { stores, async_copies };

// A (64 x 16 ones) * B (16 x 64 ones) issued without accumulating into accumulators of 7;
// before the wait, the first accumulator goes to before[t] and B is overwritten with twos;
// after the wait (when `wait`), the first accumulator goes to after[t].
__global__ void deferred_kernel(float* before, float* after, bool wait, Overwrite overwrite,
                                const __nv_bfloat16* twos) {
  STRATA_DYNAMIC_SHARED(unsigned char, shared);
  constexpr int kElements = wgmma::kRows * wgmma::kStepK;  // of A, and of B (64 columns)
  auto* a = reinterpret_cast<__nv_bfloat16*>(shared);
  __nv_bfloat16* b = a + kElements;
  const int t = static_cast<int>(threadIdx.x);
  for (int i = t; i < kElements; i += wgmma::kWarpgroupThreads) a[i] = b[i] = __float2bfloat16(1.0f);
  __syncthreads();
  float accumulators[32];
  for (float& value : accumulators) value = 7.0f;
  wgmma::mma_async<__nv_bfloat16, 64>(accumulators, wgmma::descriptor(a, 128, 256), wgmma::descriptor(b, 128, 256),
                                      false);
  wgmma::commit_group();
  before[t] = accumulators[0];
  __syncthreads();
  if (overwrite == Overwrite::stores) {
    for (int i = t; i < kElements; i += wgmma::kWarpgroupThreads) b[i] = __float2bfloat16(2.0f);
  } else {
    for (int i = 8 * t; i < kElements; i += 8 * wgmma::kWarpgroupThreads) strata::async_copy<16>(b + i, twos + i, true);
    __pipeline_commit();
    __pipeline_wait_prior(0);
  }
  __syncthreads();
  if (wait) wgmma::wait_group<0>();
  after[t] = accumulators[0];
}

// A (64 x 16) and B (16 x 64) copied asynchronously from `twos` by the warpgroup, landed by
// the copies' wait, then, when `fenced`, made visible to wgmma by each copying thread's proxy
// fence; a barrier, and A * B into accumulators whose first goes to product[t].
__global__ void copied_operands_kernel(float* product, bool fenced, const __nv_bfloat16* twos) {
  STRATA_DYNAMIC_SHARED(unsigned char, shared);
  constexpr int kElements = wgmma::kRows * wgmma::kStepK;  // of A, and of B (64 columns)
  auto* a = reinterpret_cast<__nv_bfloat16*>(shared);
  __nv_bfloat16* b = a + kElements;
  const int t = static_cast<int>(threadIdx.x);
  for (int i = 8 * t; i < 2 * kElements; i += 8 * wgmma::kWarpgroupThreads) {
    strata::async_copy<16>(a + i, twos + i % kElements, true);
  }
  __pipeline_commit();
  __pipeline_wait_prior(0);
  if (fenced) wgmma::fence_shared_to_async_proxy();
  __syncthreads();
  float accumulators[32];
  wgmma::fence();
  wgmma::mma_async<__nv_bfloat16, 64>(accumulators, wgmma::descriptor(a, 128, 256), wgmma::descriptor(b, 128, 256),
                                      false);
  wgmma::commit_group();
  wgmma::wait_group<0>();
  product[t] = accumulators[0];
}

class WgmmaMisuseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    twos_.upload(std::vector<__nv_bfloat16>(twos_.count(), __float2bfloat16(2.0f)));
  }
  void TearDown() override { strata::sim::clear_device_error(); }

  // The simulator's report of the block that launch() fails.
  template <typename Launch>
  static std::string failure_of(const Launch& launch) {
    try {
      launch();
    } catch (const strata::CudaError&) {
    }
    EXPECT_EQ(cudaStreamSynchronize(strata::current_stream()), cudaErrorLaunchFailure);
    std::string detail = strata::sim::failure_detail();
    strata::sim::clear_device_error();
    return detail;
  }

  std::string failure(unsigned threads, int taking_part, bool divergent = false, unsigned base_offset = 0) {
    return failure_of([&] {
      strata::launch(partial_warpgroup_kernel,
                     strata::LaunchConfig{.grid = 1, .block = threads, .shared_bytes = 8192,
                                          .stream = strata::current_stream(), .name = "wgmma_misuse"},
                     taking_part, divergent, base_offset);
    });
  }

  // One warpgroup, the 4 KiB of shared memory of two 64 x 16 bf16 operands.
  static strata::LaunchConfig one_warpgroup(const char* name) {
    return strata::LaunchConfig{.grid = 1, .block = wgmma::kWarpgroupThreads, .shared_bytes = 4096,
                                .stream = strata::current_stream(), .name = name};
  }

  DeviceBuffer<__nv_bfloat16> twos_{static_cast<std::size_t>(wgmma::kRows * wgmma::kStepK)};  // one operand of 2s
};

TEST_F(WgmmaMisuseTest, ReportsAPartialWarpgroup) {
  EXPECT_NE(failure(64, 64).find("whole warpgroup"), std::string::npos);
  EXPECT_NE(failure(128, 100).find("did not take part"), std::string::npos);
}

// The simulator performs an operation at the wait that covers it, the latest moment a GPU may:
// accumulators read before it are the old ones, an operand overwritten by stores before it is
// read as overwritten (on a GPU both are races); asynchronous copies into its operands before
// it, and a thread's exit before it, fail the block.
TEST_F(WgmmaMisuseTest, OperationsArePerformedAtTheWait) {
  DeviceBuffer<float> before(wgmma::kWarpgroupThreads), after(wgmma::kWarpgroupThreads);
  const strata::LaunchConfig config = one_warpgroup("wgmma_deferred");
  strata::launch(deferred_kernel, config, before.data(), after.data(), true, Overwrite::stores, twos_.data());
  ASSERT_EQ(cudaStreamSynchronize(config.stream), cudaSuccess) << strata::sim::failure_detail();
  const std::vector<float> before_host = before.download(), after_host = after.download();
  for (int t = 0; t < wgmma::kWarpgroupThreads; ++t) {
    EXPECT_EQ(before_host[static_cast<std::size_t>(t)], 7.0f) << "thread " << t;
    EXPECT_EQ(after_host[static_cast<std::size_t>(t)], 16.0f * 2.0f) << "thread " << t;
  }

  const auto failure = [&](bool wait, Overwrite overwrite) {
    return failure_of(
        [&] { strata::launch(deferred_kernel, config, before.data(), after.data(), wait, overwrite, twos_.data()); });
  };
  EXPECT_NE(failure(false, Overwrite::stores).find("not waited for"), std::string::npos);
  EXPECT_NE(failure(true, Overwrite::async_copies).find("which a wgmma.mma_async not yet waited for reads"),
            std::string::npos);
}

// Bytes that cp.async wrote reach wgmma (the asynchronous proxy) only through a proxy fence of
// the writing thread before the barrier: without it a GPU may read the old bytes, and the
// simulator fails the operation's issue, naming the thread.
TEST_F(WgmmaMisuseTest, ReportsCopiedOperandsWithoutAProxyFence) {
  DeviceBuffer<float> product(wgmma::kWarpgroupThreads);
  const strata::LaunchConfig config = one_warpgroup("wgmma_copied");
  strata::launch(copied_operands_kernel, config, product.data(), true, twos_.data());
  ASSERT_EQ(cudaStreamSynchronize(config.stream), cudaSuccess) << strata::sim::failure_detail();
  for (const float value : product.download()) EXPECT_EQ(value, 16.0f * 2.0f * 2.0f);

  const std::string detail =
      failure_of([&] { strata::launch(copied_operands_kernel, config, product.data(), false, twos_.data()); });
  EXPECT_NE(detail.find("with no fence.proxy.async of that thread since"), std::string::npos) << detail;
}

// Divergent descriptors, and a base offset (a swizzle pattern not at a 1024-byte boundary,
// which the kernels avoid by aligning their shared memory).
TEST_F(WgmmaMisuseTest, ReportsDivergentAndBaseOffsetDescriptors) {
  EXPECT_NE(failure(128, 128, /*divergent=*/true).find("different operands"), std::string::npos);
  EXPECT_NE(failure(128, 128, false, /*base_offset=*/3).find("base offset 3"), std::string::npos);
}

#endif

}  // namespace
