// Whole-step CUDA graphs: the device work of a function captured once from its stream and
// replayed with a single launch each step, which removes the launch gaps that dominate small
// batches. A replay repeats exactly what was captured, so:
//   - kernels see the arguments of capture time and the same memory at every replay: inputs
//     are static buffers refilled in place between replays (copy the next batch into them),
//     and values that change from step to step, such as the learning rate, are read by the
//     kernels from device memory (kernels::SgdParams::lr_device);
//   - host code inside fn runs once, at capture: fn must not synchronise, read results back
//     or allocate other than through Strata's allocator;
//   - tensors fn allocates come from the graph's private memory pool (GraphMemoryPool,
//     strata/core/allocator.h), which the CudaGraph owns: they stay valid for every replay.
//
//   CudaGraph step;
//   step.capture(stream, [&] { train_step(batch_x, batch_y); });  // batch_*: static inputs
//   for (...) {
//     batch_x.copy_from(next_x, stream);
//     step.replay(stream);
//   }
#pragma once

#include <cstddef>
#include <functional>
#include <optional>

#include <cuda_runtime_api.h>

#include "strata/core/allocator.h"

namespace strata {

// Move-only owner of a captured graph, its executable instance and its memory pool.
class CudaGraph {
 public:
  CudaGraph() = default;
  // Replays still queued run to completion; the pool's memory is reused only after them.
  ~CudaGraph() { reset(); }
  CudaGraph(CudaGraph&& other) noexcept;
  CudaGraph& operator=(CudaGraph&& other) noexcept;
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Captures the work fn queues on stream, and on streams it forks from stream through
  // events and joins back, then instantiates the graph; a graph captured before is
  // replaced. fn runs with stream as the current stream (strata/core/stream.h), so Strata's
  // operations queue on it. The capture is thread-local: a call CUDA forbids during capture
  // fails on this thread, while other threads (loading data, writing checkpoints) are not
  // affected. When fn throws, the capture is ended, nothing is kept, and the exception is
  // rethrown, of the same type, with a message that says so.
  void capture(cudaStream_t stream, const std::function<void()>& fn);

  // Queues one run of the captured work on stream (any stream: it need not be the one
  // captured on). Runs of one graph never overlap, whatever their streams.
  void replay(cudaStream_t stream);

  bool captured() const noexcept { return exec_ != nullptr; }
  std::size_t node_count() const;          // operations in the graph
  std::size_t memory_pool_bytes() const;   // device memory held for the graph

 private:
  void reset() noexcept;

  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
  std::optional<GraphMemoryPool> pool_;
};

}  // namespace strata
