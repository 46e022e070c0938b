// Replaying a graph on a pool of streams: fork from the caller's stream, run each node on
// its scheduled stream after the events of its cross-stream predecessors, join back.
#include <string>
#include <utility>

#include "core/check.h"
#include "core/format.h"
#include "core/nvtx.h"
#include "strata/core/device.h"
#include "strata/core/graph.h"

namespace strata::graph {

Executor::Executor(Graph graph, const ExecutorOptions& options)
    : graph_(std::move(graph)), schedule_(graph::schedule(graph_, options.streams)) {
  if (options.check_stream_safety) {
    const std::vector<Race> races = check_stream_safety(graph_, schedule_);
    if (!races.empty()) {
      std::string message = fmt::format("graph::Executor: the schedule of {} nodes on {} streams has {} race(s):",
                                        graph_.size(), schedule_.streams, races.size());
      for (const Race& race : races) message += "\n  " + race.description;
      throw InvalidArgument(message);
    }
  }
  for (int s = 0; s < schedule_.streams; ++s) {
    streams_.emplace_back();
    stream_joined_.emplace_back();
    // The pool's streams use the graph's buffers: the allocator must not hand them out
    // again, once the graph is gone, before the pool's work is done.
    graph_.record_stream(streams_.back());
  }
  node_done_.resize(graph_.size());
  for (const std::vector<std::size_t>& waits : schedule_.waits) {
    for (const std::size_t w : waits) {
      if (!node_done_[w]) node_done_[w].emplace();
    }
  }
}

Executor::~Executor() = default;

void Executor::run(cudaStream_t stream) {
  NvtxRange range("graph::Executor::run");
  STRATA_CHECK(stream != nullptr, "graph::Executor::run: no stream given; Strata never uses the default stream");
  forked_.record(stream);
  for (const Stream& pool_stream : streams_) pool_stream.wait(forked_);
  for (std::size_t i = 0; i < graph_.size(); ++i) {
    const Stream& node_stream = streams_[static_cast<std::size_t>(schedule_.stream_of[i])];
    for (const std::size_t w : schedule_.waits[i]) node_stream.wait(*node_done_[w]);
    try {
      graph_.run_node(i, node_stream);
    } catch (const OutOfMemoryError& error) {
      throw OutOfMemoryError(fmt::format("graph node {} '{}': {}", i, graph_.node(i).name(), error.what()),
                             error.requested_bytes(), error.in_use_bytes(), error.free_bytes());
    }
    if (node_done_[i]) node_done_[i]->record(node_stream);
  }
  for (std::size_t s = 0; s < streams_.size(); ++s) {
    stream_joined_[s].record(streams_[s]);
    STRATA_CUDA_CHECK(cudaStreamWaitEvent(stream, stream_joined_[s].get(), 0), "joining the graph's stream {}", s);
  }
}

}  // namespace strata::graph
