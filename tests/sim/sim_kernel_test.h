// The fixture of the simulator's kernel tests (test_simt_kernels.cu, test_wmma.cu,
// test_pipeline.cu): a non-blocking stream, device buffers poisoned with 0xff bytes (NaN in
// every float format) and freed at the end, copies both ways, launch configurations on the
// stream, and the diagnosis of a kernel that must fail. TearDown restores the schedule and
// clears a failure a test left behind.
#pragma once

#include <cuda_runtime_api.h>

#include <gtest/gtest.h>

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/launch.cuh"
#include "core/sim/runtime.h"
#include "strata/core/errors.h"

namespace strata::testing {

class SimKernelTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), cudaSuccess); }
  void TearDown() override {
    sim::set_schedule_seed(std::nullopt);
    sim::clear_device_error();
    cudaStreamDestroy(stream_);
    for (void* pointer : allocations_) cudaFree(pointer);
  }

  template <typename T>
  T* device_copy(const std::vector<T>& host) {
    T* pointer = device_alloc<T>(host.size());
    EXPECT_EQ(cudaMemcpyAsync(pointer, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice, stream_),
              cudaSuccess);
    return pointer;
  }
  template <typename T>
  T* device_alloc(std::size_t count) {
    void* pointer = nullptr;
    EXPECT_EQ(cudaMalloc(&pointer, count * sizeof(T)), cudaSuccess);
    EXPECT_EQ(cudaMemsetAsync(pointer, 0xff, count * sizeof(T), stream_), cudaSuccess);  // poison
    allocations_.push_back(pointer);
    return static_cast<T*>(pointer);
  }
  template <typename T>
  std::vector<T> host_copy(const T* pointer, std::size_t count) {
    std::vector<T> host(count);
    EXPECT_EQ(cudaMemcpyAsync(host.data(), pointer, count * sizeof(T), cudaMemcpyDeviceToHost, stream_), cudaSuccess);
    EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    return host;
  }
  LaunchConfig config(dim3 grid, dim3 block, const char* name, std::size_t shared_bytes = 0) const {
    return LaunchConfig{.grid = grid, .block = block, .shared_bytes = shared_bytes, .stream = stream_, .name = name};
  }

  // Runs a kernel that must fail. A kernel failure is asynchronous: it may already show at the
  // launch's error check, as on a GPU, and it shows at the next synchronisation. The failure
  // stays recorded (strata::sim::failure_detail()) for the test to inspect.
  void expect_kernel_failure(const std::function<void()>& launch_kernel) {
    try {
      launch_kernel();
    } catch (const CudaError& error) {
      EXPECT_EQ(error.code(), cudaErrorLaunchFailure) << error.what();
    }
    EXPECT_EQ(cudaStreamSynchronize(stream_), cudaErrorLaunchFailure);
  }
  // The same, returning the simulator's diagnosis and clearing it.
  std::string kernel_failure(const std::function<void()>& launch_kernel) {
    expect_kernel_failure(launch_kernel);
    std::string detail = sim::failure_detail();
    sim::clear_device_error();
    return detail;
  }

  cudaStream_t stream_ = nullptr;
  std::vector<void*> allocations_;
};

}  // namespace strata::testing
