// Tests of the simulated runtime's streams and events: order within a stream, real
// concurrency between streams, cross-stream ordering with events, the legacy default
// stream's implicit synchronisation, and event queries, synchronisation and timing.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <numeric>
#include <thread>
#include <vector>

#include "tests/sim/runtime_test_support.h"

namespace {

using strata::testing::DeviceBuffer;
using strata::testing::Gate;
using strata::testing::kHangTimeout;
using strata::testing::launch_host_function;
using strata::testing::OrderLog;
using strata::testing::PinnedBuffer;
using strata::testing::ScopedEvent;
using strata::testing::ScopedStream;

TEST(SimRuntimeStreams, OperationsOnOneStreamRunInOrder) {
  constexpr int kSteps = 200;
  DeviceBuffer<int> value(1);
  PinnedBuffer<int> snapshots(kSteps);
  ScopedStream stream;
  OrderLog log;
  for (int step = 0; step < kSteps; ++step) {
    // Each memset must land before the copy queued after it, and after the previous copy.
    STRATA_ASSERT_CUDA(cudaMemsetAsync(value.get(), step, sizeof(int), stream));
    STRATA_ASSERT_CUDA(
        cudaMemcpyAsync(snapshots.get() + step, value.get(), sizeof(int), cudaMemcpyDeviceToHost, stream));
    STRATA_ASSERT_CUDA(log.add_on(stream, step));
  }
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(stream));
  std::vector<int> expected_log(kSteps);
  std::iota(expected_log.begin(), expected_log.end(), 0);
  EXPECT_EQ(log.labels(), expected_log);
  for (int step = 0; step < kSteps; ++step) {
    const int byte = step & 0xff;
    ASSERT_EQ(snapshots.get()[step], byte | byte << 8 | byte << 16 | byte << 24) << "step " << step;
  }
}

// Stream A's host function can only finish once stream B's, queued later, has run: with
// streams executed one after the other this would time out.
TEST(SimRuntimeStreams, TwoStreamsRunConcurrently) {
  ScopedStream a;
  ScopedStream b;
  auto b_ran = std::make_shared<std::promise<void>>();
  auto a_saw_b = std::make_shared<std::atomic<bool>>(false);
  STRATA_ASSERT_CUDA(launch_host_function(a, [future = b_ran->get_future().share(), a_saw_b] {
    *a_saw_b = future.wait_for(kHangTimeout) == std::future_status::ready;
  }));
  STRATA_ASSERT_CUDA(launch_host_function(b, [b_ran] { b_ran->set_value(); }));
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(a));
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(b));
  EXPECT_TRUE(*a_saw_b);
}

TEST(SimRuntimeStreams, WithoutAWaitTheSecondStreamRunsAhead) {
  ScopedStream producer;
  ScopedStream consumer;
  OrderLog log;
  Gate gate;
  STRATA_ASSERT_CUDA(gate.hold(producer));
  STRATA_ASSERT_CUDA(log.add_on(producer, 1));
  STRATA_ASSERT_CUDA(log.add_on(consumer, 2));
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(consumer));
  gate.open();
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(producer));
  EXPECT_EQ(log.labels(), (std::vector<int>{2, 1}));
}

TEST(SimRuntimeStreams, StreamWaitEventOrdersAcrossStreams) {
  ScopedStream producer;
  ScopedStream consumer;
  ScopedEvent produced;
  OrderLog log;
  Gate gate;
  STRATA_ASSERT_CUDA(gate.hold(producer));
  STRATA_ASSERT_CUDA(log.add_on(producer, 1));
  STRATA_ASSERT_CUDA(cudaEventRecord(produced, producer));
  STRATA_ASSERT_CUDA(cudaStreamWaitEvent(consumer, produced, 0));
  STRATA_ASSERT_CUDA(log.add_on(consumer, 2));
  EXPECT_EQ(cudaStreamQuery(consumer), cudaErrorNotReady);
  gate.open();
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(consumer));
  EXPECT_EQ(log.labels(), (std::vector<int>{1, 2}));
  EXPECT_FALSE(gate.timed_out());
}

// A wait binds to the record that was the latest when cudaStreamWaitEvent was called;
// recording the event again elsewhere afterwards does not move it.
TEST(SimRuntimeStreams, StreamWaitEventUsesTheRecordCurrentAtTheCall) {
  ScopedStream first;
  ScopedStream second;
  ScopedStream waiter;
  ScopedEvent event;
  Gate first_gate;
  Gate second_gate;
  STRATA_ASSERT_CUDA(first_gate.hold(first));
  STRATA_ASSERT_CUDA(cudaEventRecord(event, first));
  STRATA_ASSERT_CUDA(cudaStreamWaitEvent(waiter, event, 0));
  STRATA_ASSERT_CUDA(second_gate.hold(second));
  STRATA_ASSERT_CUDA(cudaEventRecord(event, second));
  first_gate.open();
  // Only the first record matters to the waiter, though the event's latest record is pending.
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(waiter));
  EXPECT_EQ(cudaEventQuery(event), cudaErrorNotReady);
  second_gate.open();
  STRATA_ASSERT_CUDA(cudaEventSynchronize(event));
  EXPECT_FALSE(second_gate.timed_out());
}

TEST(SimRuntimeStreams, WaitingForANeverRecordedEventDoesNothing) {
  ScopedStream stream;
  ScopedEvent event;
  STRATA_ASSERT_CUDA(cudaStreamWaitEvent(stream, event, 0));
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(stream));
}

TEST(SimRuntimeStreams, QueryReportsPendingWork) {
  ScopedStream stream;
  STRATA_EXPECT_CUDA(cudaStreamQuery(stream));
  Gate gate;
  STRATA_ASSERT_CUDA(gate.hold(stream));
  EXPECT_EQ(cudaStreamQuery(stream), cudaErrorNotReady);
  gate.open();
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(stream));
  STRATA_EXPECT_CUDA(cudaStreamQuery(stream));
}

TEST(SimRuntimeStreams, DestroyReturnsAtOnceAndQueuedWorkStillRuns) {
  cudaStream_t stream = nullptr;
  STRATA_ASSERT_CUDA(cudaStreamCreate(&stream));
  Gate gate;
  auto finished = std::make_shared<std::promise<void>>();
  auto done = finished->get_future();
  STRATA_ASSERT_CUDA(gate.hold(stream));
  STRATA_ASSERT_CUDA(launch_host_function(stream, [finished] { finished->set_value(); }));
  STRATA_ASSERT_CUDA(cudaStreamDestroy(stream));
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaErrorInvalidResourceHandle);
  EXPECT_EQ(cudaStreamDestroy(stream), cudaErrorInvalidResourceHandle);
  (void)cudaGetLastError();
  gate.open();
  EXPECT_EQ(done.wait_for(kHangTimeout), std::future_status::ready);
}

TEST(SimRuntimeStreams, CreationFlagsAndPriorities) {
  cudaStream_t stream = nullptr;
  STRATA_ASSERT_CUDA(cudaStreamCreateWithPriority(&stream, cudaStreamNonBlocking, -100));
  unsigned flags = 0;
  int priority = 0;
  STRATA_EXPECT_CUDA(cudaStreamGetFlags(stream, &flags));
  STRATA_EXPECT_CUDA(cudaStreamGetPriority(stream, &priority));
  EXPECT_EQ(flags, unsigned{cudaStreamNonBlocking});
  EXPECT_EQ(priority, -5);  // clamped to the device's greatest priority
  STRATA_EXPECT_CUDA(cudaStreamDestroy(stream));
  EXPECT_EQ(cudaStreamCreateWithFlags(&stream, 0x8), cudaErrorInvalidValue);
  EXPECT_EQ(cudaStreamCreate(nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cudaStreamDestroy(nullptr), cudaErrorInvalidResourceHandle);
  (void)cudaGetLastError();
}

TEST(SimRuntimeStreams, HostFunctionsAndCallbacksRunInStreamOrder) {
  ScopedStream stream;
  OrderLog log;
  STRATA_ASSERT_CUDA(log.add_on(stream, 1));
  struct CallbackData {
    OrderLog* log;
    cudaError_t status = cudaErrorUnknown;
  } data{&log};
  STRATA_ASSERT_CUDA(cudaStreamAddCallback(
      stream,
      [](cudaStream_t, cudaError_t status, void* user_data) {
        auto* callback_data = static_cast<CallbackData*>(user_data);
        callback_data->status = status;
        callback_data->log->add(2);
      },
      &data, 0));
  STRATA_ASSERT_CUDA(log.add_on(stream, 3));
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(stream));
  EXPECT_EQ(log.labels(), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(data.status, cudaSuccess);
  EXPECT_EQ(cudaLaunchHostFunc(stream, nullptr, nullptr), cudaErrorInvalidValue);
  (void)cudaGetLastError();
}

// The legacy default stream waits for work queued earlier on blocking streams, and blocking
// streams wait for work queued earlier on it; non-blocking streams ignore it.
TEST(SimRuntimeStreams, LegacyStreamWaitsForBlockingStreamsOnly) {
  ScopedStream blocking;
  ScopedStream non_blocking(cudaStreamNonBlocking);
  OrderLog log;
  Gate gate;
  STRATA_ASSERT_CUDA(gate.hold(blocking));
  STRATA_ASSERT_CUDA(log.add_on(blocking, 1));
  STRATA_ASSERT_CUDA(log.add_on(cudaStreamLegacy, 2));
  STRATA_ASSERT_CUDA(log.add_on(non_blocking, 3));
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(non_blocking));
  EXPECT_EQ(cudaStreamQuery(nullptr), cudaErrorNotReady);
  gate.open();
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(nullptr));
  EXPECT_EQ(log.labels(), (std::vector<int>{3, 1, 2}));
}

TEST(SimRuntimeStreams, BlockingStreamsWaitForTheLegacyStream) {
  ScopedStream blocking;
  ScopedStream non_blocking(cudaStreamNonBlocking);
  OrderLog log;
  Gate gate;
  STRATA_ASSERT_CUDA(gate.hold(nullptr));
  STRATA_ASSERT_CUDA(log.add_on(nullptr, 1));
  STRATA_ASSERT_CUDA(log.add_on(blocking, 2));
  STRATA_ASSERT_CUDA(log.add_on(non_blocking, 3));
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(non_blocking));
  EXPECT_EQ(cudaStreamQuery(blocking), cudaErrorNotReady);
  gate.open();
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(blocking));
  EXPECT_EQ(log.labels(), (std::vector<int>{3, 1, 2}));
}

TEST(SimRuntimeStreams, DeviceSynchronizeWaitsForEveryStream) {
  ScopedStream a;
  ScopedStream b(cudaStreamNonBlocking);
  std::atomic<int> finished{0};
  for (cudaStream_t stream : {static_cast<cudaStream_t>(a), static_cast<cudaStream_t>(b)}) {
    STRATA_ASSERT_CUDA(launch_host_function(stream, [&finished] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      ++finished;
    }));
  }
  STRATA_ASSERT_CUDA(cudaDeviceSynchronize());
  EXPECT_EQ(finished.load(), 2);
}

TEST(SimRuntimeEvents, NeverRecordedEventIsComplete) {
  ScopedEvent event;
  STRATA_EXPECT_CUDA(cudaEventQuery(event));
  STRATA_EXPECT_CUDA(cudaEventSynchronize(event));
}

TEST(SimRuntimeEvents, QueryAndSynchronizeFollowTheRecord) {
  ScopedStream stream;
  ScopedEvent event;
  Gate gate;
  STRATA_ASSERT_CUDA(gate.hold(stream));
  STRATA_ASSERT_CUDA(cudaEventRecord(event, stream));
  EXPECT_EQ(cudaEventQuery(event), cudaErrorNotReady);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // not ready is not an error
  gate.open();
  STRATA_ASSERT_CUDA(cudaEventSynchronize(event));
  STRATA_EXPECT_CUDA(cudaEventQuery(event));
}

TEST(SimRuntimeEvents, ElapsedTimeMeasuresTheWorkBetweenRecords) {
  ScopedStream stream;
  ScopedEvent start;
  ScopedEvent stop;
  STRATA_ASSERT_CUDA(cudaEventRecord(start, stream));
  STRATA_ASSERT_CUDA(
      launch_host_function(stream, [] { std::this_thread::sleep_for(std::chrono::milliseconds(30)); }));
  STRATA_ASSERT_CUDA(cudaEventRecord(stop, stream));
  STRATA_ASSERT_CUDA(cudaEventSynchronize(stop));
  float ms = 0.0f;
  STRATA_ASSERT_CUDA(cudaEventElapsedTime(&ms, start, stop));
  EXPECT_GE(ms, 29.0f);
  EXPECT_LT(ms, 10000.0f);
}

TEST(SimRuntimeEvents, ElapsedTimeErrorsAreCudas) {
  ScopedStream stream;
  ScopedEvent start;
  ScopedEvent stop;
  ScopedEvent untimed(cudaEventDisableTiming);
  float ms = 0.0f;
  // Never recorded.
  EXPECT_EQ(cudaEventElapsedTime(&ms, start, stop), cudaErrorInvalidResourceHandle);
  // Recorded, not complete.
  Gate gate;
  STRATA_ASSERT_CUDA(cudaEventRecord(start, stream));
  STRATA_ASSERT_CUDA(gate.hold(stream));
  STRATA_ASSERT_CUDA(cudaEventRecord(stop, stream));
  EXPECT_EQ(cudaEventElapsedTime(&ms, start, stop), cudaErrorNotReady);
  gate.open();
  STRATA_ASSERT_CUDA(cudaEventSynchronize(stop));
  STRATA_EXPECT_CUDA(cudaEventElapsedTime(&ms, start, stop));
  // Timing disabled, even once recorded and complete.
  STRATA_ASSERT_CUDA(cudaEventRecord(untimed, stream));
  STRATA_ASSERT_CUDA(cudaEventSynchronize(untimed));
  EXPECT_EQ(cudaEventElapsedTime(&ms, start, untimed), cudaErrorInvalidResourceHandle);
  EXPECT_EQ(cudaEventElapsedTime(nullptr, start, stop), cudaErrorInvalidValue);
  (void)cudaGetLastError();
}

TEST(SimRuntimeEvents, DestroyingARecordedEventKeepsWaitsIntact) {
  ScopedStream producer;
  ScopedStream consumer;
  OrderLog log;
  Gate gate;
  cudaEvent_t event = nullptr;
  STRATA_ASSERT_CUDA(cudaEventCreate(&event));
  STRATA_ASSERT_CUDA(gate.hold(producer));
  STRATA_ASSERT_CUDA(log.add_on(producer, 1));
  STRATA_ASSERT_CUDA(cudaEventRecord(event, producer));
  STRATA_ASSERT_CUDA(cudaStreamWaitEvent(consumer, event, 0));
  STRATA_ASSERT_CUDA(cudaEventDestroy(event));
  STRATA_ASSERT_CUDA(log.add_on(consumer, 2));
  EXPECT_EQ(cudaEventQuery(event), cudaErrorInvalidResourceHandle);
  (void)cudaGetLastError();
  gate.open();
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(consumer));
  EXPECT_EQ(log.labels(), (std::vector<int>{1, 2}));
}

TEST(SimRuntimeEvents, InvalidFlagsAreRejected) {
  cudaEvent_t event = nullptr;
  EXPECT_EQ(cudaEventCreateWithFlags(&event, 0x40), cudaErrorInvalidValue);
  EXPECT_EQ(cudaEventCreateWithFlags(&event, cudaEventInterprocess), cudaErrorInvalidValue);
  ScopedStream stream;
  ScopedEvent valid;
  EXPECT_EQ(cudaStreamWaitEvent(stream, valid, 0x10), cudaErrorInvalidValue);
  EXPECT_EQ(cudaEventRecordWithFlags(valid, stream, cudaEventRecordExternal), cudaErrorInvalidValue);
  (void)cudaGetLastError();
}

}  // namespace
