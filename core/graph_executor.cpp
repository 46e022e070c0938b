// Replaying a graph on a pool of streams: fork from the caller's stream, run each node on
// its scheduled stream after the events of its cross-stream predecessors, join back.
#include <algorithm>
#include <string>
#include <utility>

#include "core/check.h"
#include "core/format.h"
#include "core/nvtx.h"
#include "strata/core/device.h"
#include "strata/core/graph.h"

namespace strata::graph {

Executor::Executor(Graph graph, const ExecutorOptions& options)
    : graph_(std::move(graph)),
      schedule_(graph::schedule(graph_, options.streams)),
      use_cuda_graph_(options.cuda_graph) {
  STRATA_CHECK(!(options.cuda_graph && options.profile),
               "graph::Executor: profile and cuda_graph cannot be combined (a CUDA graph runs as one launch; "
               "profile the executor without cuda_graph)");
  if (options.plan_memory) memory_plan_ = std::make_unique<MemoryPlan>(plan_memory(graph_, options.streams));
  if (options.check_stream_safety) {
    const std::vector<Race> races = check_stream_safety(graph_, schedule_, memory_plan_.get());
    if (!races.empty()) {
      std::string message = fmt::format("graph::Executor: the schedule of {} nodes on {} streams has {} race(s):",
                                        graph_.size(), schedule_.streams, races.size());
      for (const Race& race : races) message += "\n  " + race.description;
      throw InvalidArgument(message);
    }
  }
  if (memory_plan_ != nullptr) graph_.move_to_arena(*memory_plan_, current_stream());
  for (int s = 0; s < schedule_.streams; ++s) {
    streams_.emplace_back();
    stream_joined_.emplace_back();
    // The pool's streams use the graph's buffers: the allocator must not hand them out
    // again, once the graph is gone, before the pool's work is done.
    graph_.record_stream(streams_.back());
  }
  if (options.profile) {
    for (std::size_t i = 0; i < graph_.size(); ++i) {
      node_started_.emplace_back(EventTiming::enabled);
      node_finished_.emplace_back(EventTiming::enabled);
      const NodeInfo& node = graph_.node(i);
      timings_.push_back({.node = i, .name = node.name(), .phase = node.phase, .stream = schedule_.stream_of[i]});
    }
  }
  node_done_.resize(graph_.size());
  for (const std::vector<std::size_t>& waits : schedule_.waits) {
    for (const std::size_t w : waits) {
      if (!node_done_[w]) node_done_[w].emplace();
    }
  }
}

Executor::~Executor() = default;

const MemoryPlan& Executor::memory_plan() const noexcept {
  static const MemoryPlan none;
  return memory_plan_ != nullptr ? *memory_plan_ : none;
}

void Executor::run(cudaStream_t stream) {
  NvtxRange range("graph::Executor::run");
  STRATA_CHECK(stream != nullptr, "graph::Executor::run: no stream given; Strata never uses the default stream");
  if (use_cuda_graph_) {
    if (!cuda_graph_.captured()) {
      graph::detail::ReplayHooks hooks;
      cuda_graph_.capture(stream, [&] { enqueue(stream); });
      replay_hooks_ = hooks.take();
    }
    for (const auto& hook : replay_hooks_) hook(stream);  // this step's host values, in recording order
    cuda_graph_.replay(stream);
    return;
  }
  collect_timings();  // before this run reuses the events
  enqueue(stream);
  timings_pending_ = !timings_.empty();
}

void Executor::enqueue(cudaStream_t stream) {
  forked_.record(stream);
  for (const Stream& pool_stream : streams_) pool_stream.wait(forked_);
  for (std::size_t i = 0; i < graph_.size(); ++i) {
    const Stream& node_stream = streams_[static_cast<std::size_t>(schedule_.stream_of[i])];
    for (const std::size_t w : schedule_.waits[i]) node_stream.wait(*node_done_[w]);
    if (!node_started_.empty()) node_started_[i].record(node_stream);
    try {
      graph_.run_node(i, node_stream);
    } catch (const OutOfMemoryError& error) {
      std::string writes;
      for (const std::size_t b : graph_.node(i).writes) {
        writes += fmt::format("{}{} ({} bytes)", writes.empty() ? "" : ", ", graph_.buffers()[b].label,
                              graph_.buffers()[b].bytes);
      }
      throw OutOfMemoryError(fmt::format("graph node {} '{}', which writes {}: {}", i, graph_.node(i).name(), writes,
                                         error.what()),
                             error.requested_bytes(), error.in_use_bytes(), error.free_bytes());
    }
    if (!node_finished_.empty()) node_finished_[i].record(node_stream);
    if (node_done_[i]) node_done_[i]->record(node_stream);
  }
  for (std::size_t s = 0; s < streams_.size(); ++s) {
    stream_joined_[s].record(streams_[s]);
    STRATA_CUDA_CHECK(cudaStreamWaitEvent(stream, stream_joined_[s].get(), 0), "joining the graph's stream {}", s);
  }
}

void Executor::collect_timings() {
  if (!timings_pending_) return;
  for (std::size_t i = 0; i < timings_.size(); ++i) {
    node_finished_[i].synchronize();
    timings_[i].total_ms += node_started_[i].elapsed_ms(node_finished_[i]);
    ++timings_[i].runs;
  }
  timings_pending_ = false;
}

std::vector<NodeTiming> Executor::timings() {
  collect_timings();
  return timings_;
}

std::string Executor::timing_report() {
  std::vector<NodeTiming> rows = timings();
  if (rows.empty()) return "graph::Executor: no timings (profiling is off, or nothing ran)\n";
  double sum_ms = 0.0;
  for (const NodeTiming& row : rows) sum_ms += row.total_ms;
  std::ranges::stable_sort(rows, [](const NodeTiming& a, const NodeTiming& b) { return a.total_ms > b.total_ms; });
  std::string report = fmt::format("{:>5}  {:<48} {:<9} {:>6} {:>5} {:>11} {:>6}\n", "node", "name", "phase",
                                   "stream", "runs", "mean ms", "share");
  for (const NodeTiming& row : rows) {
    const double mean = row.runs == 0 ? 0.0 : row.total_ms / static_cast<double>(row.runs);
    report += fmt::format("{:>5}  {:<48} {:<9} {:>6} {:>5} {:>11.4f} {:>5.1f}%\n", row.node, row.name,
                          phase_name(row.phase), row.stream, row.runs, mean,
                          sum_ms > 0.0 ? 100.0 * row.total_ms / sum_ms : 0.0);
  }
  return report;
}

}  // namespace strata::graph
