// Tests of the simulator's execution model, each through a small kernel launched with the
// project's launch helper: barriers, shared memory, warp primitives, atomics, and the
// failures a GPU would show (deadlocks, bad masks, launch limits, missing barriers).
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "core/launch.cuh"
#include "core/sim/runtime.h"
#include "strata/core/errors.h"
#include "tests/sim/sim_kernel_test.h"

namespace {

// ---- Kernels -----------------------------------------------------------------------------

// C (M, N) = A (M, K) * B (K, N) with TILE x TILE shared-memory tiles: two barriers per tile
// (kProtectTiles = false leaves out the one before the next tile is staged: the bug to catch).
template <int TILE, bool kProtectTiles = true>
__global__ void tiled_matmul_kernel(const int* a, const int* b, int* c, int m, int n, int k) {
  __shared__ int a_tile[TILE][TILE];
  __shared__ int b_tile[TILE][TILE];
  const int tx = static_cast<int>(threadIdx.x);
  const int ty = static_cast<int>(threadIdx.y);
  const int row = static_cast<int>(blockIdx.y) * TILE + ty;
  const int col = static_cast<int>(blockIdx.x) * TILE + tx;
  int sum = 0;
  for (int t = 0; t < k; t += TILE) {
    a_tile[ty][tx] = row < m && t + tx < k ? a[row * k + t + tx] : 0;
    b_tile[ty][tx] = col < n && t + ty < k ? b[(t + ty) * n + col] : 0;
    __syncthreads();
    for (int i = 0; i < TILE; ++i) sum += a_tile[ty][i] * b_tile[i][tx];
    if constexpr (kProtectTiles) __syncthreads();
  }
  if (row < m && col < n) c[row * n + col] = sum;
}

// y (rows) = A (rows, cols) * x (cols), 128 threads a block, each of its 4 warps computing 2
// rows: x is staged in shared memory 128 elements at a time, and each row's lane-strided
// partial products are summed with __shfl_xor_sync. with_second_barrier = false is the bug
// to catch: a warp that is done with a chunk stages the next one while other warps may still
// read this one. Between the barriers every warp passes the same ten shuffles, so warps that
// advance in lockstep never show it.
__global__ void staged_matvec_kernel(const int* a, const int* x, int* y, int rows, int cols,
                                     bool with_second_barrier) {
  constexpr int kChunk = 128;
  constexpr int kRowsPerWarp = 2;
  __shared__ int x_chunk[kChunk];
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int first_row = (static_cast<int>(blockIdx.x) * 4 + warp) * kRowsPerWarp;
  int sums[kRowsPerWarp] = {0, 0};
  for (int c0 = 0; c0 < cols; c0 += kChunk) {
    const int col = c0 + static_cast<int>(threadIdx.x);
    x_chunk[threadIdx.x] = col < cols ? x[col] : 0;
    __syncthreads();
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int row = first_row + r;
      int partial = 0;
      for (int i = lane; i < kChunk && c0 + i < cols && row < rows; i += 32) {
        partial += a[row * cols + c0 + i] * x_chunk[i];
      }
      for (int offset = 16; offset > 0; offset /= 2) partial += __shfl_xor_sync(0xffffffffu, partial, offset);
      sums[r] += partial;
    }
    if (with_second_barrier) __syncthreads();
  }
  for (int r = 0; r < kRowsPerWarp; ++r) {
    if (lane == 0 && first_row + r < rows) y[first_row + r] = sums[r];
  }
}

// Per-warp sums with __shfl_down_sync and with __shfl_xor_sync, one result per warp each.
__global__ void warp_sum_kernel(const int* x, int* down_sums, int* xor_sums) {
  const int id = blockIdx.x * blockDim.x + threadIdx.x;
  int down = x[id];
  int butterfly = x[id];
  for (int offset = 16; offset > 0; offset /= 2) {
    down += __shfl_down_sync(0xffffffffu, down, offset);
    butterfly += __shfl_xor_sync(0xffffffffu, butterfly, offset);
  }
  if (threadIdx.x % 32 == 0) down_sums[id / 32] = down;
  xor_sums[id] = butterfly;  // every lane holds the total
}

// Inclusive scan within segments of 8 lanes with __shfl_up_sync, and a broadcast of each
// segment's lane 3 with __shfl_sync.
__global__ void segment_scan_kernel(const int* x, int* scan, int* broadcast) {
  const int id = threadIdx.x;
  int value = x[id];
  for (int delta = 1; delta < 8; delta *= 2) {
    const int other = __shfl_up_sync(0xffffffffu, value, delta, 8);
    if (id % 8 >= delta) value += other;
  }
  scan[id] = value;
  broadcast[id] = __shfl_sync(0xffffffffu, x[id], 3, 8);
}

__global__ void vote_kernel(const int* x, unsigned* ballots, int* any, int* all, unsigned* active) {
  const int id = threadIdx.x;
  const unsigned ballot = __ballot_sync(0xffffffffu, x[id] > 0);
  const int any_positive = __any_sync(0xffffffffu, x[id] > 0);
  const int all_positive = __all_sync(0xffffffffu, x[id] > 0);
  if (id % 32 == 0) {
    ballots[id / 32] = ballot;
    any[id / 32] = any_positive;
    all[id / 32] = all_positive;
    active[id / 32] = __activemask();
  }
}

__global__ void atomics_kernel(int* counter, float* float_sum, double* double_sum, int* maximum, int* minimum,
                               unsigned* wrapping, unsigned long long* big) {
  const int id = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(counter, 1);
  atomicAdd(float_sum, 1.0f);  // small integers: exact in any order
  atomicAdd(double_sum, 0.5);
  atomicMax(maximum, id);
  atomicMin(minimum, -id);
  atomicInc(wrapping, 9u);
  atomicAdd(big, 1ull << 33);
}

// Float maximum through atomicCAS, the way kernels build atomics CUDA lacks.
__global__ void cas_float_max_kernel(const float* x, float* result) {
  const float value = x[blockIdx.x * blockDim.x + threadIdx.x];
  int* address = reinterpret_cast<int*>(result);
  int old = *address;
  while (__int_as_float(old) < value) {
    const int assumed = old;
    old = atomicCAS(address, assumed, __float_as_int(value));
    if (old == assumed) break;
  }
}

// Reverses each block's slice through dynamic shared memory.
__global__ void reverse_kernel(const float* x, float* y) {
  STRATA_DYNAMIC_SHARED(float, buffer);
  const int base = blockIdx.x * blockDim.x;
  buffer[threadIdx.x] = x[base + threadIdx.x];
  __syncthreads();
  y[base + threadIdx.x] = buffer[blockDim.x - 1 - threadIdx.x];
}

// y[i] = x[i - 1] through shared memory; with_barrier = false is the bug to catch.
__global__ void shift_kernel(const int* x, int* y, bool with_barrier) {
  __shared__ int buffer[256];
  buffer[threadIdx.x] = x[threadIdx.x];
  if (with_barrier) __syncthreads();
  y[threadIdx.x] = threadIdx.x == 0 ? 0 : buffer[threadIdx.x - 1];
}

__global__ void coordinates_kernel(int* out) {
  const int block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  const int thread = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  const int id = block * blockDim.x * blockDim.y * blockDim.z + thread;
  out[4 * id + 0] = threadIdx.x + 10 * threadIdx.y + 100 * threadIdx.z;
  out[4 * id + 1] = blockIdx.x + 10 * blockIdx.y + 100 * blockIdx.z;
  out[4 * id + 2] = blockDim.x + 10 * blockDim.y + 100 * blockDim.z;
  out[4 * id + 3] = gridDim.x + 10 * gridDim.y + 100 * gridDim.z;
}

// Half of the block returns early; the other half still passes its barriers.
__global__ void early_exit_kernel(int* out) {
  __shared__ int value;
  if (threadIdx.x >= 16) return;
  if (threadIdx.x == 0) value = 42;
  __syncthreads();
  out[threadIdx.x] = value;
  __syncthreads();
}

__global__ void count_kernel(int* out) {
  out[0] = __syncthreads_count(threadIdx.x % 3 == 0);
  out[1] = __syncthreads_and(threadIdx.x < 1000);
  out[2] = __syncthreads_or(threadIdx.x == 5);
}

// Lanes 0-15 wait at __syncthreads while lanes 16-31 wait at __syncwarp for them: a hang
// on a GPU.
__global__ void deadlock_kernel(int* out) {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    __syncwarp();
  }
  out[threadIdx.x] = 1;
}

__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

__global__ void bad_mask_kernel(int* out) { out[threadIdx.x] = __shfl_sync(0x0000ffffu, 1, 0); }

__global__ void trap_kernel(int* out) {
  if (threadIdx.x == 7) __trap();
  out[threadIdx.x] = 1;
}

__global__ void out_of_bounds_kernel(float* x, int n) { x[n + threadIdx.x] = 1.0f; }

// ---- Helpers -------------------------------------------------------------------------------

using SimtKernels = strata::testing::SimKernelTest;

std::vector<int> iota_values(int count, int first = 0) {
  std::vector<int> values(static_cast<size_t>(count));
  std::iota(values.begin(), values.end(), first);
  return values;
}

// ---- Tests -------------------------------------------------------------------------------

TEST_F(SimtKernels, TiledMatmulIsExact) {
  const int m = 37, n = 29, k = 45;  // not multiples of the tile
  std::vector<int> a(m * k), b(k * n);
  for (int i = 0; i < m * k; ++i) a[i] = (i * 7) % 11 - 5;
  for (int i = 0; i < k * n; ++i) b[i] = (i * 5) % 13 - 6;
  std::vector<int> expected(m * n, 0);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < n; ++c)
      for (int i = 0; i < k; ++i) expected[r * n + c] += a[r * k + i] * b[i * n + c];

  int* c_device = device_alloc<int>(m * n);
  for (const std::optional<uint64_t> seed : {std::optional<uint64_t>{}, std::optional<uint64_t>{1}, std::optional<uint64_t>{2}}) {
    strata::sim::set_schedule_seed(seed);
    strata::launch(tiled_matmul_kernel<8>, config(dim3((n + 7) / 8, (m + 7) / 8), dim3(8, 8), "tiled_matmul"),
                   device_copy(a), device_copy(b), c_device, m, n, k);
    EXPECT_EQ(host_copy(c_device, m * n), expected) << "schedule seed " << seed.value_or(0);
  }
}

TEST_F(SimtKernels, ShuffleDownAndXorReduceWarps) {
  const int warps = 6;
  const std::vector<int> x = iota_values(32 * warps, -50);
  int* down = device_alloc<int>(warps);
  int* butterfly = device_alloc<int>(32 * warps);
  strata::launch(warp_sum_kernel, config(2, 96, "warp_sum"), device_copy(x), down, butterfly);
  const std::vector<int> down_host = host_copy(down, warps);
  const std::vector<int> butterfly_host = host_copy(butterfly, 32 * warps);
  for (int w = 0; w < warps; ++w) {
    const int expected = std::accumulate(x.begin() + 32 * w, x.begin() + 32 * (w + 1), 0);
    EXPECT_EQ(down_host[w], expected) << "warp " << w;
    for (int lane = 0; lane < 32; ++lane) EXPECT_EQ(butterfly_host[32 * w + lane], expected) << "warp " << w;
  }
}

TEST_F(SimtKernels, ShuffleUpScansAndIndexBroadcastsWithinSegments) {
  const std::vector<int> x = iota_values(64, 1);
  int* scan = device_alloc<int>(64);
  int* broadcast = device_alloc<int>(64);
  strata::launch(segment_scan_kernel, config(1, 64, "segment_scan"), device_copy(x), scan, broadcast);
  const std::vector<int> scan_host = host_copy(scan, 64);
  const std::vector<int> broadcast_host = host_copy(broadcast, 64);
  for (int i = 0; i < 64; ++i) {
    const int segment = i / 8 * 8;
    int expected = 0;
    for (int j = segment; j <= i; ++j) expected += x[j];
    EXPECT_EQ(scan_host[i], expected) << i;
    EXPECT_EQ(broadcast_host[i], x[segment + 3]) << i;
  }
}

TEST_F(SimtKernels, VotesAndActiveMaskInAPartialWarp) {
  // 48 threads: the second warp has 16 lanes; its missing lanes count as exited.
  std::vector<int> x(48, 1);
  x[3] = -1;
  unsigned* ballots = device_alloc<unsigned>(2);
  int* any = device_alloc<int>(2);
  int* all = device_alloc<int>(2);
  unsigned* active = device_alloc<unsigned>(2);
  strata::launch(vote_kernel, config(1, 48, "vote"), device_copy(x), ballots, any, all, active);
  EXPECT_EQ(host_copy(ballots, 2), (std::vector<unsigned>{0xfffffff7u, 0x0000ffffu}));
  EXPECT_EQ(host_copy(any, 2), (std::vector<int>{1, 1}));
  EXPECT_EQ(host_copy(all, 2), (std::vector<int>{0, 1}));
  EXPECT_EQ(host_copy(active, 2), (std::vector<unsigned>{0xffffffffu, 0x0000ffffu}));
}

TEST_F(SimtKernels, AtomicsUnderContentionAreExact) {
  const int blocks = 64, threads = 128, total = blocks * threads;
  int* counter = device_copy(std::vector<int>{0});
  float* float_sum = device_copy(std::vector<float>{0.0f});
  double* double_sum = device_copy(std::vector<double>{0.0});
  int* maximum = device_copy(std::vector<int>{-1});
  int* minimum = device_copy(std::vector<int>{1});
  unsigned* wrapping = device_copy(std::vector<unsigned>{0});
  unsigned long long* big = device_copy(std::vector<unsigned long long>{0});
  strata::launch(atomics_kernel, config(blocks, threads, "atomics"), counter, float_sum, double_sum, maximum, minimum,
                 wrapping, big);
  EXPECT_EQ(host_copy(counter, 1)[0], total);
  EXPECT_EQ(host_copy(float_sum, 1)[0], static_cast<float>(total));
  EXPECT_EQ(host_copy(double_sum, 1)[0], total * 0.5);
  EXPECT_EQ(host_copy(maximum, 1)[0], total - 1);
  EXPECT_EQ(host_copy(minimum, 1)[0], -(total - 1));
  EXPECT_EQ(host_copy(wrapping, 1)[0], static_cast<unsigned>(total % 10));
  EXPECT_EQ(host_copy(big, 1)[0], static_cast<unsigned long long>(total) << 33);
}

TEST_F(SimtKernels, AtomicCasBuildsAFloatMaximum) {
  std::vector<float> x(4096);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 7919) % 4093) * 0.25f;
  float* result = device_copy(std::vector<float>{-1.0f});
  strata::launch(cas_float_max_kernel, config(16, 256, "cas_float_max"), device_copy(x), result);
  EXPECT_EQ(host_copy(result, 1)[0], *std::max_element(x.begin(), x.end()));
}

TEST_F(SimtKernels, DynamicSharedMemoryHoldsTheRequestedBytes) {
  const int blocks = 3, threads = 200;
  std::vector<float> x(blocks * threads);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i);
  float* y = device_alloc<float>(x.size());
  strata::launch(reverse_kernel, config(blocks, threads, "reverse", threads * sizeof(float)), device_copy(x), y);
  const std::vector<float> y_host = host_copy(y, x.size());
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < threads; ++t) EXPECT_EQ(y_host[b * threads + t], x[b * threads + threads - 1 - t]);
}

TEST_F(SimtKernels, ThreeDimensionalCoordinates) {
  const dim3 grid(3, 2, 2), block(4, 3, 2);
  const int total = 12 * 24;
  int* out = device_alloc<int>(4 * total);
  strata::launch(coordinates_kernel, config(grid, block, "coordinates"), out);
  const std::vector<int> host = host_copy(out, 4 * total);
  int id = 0;
  for (unsigned bz = 0; bz < 2; ++bz)
    for (unsigned by = 0; by < 2; ++by)
      for (unsigned bx = 0; bx < 3; ++bx)
        for (unsigned tz = 0; tz < 2; ++tz)
          for (unsigned ty = 0; ty < 3; ++ty)
            for (unsigned tx = 0; tx < 4; ++tx, ++id) {
              ASSERT_EQ(host[4 * id + 0], static_cast<int>(tx + 10 * ty + 100 * tz)) << id;
              ASSERT_EQ(host[4 * id + 1], static_cast<int>(bx + 10 * by + 100 * bz)) << id;
              ASSERT_EQ(host[4 * id + 2], 4 + 30 + 200);
              ASSERT_EQ(host[4 * id + 3], 3 + 20 + 200);
            }
}

TEST_F(SimtKernels, ExitedThreadsReleaseBarriers) {
  int* out = device_alloc<int>(16);
  strata::launch(early_exit_kernel, config(1, 64, "early_exit"), out);
  EXPECT_EQ(host_copy(out, 16), std::vector<int>(16, 42));
}

TEST_F(SimtKernels, BarrierCountAndOr) {
  int* out = device_alloc<int>(3);
  strata::launch(count_kernel, config(1, 100, "count"), out);
  EXPECT_EQ(host_copy(out, 3), (std::vector<int>{34, 1, 1}));
}

TEST_F(SimtKernels, RandomisedOrderCatchesAMissingBarrier) {
  int* y = device_alloc<int>(256);
  // Each launch gets new values: __shared__ memory keeps the previous block's contents,
  // and a stale copy of the same values would hide the race.
  auto run = [&](int first_value, bool with_barrier) {
    strata::launch(shift_kernel, config(1, 256, "shift"), device_copy(iota_values(256, first_value)), y, with_barrier);
    std::vector<int> expected = iota_values(256, first_value - 1);
    expected[0] = 0;
    return host_copy(y, 256) == expected;
  };
  // In index order the bug hides: each thread's neighbour has already written.
  EXPECT_TRUE(run(1, false));

  int seeds_that_caught_it = 0;
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    strata::sim::set_schedule_seed(seed);
    EXPECT_TRUE(run(1000 * static_cast<int>(seed), true)) << "with the barrier, seed " << seed;
    seeds_that_caught_it += !run(1000 * static_cast<int>(seed) + 500, false);
  }
  EXPECT_EQ(seeds_that_caught_it, 5);
}

// A missing barrier between warps that pass warp collectives between two __syncthreads: in
// index order (and in any order that keeps the warps in lockstep) the bug hides; the seeded
// schedules let one warp run ahead to the next barrier, or hold one back, and show it.
TEST_F(SimtKernels, RandomisedWarpOrderCatchesAMissingBarrierBetweenShuffles) {
  const int rows = 24, cols = 300;  // three blocks, three chunks (the last one partial)
  std::vector<int> a(rows * cols), x(cols);
  for (int i = 0; i < rows * cols; ++i) a[i] = (i * 7) % 11 - 5;
  for (int i = 0; i < cols; ++i) x[i] = (i * 5) % 13 - 6;
  std::vector<int> expected(rows, 0);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) expected[r] += a[r * cols + c] * x[c];
  const int* a_device = device_copy(a);
  const int* x_device = device_copy(x);
  int* y = device_alloc<int>(rows);
  auto run = [&](bool with_second_barrier) {
    strata::launch(staged_matvec_kernel, config(rows / 8, 128, "staged_matvec"), a_device, x_device, y, rows, cols,
                   with_second_barrier);
    return host_copy(y, rows) == expected;
  };
  EXPECT_TRUE(run(false)) << "in index order the warps run in lockstep";

  int seeds_that_caught_it = 0;
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    strata::sim::set_schedule_seed(seed);
    EXPECT_TRUE(run(true)) << "with both barriers, seed " << seed;
    seeds_that_caught_it += !run(false);
  }
  EXPECT_GE(seeds_that_caught_it, 4);
}

// The same bug in a tiled kernel without warp collectives, where each thread runs from one
// barrier to the next in one go: a shuffled thread order already shows it, and so does
// every seeded schedule.
TEST_F(SimtKernels, RandomisedOrderCatchesAMissingBarrierBeforeTheNextTile) {
  const int m = 32, n = 32, k = 64;
  std::vector<int> a(m * k), b(k * n);
  for (int i = 0; i < m * k; ++i) a[i] = (i * 7) % 11 - 5;
  for (int i = 0; i < k * n; ++i) b[i] = (i * 5) % 13 - 6;
  std::vector<int> expected(m * n, 0);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < n; ++c)
      for (int i = 0; i < k; ++i) expected[r * n + c] += a[r * k + i] * b[i * n + c];
  const int* a_device = device_copy(a);
  const int* b_device = device_copy(b);
  int* c_device = device_alloc<int>(m * n);
  auto run = [&](auto kernel) {
    strata::launch(kernel, config(dim3(n / 16, m / 16), dim3(16, 16), "tiled_matmul"), a_device, b_device, c_device,
                   m, n, k);
    return host_copy(c_device, m * n) == expected;
  };
  int seeds_that_caught_it = 0;
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    strata::sim::set_schedule_seed(seed);
    EXPECT_TRUE(run(tiled_matmul_kernel<16>)) << "with both barriers, seed " << seed;
    seeds_that_caught_it += !run(tiled_matmul_kernel<16, false>);
  }
  EXPECT_EQ(seeds_that_caught_it, 8);
}

TEST_F(SimtKernels, DeadlockIsReportedWithTheKernelName) {
  int* out = device_alloc<int>(32);
  expect_kernel_failure([&] { strata::launch(deadlock_kernel, config(1, 32, "deadlock_example"), out); });
  const std::string detail = strata::sim::failure_detail();
  EXPECT_NE(detail.find("deadlock"), std::string::npos) << detail;
  EXPECT_NE(detail.find("deadlock_example"), std::string::npos) << detail;
  EXPECT_NE(detail.find("threads 0-15 wait at __syncthreads"), std::string::npos) << detail;
  EXPECT_NE(detail.find("threads 16-31 wait at __syncwarp"), std::string::npos) << detail;
  strata::sim::clear_device_error();
  EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
}

TEST_F(SimtKernels, BarriersInDivergentCodeAreReported) {
  int* out = device_alloc<int>(32);
  expect_kernel_failure([&] { strata::launch(divergent_barrier_kernel, config(1, 32, "divergent"), out); });
  EXPECT_NE(strata::sim::failure_detail().find("different barriers"), std::string::npos) << strata::sim::failure_detail();
}

TEST_F(SimtKernels, ShuffleMaskWithoutTheCallingLaneIsReported) {
  int* out = device_alloc<int>(32);
  expect_kernel_failure([&] { strata::launch(bad_mask_kernel, config(1, 32, "bad_mask"), out); });
  EXPECT_NE(strata::sim::failure_detail().find("does not name the calling lane"), std::string::npos)
      << strata::sim::failure_detail();
}

TEST_F(SimtKernels, TrapFailsTheKernel) {
  int* out = device_alloc<int>(32);
  expect_kernel_failure([&] { strata::launch(trap_kernel, config(4, 32, "trap"), out); });
  EXPECT_NE(strata::sim::failure_detail().find("__trap() called"), std::string::npos) << strata::sim::failure_detail();
  strata::sim::clear_device_error();
  // The device works again: a later kernel runs normally.
  strata::launch(early_exit_kernel, config(1, 32, "early_exit"), out);
  EXPECT_EQ(host_copy(out, 16), std::vector<int>(16, 42));
}

TEST_F(SimtKernels, LaunchLimitsFailWithCudaErrors) {
  int* out = device_alloc<int>(2048);
  try {
    strata::launch(early_exit_kernel, config(1, 1025, "too_many_threads"), out);
    FAIL() << "a block of 1025 threads launched";
  } catch (const strata::CudaError& error) {
    EXPECT_EQ(error.code(), cudaErrorInvalidConfiguration);
    EXPECT_NE(std::string(error.what()).find("too_many_threads"), std::string::npos) << error.what();
  }
  EXPECT_THROW(strata::launch(early_exit_kernel, config(1, dim3(1, 1, 65), "z_too_large"), out), strata::CudaError);
  EXPECT_THROW(strata::launch(reverse_kernel, config(1, 32, "shared_too_large", 228 * 1024), static_cast<const float*>(nullptr),
                              static_cast<float*>(nullptr)),
               strata::CudaError);
  // The failed launches left no error behind.
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST_F(SimtKernels, NullStreamIsRejected) {
  int* out = device_alloc<int>(32);
  EXPECT_THROW(strata::launch(early_exit_kernel, strata::LaunchConfig{.grid = 1, .block = 32, .name = "no_stream"}, out),
               strata::InvalidArgument);
}

#if defined(__SANITIZE_ADDRESS__)
TEST_F(SimtKernels, AddressSanitizerCatchesAnOutOfBoundsKernel) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        float* x = nullptr;
        cudaMalloc(reinterpret_cast<void**>(&x), 64 * sizeof(float));
        cudaStream_t stream = nullptr;
        cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
        strata::launch(out_of_bounds_kernel, strata::LaunchConfig{.grid = 1, .block = 32, .stream = stream, .name = "oob"},
                       x, 64);
        cudaStreamSynchronize(stream);
      },
      "heap-buffer-overflow");
}
#else
TEST_F(SimtKernels, AddressSanitizerCatchesAnOutOfBoundsKernel) {
  (void)out_of_bounds_kernel;
  GTEST_SKIP() << "needs the AddressSanitizer build (-DSTRATA_SANITIZE=ON)";
}
#endif

}  // namespace
