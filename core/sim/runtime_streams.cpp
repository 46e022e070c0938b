// Streams of the simulated device. Each stream has its own worker thread that runs its
// operations in order, so work on different streams overlaps as it does on a GPU and a
// missing cross-stream dependency can produce a wrong result. Also the legacy default
// stream's implicit ordering, device-wide synchronisation and host functions.
//
// The legacy default stream (0, cudaStreamLegacy and, in this simulator, cudaStreamPerThread)
// is modelled as CUDA describes it: an operation on it waits for all work queued before it on
// every blocking stream (created without cudaStreamNonBlocking), and an operation on a
// blocking stream waits for all work queued before it on the legacy stream. Non-blocking
// streams are never ordered with it.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <exception>
#include <thread>
#include <unordered_map>

#include "core/sim/runtime.h"
#include "core/sim/runtime_internal.h"

namespace strata::sim::runtime_internal {
namespace {

// Priorities as an H100 reports them: 0 is the lowest, -5 the highest.
constexpr int kLeastStreamPriority = 0;
constexpr int kGreatestStreamPriority = -5;

// How long process exit waits for operations that are already running (queued ones are
// dropped): long enough for any sane kernel, short enough that a stuck host function
// cannot hang the exit.
constexpr auto kExitGracePeriod = std::chrono::seconds(10);

std::atomic<bool> shutting_down{false};
thread_local const CUstream_st* worker_of_this_thread = nullptr;

void run_worker(const std::shared_ptr<CUstream_st>& stream) {
  worker_of_this_thread = stream.get();
  std::unique_lock lock(stream->mutex);
  for (;;) {
    stream->changed.wait(lock, [&] { return !stream->queue.empty() || stream->destroyed; });
    if (stream->queue.empty()) break;  // destroyed and drained
    Task task = std::move(stream->queue.front());
    stream->queue.pop_front();
    lock.unlock();
    run_operation(task);
    task = nullptr;  // release what the operation captured before reporting it complete
    lock.lock();
    ++stream->completed;
    stream->changed.notify_all();
  }
}

std::shared_ptr<CUstream_st> make_stream(unsigned flags, int priority, bool legacy) {
  auto stream = std::make_shared<CUstream_st>();
  stream->flags = flags;
  stream->priority = priority;
  stream->legacy = legacy;
  // Detached: the worker owns its share of the stream and ends once the stream is
  // destroyed and drained; at process exit it is simply abandoned while idle.
  std::thread([stream] { run_worker(stream); }).detach();
  return stream;
}

std::optional<StreamPoint> pending_point(const std::shared_ptr<CUstream_st>& stream) {
  std::lock_guard lock(stream->mutex);
  if (stream->submitted == stream->completed) return std::nullopt;
  return StreamPoint{stream, stream->submitted};
}

void drain_at_exit();

class StreamRegistry {
 public:
  static StreamRegistry& instance() {
    // Leaked on purpose: workers may still touch it while static objects are destroyed.
    static StreamRegistry* registry = new StreamRegistry();
    return *registry;
  }

  std::shared_ptr<CUstream_st> legacy() const { return legacy_; }

  void add(const std::shared_ptr<CUstream_st>& stream) {
    std::lock_guard lock(mutex_);
    live_.emplace(stream.get(), stream);
    every_.push_back(stream);
  }

  std::shared_ptr<CUstream_st> find(cudaStream_t handle) {
    std::lock_guard lock(mutex_);
    const auto it = live_.find(handle);
    return it == live_.end() ? nullptr : it->second;
  }

  std::shared_ptr<CUstream_st> remove(cudaStream_t handle) {
    std::lock_guard lock(mutex_);
    const auto it = live_.find(handle);
    if (it == live_.end()) return nullptr;
    auto stream = std::move(it->second);
    live_.erase(it);
    return stream;
  }

  // Streams with work in flight, destroyed ones still draining included.
  std::vector<StreamPoint> pending_points(bool blocking_only) {
    std::vector<std::shared_ptr<CUstream_st>> streams;
    {
      std::lock_guard lock(mutex_);
      std::erase_if(every_, [](const std::weak_ptr<CUstream_st>& stream) { return stream.expired(); });
      for (const auto& weak : every_) {
        if (auto stream = weak.lock()) streams.push_back(std::move(stream));
      }
    }
    std::vector<StreamPoint> points;
    for (const auto& stream : streams) {
      if (blocking_only && (stream->flags & cudaStreamNonBlocking) != 0) continue;
      if (auto point = pending_point(stream)) points.push_back(std::move(*point));
    }
    return points;
  }

  // One global order of submissions, so the implicit legacy-stream dependencies always
  // point backwards and can never form a cycle.
  std::mutex submit_mutex;

 private:
  StreamRegistry() : legacy_(make_stream(cudaStreamDefault, kLeastStreamPriority, /*legacy=*/true)) {
    std::atexit(drain_at_exit);
  }

  std::shared_ptr<CUstream_st> legacy_;
  std::mutex mutex_;  // guards live_ and every_
  std::unordered_map<const CUstream_st*, std::shared_ptr<CUstream_st>> live_;
  std::vector<std::weak_ptr<CUstream_st>> every_;  // all user streams, until their worker ends
};

// Process exit: queued operations are dropped, as a GPU abandons them when the process
// ends; those already running get a grace period to finish before static objects go away.
void drain_at_exit() {
  shutting_down.store(true);
  StreamRegistry& registry = StreamRegistry::instance();
  std::vector<StreamPoint> points = registry.pending_points(/*blocking_only=*/false);
  if (auto legacy = pending_point(registry.legacy())) points.push_back(std::move(*legacy));
  const auto deadline = Clock::now() + kExitGracePeriod;
  for (const StreamPoint& point : points) {
    if (point.stream.get() == worker_of_this_thread) continue;  // exit() called from a host function
    std::unique_lock lock(point.stream->mutex);
    if (!point.stream->changed.wait_until(lock, deadline, [&] { return point.stream->completed >= point.ticket; })) {
      std::fprintf(stderr, "strata: simulator: a stream was still busy at process exit\n");
      return;
    }
  }
}

bool is_legacy_handle(cudaStream_t handle) {
  return handle == nullptr || handle == cudaStreamLegacy || handle == cudaStreamPerThread;
}

}  // namespace

void run_operation(const Task& work) {
  try {
    work();
  } catch (const std::exception& error) {
    record_device_failure(cudaErrorLaunchFailure,
                          std::string("an operation on a simulated stream threw: ") + error.what());
  } catch (...) {
    record_device_failure(cudaErrorLaunchFailure, "an operation on a simulated stream threw an unknown exception");
  }
}

bool reached(const StreamPoint& point) {
  std::lock_guard lock(point.stream->mutex);
  return point.stream->completed >= point.ticket;
}

void wait_for(const StreamPoint& point) {
  std::unique_lock lock(point.stream->mutex);
  point.stream->changed.wait(lock, [&] { return point.stream->completed >= point.ticket; });
}

std::shared_ptr<CUstream_st> legacy_stream() { return StreamRegistry::instance().legacy(); }

std::shared_ptr<CUstream_st> resolve_stream(cudaStream_t handle) {
  if (is_legacy_handle(handle)) return legacy_stream();
  return StreamRegistry::instance().find(handle);
}

StreamPoint submit(const std::shared_ptr<CUstream_st>& stream, Task work, AfterFailure after_failure) {
  StreamRegistry& registry = StreamRegistry::instance();
  std::lock_guard order(registry.submit_mutex);
  std::vector<StreamPoint> dependencies;
  if (stream->legacy) {
    dependencies = registry.pending_points(/*blocking_only=*/true);
  } else if ((stream->flags & cudaStreamNonBlocking) == 0) {
    if (auto legacy = pending_point(registry.legacy())) dependencies.push_back(std::move(*legacy));
  }
  Task task = [dependencies = std::move(dependencies), work = std::move(work), after_failure] {
    for (const StreamPoint& dependency : dependencies) {
      if (shutting_down.load()) return;
      wait_for(dependency);
    }
    if (shutting_down.load()) return;
    if (after_failure == AfterFailure::skip && device_failed()) return;
    work();
  };
  std::lock_guard lock(stream->mutex);
  stream->queue.push_back(std::move(task));
  stream->changed.notify_all();
  return StreamPoint{stream, ++stream->submitted};
}

void submit_and_maybe_wait(const std::shared_ptr<CUstream_st>& stream, Task work, AfterFailure after_failure,
                           bool wait) {
  const StreamPoint done = submit(stream, std::move(work), after_failure);
  if (wait) wait_for(done);
}

void synchronize_all_streams() {
  StreamRegistry& registry = StreamRegistry::instance();
  std::vector<StreamPoint> points = registry.pending_points(/*blocking_only=*/false);
  if (auto legacy = pending_point(registry.legacy())) points.push_back(std::move(*legacy));
  for (const StreamPoint& point : points) wait_for(point);
}

}  // namespace strata::sim::runtime_internal

using namespace strata::sim::runtime_internal;

cudaError_t CUDARTAPI cudaStreamCreateWithPriority(cudaStream_t* pStream, unsigned int flags, int priority) {
  if (pStream == nullptr || (flags & ~cudaStreamNonBlocking) != 0) return fail(cudaErrorInvalidValue);
  // CUDA clamps priorities outside the device's range.
  priority = std::clamp(priority, kGreatestStreamPriority, kLeastStreamPriority);
  std::shared_ptr<CUstream_st> stream;
  try {
    stream = make_stream(flags, priority, /*legacy=*/false);
  } catch (const std::exception&) {
    return fail(cudaErrorMemoryAllocation);  // no thread or memory left for another stream
  }
  StreamRegistry::instance().add(stream);
  *pStream = stream.get();
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaStreamCreateWithFlags(cudaStream_t* pStream, unsigned int flags) {
  return cudaStreamCreateWithPriority(pStream, flags, kLeastStreamPriority);
}

cudaError_t CUDARTAPI cudaStreamCreate(cudaStream_t* pStream) {
  return cudaStreamCreateWithPriority(pStream, cudaStreamDefault, kLeastStreamPriority);
}

// Returns at once; work already queued still runs, then the worker ends.
cudaError_t CUDARTAPI cudaStreamDestroy(cudaStream_t stream) {
  if (is_legacy_handle(stream)) return fail(cudaErrorInvalidResourceHandle);
  const std::shared_ptr<CUstream_st> removed = StreamRegistry::instance().remove(stream);
  if (removed == nullptr) return fail(cudaErrorInvalidResourceHandle);
  std::lock_guard lock(removed->mutex);
  removed->destroyed = true;
  removed->changed.notify_all();
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaStreamSynchronize(cudaStream_t stream) {
  const std::shared_ptr<CUstream_st> resolved = resolve_stream(stream);
  if (resolved == nullptr) return fail(cudaErrorInvalidResourceHandle);
  if (const cudaError_t capturing = check_stream_not_capturing(resolved); capturing != cudaSuccess) return capturing;
  if (resolved->legacy) {
    // An empty operation on the legacy stream picks up its implicit dependencies on the
    // blocking streams, which synchronising the legacy stream also waits for.
    submit_and_maybe_wait(resolved, [] {}, AfterFailure::run, /*wait=*/true);
  } else if (auto tail = pending_point(resolved)) {
    wait_for(*tail);
  }
  return sticky_error();
}

cudaError_t CUDARTAPI cudaStreamQuery(cudaStream_t stream) {
  const std::shared_ptr<CUstream_st> resolved = resolve_stream(stream);
  if (resolved == nullptr) return fail(cudaErrorInvalidResourceHandle);
  if (const cudaError_t capturing = check_stream_not_capturing(resolved); capturing != cudaSuccess) return capturing;
  if (const cudaError_t sticky = sticky_error(); sticky != cudaSuccess) return sticky;
  if (pending_point(resolved)) return cudaErrorNotReady;
  if (resolved->legacy && !StreamRegistry::instance().pending_points(/*blocking_only=*/true).empty()) {
    return cudaErrorNotReady;
  }
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaStreamGetFlags(cudaStream_t hStream, unsigned int* flags) {
  if (flags == nullptr) return fail(cudaErrorInvalidValue);
  const std::shared_ptr<CUstream_st> resolved = resolve_stream(hStream);
  if (resolved == nullptr) return fail(cudaErrorInvalidResourceHandle);
  *flags = resolved->flags;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaStreamGetPriority(cudaStream_t hStream, int* priority) {
  if (priority == nullptr) return fail(cudaErrorInvalidValue);
  const std::shared_ptr<CUstream_st> resolved = resolve_stream(hStream);
  if (resolved == nullptr) return fail(cudaErrorInvalidResourceHandle);
  *priority = resolved->priority;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaDeviceGetStreamPriorityRange(int* leastPriority, int* greatestPriority) {
  if (leastPriority != nullptr) *leastPriority = kLeastStreamPriority;
  if (greatestPriority != nullptr) *greatestPriority = kGreatestStreamPriority;
  return cudaSuccess;
}

// Host functions run on the stream's worker, in order with its other operations. They still
// run after a device failure: code waiting for them must not hang. Captured as host nodes.
cudaError_t CUDARTAPI cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* userData) {
  if (fn == nullptr) return fail(cudaErrorInvalidValue);
  const std::shared_ptr<CUstream_st> resolved = resolve_stream(stream);
  if (resolved == nullptr) return fail(cudaErrorInvalidResourceHandle);
  return queue_operation(resolved, cudaGraphNodeTypeHost, [fn, userData] { fn(userData); }, AfterFailure::run).status;
}

cudaError_t CUDARTAPI cudaStreamAddCallback(cudaStream_t stream, cudaStreamCallback_t callback, void* userData,
                                            unsigned int flags) {
  if (callback == nullptr || flags != 0) return fail(cudaErrorInvalidValue);
  const std::shared_ptr<CUstream_st> resolved = resolve_stream(stream);
  if (resolved == nullptr) return fail(cudaErrorInvalidResourceHandle);
  // The callback learns of a device failure through its status argument. CUDA has no graph
  // node for stream callbacks: they cannot be captured.
  return queue_operation(
             resolved, cudaGraphNodeTypeHost,
             [stream, callback, userData] { callback(stream, sticky_error(), userData); }, AfterFailure::run,
             Capturable::no)
      .status;
}

cudaError_t CUDARTAPI cudaDeviceSynchronize(void) {
  if (const cudaError_t forbidden = check_unsafe_call(); forbidden != cudaSuccess) return forbidden;
  synchronize_all_streams();
  return sticky_error();
}
