// The caching device allocator: stream-ordered reuse, record_stream, statistics, the cache
// limits, emptying the cache, running out of memory, and the private pools of CUDA graphs.
#include <thread>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "strata/core/allocator.h"
#include "strata/core/config.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "tests/support/device_test.h"
#include "tests/support/stream_gate.h"

#if STRATA_BACKEND_SIM
#include "core/sim/runtime.h"
#endif

namespace strata {
namespace {

using ::testing::HasSubstr;

// Every test starts from an empty cache so that blocks cached by earlier tests do not
// serve its requests.
class AllocatorTest : public testing::DeviceTest {
 protected:
  void SetUp() override {
    testing::DeviceTest::SetUp();
    if (IsSkipped()) return;
    empty_device_cache();
    device_ = current_device();
  }
  DeviceMemoryStats stats() const { return device_memory_stats(device_); }

  int device_ = 0;
};

TEST_F(AllocatorTest, ZeroBytesGiveAnEmptyBuffer) {
  Stream stream;
  const DeviceMemoryStats before = stats();
  DeviceBuffer buffer = allocate_device(0, stream);
  EXPECT_FALSE(buffer);
  EXPECT_EQ(buffer.data(), nullptr);
  EXPECT_EQ(stats().allocations, before.allocations);
}

TEST_F(AllocatorTest, RefusesTheDefaultStream) {
  EXPECT_THAT([] { allocate_device(64, nullptr); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("allocate_device(64 bytes): no stream given")));
}

TEST_F(AllocatorTest, BuffersAreAlignedAndDescribeThemselves) {
  Stream stream;
  DeviceBuffer buffer = allocate_device(1000, stream);
  ASSERT_TRUE(buffer);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(buffer.data()) % 256, 0u);
  EXPECT_EQ(buffer.size(), 1000u);
  EXPECT_EQ(buffer.stream(), stream.get());
  EXPECT_EQ(buffer.device(), device_);

  DeviceBuffer moved = std::move(buffer);
  EXPECT_FALSE(buffer);  // NOLINT(bugprone-use-after-move)
  EXPECT_TRUE(moved);
}

// While a stream is gated, these tests allocate only from the cache: a real driver may
// serialise cudaMalloc with running work, which would wait for the gate forever.
TEST_F(AllocatorTest, ReusesAFreedBlockOnTheSameStreamAtOnce) {
  Stream stream;
  DeviceBuffer buffer = allocate_device(1000, stream);
  void* const first = buffer.data();
  testing::StreamGate gate(stream);  // the stream is busy: the block may still be in use on the GPU
  buffer.reset();
  const DeviceMemoryStats before = stats();
  DeviceBuffer again = allocate_device(900, stream);  // rounds to the same 1024 bytes
  EXPECT_EQ(again.data(), first) << "stream order makes immediate reuse on the same stream safe";
  EXPECT_EQ(stats().cache_hits, before.cache_hits + 1);
  EXPECT_EQ(stats().cuda_malloc_calls, before.cuda_malloc_calls);
}

TEST_F(AllocatorTest, ReusesOnAnotherStreamOnlyAfterTheFreeEventCompleted) {
  Stream first_stream, second_stream;
  DeviceBuffer buffer = allocate_device(4096, first_stream);
  void* const first = buffer.data();
  DeviceBuffer spare = allocate_device(4096, second_stream);
  void* const spare_block = spare.data();
  spare.reset();  // cached, free to use on second_stream

  auto gate = std::make_unique<testing::StreamGate>(first_stream);
  buffer.reset();  // first_stream may still use the block
  DeviceBuffer while_busy = allocate_device(4096, second_stream);
  EXPECT_EQ(while_busy.data(), spare_block);
  EXPECT_NE(while_busy.data(), first) << "first_stream may still use the block";

  gate.reset();  // opens the gate and drains first_stream
  const DeviceMemoryStats before = stats();
  DeviceBuffer after = allocate_device(4096, second_stream);
  EXPECT_EQ(after.data(), first);
  EXPECT_EQ(stats().cache_hits, before.cache_hits + 1);
}

TEST_F(AllocatorTest, RecordStreamDelaysReuseUntilThatStreamIsDone) {
  Stream owner, reader;
  DeviceBuffer buffer = allocate_device(2048, owner);
  buffer.record_stream(reader);
  void* const first = buffer.data();
  DeviceBuffer spare = allocate_device(2048, owner);
  void* const spare_block = spare.data();
  spare.reset();

  auto gate = std::make_unique<testing::StreamGate>(reader);
  buffer.reset();
  DeviceBuffer while_reading = allocate_device(2048, owner);
  EXPECT_EQ(while_reading.data(), spare_block) << "reader still uses the first block, even for the owner stream";

  gate.reset();
  DeviceBuffer after = allocate_device(2048, owner);
  EXPECT_EQ(after.data(), first);
}

TEST_F(AllocatorTest, RecordStreamOnAnEmptyBufferThrows) {
  Stream stream;
  DeviceBuffer empty;
  EXPECT_THROW(empty.record_stream(stream), InvalidArgument);
}

TEST_F(AllocatorTest, CachedBlocksAreReusedOnlyWithBoundedWaste) {
  Stream stream;
  void* large = allocate_device(4096, stream).data();  // freed at once, cached
  DeviceBuffer small = allocate_device(1024, stream);
  EXPECT_NE(small.data(), large) << "4096 bytes for a 1024-byte request wastes too much";
  DeviceBuffer close_fit = allocate_device(3584, stream);
  EXPECT_EQ(close_fit.data(), large);
}

TEST_F(AllocatorTest, StatisticsTrackUseReservationAndPeak) {
  Stream stream;
  const DeviceMemoryStats start = stats();
  EXPECT_EQ(start.reserved_bytes, start.in_use_bytes) << "the cache was emptied";
  {
    DeviceBuffer a = allocate_device(1000, stream);  // 1024 after rounding
    DeviceBuffer b = allocate_device(5000, stream);  // 5120
    const DeviceMemoryStats during = stats();
    EXPECT_EQ(during.in_use_bytes, start.in_use_bytes + 1024 + 5120);
    EXPECT_EQ(during.reserved_bytes, start.reserved_bytes + 1024 + 5120);
    EXPECT_EQ(during.cuda_malloc_calls, start.cuda_malloc_calls + 2);
    EXPECT_EQ(during.allocations, start.allocations + 2);
    EXPECT_GE(during.peak_in_use_bytes, during.in_use_bytes);
  }
  const DeviceMemoryStats after = stats();
  EXPECT_EQ(after.in_use_bytes, start.in_use_bytes);
  EXPECT_EQ(after.cached_bytes(), 1024u + 5120u);
  EXPECT_GE(after.peak_in_use_bytes, start.in_use_bytes + 6144);

  reset_peak_device_memory(device_);
  EXPECT_EQ(stats().peak_in_use_bytes, after.in_use_bytes);

  empty_device_cache();
  const DeviceMemoryStats emptied = stats();
  EXPECT_EQ(emptied.reserved_bytes, emptied.in_use_bytes);
  EXPECT_EQ(emptied.cuda_free_calls, after.cuda_free_calls + 2);
}

TEST_F(AllocatorTest, IsThreadSafe) {
  const DeviceMemoryStats start = stats();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      Stream stream;
      std::vector<DeviceBuffer> held;
      for (int i = 0; i < 200; ++i) {
        held.push_back(allocate_device(static_cast<std::size_t>(512 * (1 + (i + t) % 7)), stream));
        if (held.size() > 5) held.erase(held.begin());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const DeviceMemoryStats end = stats();
  EXPECT_EQ(end.in_use_bytes, start.in_use_bytes);
  EXPECT_EQ(end.allocations, start.allocations + 800);
}

#if STRATA_BACKEND_SIM
// Calls cudaMalloc while a stream is gated: safe in the simulator only (see above).
TEST_F(AllocatorTest, AllocatesAFreshBlockWhenNoCachedOneMayBeUsed) {
  Stream first_stream, second_stream;
  DeviceBuffer buffer = allocate_device(8192, first_stream);
  void* const first = buffer.data();
  testing::StreamGate gate(first_stream);
  buffer.reset();
  const DeviceMemoryStats before = stats();
  DeviceBuffer other = allocate_device(8192, second_stream);
  EXPECT_NE(other.data(), first);
  EXPECT_EQ(stats().cuda_malloc_calls, before.cuda_malloc_calls + 1);
  EXPECT_EQ(stats().cache_hits, before.cache_hits);
}

// Shrinks the simulated device to what is in use plus headroom, for one test.
class SimulatedMemoryLimit {
 public:
  explicit SimulatedMemoryLimit(std::size_t headroom) : previous_(sim::device_memory_limit()) {
    std::size_t free_bytes = 0, total_bytes = 0;
    EXPECT_EQ(cudaMemGetInfo(&free_bytes, &total_bytes), cudaSuccess);
    sim::set_device_memory_limit(total_bytes - free_bytes + headroom);
  }
  ~SimulatedMemoryLimit() { sim::set_device_memory_limit(previous_); }
  SimulatedMemoryLimit(const SimulatedMemoryLimit&) = delete;
  SimulatedMemoryLimit& operator=(const SimulatedMemoryLimit&) = delete;

 private:
  std::size_t previous_;
};

TEST_F(AllocatorTest, OutOfMemoryMessageStatesTheSizesInvolved) {
  Stream stream;
  SimulatedMemoryLimit limit(64u << 20);
  DeviceBuffer held = allocate_device(8u << 20, stream);
  const std::size_t requested = 200u << 20;
  try {
    allocate_device(requested, stream);
    FAIL() << "a 200 MiB allocation fitted in 64 MiB";
  } catch (const OutOfMemoryError& error) {
    EXPECT_EQ(error.requested_bytes(), requested);
    EXPECT_EQ(error.in_use_bytes(), stats().in_use_bytes);
    EXPECT_THAT(error.what(), HasSubstr("could not get 209715200 bytes"));
    EXPECT_THAT(error.what(), HasSubstr(std::to_string(stats().in_use_bytes) + " bytes in use"));
    EXPECT_THAT(error.what(), HasSubstr("bytes reserved by Strata's allocator"));
    EXPECT_THAT(error.what(), HasSubstr("bytes free of"));
    EXPECT_THAT(error.what(), HasSubstr("cuda:" + std::to_string(device_)));
  }
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "the failed cudaMalloc must not poison the next launch check";
}

TEST_F(AllocatorTest, EmptiesTheCacheAndRetriesBeforeGivingUp) {
  Stream stream;
  SimulatedMemoryLimit limit(64u << 20);
  allocate_device(40u << 20, stream).reset();  // cached, too small for the next request
  const DeviceMemoryStats before = stats();
  DeviceBuffer larger = allocate_device(50u << 20, stream);  // fits only once the 40 MiB are released
  EXPECT_TRUE(larger);
  EXPECT_EQ(stats().cache_flushes, before.cache_flushes + 1);
  EXPECT_EQ(stats().cuda_free_calls, before.cuda_free_calls + 1);
}
#endif

// A capture on stream, begun and ended by the test (thread-local mode, as CudaGraph's), with
// pool serving it; the graph is destroyed at once.
class RawCapture {
 public:
  RawCapture(cudaStream_t stream, GraphMemoryPool* pool) : stream_(stream), pool_(pool) {
    EXPECT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    if (pool_ != nullptr) pool_->begin_capture(stream);
  }
  ~RawCapture() { end(); }
  RawCapture(const RawCapture&) = delete;
  RawCapture& operator=(const RawCapture&) = delete;

  void end() {
    if (stream_ == nullptr) return;
    cudaGraph_t graph = nullptr;
    EXPECT_EQ(cudaStreamEndCapture(std::exchange(stream_, nullptr), &graph), cudaSuccess);
    if (pool_ != nullptr) pool_->end_capture();
    if (graph != nullptr) {
      EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);
    }
  }

 private:
  cudaStream_t stream_;
  GraphMemoryPool* pool_;
};

TEST_F(AllocatorTest, AGraphPoolServesOnlyTheStreamsOfItsCapture) {
  Stream capturing;
  Stream other;
  GraphMemoryPool pool;
  RawCapture capture(capturing, &pool);
  DeviceBuffer in_graph = allocate_device(1000, capturing);
  EXPECT_EQ(pool.reserved_bytes(), 1024u);
  EXPECT_EQ(stats().graph_pool_bytes, 1024u);
  // An eager allocation on a stream outside the capture, even one that needs cudaMalloc.
  DeviceBuffer eager = allocate_device(3000, other);
  EXPECT_EQ(pool.reserved_bytes(), 1024u);
  eager.reset();
  in_graph.reset();
  capture.end();
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST_F(AllocatorTest, ACaptureReusesWhatItFreedOnlyOnTheSameStream) {
  Stream origin;
  Stream side;
  Event forked;
  Event joined;
  GraphMemoryPool pool;
  RawCapture capture(origin, &pool);
  forked.record(origin);
  side.wait(forked);
  void* freed = nullptr;
  {
    DeviceBuffer first = allocate_device(2048, origin);
    freed = first.data();
  }
  DeviceBuffer on_side = allocate_device(2048, side);
  EXPECT_NE(on_side.data(), freed) << "no edge orders the side stream after the free";
  DeviceBuffer on_origin = allocate_device(2048, origin);
  EXPECT_EQ(on_origin.data(), freed);
  joined.record(side);
  origin.wait(joined);
  capture.end();

  // After the capture, the pool keeps its blocks from everyone, its own stream included.
  on_origin.reset();
  DeviceBuffer after = allocate_device(2048, origin);
  EXPECT_NE(after.data(), freed);
  EXPECT_EQ(pool.reserved_bytes(), 2u * 2048u);
}

TEST_F(AllocatorTest, ABlockFreedDuringACaptureOnItsStreamStaysWithTheGraph) {
  Stream stream;
  DeviceBuffer before_capture = allocate_device(4096, stream);
  {
    GraphMemoryPool pool;
    RawCapture capture(stream, &pool);
    before_capture.reset();  // the graph may read it at every replay
    EXPECT_EQ(pool.reserved_bytes(), 4096u);
    capture.end();
    EXPECT_EQ(stats().graph_pool_bytes, 4096u);
  }
  EXPECT_EQ(stats().graph_pool_bytes, 0u);
  const std::size_t reserved = stats().reserved_bytes;
  stream.synchronize();
  empty_device_cache();  // only possible for a block back in the cache
  EXPECT_EQ(stats().reserved_bytes, reserved - 4096u);
}

TEST_F(AllocatorTest, AnAllocationInACaptureThatNoPoolServesThrows) {
  Stream served;
  Stream unserved;
  GraphMemoryPool pool;
  RawCapture capture(served, &pool);
  RawCapture raw(unserved, nullptr);
  EXPECT_THAT([&] { allocate_device(256, unserved); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("no GraphMemoryPool serves")));
  EXPECT_THAT([&] { GraphMemoryPool().begin_capture(served); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("served by another pool")));
  Stream idle;
  EXPECT_THAT([&] { GraphMemoryPool().begin_capture(idle); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("is not capturing")));
}

}  // namespace
}  // namespace strata
