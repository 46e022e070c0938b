// CudaGraph: stream capture into a graph with its own memory pool, and its replay.
#include "strata/core/cuda_graph.h"

#include <exception>
#include <string>
#include <utility>

#include "core/check.h"
#include "strata/core/device.h"
#include "strata/core/stream.h"

namespace strata {

namespace {

// Rethrows the exception in flight as the same Strata type, its message prefixed by context.
[[noreturn]] void rethrow_with_context(const std::string& context) {
  try {
    throw;
  } catch (const OutOfMemoryError& error) {
    throw OutOfMemoryError(context + error.what(), error.requested_bytes(), error.in_use_bytes(), error.free_bytes());
  } catch (const CudaError& error) {
    throw CudaError(context + error.what(), error.code());
  } catch (const CublasError& error) {
    throw CublasError(context + error.what(), error.status());
  } catch (const CudnnError& error) {
    throw CudnnError(context + error.what(), error.status());
  } catch (const InvalidArgument& error) {
    throw InvalidArgument(context + error.what());
  } catch (const NotSupported& error) {
    throw NotSupported(context + error.what());
  } catch (const IoError& error) {
    throw IoError(context + error.what());
  } catch (const std::exception& error) {
    throw Error(context + error.what());
  } catch (...) {
    throw Error(context + "an exception that is not a std::exception");
  }
}

}  // namespace

CudaGraph::CudaGraph(CudaGraph&& other) noexcept
    : graph_(std::exchange(other.graph_, nullptr)),
      exec_(std::exchange(other.exec_, nullptr)),
      pool_(std::exchange(other.pool_, std::nullopt)) {}

CudaGraph& CudaGraph::operator=(CudaGraph&& other) noexcept {
  if (this != &other) {
    reset();
    graph_ = std::exchange(other.graph_, nullptr);
    exec_ = std::exchange(other.exec_, nullptr);
    pool_ = std::exchange(other.pool_, std::nullopt);
  }
  return *this;
}

void CudaGraph::capture(cudaStream_t stream, const std::function<void()>& fn) {
  STRATA_CHECK(stream != nullptr, "CudaGraph::capture: no stream given (the legacy default stream cannot capture)");
  reset();
  GraphMemoryPool pool;
  STRATA_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "capturing on stream {}",
                    static_cast<const void*>(stream));
  try {
    pool.begin_capture(stream);
    StreamGuard on_stream(stream, current_device());
    fn();
  } catch (...) {
    // The capture ends before the pool's: blocks freed on the stream meanwhile get their
    // events once it no longer captures.
    cudaGraph_t abandoned = nullptr;
    if (cudaStreamEndCapture(stream, &abandoned) != cudaSuccess) static_cast<void>(cudaGetLastError());
    pool.end_capture();
    if (abandoned != nullptr) STRATA_CUDA_WARN(cudaGraphDestroy(abandoned));
    rethrow_with_context(fmt::format(
        "CudaGraph::capture on stream {}: the captured function threw, so the capture was ended and no graph was "
        "kept (a synchronisation, a copy to or from pageable host memory or an allocation outside Strata's "
        "allocator is not allowed while capturing): ",
        static_cast<const void*>(stream)));
  }
  cudaGraph_t graph = nullptr;
  STRATA_CUDA_CHECK(cudaStreamEndCapture(stream, &graph),
                    "ending the capture on stream {} (invalidated: a call made during the capture is not allowed "
                    "there; unjoined: a stream forked from the capture was not joined back with an event)",
                    static_cast<const void*>(stream));
  pool.end_capture();
  cudaGraphExec_t exec = nullptr;
  const cudaError_t instantiated = cudaGraphInstantiate(&exec, graph, 0);
  if (instantiated != cudaSuccess) {
    STRATA_CUDA_WARN(cudaGraphDestroy(graph));
    STRATA_CUDA_CHECK(instantiated, "instantiating the graph captured on stream {}", static_cast<const void*>(stream));
  }
  graph_ = graph;
  exec_ = exec;
  pool_ = std::move(pool);
}

void CudaGraph::replay(cudaStream_t stream) {
  STRATA_CHECK(captured(), "CudaGraph::replay: nothing was captured");
  STRATA_CHECK(stream != nullptr, "CudaGraph::replay: no stream given (Strata never uses the default stream)");
  pool_->record_replay(stream);
  STRATA_CUDA_CHECK(cudaGraphLaunch(exec_, stream), "replaying a graph of {} operations on stream {}", node_count(),
                    static_cast<const void*>(stream));
}

std::size_t CudaGraph::node_count() const {
  if (graph_ == nullptr) return 0;
  std::size_t count = 0;
  STRATA_CUDA_CHECK(cudaGraphGetNodes(graph_, nullptr, &count), "counting the nodes of a captured graph");
  return count;
}

std::size_t CudaGraph::memory_pool_bytes() const { return pool_ ? pool_->reserved_bytes() : 0; }

// CUDA frees an executable graph that is still running once it completes; the pool waits
// for the replays through the events it records on their streams.
void CudaGraph::reset() noexcept {
  if (exec_ != nullptr) STRATA_CUDA_WARN(cudaGraphExecDestroy(std::exchange(exec_, nullptr)));
  if (graph_ != nullptr) STRATA_CUDA_WARN(cudaGraphDestroy(std::exchange(graph_, nullptr)));
  pool_.reset();
}

}  // namespace strata
