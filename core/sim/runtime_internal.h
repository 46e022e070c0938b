// Internals of the simulated CUDA runtime shared by core/sim/runtime_*.cpp: the stream,
// event and graph objects behind cudaStream_t, cudaEvent_t and cudaGraph_t, the queue that
// runs work on a stream's worker thread, stream capture, and the error state (the calling
// thread's last error, the sticky device error). Nothing outside core/sim includes this.
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
#include <thread>
#include <vector>

namespace strata::sim::runtime_internal {

using Task = std::function<void()>;
using Clock = std::chrono::steady_clock;

// What a queued operation does when the device has already failed (sticky error): kernels,
// copies and memsets are skipped; event records, host functions and frees still run so
// that nothing waiting on them hangs and no memory leaks.
enum class AfterFailure { skip, run };

struct CaptureSequence;

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

  // Stream capture (runtime_capture.cpp), guarded by capture_mutex() rather than mutex: the
  // sequence the stream takes part in (null: not capturing), and the nodes the next
  // operation captured on it will depend on.
  std::shared_ptr<strata::sim::runtime_internal::CaptureSequence> capture;
  std::vector<cudaGraphNode_t> capture_dependencies;
};

// A node of a captured graph: the operation exactly as it would have run on the stream, its
// arguments fixed at capture time, and the nodes it must run after.
struct CUgraphNode_st {
  cudaGraphNodeType type = cudaGraphNodeTypeEmpty;
  strata::sim::runtime_internal::Task work;
  strata::sim::runtime_internal::AfterFailure after_failure = strata::sim::runtime_internal::AfterFailure::run;
  std::vector<CUgraphNode_st*> dependencies;  // earlier nodes of the same graph
  size_t index = 0;                           // position in the graph
};

// The object behind a cudaGraph_t. Nodes are in capture order, which is a topological order:
// a node only ever depends on nodes captured before it. Immutable once capture has ended.
struct CUgraph_st {
  std::vector<std::unique_ptr<CUgraphNode_st>> nodes;
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

// Queues work on stream, behind the legacy-stream ordering CUDA implies (see
// runtime_streams.cpp), and returns the point at which it will have completed.
StreamPoint submit(const std::shared_ptr<CUstream_st>& stream, Task work, AfterFailure after_failure);

// Submits work and, when wait is true, blocks until it has completed.
void submit_and_maybe_wait(const std::shared_ptr<CUstream_st>& stream, Task work, AfterFailure after_failure,
                           bool wait);

// Blocks until every operation queued so far on any stream has completed.
void synchronize_all_streams();

// Runs one operation on a stream worker; an exception it throws becomes the sticky device
// error.
void run_operation(const Task& work);

// ---- Stream capture (runtime_capture.cpp) ---------------------------------------------

// One capture sequence: begun on one stream, joined by the streams that wait for events
// recorded in it, ended on the stream where it began.
struct CaptureSequence {
  unsigned long long id = 0;  // unique over the process, as cudaStreamGetCaptureInfo reports it
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::thread::id thread;               // that began it
  std::shared_ptr<CUstream_st> origin;  // where it began and must end
  std::vector<std::shared_ptr<CUstream_st>> streams;  // origin and every stream that joined
  std::unique_ptr<CUgraph_st> graph;
  bool invalidated = false;  // a forbidden call happened: EndCapture returns no graph
  bool ended = false;        // by cudaStreamEndCapture; records in it are dead
};

// Guards the capture state of every stream and event and the list of active sequences.
// Order of locks: capture_mutex, then an event's mutex, then the stream registry's, then a
// stream's.
std::mutex& capture_mutex();

// Whether the operation may be recorded into a graph. Copies that involve pageable host
// memory cannot: CUDA stages or waits for them at call time.
enum class Capturable { yes, no };

// Queues work on stream or, while the stream captures, records it as a node of type type.
// Returns the error a forbidden or invalidated capture gives (after recording it as the
// thread's last error); otherwise cudaSuccess, with the point the submitted work completes
// at when it was queued rather than captured. Takes capture_mutex().
struct Queued {
  cudaError_t status = cudaSuccess;
  std::optional<StreamPoint> point;  // nullopt: captured (or failed)
};
Queued queue_operation(const std::shared_ptr<CUstream_st>& stream, cudaGraphNodeType type, Task work,
                       AfterFailure after_failure, Capturable capturable = Capturable::yes);

// With capture_mutex() held. The error an operation on stream gets because of capture:
// cudaErrorStreamCaptureInvalidated on an invalidated capture, cudaErrorStreamCaptureImplicit
// for the legacy stream while a blocking stream captures (invalidating that capture),
// cudaSuccess otherwise. Not recorded as the last error.
cudaError_t capture_conflict(const CUstream_st& stream);
void invalidate(CaptureSequence& sequence);
// Records work as a node on the capturing stream and makes it the stream's dependency set.
void add_captured_node(CUstream_st& stream, cudaGraphNodeType type, Task work, AfterFailure after_failure);

// For the calls that CUDA forbids while a stream captures, whatever the capture mode
// (cudaStreamSynchronize, cudaStreamQuery): cudaErrorStreamCaptureUnsupported, after
// invalidating the capture, when stream is capturing. Takes capture_mutex().
cudaError_t check_stream_not_capturing(const std::shared_ptr<CUstream_st>& stream);

// For CUDA's "potentially unsafe" calls (cudaMalloc, cudaFree, synchronous copies,
// cudaDeviceSynchronize, ...): cudaErrorStreamCaptureUnsupported, after invalidating the
// captures that forbid the call, when the calling thread's capture mode
// (cudaThreadExchangeStreamCaptureMode) and the active captures forbid it. Takes
// capture_mutex().
cudaError_t check_unsafe_call();

// ---- Graphs (runtime_graphs.cpp) ------------------------------------------------------

// Registers a graph produced by stream capture and returns its handle.
cudaGraph_t adopt_graph(std::unique_ptr<CUgraph_st> graph);

// ---- Memory (runtime_memory.cpp) ------------------------------------------------------

// Where a kernel's pointer lies, for the checks of device-side copies (core/sim/pipeline.cpp).
enum class MemorySpace { device, pinned, unregistered };
// The space of pointer's first byte, and whether bytes from it fit in that allocation
// (always true for unregistered memory, which is not tracked).
struct MemoryRange {
  MemorySpace space = MemorySpace::unregistered;
  bool fits = true;
};
MemoryRange locate_memory(const void* pointer, size_t bytes);

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
  // A record in a capturing stream: no point in any queue, but the nodes a stream that waits
  // for it must depend on (how other streams fork from and join a capture).
  struct CapturedRecord {
    std::weak_ptr<strata::sim::runtime_internal::CaptureSequence> capture;
    std::vector<cudaGraphNode_t> nodes;
  };

  unsigned flags = cudaEventDefault;
  std::mutex mutex;             // guards latest
  std::optional<Record> latest;  // nullopt until the first cudaEventRecord, or when captured is set
  std::optional<CapturedRecord> captured;  // the latest record was captured; guarded by capture_mutex()
};
