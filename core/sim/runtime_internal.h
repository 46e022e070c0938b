// Internals of the simulated CUDA runtime shared by core/sim/runtime_*.cpp: the stream and
// event objects behind cudaStream_t and cudaEvent_t, the queue that runs work on a stream's
// worker thread, and the error state (the calling thread's last error, the sticky device
// error). Nothing outside core/sim includes this.
#pragma once

#include <cuda_runtime_api.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace strata::sim::runtime_internal {

using Task = std::function<void()>;
using Clock = std::chrono::steady_clock;

}  // namespace strata::sim::runtime_internal

// The object behind a cudaStream_t: a FIFO of operations and the one worker thread that runs
// them in order, so that two streams really run concurrently, as on a GPU. Shared ownership:
// the handle's registry entry, the worker, and every pending dependency on the stream hold
// it, so cudaStreamDestroy can return while queued work still runs.
struct CUstream_st {
  unsigned flags = cudaStreamDefault;
  int priority = 0;
  bool legacy = false;  // the legacy default stream (0, cudaStreamLegacy, cudaStreamPerThread)

  std::mutex mutex;  // guards everything below
  std::condition_variable changed;  // new work, progress, or destruction
  std::deque<strata::sim::runtime_internal::Task> queue;
  uint64_t submitted = 0;  // operations ever queued; the n-th one has ticket n
  uint64_t completed = 0;  // operations finished, in order
  bool destroyed = false;  // the worker exits once the queue is empty
};

namespace strata::sim::runtime_internal {

// The moment a stream has completed its first `ticket` operations.
struct StreamPoint {
  std::shared_ptr<CUstream_st> stream;
  uint64_t ticket = 0;
};

bool reached(const StreamPoint& point);
void wait_for(const StreamPoint& point);

// The stream a handle names: 0, cudaStreamLegacy and cudaStreamPerThread all mean the legacy
// default stream. nullptr for a handle that is not a live stream.
std::shared_ptr<CUstream_st> resolve_stream(cudaStream_t handle);
std::shared_ptr<CUstream_st> legacy_stream();

// What a queued operation does when the device has already failed (sticky error): kernels,
// copies and memsets are skipped; event records, host functions and frees still run so
// that nothing waiting on them hangs and no memory leaks.
enum class AfterFailure { skip, run };

// Queues work on stream, behind the legacy-stream ordering CUDA implies (see
// runtime_streams.cpp), and returns the point at which it will have completed.
StreamPoint submit(const std::shared_ptr<CUstream_st>& stream, Task work, AfterFailure after_failure);

// Submits work and, when wait is true, blocks until it has completed.
void submit_and_maybe_wait(const std::shared_ptr<CUstream_st>& stream, Task work, AfterFailure after_failure,
                           bool wait);

// Blocks until every operation queued so far on any stream has completed.
void synchronize_all_streams();

// ---- Errors ----------------------------------------------------------------------------

// Records code as the calling thread's last error (as every failing CUDA call does) and
// returns it. cudaSuccess and cudaErrorNotReady are not errors and are not recorded.
cudaError_t fail(cudaError_t code);

// cudaErrorLaunchFailure after a kernel failed on the simulated device, until
// clear_device_error(); cudaSuccess otherwise.
cudaError_t sticky_error();
bool device_failed();
void record_device_failure(cudaError_t code, std::string detail);

}  // namespace strata::sim::runtime_internal

// The object behind a cudaEvent_t. Each cudaEventRecord replaces `latest` with a new record,
// so waits that captured an earlier record keep waiting for that one, as in CUDA.
struct CUevent_st {
  struct Record {
    strata::sim::runtime_internal::StreamPoint point;
    // Written by the stream's worker before the point is reached.
    std::shared_ptr<strata::sim::runtime_internal::Clock::time_point> time;
  };

  unsigned flags = cudaEventDefault;
  std::mutex mutex;             // guards latest
  std::optional<Record> latest;  // nullopt until the first cudaEventRecord
};
