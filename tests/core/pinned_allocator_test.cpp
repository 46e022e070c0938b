// The caching pinned host allocator: reuse once idle, record_stream, statistics.
#include <cstring>

#include <gtest/gtest.h>

#include "strata/core/pinned.h"
#include "strata/core/stream.h"
#include "tests/support/device_test.h"
#include "tests/support/stream_gate.h"

namespace strata {
namespace {

class PinnedAllocatorTest : public testing::DeviceTest {
 protected:
  void SetUp() override {
    testing::DeviceTest::SetUp();
    if (!IsSkipped()) empty_pinned_cache();
  }
};

TEST_F(PinnedAllocatorTest, GivesHostWritableMemoryAndReusesIt) {
  void* first = nullptr;
  {
    PinnedBuffer buffer = allocate_pinned(3000);
    ASSERT_TRUE(buffer);
    EXPECT_EQ(buffer.size(), 3000u);
    std::memset(buffer.data(), 0x5a, buffer.size());
    EXPECT_EQ(buffer.as<unsigned char>()[2999], 0x5a);
    first = buffer.data();
  }
  const PinnedMemoryStats before = pinned_memory_stats();
  PinnedBuffer again = allocate_pinned(3000);
  EXPECT_EQ(again.data(), first);
  EXPECT_EQ(pinned_memory_stats().cache_hits, before.cache_hits + 1);
  EXPECT_EQ(pinned_memory_stats().cuda_malloc_host_calls, before.cuda_malloc_host_calls);
}

TEST_F(PinnedAllocatorTest, WaitsForRecordedStreamsBeforeReuse) {
  Stream stream;
  PinnedBuffer buffer = allocate_pinned(8192);
  buffer.record_stream(stream);  // e.g. an async copy from it is queued behind the gate
  void* const first = buffer.data();
  PinnedBuffer spare = allocate_pinned(8192);
  void* const spare_block = spare.data();
  spare.reset();  // no stream used it: idle at once

  // No cudaMallocHost below while the stream is gated (a driver may serialise it).
  auto gate = std::make_unique<testing::StreamGate>(stream);
  buffer.reset();
  PinnedBuffer while_busy = allocate_pinned(8192);
  EXPECT_EQ(while_busy.data(), spare_block);

  gate.reset();  // opens the gate and drains the stream
  PinnedBuffer after = allocate_pinned(8192);
  EXPECT_EQ(after.data(), first);
}

TEST_F(PinnedAllocatorTest, StatisticsAndEmptyingTheCache) {
  const PinnedMemoryStats start = pinned_memory_stats();
  EXPECT_EQ(start.reserved_bytes, start.in_use_bytes);
  {
    PinnedBuffer buffer = allocate_pinned(100);
    EXPECT_EQ(pinned_memory_stats().in_use_bytes, start.in_use_bytes + 512);
  }
  EXPECT_EQ(pinned_memory_stats().in_use_bytes, start.in_use_bytes);
  EXPECT_EQ(pinned_memory_stats().reserved_bytes, start.reserved_bytes + 512);
  empty_pinned_cache();
  EXPECT_EQ(pinned_memory_stats().reserved_bytes, start.reserved_bytes);
  EXPECT_FALSE(allocate_pinned(0));
}

}  // namespace
}  // namespace strata
