// Tests of the simulated CUDA runtime's device queries and error reporting: the device
// profile, cudaDeviceGetAttribute, versions, error names and strings, and the per-thread
// last error. Streams, events, memory and launches have their own files.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <thread>

#include "core/sim/runtime.h"
#include "tests/sim/runtime_test_support.h"

namespace {

TEST(SimRuntimeDevice, OneDeviceNumberedZero) {
  int count = -1;
  STRATA_ASSERT_CUDA(cudaGetDeviceCount(&count));
  EXPECT_EQ(count, 1);
  int device = -1;
  STRATA_ASSERT_CUDA(cudaGetDevice(&device));
  EXPECT_EQ(device, 0);
  STRATA_EXPECT_CUDA(cudaSetDevice(0));
  EXPECT_EQ(cudaSetDevice(1), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaGetDeviceCount(nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
}

TEST(SimRuntimeDevice, PropertiesDescribeAnSm90Device) {
  cudaDeviceProp properties{};
  STRATA_ASSERT_CUDA(cudaGetDeviceProperties(&properties, 0));
  EXPECT_STREQ(properties.name, "Strata SIMT simulator");
  EXPECT_EQ(properties.major, 9);
  EXPECT_EQ(properties.minor, 0);
  EXPECT_EQ(properties.warpSize, 32);
  EXPECT_EQ(properties.maxThreadsPerBlock, 1024);
  EXPECT_EQ(properties.maxThreadsDim[0], 1024);
  EXPECT_EQ(properties.maxThreadsDim[1], 1024);
  EXPECT_EQ(properties.maxThreadsDim[2], 64);
  EXPECT_EQ(properties.maxGridSize[0], 2147483647);
  EXPECT_EQ(properties.maxGridSize[1], 65535);
  EXPECT_EQ(properties.maxGridSize[2], 65535);
  EXPECT_EQ(properties.sharedMemPerBlock, 48u * 1024);
  EXPECT_EQ(properties.sharedMemPerBlockOptin, 227u * 1024);
  EXPECT_EQ(properties.regsPerBlock, 65536);
  EXPECT_EQ(properties.l2CacheSize, 50 * 1024 * 1024);
  EXPECT_EQ(properties.multiProcessorCount, strata::sim::worker_threads());
  EXPECT_EQ(properties.totalGlobalMem, strata::sim::device_memory_limit());
  EXPECT_EQ(cudaGetDeviceProperties(&properties, 1), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaGetDeviceProperties(nullptr, 0), cudaErrorInvalidValue);
  (void)cudaGetLastError();
}

TEST(SimRuntimeDevice, PropertiesFollowTheSimulatorSettings) {
  const int threads = strata::sim::worker_threads();
  const size_t limit = strata::sim::device_memory_limit();
  strata::sim::set_worker_threads(3);
  strata::sim::set_device_memory_limit(size_t{1} << 30);
  cudaDeviceProp properties{};
  const cudaError_t status = cudaGetDeviceProperties(&properties, 0);
  int multiprocessors = 0;
  const cudaError_t attribute_status = cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, 0);
  strata::sim::set_worker_threads(threads);
  strata::sim::set_device_memory_limit(limit);
  STRATA_ASSERT_CUDA(status);
  STRATA_ASSERT_CUDA(attribute_status);
  EXPECT_EQ(properties.multiProcessorCount, 3);
  EXPECT_EQ(multiprocessors, 3);
  EXPECT_EQ(properties.totalGlobalMem, size_t{1} << 30);
}

TEST(SimRuntimeDevice, AttributesAgreeWithProperties) {
  cudaDeviceProp properties{};
  STRATA_ASSERT_CUDA(cudaGetDeviceProperties(&properties, 0));
  const struct {
    cudaDeviceAttr attribute;
    long long expected;
  } cases[] = {
      {cudaDevAttrMaxThreadsPerBlock, properties.maxThreadsPerBlock},
      {cudaDevAttrMaxBlockDimZ, properties.maxThreadsDim[2]},
      {cudaDevAttrMaxGridDimX, properties.maxGridSize[0]},
      {cudaDevAttrMaxGridDimY, properties.maxGridSize[1]},
      {cudaDevAttrMaxSharedMemoryPerBlock, static_cast<long long>(properties.sharedMemPerBlock)},
      {cudaDevAttrMaxSharedMemoryPerBlockOptin, static_cast<long long>(properties.sharedMemPerBlockOptin)},
      {cudaDevAttrWarpSize, properties.warpSize},
      {cudaDevAttrComputeCapabilityMajor, 9},
      {cudaDevAttrComputeCapabilityMinor, 0},
      {cudaDevAttrMultiProcessorCount, properties.multiProcessorCount},
      {cudaDevAttrL2CacheSize, properties.l2CacheSize},
      {cudaDevAttrMaxRegistersPerBlock, properties.regsPerBlock},
      {cudaDevAttrConcurrentKernels, 1},
      {cudaDevAttrUnifiedAddressing, 1},
      {cudaDevAttrMemoryPoolsSupported, 1},
  };
  for (const auto& c : cases) {
    int value = -1;
    STRATA_ASSERT_CUDA(cudaDeviceGetAttribute(&value, c.attribute, 0));
    EXPECT_EQ(value, c.expected) << "attribute " << static_cast<int>(c.attribute);
  }
  int value = 0;
  EXPECT_EQ(cudaDeviceGetAttribute(&value, cudaDevAttrWarpSize, 1), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaDeviceGetAttribute(&value, cudaDevAttrMaxTexture1DWidth, 0), cudaErrorInvalidValue);
  (void)cudaGetLastError();
}

TEST(SimRuntimeDevice, VersionsAreCuda13) {
  int driver = 0;
  int runtime = 0;
  STRATA_ASSERT_CUDA(cudaDriverGetVersion(&driver));
  STRATA_ASSERT_CUDA(cudaRuntimeGetVersion(&runtime));
  EXPECT_EQ(driver, 13000);
  EXPECT_EQ(runtime, 13000);
}

TEST(SimRuntimeDevice, StreamPriorityRangeIsAnH100s) {
  int least = 1;
  int greatest = 1;
  STRATA_ASSERT_CUDA(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  EXPECT_EQ(least, 0);
  EXPECT_EQ(greatest, -5);
}

TEST(SimRuntimeErrors, NamesAndStringsAreCudas) {
  const struct {
    cudaError_t code;
    const char* name;
    const char* description;
  } cases[] = {
      {cudaSuccess, "cudaSuccess", "no error"},
      {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument"},
      {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory"},
      {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration", "invalid configuration argument"},
      {cudaErrorInvalidDevice, "cudaErrorInvalidDevice", "invalid device ordinal"},
      {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle", "invalid resource handle"},
      {cudaErrorNotReady, "cudaErrorNotReady", "device not ready"},
      {cudaErrorLaunchFailure, "cudaErrorLaunchFailure", "unspecified launch failure"},
      {cudaErrorInvalidDevicePointer, "cudaErrorInvalidDevicePointer", "invalid device pointer"},
      {cudaErrorIllegalAddress, "cudaErrorIllegalAddress", "an illegal memory access was encountered"},
      {cudaErrorInvalidMemcpyDirection, "cudaErrorInvalidMemcpyDirection", "invalid copy direction for memcpy"},
  };
  for (const auto& c : cases) {
    EXPECT_STREQ(cudaGetErrorName(c.code), c.name);
    EXPECT_STREQ(cudaGetErrorString(c.code), c.description);
  }
  EXPECT_STREQ(cudaGetErrorString(static_cast<cudaError_t>(123456)), "unrecognized error code");
}

TEST(SimRuntimeErrors, LastErrorIsPeekedThenClearedByGet) {
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(cudaSetDevice(7), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaPeekAtLastError(), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaPeekAtLastError(), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(cudaPeekAtLastError(), cudaSuccess);
}

TEST(SimRuntimeErrors, LastErrorBelongsToTheCallingThread) {
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(cudaSetDevice(7), cudaErrorInvalidDevice);
  cudaError_t seen_by_other_thread = cudaErrorUnknown;
  std::thread([&] { seen_by_other_thread = cudaGetLastError(); }).join();
  EXPECT_EQ(seen_by_other_thread, cudaSuccess);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidDevice);
}

TEST(SimRuntimeErrors, NotReadyIsNotAnError) {
  strata::testing::ScopedStream stream;
  strata::testing::Gate gate;
  STRATA_ASSERT_CUDA(gate.hold(stream));
  EXPECT_EQ(cudaStreamQuery(stream), cudaErrorNotReady);
  gate.open();
  STRATA_EXPECT_CUDA(cudaStreamSynchronize(stream));
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST(SimRuntimeErrors, SuccessfulCallsDoNotClearTheLastError) {
  EXPECT_EQ(cudaSetDevice(7), cudaErrorInvalidDevice);
  int count = 0;
  STRATA_EXPECT_CUDA(cudaGetDeviceCount(&count));
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidDevice);
}

}  // namespace
