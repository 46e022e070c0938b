// Stream capture on the simulated device, with CUDA's semantics as far as Strata relies on
// them. While a stream captures, the operations queued on it are recorded as nodes of a graph
// instead of being run; an event recorded in a capturing stream marks a set of nodes, and a
// stream that waits for such an event joins the capture (fork) or adds the event's nodes to
// its dependencies (join). Calls that cannot be captured fail with CUDA's error codes and
// invalidate the capture, so that cudaStreamEndCapture then returns no graph:
//   - cudaStreamSynchronize / cudaStreamQuery of a capturing stream, and cudaEventQuery /
//     cudaEventSynchronize of an event recorded in one, whatever the mode;
//   - CUDA's "potentially unsafe" calls (cudaMalloc, cudaFree, synchronous copies,
//     cudaDeviceSynchronize, ...) as the capture modes decide: forbidden to the thread that
//     captures in global or thread-local mode, and to every thread in global mode while a
//     global-mode capture runs, unless the thread's own mode
//     (cudaThreadExchangeStreamCaptureMode) is relaxed;
//   - copies from or to pageable host memory, which CUDA stages or waits for at call time;
//   - the legacy default stream while a blocking stream captures (cudaErrorStreamCaptureImplicit).
#include <algorithm>
#include <atomic>
#include <unordered_set>

#include "core/sim/runtime_internal.h"

namespace strata::sim::runtime_internal {
namespace {

thread_local cudaStreamCaptureMode mode_of_thread = cudaStreamCaptureModeGlobal;

struct CaptureRegistry {
  std::mutex mutex;
  std::vector<std::shared_ptr<CaptureSequence>> active;  // guarded by mutex
  std::atomic<unsigned long long> next_id{1};
};

CaptureRegistry& registry() {
  // Leaked on purpose, like the other registries of the simulator.
  static auto* instance = new CaptureRegistry();
  return *instance;
}

bool is_blocking(const CUstream_st& stream) { return !stream.legacy && (stream.flags & cudaStreamNonBlocking) == 0; }

// The nodes in `from` and every node they depend on, directly or not.
std::unordered_set<cudaGraphNode_t> with_ancestors(const std::vector<cudaGraphNode_t>& from) {
  std::unordered_set<cudaGraphNode_t> reached;
  std::vector<cudaGraphNode_t> pending = from;
  while (!pending.empty()) {
    cudaGraphNode_t node = pending.back();
    pending.pop_back();
    if (!reached.insert(node).second) continue;
    pending.insert(pending.end(), node->dependencies.begin(), node->dependencies.end());
  }
  return reached;
}

// Detaches every stream from a sequence that ends and drops it from the active list.
void finish(const std::shared_ptr<CaptureSequence>& sequence) {
  sequence->ended = true;
  for (const auto& stream : sequence->streams) {
    if (stream->capture == sequence) {
      stream->capture = nullptr;
      stream->capture_dependencies.clear();
    }
  }
  std::erase(registry().active, sequence);
}

}  // namespace

std::mutex& capture_mutex() { return registry().mutex; }

void invalidate(CaptureSequence& sequence) { sequence.invalidated = true; }

cudaError_t capture_conflict(const CUstream_st& stream) {
  if (stream.capture != nullptr) return stream.capture->invalidated ? cudaErrorStreamCaptureInvalidated : cudaSuccess;
  if (!stream.legacy) return cudaSuccess;
  cudaError_t conflict = cudaSuccess;
  for (const auto& sequence : registry().active) {
    for (const auto& member : sequence->streams) {
      if (member->capture == sequence && is_blocking(*member)) {
        invalidate(*sequence);
        conflict = cudaErrorStreamCaptureImplicit;
      }
    }
  }
  return conflict;
}

void add_captured_node(CUstream_st& stream, cudaGraphNodeType type, Task work, AfterFailure after_failure) {
  CUgraph_st& graph = *stream.capture->graph;
  auto node = std::make_unique<CUgraphNode_st>();
  node->type = type;
  node->work = std::move(work);
  node->after_failure = after_failure;
  node->dependencies = stream.capture_dependencies;
  node->index = graph.nodes.size();
  stream.capture_dependencies = {node.get()};
  graph.nodes.push_back(std::move(node));
}

Queued queue_operation(const std::shared_ptr<CUstream_st>& stream, cudaGraphNodeType type, Task work,
                       AfterFailure after_failure, Capturable capturable) {
  std::lock_guard lock(capture_mutex());
  if (const cudaError_t conflict = capture_conflict(*stream); conflict != cudaSuccess) return {fail(conflict), {}};
  if (stream->capture == nullptr) return {cudaSuccess, submit(stream, std::move(work), after_failure)};
  if (capturable == Capturable::no) {
    invalidate(*stream->capture);
    return {fail(cudaErrorStreamCaptureUnsupported), {}};
  }
  add_captured_node(*stream, type, std::move(work), after_failure);
  return {};
}

cudaError_t check_stream_not_capturing(const std::shared_ptr<CUstream_st>& stream) {
  std::lock_guard lock(capture_mutex());
  if (stream->capture != nullptr) {
    invalidate(*stream->capture);
    return fail(cudaErrorStreamCaptureUnsupported);
  }
  if (const cudaError_t conflict = capture_conflict(*stream); conflict != cudaSuccess) return fail(conflict);
  return cudaSuccess;
}

cudaError_t check_unsafe_call() {
  if (mode_of_thread == cudaStreamCaptureModeRelaxed) return cudaSuccess;
  std::lock_guard lock(capture_mutex());
  const std::thread::id this_thread = std::this_thread::get_id();
  bool forbidden = false;
  for (const auto& sequence : registry().active) {
    const bool own = sequence->thread == this_thread;
    const bool forbids = own ? sequence->mode != cudaStreamCaptureModeRelaxed
                             : mode_of_thread == cudaStreamCaptureModeGlobal &&
                                   sequence->mode == cudaStreamCaptureModeGlobal;
    if (forbids) {
      invalidate(*sequence);
      forbidden = true;
    }
  }
  return forbidden ? fail(cudaErrorStreamCaptureUnsupported) : cudaSuccess;
}

}  // namespace strata::sim::runtime_internal

using namespace strata::sim::runtime_internal;

cudaError_t CUDARTAPI cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode) {
  if (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal &&
      mode != cudaStreamCaptureModeRelaxed) {
    return fail(cudaErrorInvalidValue);
  }
  const std::shared_ptr<CUstream_st> resolved = resolve_stream(stream);
  if (resolved == nullptr) return fail(cudaErrorInvalidResourceHandle);
  if (resolved->legacy) return fail(cudaErrorStreamCaptureUnsupported);  // the legacy stream cannot capture
  std::lock_guard lock(capture_mutex());
  if (resolved->capture != nullptr) return fail(cudaErrorIllegalState);
  auto sequence = std::make_shared<CaptureSequence>();
  sequence->id = registry().next_id.fetch_add(1);
  sequence->mode = mode;
  sequence->thread = std::this_thread::get_id();
  sequence->origin = resolved;
  sequence->streams = {resolved};
  sequence->graph = std::make_unique<CUgraph_st>();
  resolved->capture = sequence;
  resolved->capture_dependencies.clear();
  registry().active.push_back(std::move(sequence));
  return cudaSuccess;
}

// Ends the sequence on every stream that took part, whatever the outcome. A stream that
// forked from the capture must have been joined back: its last node must be one the origin
// stream's work depends on, or the capture is "unjoined".
cudaError_t CUDARTAPI cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* pGraph) {
  if (pGraph == nullptr) return fail(cudaErrorInvalidValue);
  const std::shared_ptr<CUstream_st> resolved = resolve_stream(stream);
  if (resolved == nullptr) return fail(cudaErrorInvalidResourceHandle);
  std::unique_lock lock(capture_mutex());
  const std::shared_ptr<CaptureSequence> sequence = resolved->capture;
  if (sequence == nullptr) return fail(cudaErrorIllegalState);
  if (sequence->origin != resolved) {
    invalidate(*sequence);
    return fail(cudaErrorStreamCaptureUnmatched);
  }
  if (sequence->mode != cudaStreamCaptureModeRelaxed && sequence->thread != std::this_thread::get_id()) {
    return fail(cudaErrorStreamCaptureWrongThread);
  }
  *pGraph = nullptr;
  bool joined = true;
  const std::unordered_set<cudaGraphNode_t> before_end = with_ancestors(resolved->capture_dependencies);
  for (const auto& member : sequence->streams) {
    if (member->capture != sequence) continue;
    for (cudaGraphNode_t node : member->capture_dependencies) joined = joined && before_end.contains(node);
  }
  finish(sequence);
  if (sequence->invalidated) return fail(cudaErrorStreamCaptureInvalidated);
  if (!joined) return fail(cudaErrorStreamCaptureUnjoined);
  lock.unlock();
  *pGraph = adopt_graph(std::move(sequence->graph));
  return cudaSuccess;
}

// On the legacy stream while a blocking stream captures: cudaErrorStreamCaptureImplicit,
// without invalidating that capture, as CUDA documents.
cudaError_t CUDARTAPI cudaStreamIsCapturing(cudaStream_t stream, enum cudaStreamCaptureStatus* pCaptureStatus) {
  if (pCaptureStatus == nullptr) return fail(cudaErrorInvalidValue);
  const std::shared_ptr<CUstream_st> resolved = resolve_stream(stream);
  if (resolved == nullptr) return fail(cudaErrorInvalidResourceHandle);
  std::lock_guard lock(capture_mutex());
  if (resolved->legacy) {
    for (const auto& sequence : registry().active) {
      for (const auto& member : sequence->streams) {
        if (member->capture == sequence && is_blocking(*member)) return fail(cudaErrorStreamCaptureImplicit);
      }
    }
  }
  if (resolved->capture == nullptr) {
    *pCaptureStatus = cudaStreamCaptureStatusNone;
  } else {
    *pCaptureStatus =
        resolved->capture->invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
  }
  return cudaSuccess;
}

// The id, graph and dependencies are valid only while the capture is active, as in CUDA;
// the dependency array points into the stream's own state and stays valid until the next
// call on the stream. Edges carry no data in the simulator, so edge data is never needed
// and not offered.
cudaError_t CUDARTAPI cudaStreamGetCaptureInfo(cudaStream_t stream, enum cudaStreamCaptureStatus* captureStatus_out,
                                               unsigned long long* id_out, cudaGraph_t* graph_out,
                                               const cudaGraphNode_t** dependencies_out,
                                               const cudaGraphEdgeData** edgeData_out, size_t* numDependencies_out) {
  if (captureStatus_out == nullptr || (edgeData_out != nullptr && dependencies_out == nullptr)) {
    return fail(cudaErrorInvalidValue);
  }
  if (edgeData_out != nullptr) return fail(cudaErrorNotSupported);
  const cudaError_t status = cudaStreamIsCapturing(stream, captureStatus_out);
  if (status != cudaSuccess || *captureStatus_out != cudaStreamCaptureStatusActive) return status;
  const std::shared_ptr<CUstream_st> resolved = resolve_stream(stream);
  if (resolved == nullptr) return fail(cudaErrorInvalidResourceHandle);
  std::lock_guard lock(capture_mutex());
  if (resolved->capture == nullptr) {  // ended by another thread in between
    *captureStatus_out = cudaStreamCaptureStatusNone;
    return cudaSuccess;
  }
  if (id_out != nullptr) *id_out = resolved->capture->id;
  if (graph_out != nullptr) *graph_out = resolved->capture->graph.get();
  if (dependencies_out != nullptr) *dependencies_out = resolved->capture_dependencies.data();
  if (numDependencies_out != nullptr) *numDependencies_out = resolved->capture_dependencies.size();
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaThreadExchangeStreamCaptureMode(enum cudaStreamCaptureMode* mode) {
  if (mode == nullptr || (*mode != cudaStreamCaptureModeGlobal && *mode != cudaStreamCaptureModeThreadLocal &&
                          *mode != cudaStreamCaptureModeRelaxed)) {
    return fail(cudaErrorInvalidValue);
  }
  std::swap(*mode, mode_of_thread);
  return cudaSuccess;
}
