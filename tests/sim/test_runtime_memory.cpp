// Tests of the simulated runtime's memory: allocation and the device memory limit,
// cudaMemGetInfo, copy kinds and their checks, memsets, and CUDA's synchronisation rules for
// pageable and pinned host memory.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <future>
#include <numeric>
#include <thread>
#include <vector>

#include "core/sim/runtime.h"
#include "tests/sim/runtime_test_support.h"

namespace {

using strata::testing::DeviceBuffer;
using strata::testing::Gate;
using strata::testing::kHangTimeout;
using strata::testing::PinnedBuffer;
using strata::testing::ScopedStream;

std::vector<int> iota_vector(size_t count, int first) {
  std::vector<int> values(count);
  std::iota(values.begin(), values.end(), first);
  return values;
}

class SimRuntimeMemory : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_limit_ = strata::sim::device_memory_limit();
    strata::sim::set_device_memory_limit(kLimit);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  }
  void TearDown() override {
    strata::sim::set_device_memory_limit(saved_limit_);
    (void)cudaGetLastError();
  }

  static constexpr size_t kLimit = size_t{4} << 20;

 private:
  size_t saved_limit_ = 0;
};

TEST_F(SimRuntimeMemory, MallocIsAlignedAndAccounted) {
  size_t free_before = 0;
  size_t total = 0;
  STRATA_ASSERT_CUDA(cudaMemGetInfo(&free_before, &total));
  EXPECT_EQ(total, kLimit);
  void* memory = nullptr;
  STRATA_ASSERT_CUDA(cudaMalloc(&memory, 1000));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(memory) % 256, 0u);
  size_t free_after = 0;
  STRATA_ASSERT_CUDA(cudaMemGetInfo(&free_after, &total));
  EXPECT_EQ(free_before - free_after, 1000u);
  STRATA_ASSERT_CUDA(cudaFree(memory));
  STRATA_ASSERT_CUDA(cudaMemGetInfo(&free_after, &total));
  EXPECT_EQ(free_after, free_before);
}

TEST_F(SimRuntimeMemory, AllocationBeyondTheLimitFails) {
  void* first = nullptr;
  STRATA_ASSERT_CUDA(cudaMalloc(&first, kLimit / 2));
  void* second = reinterpret_cast<void*>(0x1);
  EXPECT_EQ(cudaMalloc(&second, kLimit / 2 + 1), cudaErrorMemoryAllocation);
  // As in CUDA, the failed allocation is also the thread's last error.
  EXPECT_EQ(cudaGetLastError(), cudaErrorMemoryAllocation);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  STRATA_EXPECT_CUDA(cudaMalloc(&second, kLimit / 2));
  STRATA_EXPECT_CUDA(cudaFree(second));
  STRATA_EXPECT_CUDA(cudaFree(first));
}

TEST_F(SimRuntimeMemory, FreeChecksItsPointer) {
  STRATA_EXPECT_CUDA(cudaFree(nullptr));
  void* memory = nullptr;
  STRATA_ASSERT_CUDA(cudaMalloc(&memory, 64));
  EXPECT_EQ(cudaFree(static_cast<char*>(memory) + 16), cudaErrorInvalidValue);  // interior pointer
  int on_the_stack = 0;
  EXPECT_EQ(cudaFree(&on_the_stack), cudaErrorInvalidValue);
  STRATA_EXPECT_CUDA(cudaFree(memory));
  EXPECT_EQ(cudaFree(memory), cudaErrorInvalidValue);  // twice
  void* pinned = nullptr;
  STRATA_ASSERT_CUDA(cudaMallocHost(&pinned, 64));
  EXPECT_EQ(cudaFree(pinned), cudaErrorInvalidValue);
  STRATA_EXPECT_CUDA(cudaFreeHost(pinned));
  void* zero = reinterpret_cast<void*>(0x1);
  STRATA_EXPECT_CUDA(cudaMalloc(&zero, 0));
  EXPECT_EQ(zero, nullptr);
}

TEST_F(SimRuntimeMemory, CopiesOfEveryKindRoundTrip) {
  const std::vector<int> source = iota_vector(256, 1);
  DeviceBuffer<int> a(256);
  DeviceBuffer<int> b(256);
  PinnedBuffer<int> pinned(256);
  std::vector<int> result(256, -1);
  const size_t bytes = 256 * sizeof(int);
  STRATA_ASSERT_CUDA(cudaMemcpy(a.get(), source.data(), bytes, cudaMemcpyHostToDevice));
  STRATA_ASSERT_CUDA(cudaMemcpy(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice));
  STRATA_ASSERT_CUDA(cudaMemcpy(pinned.get(), b.get(), bytes, cudaMemcpyDeviceToHost));
  STRATA_ASSERT_CUDA(cudaMemcpy(result.data(), pinned.get(), bytes, cudaMemcpyHostToHost));
  EXPECT_EQ(result, source);
  // cudaMemcpyDefault infers every direction from the pointers.
  std::vector<int> again(256, -1);
  STRATA_ASSERT_CUDA(cudaMemset(a.get(), 0, bytes));
  STRATA_ASSERT_CUDA(cudaMemcpy(a.get(), source.data(), bytes, cudaMemcpyDefault));
  STRATA_ASSERT_CUDA(cudaMemcpy(b.get(), a.get(), bytes, cudaMemcpyDefault));
  STRATA_ASSERT_CUDA(cudaMemcpy(again.data(), b.get(), bytes, cudaMemcpyDefault));
  EXPECT_EQ(again, source);
}

TEST_F(SimRuntimeMemory, CopiesAreChecked) {
  DeviceBuffer<int> device(16);
  std::vector<int> host(32, 0);
  // A kind that contradicts the pointers, past the end of an allocation, an unknown kind.
  EXPECT_EQ(cudaMemcpy(host.data(), device.get(), 64, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(device.get(), host.data(), 64, cudaMemcpyDeviceToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(device.get(), host.data(), 65, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(host.data(), device.get() + 8, 33, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(device.get(), host.data(), 64, static_cast<cudaMemcpyKind>(7)),
            cudaErrorInvalidMemcpyDirection);
  EXPECT_EQ(cudaMemcpy(nullptr, host.data(), 4, cudaMemcpyDefault), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpyAsync(device.get(), host.data(), 4, cudaMemcpyDefault, reinterpret_cast<cudaStream_t>(0x40)),
            cudaErrorInvalidResourceHandle);
  EXPECT_EQ(cudaMemset(host.data(), 0, 4), cudaErrorInvalidValue);  // pageable memory
  EXPECT_EQ(cudaMemset(device.get(), 0, 65), cudaErrorInvalidValue);
  STRATA_EXPECT_CUDA(cudaMemcpy(device.get(), host.data(), 0, cudaMemcpyHostToDevice));
}

TEST_F(SimRuntimeMemory, MemsetsWriteBytes) {
  DeviceBuffer<uint8_t> device(100);
  ScopedStream stream;
  STRATA_ASSERT_CUDA(cudaMemset(device.get(), 0x11, 100));
  STRATA_ASSERT_CUDA(cudaMemsetAsync(device.get() + 10, 0x1ff, 20, stream));  // only the low byte counts
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(stream));
  std::vector<uint8_t> result(100);
  STRATA_ASSERT_CUDA(cudaMemcpy(result.data(), device.get(), 100, cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < result.size(); ++i) {
    ASSERT_EQ(result[i], i >= 10 && i < 30 ? 0xff : 0x11) << "byte " << i;
  }
}

TEST_F(SimRuntimeMemory, Memcpy2DHonoursPitches) {
  // (4, 3) bytes in a source with pitch 5, a device buffer with pitch 8, a result with pitch 3.
  const std::vector<uint8_t> source = {1, 2, 3, 99, 99, 4, 5, 6, 99, 99, 7, 8, 9, 99, 99, 10, 11, 12, 99, 99};
  DeviceBuffer<uint8_t> device(32);
  ScopedStream stream;
  STRATA_ASSERT_CUDA(cudaMemsetAsync(device.get(), 0, 32, stream));
  STRATA_ASSERT_CUDA(cudaMemcpy2DAsync(device.get(), 8, source.data(), 5, 3, 4, cudaMemcpyHostToDevice, stream));
  std::vector<uint8_t> result(12, 0);
  STRATA_ASSERT_CUDA(cudaMemcpy2DAsync(result.data(), 3, device.get(), 8, 3, 4, cudaMemcpyDeviceToHost, stream));
  EXPECT_EQ(result, (std::vector<uint8_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
  EXPECT_EQ(cudaMemcpy2D(device.get(), 2, source.data(), 5, 3, 4, cudaMemcpyHostToDevice), cudaErrorInvalidPitchValue);
}

// CUDA stages pageable memory before cudaMemcpyAsync returns: changing the source
// afterwards does not change what arrives on the device.
TEST_F(SimRuntimeMemory, AsyncCopyFromPageableMemorySnapshotsTheSource) {
  DeviceBuffer<int> device(64);
  ScopedStream stream;
  std::vector<int> pageable = iota_vector(64, 0);
  Gate gate;
  STRATA_ASSERT_CUDA(gate.hold(stream));
  STRATA_ASSERT_CUDA(cudaMemcpyAsync(device.get(), pageable.data(), 64 * sizeof(int), cudaMemcpyHostToDevice, stream));
  std::fill(pageable.begin(), pageable.end(), -1);
  gate.open();
  std::vector<int> result(64, -2);
  STRATA_ASSERT_CUDA(cudaMemcpyAsync(result.data(), device.get(), 64 * sizeof(int), cudaMemcpyDeviceToHost, stream));
  EXPECT_EQ(result, iota_vector(64, 0));
}

// Pinned memory is read when the stream gets to the copy, not when it is issued.
TEST_F(SimRuntimeMemory, AsyncCopyFromPinnedMemoryReadsItLater) {
  DeviceBuffer<int> device(64);
  PinnedBuffer<int> pinned(64);
  ScopedStream stream;
  std::iota(pinned.get(), pinned.get() + 64, 0);
  Gate gate;
  STRATA_ASSERT_CUDA(gate.hold(stream));
  STRATA_ASSERT_CUDA(cudaMemcpyAsync(device.get(), pinned.get(), 64 * sizeof(int), cudaMemcpyHostToDevice, stream));
  std::fill(pinned.get(), pinned.get() + 64, 7);
  gate.open();
  std::vector<int> result(64, -2);
  STRATA_ASSERT_CUDA(cudaMemcpyAsync(result.data(), device.get(), 64 * sizeof(int), cudaMemcpyDeviceToHost, stream));
  EXPECT_EQ(result, std::vector<int>(64, 7));
}

// An async copy into pageable memory returns only once the data is there.
TEST_F(SimRuntimeMemory, AsyncCopyToPageableMemoryWaitsForCompletion) {
  DeviceBuffer<int> device(64);
  ScopedStream stream;
  const std::vector<int> source = iota_vector(64, 5);
  STRATA_ASSERT_CUDA(cudaMemcpy(device.get(), source.data(), 64 * sizeof(int), cudaMemcpyHostToDevice));
  Gate gate;
  STRATA_ASSERT_CUDA(gate.hold(stream));
  auto opener = std::async(std::launch::async, [&gate] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    gate.open();
  });
  std::vector<int> result(64, -1);
  STRATA_ASSERT_CUDA(cudaMemcpyAsync(result.data(), device.get(), 64 * sizeof(int), cudaMemcpyDeviceToHost, stream));
  EXPECT_EQ(result, source);  // no synchronisation needed
  EXPECT_FALSE(gate.timed_out());
  opener.get();
}

// An async copy into pinned memory returns at once; the data arrives when the stream runs.
TEST_F(SimRuntimeMemory, AsyncCopyToPinnedMemoryReturnsAtOnce) {
  DeviceBuffer<int> device(64);
  PinnedBuffer<int> pinned(64);
  ScopedStream stream;
  const std::vector<int> source = iota_vector(64, 5);
  STRATA_ASSERT_CUDA(cudaMemcpy(device.get(), source.data(), 64 * sizeof(int), cudaMemcpyHostToDevice));
  std::fill(pinned.get(), pinned.get() + 64, -1);
  Gate gate;
  STRATA_ASSERT_CUDA(gate.hold(stream));
  STRATA_ASSERT_CUDA(cudaMemcpyAsync(pinned.get(), device.get(), 64 * sizeof(int), cudaMemcpyDeviceToHost, stream));
  EXPECT_EQ(cudaStreamQuery(stream), cudaErrorNotReady);
  EXPECT_EQ(pinned.get()[0], -1);
  gate.open();
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(stream));
  EXPECT_EQ(std::vector<int>(pinned.get(), pinned.get() + 64), source);
}

// cudaMemcpy runs on the legacy default stream: it waits for blocking streams' earlier work
// but not for non-blocking streams.
TEST_F(SimRuntimeMemory, SynchronousCopyWaitsForBlockingStreamsOnly) {
  DeviceBuffer<int> device(1);
  ScopedStream non_blocking(cudaStreamNonBlocking);
  ScopedStream blocking;
  int value = 0;
  {
    Gate gate;
    STRATA_ASSERT_CUDA(gate.hold(non_blocking));
    STRATA_ASSERT_CUDA(cudaMemcpy(&value, device.get(), sizeof(int), cudaMemcpyDeviceToHost));
    EXPECT_EQ(cudaStreamQuery(non_blocking), cudaErrorNotReady);
  }
  Gate gate;
  STRATA_ASSERT_CUDA(gate.hold(blocking));
  STRATA_ASSERT_CUDA(cudaMemsetAsync(device.get(), 0x2a, sizeof(int), blocking));
  auto copied = std::async(std::launch::async, [&] {
    return cudaMemcpy(&value, device.get(), sizeof(int), cudaMemcpyDeviceToHost);
  });
  EXPECT_EQ(copied.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);
  gate.open();
  ASSERT_EQ(copied.wait_for(kHangTimeout), std::future_status::ready);
  STRATA_EXPECT_CUDA(copied.get());
  EXPECT_EQ(value, 0x2a2a2a2a);
}

// A synchronous memset of device memory returns before it runs, as in CUDA.
TEST_F(SimRuntimeMemory, SynchronousMemsetOfDeviceMemoryDoesNotBlockTheHost) {
  DeviceBuffer<int> device(1);
  ScopedStream blocking;
  Gate gate;
  STRATA_ASSERT_CUDA(gate.hold(blocking));
  STRATA_ASSERT_CUDA(cudaMemset(device.get(), 1, sizeof(int)));
  EXPECT_EQ(cudaStreamQuery(nullptr), cudaErrorNotReady);
  gate.open();
  int value = 0;
  STRATA_ASSERT_CUDA(cudaMemcpy(&value, device.get(), sizeof(int), cudaMemcpyDeviceToHost));
  EXPECT_EQ(value, 0x01010101);
  EXPECT_FALSE(gate.timed_out());
}

TEST_F(SimRuntimeMemory, StreamOrderedAllocation) {
  ScopedStream stream;
  size_t free_before = 0;
  size_t total = 0;
  STRATA_ASSERT_CUDA(cudaMemGetInfo(&free_before, &total));
  void* memory = nullptr;
  STRATA_ASSERT_CUDA(cudaMallocAsync(&memory, 4096, stream));
  STRATA_ASSERT_CUDA(cudaMemsetAsync(memory, 3, 4096, stream));
  STRATA_ASSERT_CUDA(cudaFreeAsync(memory, stream));
  EXPECT_EQ(cudaFreeAsync(memory, stream), cudaErrorInvalidValue);  // already being freed
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(stream));
  size_t free_after = 0;
  STRATA_ASSERT_CUDA(cudaMemGetInfo(&free_after, &total));
  EXPECT_EQ(free_after, free_before);
}

TEST_F(SimRuntimeMemory, PointerAttributesTellMemoryApart) {
  DeviceBuffer<int> device(4);
  PinnedBuffer<int> pinned(4);
  std::vector<int> pageable(4);
  cudaPointerAttributes attributes{};
  STRATA_ASSERT_CUDA(cudaPointerGetAttributes(&attributes, device.get() + 1));
  EXPECT_EQ(attributes.type, cudaMemoryTypeDevice);
  STRATA_ASSERT_CUDA(cudaPointerGetAttributes(&attributes, pinned.get()));
  EXPECT_EQ(attributes.type, cudaMemoryTypeHost);
  STRATA_ASSERT_CUDA(cudaPointerGetAttributes(&attributes, pageable.data()));
  EXPECT_EQ(attributes.type, cudaMemoryTypeUnregistered);
  // Registering pageable memory makes it pinned until it is unregistered.
  STRATA_ASSERT_CUDA(cudaHostRegister(pageable.data(), pageable.size() * sizeof(int), cudaHostRegisterDefault));
  EXPECT_EQ(cudaHostRegister(pageable.data() + 1, sizeof(int), cudaHostRegisterDefault),
            cudaErrorHostMemoryAlreadyRegistered);
  STRATA_ASSERT_CUDA(cudaPointerGetAttributes(&attributes, pageable.data()));
  EXPECT_EQ(attributes.type, cudaMemoryTypeHost);
  STRATA_ASSERT_CUDA(cudaHostUnregister(pageable.data()));
  EXPECT_EQ(cudaHostUnregister(pageable.data()), cudaErrorHostMemoryNotRegistered);
  STRATA_ASSERT_CUDA(cudaPointerGetAttributes(&attributes, pageable.data()));
  EXPECT_EQ(attributes.type, cudaMemoryTypeUnregistered);
}

}  // namespace
