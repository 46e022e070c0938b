// Streams and events: ordering, queries, timing, and the per-thread current stream.
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "strata/core/allocator.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "tests/support/device_test.h"
#include "tests/support/stream_gate.h"

namespace strata {
namespace {

using ::testing::HasSubstr;
using StreamTest = testing::DeviceTest;

TEST_F(StreamTest, OwnsANonDefaultStreamAndMovesIt) {
  Stream stream;
  EXPECT_NE(stream.get(), nullptr);
  EXPECT_EQ(stream.device(), current_device());
  const cudaStream_t handle = stream.get();
  Stream moved = std::move(stream);
  EXPECT_EQ(moved.get(), handle);
  EXPECT_EQ(stream.get(), nullptr);  // NOLINT(bugprone-use-after-move): checking the moved-from state
  EXPECT_THAT([&] { stream.synchronize(); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("never uses the default stream")));
}

TEST_F(StreamTest, EventQueryFollowsTheWorkItRecorded) {
  Stream stream;
  Event never_recorded;
  EXPECT_TRUE(never_recorded.query());

  Event after_gate;
  testing::StreamGate gate(stream);
  after_gate.record(stream);
  EXPECT_FALSE(after_gate.query());
  EXPECT_FALSE(stream.query());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "a not-ready query must not leave an error behind";

  gate.open();
  after_gate.synchronize();
  EXPECT_TRUE(after_gate.query());
  stream.synchronize();
  EXPECT_TRUE(stream.query());
}

TEST_F(StreamTest, WaitOrdersWorkAcrossStreams) {
  Stream producer, consumer;
  Tensor x = Tensor::empty({4096}, DType::f32, producer);
  x.fill(1.0, producer);
  producer.synchronize();

  Event produced, consumed;
  testing::StreamGate gate(producer);
  x.fill(2.0, producer);  // held back by the gate
  produced.record(producer);
  consumer.wait(produced);
  consumed.record(consumer);
  EXPECT_FALSE(consumed.query()) << "the consumer must wait for the gated producer";

  gate.open();
  Tensor copy = x.to_host(consumer);
  EXPECT_THAT(copy.to_vector<float>(nullptr), ::testing::Each(2.0f));
}

TEST_F(StreamTest, TimingEventsMeasureElapsedTime) {
  Stream stream;
  Event start(EventTiming::enabled), stop(EventTiming::enabled);
  Tensor x = Tensor::empty({1 << 16}, DType::f32, stream);
  start.record(stream);
  x.fill(3.0, stream);
  stop.record(stream);
  stop.synchronize();
  EXPECT_GE(start.elapsed_ms(stop), 0.0f);

  Event untimed;
  untimed.record(stream);
  untimed.synchronize();
  EXPECT_THAT([&] { start.elapsed_ms(untimed); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("both events need EventTiming::enabled")));
}

TEST_F(StreamTest, CurrentStreamDefaultsToThePrimaryStream) {
  const cudaStream_t primary = primary_stream(current_device());
  EXPECT_NE(primary, nullptr);
  EXPECT_EQ(current_stream(), primary);
  EXPECT_EQ(primary_stream(current_device()), primary);
}

TEST_F(StreamTest, GuardsSetAndRestoreTheCurrentStreamPerThread) {
  const cudaStream_t primary = current_stream();
  Stream outer, inner;
  {
    StreamGuard outer_guard(outer);
    EXPECT_EQ(current_stream(), outer.get());
    {
      StreamGuard inner_guard(inner);
      EXPECT_EQ(current_stream(), inner.get());
      cudaStream_t seen_by_other_thread = nullptr;
      std::thread([&] { seen_by_other_thread = current_stream(); }).join();
      EXPECT_EQ(seen_by_other_thread, primary);
    }
    EXPECT_EQ(current_stream(), outer.get());
  }
  EXPECT_EQ(current_stream(), primary);
}

TEST_F(StreamTest, MemoryMayOutliveTheStreamObjectItWasAllocatedOn) {
  DeviceBuffer buffer;
  {
    Stream temporary;
    buffer = allocate_device(1024, temporary);
  }
  ::testing::internal::CaptureStderr();
  buffer.reset();
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "") << "freeing after the Stream is gone must be silent";
}

}  // namespace
}  // namespace strata
