// Tests of the simulator's tensor-core API (nvcuda::wmma, core/sim/wmma.h) through the kernels
// of wmma_test_kernels.cuh, which nvcc also compiles: single tile products in every layout
// against a double reference (exactly with small integers, within a summation bound with
// random values), tiles inside larger matrices, tf32, a tiled multi-warp GEMM with ragged
// edges, and the misuse the simulator reports where a GPU would compute garbage.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/launch.cuh"
#include "core/sim/runtime.h"
#include "strata/core/errors.h"
#include "tests/sim/sim_kernel_test.h"
#include "tests/sim/wmma_test_kernels.cuh"
#include "tests/support/compare.h"

namespace {

namespace wmma = nvcuda::wmma;
using strata::testing::Tolerance;
using strata::testing::wmma_kernels::GemmBarriers;
using strata::testing::wmma_kernels::GemmShape;
using strata::testing::wmma_kernels::TileArguments;

// ---- Misuse kernels (simulator only: on a GPU these compute garbage or hang) ----------------

using HalfA = wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major>;
using HalfB = wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major>;
using FloatAccumulator = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// Each lane passes its own tile: lanes 0, 2, 4, ... one pointer, lanes 1, 3, ... another.
__global__ void divergent_pointer_kernel(const __half* a) {
  HalfA fragment;
  wmma::load_matrix_sync(fragment, a + (threadIdx.x % 2) * 16, 32);
}

__global__ void load_kernel(const __half* a, unsigned ldm) {
  HalfA fragment;
  wmma::load_matrix_sync(fragment, a, ldm);
}

__global__ void store_kernel(float* d, unsigned ldm) {
  FloatAccumulator accumulator;
  wmma::fill_fragment(accumulator, 1.0f);
  wmma::store_matrix_sync(d, accumulator, ldm, wmma::mem_row_major);
}

// mma_sync from lanes_that_call lanes only (the others return first, or do not exist).
__global__ void partial_mma_kernel(unsigned lanes_that_call) {
  if (threadIdx.x >= lanes_that_call) return;
  HalfA a;
  HalfB b;
  FloatAccumulator c;
  wmma::fill_fragment(a, __float2half(1.0f));
  wmma::fill_fragment(b, __float2half(1.0f));
  wmma::fill_fragment(c, 0.0f);
  wmma::mma_sync(c, a, b, c);
}

// The same load written twice, in the two branches of a divergent condition.
__global__ void divergent_call_site_kernel(const __half* a) {
  HalfA fragment;
  if (threadIdx.x < 16) {
    wmma::load_matrix_sync(fragment, a, 16);
  } else {
    wmma::load_matrix_sync(fragment, a, 16);
  }
}

// Lane 0 alone changes one element of its fragment.
__global__ void non_uniform_elementwise_kernel(const __half* a) {
  HalfA fragment_a;
  HalfB fragment_b;
  FloatAccumulator accumulator;
  wmma::load_matrix_sync(fragment_a, a, 16);
  wmma::fill_fragment(fragment_b, __float2half(1.0f));
  wmma::fill_fragment(accumulator, 0.0f);
  if (threadIdx.x == 0) fragment_a.x[0] = __float2half(3.0f);
  wmma::mma_sync(accumulator, fragment_a, fragment_b, accumulator);
}

// Lanes 0-15 wait at __syncthreads, lanes 16-31 at mma_sync for them: a hang on a GPU.
__global__ void wmma_deadlock_kernel() {
  HalfA a;
  HalfB b;
  FloatAccumulator c;
  wmma::fill_fragment(a, __float2half(1.0f));
  wmma::fill_fragment(b, __float2half(1.0f));
  wmma::fill_fragment(c, 0.0f);
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    wmma::mma_sync(c, a, b, c);
  }
}

// ---- Host helpers ---------------------------------------------------------------------------

template <typename T>
T from_float(float value) {
  if constexpr (std::is_same_v<T, __half>) {
    return __float2half_rn(value);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16_rn(value);
  } else {
    return value;
  }
}

template <typename T>
double to_double(T value) {
  if constexpr (std::is_same_v<T, __half>) {
    return __half2float(value);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(value);
  } else {
    return value;
  }
}

// Rounds to tf32 as cvt.rna.tf32.f32 does: 10 mantissa bits, ties away from zero.
double tf32_reference(float value) {
  int exponent = 0;
  const double mantissa = std::frexp(static_cast<double>(value), &exponent);  // in [0.5, 1)
  const double scaled = mantissa * 2048.0;                                     // 11 significant bits
  return std::ldexp(std::copysign(std::floor(std::abs(scaled) + 0.5), scaled), exponent - 11);
}

// Where a rows x cols tile lies in a larger buffer: at element offset, leading dimension ld.
struct TilePlacement {
  int rows = 16;
  int cols = 16;
  unsigned ld = 16;
  bool col_major = false;
  size_t offset = 0;

  size_t index(int row, int col) const {
    return offset + (col_major ? static_cast<size_t>(col) * ld + static_cast<size_t>(row)
                               : static_cast<size_t>(row) * ld + static_cast<size_t>(col));
  }
  size_t buffer_size() const { return index(rows - 1, cols - 1) + 1 + 2 * ld; }
};

// A tile inside a buffer that is NaN everywhere else, so a load that strays outside the
// tile shows up in the result. small_integers: values in [-4, 4], whose products and sums
// all formats hold exactly.
template <typename T>
std::vector<T> tile_buffer(const TilePlacement& placement, uint64_t seed, bool small_integers,
                           std::vector<double>& tile) {
  std::vector<T> buffer(placement.buffer_size());
  std::memset(static_cast<void*>(buffer.data()), 0xff, buffer.size() * sizeof(T));  // NaN in every format
  const std::vector<float> values =
      strata::testing::random_uniform(seed, static_cast<size_t>(placement.rows * placement.cols));
  tile.assign(values.size(), 0.0);
  for (int row = 0; row < placement.rows; ++row) {
    for (int col = 0; col < placement.cols; ++col) {
      const size_t flat = static_cast<size_t>(row * placement.cols + col);
      const float value = small_integers ? std::round(values[flat] * 4.0f) : values[flat];
      buffer[placement.index(row, col)] = from_float<T>(value);
      tile[flat] = to_double(buffer[placement.index(row, col)]);
    }
  }
  return buffer;
}

// d = a * b + c in double, and for each element a bound on the error of any float summation
// order: 4 (k + 1) 2^-24 (|c| + sum |a b|), which also covers hardware that truncates.
struct Reference {
  std::vector<double> d;
  double error_bound = 0.0;
};
Reference reference_product(const std::vector<double>& a, const std::vector<double>& b, const std::vector<double>& c,
                            int m, int n, int k) {
  Reference reference;
  reference.d.assign(static_cast<size_t>(m * n), 0.0);
  for (int row = 0; row < m; ++row) {
    for (int col = 0; col < n; ++col) {
      double sum = c.empty() ? 0.0 : c[static_cast<size_t>(row * n + col)];
      double magnitude = std::abs(sum);
      for (int i = 0; i < k; ++i) {
        const double product = a[static_cast<size_t>(row * k + i)] * b[static_cast<size_t>(i * n + col)];
        sum += product;
        magnitude += std::abs(product);
      }
      reference.d[static_cast<size_t>(row * n + col)] = sum;
      reference.error_bound = std::max(reference.error_bound, 4.0 * (k + 1) * std::ldexp(magnitude, -24));
    }
  }
  return reference;
}

class Wmma : public strata::testing::SimKernelTest {
 protected:
  // One 16x16x16 tile product d = a * b + c with the given layouts and placements; checks the
  // tile of d against the double reference and that nothing around it was written.
  template <typename Input, typename LayoutA, typename LayoutB, typename C, typename D>
  void check_tile(TilePlacement a_place, TilePlacement b_place, TilePlacement c_place, TilePlacement d_place,
                  bool small_integers, uint64_t seed) {
    a_place.col_major = std::is_same_v<LayoutA, wmma::col_major>;
    b_place.col_major = std::is_same_v<LayoutB, wmma::col_major>;
    std::vector<double> a, b, c;
    const std::vector<Input> a_host = tile_buffer<Input>(a_place, seed, small_integers, a);
    const std::vector<Input> b_host = tile_buffer<Input>(b_place, seed + 1, small_integers, b);
    const std::vector<C> c_host = tile_buffer<C>(c_place, seed + 2, small_integers, c);
    D* d = device_alloc<D>(d_place.buffer_size());
    const TileArguments arguments{.lda = a_place.ld,
                                  .ldb = b_place.ld,
                                  .ldc = c_place.ld,
                                  .ldd = d_place.ld,
                                  .c_layout = c_place.col_major ? wmma::mem_col_major : wmma::mem_row_major,
                                  .d_layout = d_place.col_major ? wmma::mem_col_major : wmma::mem_row_major};
    strata::launch(strata::testing::wmma_kernels::wmma_tile_kernel<Input, LayoutA, LayoutB, C, D>,
                   config(1, 32, "wmma_tile"), device_copy(a_host) + a_place.offset,
                   device_copy(b_host) + b_place.offset, device_copy(c_host) + c_place.offset, d + d_place.offset,
                   arguments);
    const std::vector<D> d_host = host_copy(d, d_place.buffer_size());

    const Reference reference = reference_product(a, b, c, 16, 16, 16);
    std::vector<float> tile(256);
    for (int row = 0; row < 16; ++row) {
      for (int col = 0; col < 16; ++col) {
        tile[static_cast<size_t>(row * 16 + col)] = static_cast<float>(to_double(d_host[d_place.index(row, col)]));
      }
    }
    // A __half result is also rounded once to 11 significant bits.
    const Tolerance tolerance = small_integers ? Tolerance{}
                                               : Tolerance{.abs_tol = reference.error_bound,
                                                           .rel_tol = std::is_same_v<D, __half> ? 0x1p-11 : 0.0};
    EXPECT_TRUE(strata::testing::all_close(tile, reference.d, tolerance))
        << "a " << (a_place.col_major ? "col" : "row") << "-major, b " << (b_place.col_major ? "col" : "row")
        << "-major, c " << (c_place.col_major ? "col" : "row") << "-major, d " << (d_place.col_major ? "col" : "row")
        << "-major, seed " << seed;
    size_t written_outside = 0;
    std::vector<bool> inside(d_host.size(), false);
    for (int row = 0; row < 16; ++row) {
      for (int col = 0; col < 16; ++col) inside[d_place.index(row, col)] = true;
    }
    for (size_t i = 0; i < d_host.size(); ++i) {
      unsigned char bytes[sizeof(D)];
      std::memcpy(bytes, &d_host[i], sizeof(D));
      const bool poisoned = std::all_of(std::begin(bytes), std::end(bytes), [](unsigned char x) { return x == 0xff; });
      written_outside += !inside[i] && !poisoned;
    }
    EXPECT_EQ(written_outside, 0u) << "store_matrix_sync wrote outside the tile";
  }

  // Every combination of fragment layouts (a, b) and memory layouts (c, d).
  template <typename Input, typename C, typename D>
  void check_all_layouts(bool small_integers, uint64_t seed) {
    for (const bool c_col_major : {false, true}) {
      for (const bool d_col_major : {false, true}) {
        const TilePlacement a{}, b{};
        const TilePlacement c{.col_major = c_col_major}, d{.col_major = d_col_major};
        check_tile<Input, wmma::row_major, wmma::row_major, C, D>(a, b, c, d, small_integers, seed);
        check_tile<Input, wmma::row_major, wmma::col_major, C, D>(a, b, c, d, small_integers, seed + 10);
        check_tile<Input, wmma::col_major, wmma::row_major, C, D>(a, b, c, d, small_integers, seed + 20);
        check_tile<Input, wmma::col_major, wmma::col_major, C, D>(a, b, c, d, small_integers, seed + 30);
      }
    }
  }

  // Random inputs of a GEMM on the device, with their double reference and tolerance.
  template <typename Input>
  struct GemmProblem {
    GemmShape shape;
    const Input* a = nullptr;  // (M, K)
    const Input* b = nullptr;  // (K, N)
    Reference reference;       // (M, N)
    Tolerance tolerance;
  };

  template <typename Input>
  GemmProblem<Input> gemm_problem(GemmShape shape, bool small_integers, uint64_t seed) {
    std::vector<float> a_values = strata::testing::random_uniform(seed, static_cast<size_t>(shape.m * shape.k));
    std::vector<float> b_values = strata::testing::random_uniform(seed + 1, static_cast<size_t>(shape.k * shape.n));
    std::vector<Input> a_host(a_values.size()), b_host(b_values.size());  // (M, K), (K, N)
    std::vector<double> a(a_values.size()), b(b_values.size());
    for (size_t i = 0; i < a.size(); ++i) {
      a_host[i] = from_float<Input>(small_integers ? std::round(a_values[i] * 2.0f) : a_values[i]);
      a[i] = to_double(a_host[i]);
    }
    for (size_t i = 0; i < b.size(); ++i) {
      b_host[i] = from_float<Input>(small_integers ? std::round(b_values[i] * 2.0f) : b_values[i]);
      b[i] = to_double(b_host[i]);
    }
    Reference reference = reference_product(a, b, {}, shape.m, shape.n, shape.k);
    for (double& value : reference.d) value *= shape.alpha;  // alpha is a power of two: exact
    const Tolerance tolerance{.abs_tol = small_integers ? 0.0 : reference.error_bound * shape.alpha};
    return GemmProblem<Input>{.shape = shape,
                              .a = device_copy(a_host),
                              .b = device_copy(b_host),
                              .reference = std::move(reference),
                              .tolerance = tolerance};
  }

  // Runs wmma_gemm_kernel (with the barriers kBarriers says) under a schedule seed and
  // compares c with the reference.
  template <typename Input, GemmBarriers kBarriers = GemmBarriers::all>
  ::testing::AssertionResult run_gemm(const GemmProblem<Input>& problem, std::optional<uint64_t> schedule) {
    const GemmShape shape = problem.shape;
    const dim3 grid(static_cast<unsigned>((shape.n + 63) / 64), static_cast<unsigned>((shape.m + 63) / 64));
    strata::sim::set_schedule_seed(schedule);
    float* c = device_alloc<float>(static_cast<size_t>(shape.m * shape.n));  // (M, N), poisoned
    strata::launch(strata::testing::wmma_kernels::wmma_gemm_kernel<Input, kBarriers>,
                   config(grid, strata::testing::wmma_kernels::kGemmThreads, "wmma_gemm"), problem.a, problem.b, c,
                   shape);
    const std::vector<float> c_host = host_copy(c, problem.reference.d.size());
    strata::sim::set_schedule_seed(std::nullopt);
    return strata::testing::all_close(c_host, problem.reference.d, problem.tolerance);
  }

  template <typename Input>
  void check_gemm(GemmShape shape, bool small_integers, uint64_t seed) {
    const GemmProblem<Input> problem = gemm_problem<Input>(shape, small_integers, seed);
    for (const std::optional<uint64_t> schedule : {std::optional<uint64_t>{}, std::optional<uint64_t>{7}}) {
      EXPECT_TRUE(run_gemm(problem, schedule)) << "M " << shape.m << ", N " << shape.n << ", K " << shape.k
                                               << ", seed " << seed << ", schedule seed " << schedule.value_or(0);
    }
  }

  // Runs the correct GEMM and a variant without one barrier under schedule seeds 1-8: the
  // correct one must pass under all of them, and the race must show under several.
  template <GemmBarriers kRacy>
  void check_race_is_caught(bool hidden_in_index_order) {
    const GemmProblem<__half> problem =
        gemm_problem<__half>(GemmShape{.m = 128, .n = 64, .k = 64, .alpha = 1.0f}, /*small_integers=*/true, 900);
    if (hidden_in_index_order) {
      EXPECT_TRUE((run_gemm<__half, kRacy>(problem, std::nullopt))) << "in index order the warps run in lockstep";
    }
    int seeds_that_caught_it = 0;
    for (uint64_t schedule = 1; schedule <= 8; ++schedule) {
      EXPECT_TRUE(run_gemm<__half>(problem, schedule)) << "with every barrier, schedule seed " << schedule;
      seeds_that_caught_it += !run_gemm<__half, kRacy>(problem, schedule);
    }
    EXPECT_GE(seeds_that_caught_it, 4);
  }

  cudaStream_t stream_ = nullptr;
  std::vector<void*> allocations_;
};

// ---- Correctness -------------------------------------------------------------------------------

TEST_F(Wmma, HalfTileIsExactWithSmallIntegersInEveryLayout) { check_all_layouts<__half, float, float>(true, 100); }

TEST_F(Wmma, Bf16TileIsExactWithSmallIntegersInEveryLayout) {
  check_all_layouts<__nv_bfloat16, float, float>(true, 200);
}

TEST_F(Wmma, HalfTileMatchesDoubleReferenceInEveryLayout) { check_all_layouts<__half, float, float>(false, 300); }

TEST_F(Wmma, Bf16TileMatchesDoubleReferenceInEveryLayout) {
  check_all_layouts<__nv_bfloat16, float, float>(false, 400);
}

TEST_F(Wmma, HalfAccumulators) {
  check_all_layouts<__half, __half, __half>(true, 500);
  // Mixed accumulators, as CUDA's overloads allow for __half inputs.
  const TilePlacement tile{};
  check_tile<__half, wmma::row_major, wmma::col_major, float, __half>(tile, tile, tile, tile, false, 510);
  check_tile<__half, wmma::col_major, wmma::row_major, __half, float>(tile, tile, tile, tile, false, 520);
}

// ldm larger than the tile: every operand is a 16x16 tile inside a bigger matrix, at an
// offset that keeps it 32-byte aligned.
TEST_F(Wmma, TilesInsideLargerMatrices) {
  const TilePlacement a{.ld = 40, .offset = 2 * 40 + 16};
  const TilePlacement b{.ld = 24, .offset = 2 * 24 + 16};
  const TilePlacement c{.ld = 20, .col_major = true, .offset = 20 + 4};
  const TilePlacement d{.ld = 36, .offset = 36 + 4 * 3};
  check_tile<__half, wmma::row_major, wmma::col_major, float, float>(a, b, c, d, true, 600);
  check_tile<__nv_bfloat16, wmma::col_major, wmma::row_major, float, float>(a, b, c, d, false, 610);
  const TilePlacement d_col{.ld = 48, .col_major = true, .offset = 48 * 2};
  check_tile<__half, wmma::col_major, wmma::col_major, float, float>(a, b, c, d_col, false, 620);
}

TEST_F(Wmma, FloatToTf32RoundsToNearestWithTiesAway) {
  const float one = 1.0f;
  const std::vector<float> x = {one + 0x1p-11f,             // a tie: away from zero
                                -(one + 0x1p-11f),          // the same, negative
                                one + 0x1p-12f,             // below half an ulp: down
                                one + 0x1p-11f + 0x1p-20f,  // above half an ulp: up
                                0x1.ffffffp0f,              // rounds up into the next binade
                                3.0f,                       // exact
                                std::numeric_limits<float>::infinity()};
  float* y = device_alloc<float>(x.size());
  strata::launch(strata::testing::wmma_kernels::float_to_tf32_kernel, config(1, 32, "float_to_tf32"), device_copy(x),
                 y, static_cast<int>(x.size()));
  const std::vector<float> expected = {one + 0x1p-10f, -(one + 0x1p-10f), one, one + 0x1p-10f, 2.0f, 3.0f,
                                       std::numeric_limits<float>::infinity()};
  EXPECT_TRUE(strata::testing::all_equal(host_copy(y, x.size()), expected));
  for (const float value : x) {
    if (std::isfinite(value)) {
      EXPECT_EQ(wmma::__float_to_tf32(value), tf32_reference(value)) << value;
    }
  }
}

TEST_F(Wmma, Tf32TileMatchesDoubleReference) {
  const TilePlacement a{.rows = 16, .cols = 8, .ld = 12}, b{.rows = 8, .cols = 16, .ld = 20}, c{}, d{};
  for (const bool small_integers : {true, false}) {
    std::vector<double> a_tile, b_tile, c_tile;
    std::vector<float> a_host = tile_buffer<float>(a, 700, small_integers, a_tile);
    std::vector<float> b_host = tile_buffer<float>(b, 701, small_integers, b_tile);
    const std::vector<float> c_host = tile_buffer<float>(c, 702, small_integers, c_tile);
    // The kernel rounds the inputs to tf32 (ties away); so does the reference.
    for (double& value : a_tile) value = tf32_reference(static_cast<float>(value));
    for (double& value : b_tile) value = tf32_reference(static_cast<float>(value));
    const Reference reference = reference_product(a_tile, b_tile, c_tile, 16, 16, 8);
    float* d_device = device_alloc<float>(d.buffer_size());
    const TileArguments arguments{.lda = a.ld, .ldb = b.ld, .ldc = c.ld, .ldd = d.ld};
    strata::launch(strata::testing::wmma_kernels::wmma_tf32_tile_kernel, config(1, 32, "wmma_tf32_tile"),
                   device_copy(a_host), device_copy(b_host), device_copy(c_host), d_device, arguments);
    const std::vector<float> d_host = host_copy(d_device, d.buffer_size());
    const std::vector<float> tile(d_host.begin(), d_host.begin() + 256);
    const Tolerance tolerance{.abs_tol = small_integers ? 0.0 : reference.error_bound};
    EXPECT_TRUE(strata::testing::all_close(tile, reference.d, tolerance)) << "small integers " << small_integers;
  }
}

TEST_F(Wmma, TiledGemmWithSeveralWarpsAndRaggedEdges) {
  check_gemm<__half>(GemmShape{.m = 100, .n = 70, .k = 56, .alpha = 0.5f}, /*small_integers=*/true, 800);
  check_gemm<__half>(GemmShape{.m = 100, .n = 70, .k = 56, .alpha = 0.5f}, false, 810);
  check_gemm<__nv_bfloat16>(GemmShape{.m = 64, .n = 128, .k = 48, .alpha = 2.0f}, false, 820);
  check_gemm<__nv_bfloat16>(GemmShape{.m = 17, .n = 5, .k = 3, .alpha = 1.0f}, false, 830);
}

// ---- Races between warps ---------------------------------------------------------------------

// The classic race of a tiled GEMM: without the second barrier a warp that has loaded its
// fragments stages the next K step's tiles while other warps still load this step's. Every
// warp passes the same wmma calls between the barriers, so running the warps in lockstep (as
// index order does) hides it; the seeded schedules let one warp run ahead, or hold one back.
TEST_F(Wmma, MissingBarrierBeforeTheTilesAreOverwrittenIsCaught) {
  check_race_is_caught<GemmBarriers::missing_before_overwrite>(/*hidden_in_index_order=*/true);
}

// Without the first barrier a warp may load fragments of tiles that other warps have not
// staged yet (index order already shows this one: warp 0 loads before warp 1 stages).
TEST_F(Wmma, MissingBarrierAfterStagingIsCaught) {
  check_race_is_caught<GemmBarriers::missing_after_staging>(/*hidden_in_index_order=*/false);
}

// ---- Misuse --------------------------------------------------------------------------------------

TEST_F(Wmma, LanesPassingDifferentPointersAreReported) {
  __half* a = device_alloc<__half>(16 * 32);
  const std::string detail =
      kernel_failure([&] { strata::launch(divergent_pointer_kernel, config(1, 32, "divergent_pointer"), a); });
  EXPECT_NE(detail.find("kernel divergent_pointer block (0, 0, 0), warp 0: wmma::load_matrix_sync at test_wmma.cu:"),
            std::string::npos)
      << detail;
  EXPECT_NE(detail.find("lanes pass different pointers: lane 0 passes"), std::string::npos) << detail;
  EXPECT_NE(detail.find("lane 1 passes"), std::string::npos) << detail;
}

TEST_F(Wmma, MisalignedPointerIsReported) {
  __half* a = device_alloc<__half>(16 * 16 + 8);
  const std::string detail = kernel_failure([&] {
    strata::launch(load_kernel, config(1, 32, "misaligned"), static_cast<const __half*>(a + 8), 16u);
  });
  EXPECT_NE(detail.find("is not 32-byte aligned; CUDA requires 256-bit alignment"), std::string::npos) << detail;
}

TEST_F(Wmma, LdmThatIsNotAMultipleOf16BytesIsReported) {
  __half* a = device_alloc<__half>(16 * 16);
  const std::string detail = kernel_failure(
      [&] { strata::launch(load_kernel, config(1, 32, "bad_ldm"), static_cast<const __half*>(a), 12u); });
  EXPECT_NE(detail.find("ldm 12 is not a multiple of 8 elements"), std::string::npos) << detail;
}

TEST_F(Wmma, StoreWithOverlappingRowsIsReported) {
  float* d = device_alloc<float>(16 * 16);
  const std::string detail =
      kernel_failure([&] { strata::launch(store_kernel, config(1, 32, "overlapping_store"), d, 8u); });
  EXPECT_NE(detail.find("wmma::store_matrix_sync"), std::string::npos) << detail;
  EXPECT_NE(detail.find("ldm 8 is less than the 16 columns"), std::string::npos) << detail;
}

TEST_F(Wmma, PartialWarpIsReported) {
  // Lanes 24-31 return before the mma.
  std::string detail = kernel_failure([&] { strata::launch(partial_mma_kernel, config(1, 32, "early_return"), 24u); });
  EXPECT_NE(detail.find("wmma::mma_sync"), std::string::npos) << detail;
  EXPECT_NE(detail.find("lanes 24-31 did not"), std::string::npos) << detail;
  // A block of 48 threads: its second warp has 16 lanes.
  detail = kernel_failure([&] { strata::launch(partial_mma_kernel, config(1, 48, "partial_block"), 48u); });
  EXPECT_NE(detail.find("warp 1: wmma::mma_sync"), std::string::npos) << detail;
  EXPECT_NE(detail.find("lanes 16-31 did not"), std::string::npos) << detail;
}

TEST_F(Wmma, CallsFromDivergentBranchesAreReported) {
  __half* a = device_alloc<__half>(16 * 16);
  const std::string detail = kernel_failure(
      [&] { strata::launch(divergent_call_site_kernel, config(1, 32, "divergent_call_site"), a); });
  EXPECT_NE(detail.find("call wmma::load_matrix_sync at different places"), std::string::npos) << detail;
}

TEST_F(Wmma, NonUniformElementwiseOperationIsReported) {
  std::vector<__half> ones(256, __float2half(1.0f));
  const std::string detail = kernel_failure([&] {
    strata::launch(non_uniform_elementwise_kernel, config(1, 32, "non_uniform"),
                   static_cast<const __half*>(device_copy(ones)));
  });
  EXPECT_NE(detail.find("did not treat every element alike"), std::string::npos) << detail;
}

TEST_F(Wmma, DeadlockNamesTheWmmaCall) {
  const std::string detail =
      kernel_failure([&] { strata::launch(wmma_deadlock_kernel, config(1, 32, "wmma_deadlock")); });
  EXPECT_NE(detail.find("threads 16-31 wait at wmma::mma_sync"), std::string::npos) << detail;
}

}  // namespace
