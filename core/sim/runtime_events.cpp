// Events of the simulated device: a record is a marker in a stream's queue that completes,
// with a steady_clock timestamp, when the stream's worker reaches it; waits and queries act
// on the record that was the latest when they were issued, as in CUDA. A record in a
// capturing stream is no marker but a set of graph nodes: waiting for it is how another
// stream forks from or joins the capture (see runtime_capture.cpp).
#include <algorithm>
#include <unordered_set>

#include "core/sim/runtime_internal.h"

using namespace strata::sim::runtime_internal;

namespace {

class EventRegistry {
 public:
  static EventRegistry& instance() {
    // Leaked on purpose: handles may be destroyed by other static objects' destructors.
    static EventRegistry* registry = new EventRegistry();
    return *registry;
  }

  void add(CUevent_st* event) {
    std::lock_guard lock(mutex_);
    live_.insert(event);
  }
  bool contains(cudaEvent_t event) {
    std::lock_guard lock(mutex_);
    return live_.contains(event);
  }
  bool remove(cudaEvent_t event) {
    std::lock_guard lock(mutex_);
    return live_.erase(event) != 0;
  }

 private:
  std::mutex mutex_;
  std::unordered_set<const CUevent_st*> live_;
};

std::optional<CUevent_st::Record> latest_record(cudaEvent_t event) {
  std::lock_guard lock(event->mutex);
  return event->latest;
}

// cudaErrorCapturedEvent when the event's latest record was made in a capturing stream: it
// stands for graph nodes, not for work that will complete. A capture still running is
// invalidated, as by any call CUDA forbids during capture.
cudaError_t check_not_captured(cudaEvent_t event) {
  std::lock_guard lock(capture_mutex());
  if (!event->captured) return cudaSuccess;
  if (const auto sequence = event->captured->capture.lock(); sequence != nullptr && !sequence->ended) {
    invalidate(*sequence);
  }
  return fail(cudaErrorCapturedEvent);
}

// The stream joins the capture the event was recorded in, or adds the event's nodes to the
// dependencies it already has in that capture.
cudaError_t wait_for_captured(CUstream_st& stream, const std::shared_ptr<CUstream_st>& shared,
                              const CUevent_st::CapturedRecord& record) {
  const std::shared_ptr<CaptureSequence> sequence = record.capture.lock();
  if (sequence == nullptr || sequence->ended) return fail(cudaErrorCapturedEvent);
  if (sequence->invalidated) return fail(cudaErrorStreamCaptureInvalidated);
  if (stream.capture == nullptr) {
    if (stream.legacy) {
      invalidate(*sequence);
      return fail(cudaErrorStreamCaptureImplicit);
    }
    stream.capture = sequence;
    stream.capture_dependencies = record.nodes;
    sequence->streams.push_back(shared);
    return cudaSuccess;
  }
  if (stream.capture != sequence) {  // two captures cannot be merged into one graph
    invalidate(*stream.capture);
    invalidate(*sequence);
    return fail(cudaErrorStreamCaptureMerge);
  }
  for (cudaGraphNode_t node : record.nodes) {
    if (std::ranges::find(stream.capture_dependencies, node) == stream.capture_dependencies.end()) {
      stream.capture_dependencies.push_back(node);
    }
  }
  return cudaSuccess;
}

}  // namespace

cudaError_t CUDARTAPI cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  constexpr unsigned kKnownFlags = cudaEventBlockingSync | cudaEventDisableTiming | cudaEventInterprocess;
  if (event == nullptr || (flags & ~kKnownFlags) != 0) return fail(cudaErrorInvalidValue);
  // CUDA requires interprocess events to be created without timing.
  if ((flags & cudaEventInterprocess) != 0 && (flags & cudaEventDisableTiming) == 0) return fail(cudaErrorInvalidValue);
  auto* created = new CUevent_st();
  created->flags = flags;
  EventRegistry::instance().add(created);
  *event = created;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

// A pending record keeps its own state alive: destroying the event does not disturb it.
cudaError_t CUDARTAPI cudaEventDestroy(cudaEvent_t event) {
  if (event == nullptr || !EventRegistry::instance().remove(event)) return fail(cudaErrorInvalidResourceHandle);
  delete event;
  return cudaSuccess;
}

// In a capturing stream the record adds no node: it remembers the stream's current
// dependencies for the streams that will wait for it.
cudaError_t CUDARTAPI cudaEventRecordWithFlags(cudaEvent_t event, cudaStream_t stream, unsigned int flags) {
  // cudaEventRecordExternal (an event record node inside a graph) is not simulated.
  if (flags != cudaEventRecordDefault) return fail(cudaErrorInvalidValue);
  if (event == nullptr || !EventRegistry::instance().contains(event)) return fail(cudaErrorInvalidResourceHandle);
  const std::shared_ptr<CUstream_st> resolved = resolve_stream(stream);
  if (resolved == nullptr) return fail(cudaErrorInvalidResourceHandle);
  std::lock_guard capture_lock(capture_mutex());
  if (const cudaError_t conflict = capture_conflict(*resolved); conflict != cudaSuccess) return fail(conflict);
  // Held across the submission so that concurrent records of one event keep queue order.
  std::lock_guard lock(event->mutex);
  if (resolved->capture != nullptr) {
    event->latest = std::nullopt;
    event->captured = CUevent_st::CapturedRecord{resolved->capture, resolved->capture_dependencies};
    return cudaSuccess;
  }
  auto time = std::make_shared<Clock::time_point>();
  const StreamPoint point = submit(resolved, [time] { *time = Clock::now(); }, AfterFailure::run);
  event->latest = CUevent_st::Record{point, std::move(time)};
  event->captured = std::nullopt;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  return cudaEventRecordWithFlags(event, stream, cudaEventRecordDefault);
}

// The stream waits for the record that is the event's latest now; later records of the
// event do not affect it. Waiting for a never-recorded event does nothing. A capturing
// stream may only wait for records of its own capture: a dependency on work outside the
// graph would not be there when the graph is replayed (cudaEventWaitExternal, which asks for
// one, is not simulated).
cudaError_t CUDARTAPI cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  if (flags != cudaEventWaitDefault) return fail(cudaErrorInvalidValue);
  if (event == nullptr || !EventRegistry::instance().contains(event)) return fail(cudaErrorInvalidResourceHandle);
  const std::shared_ptr<CUstream_st> resolved = resolve_stream(stream);
  if (resolved == nullptr) return fail(cudaErrorInvalidResourceHandle);
  std::lock_guard capture_lock(capture_mutex());
  if (event->captured) return wait_for_captured(*resolved, resolved, *event->captured);
  if (const cudaError_t conflict = capture_conflict(*resolved); conflict != cudaSuccess) return fail(conflict);
  const std::optional<CUevent_st::Record> record = latest_record(event);
  if (!record) return cudaSuccess;
  if (resolved->capture != nullptr) {
    invalidate(*resolved->capture);
    return fail(cudaErrorStreamCaptureIsolation);
  }
  submit(resolved, [point = record->point] { wait_for(point); }, AfterFailure::run);
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaEventQuery(cudaEvent_t event) {
  if (event == nullptr || !EventRegistry::instance().contains(event)) return fail(cudaErrorInvalidResourceHandle);
  if (const cudaError_t captured = check_not_captured(event); captured != cudaSuccess) return captured;
  if (const cudaError_t sticky = sticky_error(); sticky != cudaSuccess) return sticky;
  const std::optional<CUevent_st::Record> record = latest_record(event);
  if (record && !reached(record->point)) return cudaErrorNotReady;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaEventSynchronize(cudaEvent_t event) {
  if (event == nullptr || !EventRegistry::instance().contains(event)) return fail(cudaErrorInvalidResourceHandle);
  if (const cudaError_t captured = check_not_captured(event); captured != cudaSuccess) return captured;
  if (const std::optional<CUevent_st::Record> record = latest_record(event)) wait_for(record->point);
  return sticky_error();
}

cudaError_t CUDARTAPI cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (ms == nullptr) return fail(cudaErrorInvalidValue);
  EventRegistry& registry = EventRegistry::instance();
  if (start == nullptr || end == nullptr || !registry.contains(start) || !registry.contains(end)) {
    return fail(cudaErrorInvalidResourceHandle);
  }
  if (const cudaError_t sticky = sticky_error(); sticky != cudaSuccess) return sticky;
  if (const cudaError_t captured = check_not_captured(start); captured != cudaSuccess) return captured;
  if (const cudaError_t captured = check_not_captured(end); captured != cudaSuccess) return captured;
  // CUDA's order of checks: timing disabled or never recorded, then not yet completed.
  if (((start->flags | end->flags) & cudaEventDisableTiming) != 0) return fail(cudaErrorInvalidResourceHandle);
  const std::optional<CUevent_st::Record> first = latest_record(start);
  const std::optional<CUevent_st::Record> second = latest_record(end);
  if (!first || !second) return fail(cudaErrorInvalidResourceHandle);
  if (!reached(first->point) || !reached(second->point)) return cudaErrorNotReady;
  *ms = std::chrono::duration<float, std::milli>(*second->time - *first->time).count();
  return cudaSuccess;
}
