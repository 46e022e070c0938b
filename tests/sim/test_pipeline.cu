// Tests of the simulator's asynchronous copies (cp.async through CUDA's pipeline primitives,
// core/sim/pipeline.h): a copy lands at the wait that covers its group and not before, groups
// complete oldest first, uncommitted copies wait for their commit, zero fill, and the misuse
// CUDA asserts against (sizes, zfill, alignment; a source outside device memory or past its
// allocation, a destination outside shared memory) fails the kernel with a diagnosis. The kernels
// read stages before waiting on purpose, which only the simulator makes deterministic.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "core/launch.cuh"
#include "core/pipeline.cuh"
#include "core/sim/runtime.h"
#include "strata/core/errors.h"
#include "tests/sim/sim_kernel_test.h"

namespace {

constexpr int kThreads = 32;
constexpr int kInts = 4;  // one 16-byte copy per thread and stage

// What thread t saw of its first element of stage s, at each point: before any wait, after
// wait_prior(1) and after wait_prior(0). seen has 3 * 2 * kThreads elements: [point][stage][t].
__global__ void two_groups_kernel(const int* source, int* seen) {
  __shared__ __align__(16) int stages[2][kThreads * kInts];
  const int t = static_cast<int>(threadIdx.x);
  for (int s = 0; s < 2; ++s) {
    for (int i = 0; i < kInts; ++i) stages[s][t * kInts + i] = -1;
  }
  for (int s = 0; s < 2; ++s) {
    strata::async_copy<16>(&stages[s][t * kInts], source + (s * kThreads + t) * kInts, true);
    __pipeline_commit();
  }
  const auto record = [&](int point) {
    for (int s = 0; s < 2; ++s) seen[(point * 2 + s) * kThreads + t] = stages[s][t * kInts];
  };
  record(0);
  __pipeline_wait_prior(1);
  record(1);
  __pipeline_wait_prior(0);
  record(2);
}

// A copy issued after the last commit is not covered by a wait; a commit makes it so.
// seen: [before commit, after commit] of thread t's first element.
__global__ void uncommitted_kernel(const int* source, int* seen) {
  __shared__ __align__(16) int stage[kThreads * kInts];
  const int t = static_cast<int>(threadIdx.x);
  stage[t * kInts] = -1;
  strata::async_copy<16>(&stage[t * kInts], source + t * kInts, true);
  __pipeline_wait_prior(0);
  seen[t] = stage[t * kInts];
  __pipeline_commit();
  __pipeline_wait_prior(0);
  seen[kThreads + t] = stage[t * kInts];
}

// Thread t's 16 bytes: copied whole (t % 3 == 0), zeros instead (t % 3 == 1), or the first 8 of
// 16 bytes copied and the rest zero-filled (t % 3 == 2); out gets the stage after the wait.
__global__ void zero_fill_kernel(const int* source, int* out) {
  __shared__ __align__(16) int stage[kThreads * kInts];
  const int t = static_cast<int>(threadIdx.x);
  for (int i = 0; i < kInts; ++i) stage[t * kInts + i] = -1;
  const int* from = source + t * kInts;
  if (t % 3 == 2) {
    __pipeline_memcpy_async(&stage[t * kInts], from, 16, 8);
  } else {
    strata::async_copy<16>(&stage[t * kInts], from, t % 3 == 0);
  }
  __pipeline_commit();
  __pipeline_wait_prior(0);
  for (int i = 0; i < kInts; ++i) out[t * kInts + i] = stage[t * kInts + i];
}

// One copy of `bytes` bytes, zfill, from source + source_offset bytes.
__global__ void misuse_kernel(const unsigned char* source, std::size_t source_offset, std::size_t bytes,
                              std::size_t zfill) {
  __shared__ __align__(16) unsigned char stage[32];
  __pipeline_memcpy_async(stage, source + source_offset, bytes, zfill);
  __pipeline_commit();
  __pipeline_wait_prior(0);
}

// One 16-byte copy into device memory instead of shared memory.
__global__ void device_destination_kernel(unsigned char* destination, const unsigned char* source) {
  __pipeline_memcpy_async(destination, source, 16, 0);
  __pipeline_commit();
  __pipeline_wait_prior(0);
}

class SimPipeline : public strata::testing::SimKernelTest {
 protected:
  // 0, 1, 2, ... on the device.
  int* iota_device(int count) {
    std::vector<int> host(static_cast<std::size_t>(count));
    std::iota(host.begin(), host.end(), 0);
    return device_copy(host);
  }
  strata::LaunchConfig config(const char* name) const { return SimKernelTest::config(1, kThreads, name); }
};

TEST_F(SimPipeline, CopiesLandAtTheWaitThatCoversTheirGroupOldestFirst) {
  const int* source = iota_device(2 * kThreads * kInts);
  int* seen = device_alloc<int>(3 * 2 * kThreads);
  strata::launch(two_groups_kernel, config("two_groups"), source, seen);
  const std::vector<int> host = host_copy(seen, 3 * 2 * kThreads);
  const auto at = [&](int point, int stage, int t) {
    return host[static_cast<std::size_t>((point * 2 + stage) * kThreads + t)];
  };
  for (int t = 0; t < kThreads; ++t) {
    SCOPED_TRACE(t);
    EXPECT_EQ(at(0, 0, t), -1) << "nothing lands before a wait";
    EXPECT_EQ(at(0, 1, t), -1);
    EXPECT_EQ(at(1, 0, t), t * kInts) << "wait_prior(1): the older group landed";
    EXPECT_EQ(at(1, 1, t), -1) << "wait_prior(1): the newest group may still be pending";
    EXPECT_EQ(at(2, 0, t), t * kInts);
    EXPECT_EQ(at(2, 1, t), (kThreads + t) * kInts) << "wait_prior(0): everything landed";
  }
}

TEST_F(SimPipeline, AnUncommittedCopyWaitsForItsCommit) {
  const int* source = iota_device(kThreads * kInts);
  int* seen = device_alloc<int>(2 * kThreads);
  strata::launch(uncommitted_kernel, config("uncommitted"), source, seen);
  const std::vector<int> host = host_copy(seen, 2 * kThreads);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(host[static_cast<std::size_t>(t)], -1) << t;
    EXPECT_EQ(host[static_cast<std::size_t>(kThreads + t)], t * kInts) << t;
  }
}

TEST_F(SimPipeline, ZeroFillReplacesTheBytesNotCopied) {
  const int* source = iota_device(kThreads * kInts);
  int* out = device_alloc<int>(kThreads * kInts);
  strata::launch(zero_fill_kernel, config("zero_fill"), source, out);
  const std::vector<int> host = host_copy(out, kThreads * kInts);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kInts; ++i) {
      const int expected = t % 3 == 0 || (t % 3 == 2 && i < 2) ? t * kInts + i : 0;
      EXPECT_EQ(host[static_cast<std::size_t>(t * kInts + i)], expected) << "thread " << t << ", int " << i;
    }
  }
}

TEST_F(SimPipeline, MisuseFailsTheKernelWithADiagnosis) {
  const auto* source = reinterpret_cast<const unsigned char*>(iota_device(16));
  EXPECT_THAT(kernel_failure([&] {
                strata::launch(misuse_kernel, config("misaligned"), source, std::size_t{4}, std::size_t{16},
                               std::size_t{0});
              }),
              ::testing::HasSubstr("must be aligned to the size"));
  EXPECT_THAT(kernel_failure([&] {
                strata::launch(misuse_kernel, config("twelve_bytes"), source, std::size_t{0}, std::size_t{12},
                               std::size_t{0});
              }),
              ::testing::HasSubstr("4, 8 or 16 only"));
  EXPECT_THAT(kernel_failure([&] {
                strata::launch(misuse_kernel, config("zfill_past_size"), source, std::size_t{0}, std::size_t{8},
                               std::size_t{9});
              }),
              ::testing::HasSubstr("exceeds its size"));
  // The source must lie in one device allocation (60 bytes here), whole.
  const auto* short_source = reinterpret_cast<const unsigned char*>(device_alloc<int>(15));
  EXPECT_THAT(kernel_failure([&] {
                strata::launch(misuse_kernel, config("past_the_end"), short_source, std::size_t{48}, std::size_t{16},
                               std::size_t{0});
              }),
              ::testing::HasSubstr("run past the end of its device allocation"));
  alignas(16) static const unsigned char host_bytes[16] = {};
  EXPECT_THAT(kernel_failure([&] {
                strata::launch(misuse_kernel, config("host_source"), host_bytes, std::size_t{0}, std::size_t{16},
                               std::size_t{0});
              }),
              ::testing::HasSubstr("are not in a device allocation"));
  // Zero-filled bytes read nothing: past the end is fine for them.
  strata::launch(misuse_kernel, config("zero_fill_past_the_end"), short_source, std::size_t{48}, std::size_t{16},
                 std::size_t{4});
  EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  auto* device_bytes = reinterpret_cast<unsigned char*>(device_alloc<int>(4));
  EXPECT_THAT(kernel_failure([&] {
                strata::launch(device_destination_kernel, config("device_destination"), device_bytes, source);
              }),
              ::testing::HasSubstr("not shared memory"));
  // 8-byte copies need 8-byte alignment only.
  strata::launch(misuse_kernel, config("eight_bytes"), source, std::size_t{8}, std::size_t{8}, std::size_t{0});
  EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
}

}  // namespace
