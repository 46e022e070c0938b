// Tests of kernel launches as the simulated runtime sees them: configuration checks (block
// and grid limits, dynamic shared memory and cudaFuncSetAttribute), errors that are the
// thread's last error rather than sticky, and the sticky failure a crashed kernel leaves
// until strata::sim::clear_device_error().
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

#include "core/launch.cuh"
#include "core/sim/runtime.h"
#include "strata/core/errors.h"
#include "tests/sim/runtime_test_support.h"

namespace {

using strata::testing::DeviceBuffer;
using strata::testing::Gate;
using strata::testing::OrderLog;
using strata::testing::ScopedEvent;
using strata::testing::ScopedStream;

// out[i] = first + i for i < count.
__global__ void fill_kernel(int* out, int first, int count) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < count) out[i] = first + i;
}

__global__ void trap_kernel() { __trap(); }

// Only its address matters: the identity cudaFuncSetAttribute attaches the limit to.
__global__ void shared_memory_kernel() {}

const void* kernel_identity(void (*kernel)()) { return reinterpret_cast<const void*>(kernel); }

// Launches a grid straight through the simulator and returns how many simulated threads ran.
struct CountingLaunch {
  cudaError_t error = cudaSuccess;  // the thread's last error right after the launch
  int threads_run = 0;
};

CountingLaunch launch_counting(dim3 grid, dim3 block, size_t shared_bytes = 0, const void* kernel = nullptr) {
  ScopedStream stream;
  auto counter = std::make_shared<std::atomic<int>>(0);
  strata::sim::launch_kernel(strata::sim::KernelLaunch{grid, block, shared_bytes, stream, "counting", kernel},
                             [counter] { ++*counter; });
  CountingLaunch result;
  result.error = cudaGetLastError();
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  result.threads_run = counter->load();
  return result;
}

class SimRuntimeLaunch : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(cudaGetLastError(), cudaSuccess); }
  // A failed test must not leave the device failed for the next one.
  void TearDown() override { strata::sim::clear_device_error(); }
};

TEST_F(SimRuntimeLaunch, KernelRunsOnItsStream) {
  ScopedStream stream;
  DeviceBuffer<int> out(1000);
  strata::launch(fill_kernel, strata::LaunchConfig{.grid = 4, .block = 256, .stream = stream, .name = "fill"},
                 out.get(), 5, 1000);
  std::vector<int> result(1000);
  STRATA_ASSERT_CUDA(cudaMemcpyAsync(result.data(), out.get(), 1000 * sizeof(int), cudaMemcpyDeviceToHost, stream));
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(result[i], 5 + i) << "element " << i;
}

TEST_F(SimRuntimeLaunch, KernelsQueueBehindEarlierWork) {
  ScopedStream stream;
  DeviceBuffer<int> out(32);
  OrderLog log;
  Gate gate;
  STRATA_ASSERT_CUDA(gate.hold(stream));
  strata::launch(fill_kernel, strata::LaunchConfig{.grid = 1, .block = 32, .stream = stream, .name = "fill"},
                 out.get(), 1, 32);
  STRATA_ASSERT_CUDA(log.add_on(stream, 1));
  EXPECT_EQ(cudaStreamQuery(stream), cudaErrorNotReady);
  EXPECT_TRUE(log.labels().empty());
  gate.open();
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(stream));
  EXPECT_EQ(log.labels(), std::vector<int>{1});
}

TEST_F(SimRuntimeLaunch, BlockLimitsAreEnforced) {
  EXPECT_EQ(launch_counting(1, 1024).threads_run, 1024);
  EXPECT_EQ(launch_counting(1, dim3(4, 4, 64)).threads_run, 1024);
  for (const dim3 block : {dim3(1025), dim3(1, 1025), dim3(1, 1, 65), dim3(32, 32, 2), dim3(0), dim3(4, 0, 1)}) {
    const CountingLaunch launch = launch_counting(1, block);
    EXPECT_EQ(launch.error, cudaErrorInvalidConfiguration) << block.x << "x" << block.y << "x" << block.z;
    EXPECT_EQ(launch.threads_run, 0);
  }
}

TEST_F(SimRuntimeLaunch, GridLimitsAreEnforced) {
  EXPECT_EQ(launch_counting(dim3(2, 3, 4), 1).threads_run, 24);
  for (const dim3 grid : {dim3(0), dim3(1, 65536), dim3(1, 1, 65536), dim3(0x80000000u), dim3(1, 0, 1)}) {
    const CountingLaunch launch = launch_counting(grid, 1);
    EXPECT_EQ(launch.error, cudaErrorInvalidConfiguration) << grid.x << "x" << grid.y << "x" << grid.z;
    EXPECT_EQ(launch.threads_run, 0);
  }
}

// An invalid configuration is the launching thread's last error, not a device failure.
TEST_F(SimRuntimeLaunch, InvalidConfigurationIsNotSticky) {
  ScopedStream stream;
  try {
    strata::launch(fill_kernel, strata::LaunchConfig{.grid = 1, .block = 1025, .stream = stream, .name = "fill"},
                   nullptr, 0, 0);
    ADD_FAILURE() << "a launch of 1025 threads per block was accepted";
  } catch (const strata::CudaError& error) {
    EXPECT_EQ(error.code(), cudaErrorInvalidConfiguration);
  }
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  STRATA_EXPECT_CUDA(cudaDeviceSynchronize());
  EXPECT_EQ(strata::sim::failure_detail(), "");
}

TEST_F(SimRuntimeLaunch, DynamicSharedMemoryIsLimitedTo48KiBByDefault) {
  EXPECT_EQ(launch_counting(1, 32, 48 * 1024).threads_run, 32);
  const CountingLaunch too_much = launch_counting(1, 32, 48 * 1024 + 1);
  EXPECT_EQ(too_much.error, cudaErrorInvalidValue);
  EXPECT_EQ(too_much.threads_run, 0);
}

TEST_F(SimRuntimeLaunch, FuncSetAttributeRaisesTheSharedMemoryLimit) {
  const void* kernel = kernel_identity(shared_memory_kernel);
  EXPECT_EQ(launch_counting(1, 32, 100 * 1024, kernel).error, cudaErrorInvalidValue);
  STRATA_ASSERT_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024));
  EXPECT_EQ(launch_counting(1, 32, 100 * 1024, kernel).threads_run, 32);
  EXPECT_EQ(launch_counting(1, 32, 100 * 1024 + 1, kernel).error, cudaErrorInvalidValue);
  // The limit belongs to that kernel only.
  EXPECT_EQ(launch_counting(1, 32, 100 * 1024, kernel_identity(trap_kernel)).error, cudaErrorInvalidValue);
  // 227 KiB is the most an sm_90 block can opt in to.
  STRATA_ASSERT_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024));
  EXPECT_EQ(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024 + 1),
            cudaErrorInvalidValue);
  EXPECT_EQ(cudaFuncSetAttribute(nullptr, cudaFuncAttributeMaxDynamicSharedMemorySize, 1024),
            cudaErrorInvalidDeviceFunction);
  (void)cudaGetLastError();
  STRATA_ASSERT_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 48 * 1024));
}

// strata::allow_dynamic_shared_memory opts a kernel in above 48 KiB (and does nothing below);
// beyond what the device has it throws, naming the kernel, and leaves no error behind.
TEST_F(SimRuntimeLaunch, AllowDynamicSharedMemoryOptsInAboveTheDefault) {
  ScopedStream stream;
  const auto config = [&](size_t bytes) {
    return strata::LaunchConfig{.grid = 1, .block = 32, .shared_bytes = bytes, .stream = stream, .name = "fill"};
  };
  DeviceBuffer<int> out(32);
  EXPECT_THROW(strata::launch(fill_kernel, config(64 * 1024), out.get(), 0, 32), strata::CudaError);
  strata::allow_dynamic_shared_memory(fill_kernel, 64 * 1024, "fill");
  strata::launch(fill_kernel, config(64 * 1024), out.get(), 0, 32);
  int last = 0;
  STRATA_ASSERT_CUDA(cudaMemcpyAsync(&last, out.get() + 31, sizeof(int), cudaMemcpyDeviceToHost, stream));
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(stream));
  EXPECT_EQ(last, 31);
  try {
    strata::allow_dynamic_shared_memory(fill_kernel, 228 * 1024, "too_much_shared_memory");
    ADD_FAILURE() << "no exception";
  } catch (const strata::CudaError& error) {
    EXPECT_NE(std::string(error.what()).find("too_much_shared_memory"), std::string::npos) << error.what();
  }
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  // Back to the default, for the tests that follow.
  STRATA_ASSERT_CUDA(cudaFuncSetAttribute(reinterpret_cast<const void*>(fill_kernel),
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, 48 * 1024));
}

// The launch observer sees each accepted launch's configuration, on the launching thread,
// and nothing once removed; a rejected launch is not reported.
TEST_F(SimRuntimeLaunch, LaunchObserverSeesAcceptedLaunches) {
  ScopedStream stream;
  std::vector<std::string> seen;
  strata::sim::set_launch_observer([&](const strata::sim::KernelLaunch& launch) {
    seen.push_back(std::string(launch.name) + " " + std::to_string(launch.block.x) + " " +
                   std::to_string(launch.shared_bytes));
  });
  DeviceBuffer<int> out(64);
  strata::launch(fill_kernel,
                 strata::LaunchConfig{.grid = 2, .block = 32, .shared_bytes = 16, .stream = stream, .name = "fill"},
                 out.get(), 0, 64);
  EXPECT_THROW(strata::launch(fill_kernel,
                              strata::LaunchConfig{.grid = 1, .block = 2048, .stream = stream, .name = "too_wide"},
                              out.get(), 0, 64),
               strata::CudaError);
  strata::sim::set_launch_observer({});
  strata::launch(fill_kernel, strata::LaunchConfig{.grid = 1, .block = 64, .stream = stream, .name = "unseen"},
                 out.get(), 0, 64);
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(stream));
  EXPECT_EQ(seen, (std::vector<std::string>{"fill 32 16"}));
}

// The name may be a temporary of the caller's; the failure report, made later on the
// stream's worker, must still have it.
TEST_F(SimRuntimeLaunch, KernelNameOutlivesTheCallersString) {
  ScopedStream stream;
  Gate gate;
  STRATA_ASSERT_CUDA(gate.hold(stream));
  {
    const std::string name = std::string("temporary_kernel_name_") + std::to_string(42);
    strata::sim::launch_kernel(strata::sim::KernelLaunch{1, 1, 0, stream, name.c_str()}, [] { __trap(); });
  }
  gate.open();
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaErrorLaunchFailure);
  const std::string detail = strata::sim::failure_detail();
  EXPECT_NE(detail.find("temporary_kernel_name_42"), std::string::npos) << detail;
}

// A kernel that fails leaves a sticky error: every synchronising call reports it, work
// queued behind the failed kernel is skipped (events still complete), and only
// clear_device_error() makes the device usable again.
TEST_F(SimRuntimeLaunch, FailedKernelLeavesAStickyError) {
  DeviceBuffer<int> data(16);
  STRATA_ASSERT_CUDA(cudaMemset(data.get(), 0, 16 * sizeof(int)));
  ScopedStream stream;
  ScopedEvent after_failure;
  OrderLog log;
  Gate gate;
  // The gate holds everything back so that it is all queued before the kernel fails.
  STRATA_ASSERT_CUDA(gate.hold(stream));
  strata::launch(trap_kernel, strata::LaunchConfig{.grid = 2, .block = 32, .stream = stream, .name = "trap"});
  STRATA_ASSERT_CUDA(cudaMemsetAsync(data.get(), 7, 16 * sizeof(int), stream));
  STRATA_ASSERT_CUDA(cudaEventRecord(after_failure, stream));
  STRATA_ASSERT_CUDA(log.add_on(stream, 1));
  gate.open();

  EXPECT_EQ(cudaEventSynchronize(after_failure), cudaErrorLaunchFailure);
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaErrorLaunchFailure);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaErrorLaunchFailure);
  EXPECT_EQ(cudaStreamQuery(stream), cudaErrorLaunchFailure);
  EXPECT_EQ(cudaEventQuery(after_failure), cudaErrorLaunchFailure);
  EXPECT_EQ(cudaPeekAtLastError(), cudaErrorLaunchFailure);
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);  // reading it does not clear it
  std::vector<int> result(16, -1);
  EXPECT_EQ(cudaMemcpy(result.data(), data.get(), 16 * sizeof(int), cudaMemcpyDeviceToHost), cudaErrorLaunchFailure);
  EXPECT_EQ(log.labels(), std::vector<int>{1});  // host functions still run
  const std::string detail = strata::sim::failure_detail();
  EXPECT_NE(detail.find("trap"), std::string::npos) << detail;
  EXPECT_NE(detail.find("__trap"), std::string::npos) << detail;

  // Later launches report the failure too, and do not run.
  try {
    strata::launch(fill_kernel, strata::LaunchConfig{.grid = 1, .block = 16, .stream = stream, .name = "fill"},
                   data.get(), 100, 16);
    ADD_FAILURE() << "a launch on a failed device reported success";
  } catch (const strata::CudaError& error) {
    EXPECT_EQ(error.code(), cudaErrorLaunchFailure);
    EXPECT_NE(std::string(error.what()).find("__trap"), std::string::npos) << error.what();
  }
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaErrorLaunchFailure);

  strata::sim::clear_device_error();
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(strata::sim::failure_detail(), "");
  STRATA_ASSERT_CUDA(cudaMemcpy(result.data(), data.get(), 16 * sizeof(int), cudaMemcpyDeviceToHost));
  EXPECT_EQ(result, std::vector<int>(16, 0));  // neither the memset nor the fill ran

  // The device works again.
  strata::launch(fill_kernel, strata::LaunchConfig{.grid = 1, .block = 16, .stream = stream, .name = "fill"},
                 data.get(), 100, 16);
  STRATA_ASSERT_CUDA(cudaMemcpyAsync(result.data(), data.get(), 16 * sizeof(int), cudaMemcpyDeviceToHost, stream));
  EXPECT_EQ(result[15], 115);
}

}  // namespace
