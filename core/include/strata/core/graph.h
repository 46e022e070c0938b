// The host graph: a training step recorded once as a DAG of ops (nodes) and the tensors
// they read and write (edges), then scheduled over several streams with events on the
// cross-stream edges, checked for races, and replayed every step.
//
//   graph::Recorder recorder;                     // ops run as usual and are recorded
//   Tensor loss = step(inputs);                   // forward, backward, optimizer step
//   graph::Graph graph = recorder.finish({loss});  // loss kept alive to the end
//   graph::Executor executor(std::move(graph), {.streams = 3, .check_stream_safety = true});
//   for (...) { inputs.copy_from(next_batch, stream); executor.run(stream); }
//
// Every op goes through graph::run_op (strata/core/op.h), which gives its reads and writes.
// Dependencies follow from them in recording order: a read waits for the last write of the
// tensor's memory (read after write), a write for the last write and every read since
// (write after write, write after read). Independent work, such as the data and filter
// gradients of a layer or the branches of a residual block, may run concurrently.
//
// Replays run the recorded bodies: the same kernels on the same tensors (inputs are updated
// in place, "static" as with CUDA Graphs), reading host state such as the learning rate as
// it is at run time. What a body allocates for itself (a workspace) is allocated and freed
// on the stream it runs on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "strata/core/cuda_graph.h"
#include "strata/core/op.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"

namespace strata::graph {

struct MemoryPlan;

namespace detail {
class RecorderSink;
struct RecordedOp;
}  // namespace detail

// One allocation that ops of the graph touch (all views of one tensor's storage).
struct BufferInfo {
  std::string label;        // "features.0/conv2d_forward output (8, 16, 12, 12) f32", or the first reader's view
  std::size_t bytes = 0;    // the largest view seen
  bool external = false;    // read before the graph writes it (a parameter, an input, optimizer state)
  bool kept = false;        // must live to the end (an output, or external)
  std::ptrdiff_t first_write = -1;  // node index; -1 for none
  std::ptrdiff_t last_use = -1;     // node index: the last in recording order (others may run concurrently)
  std::vector<std::size_t> uses = {};  // every node that reads or writes it, ascending
};

struct NodeInfo {
  std::string op;     // "conv2d_backward_filter"
  std::string scope;  // "features.3" (may be empty)
  Phase phase = Phase::forward;
  std::vector<std::size_t> reads = {};         // buffer indices
  std::vector<std::size_t> writes = {};        // buffer indices
  std::vector<std::size_t> predecessors = {};  // nodes that must finish first, ascending
  std::size_t workspace_bytes = 0;  // what its body allocates for itself while it runs (measured when recorded)
  // "features.3/conv2d_backward_filter": NVTX ranges, reports.
  std::string name() const;
};

class Graph {
 public:
  Graph(Graph&&) noexcept;
  Graph& operator=(Graph&&) noexcept;
  ~Graph();

  std::size_t size() const noexcept { return nodes_.size(); }
  const NodeInfo& node(std::size_t i) const { return nodes_.at(i); }
  const std::vector<NodeInfo>& nodes() const noexcept { return nodes_; }
  const std::vector<BufferInfo>& buffers() const noexcept { return buffers_; }
  // Whether node a must finish before node b starts (a path a -> b), for a != b.
  bool precedes(std::size_t a, std::size_t b) const;

  // Runs node i's body on stream (the executor's job; exposed for tests and tools).
  void run_node(std::size_t i, cudaStream_t stream) const;
  // Declares that work on stream uses the graph's buffers, so the allocator does not reuse
  // them before that work completes once the graph is gone.
  void record_stream(cudaStream_t stream) const;
  // Moves the buffers plan places (plan_memory of this graph) into one arena allocated on
  // stream, at the plan's offsets, releasing their own memory. Contents are not copied: a
  // planned buffer is written by the graph before it is read. Throws OutOfMemoryError naming
  // the plan when the arena does not fit.
  void move_to_arena(const MemoryPlan& plan, cudaStream_t stream);

 private:
  friend class detail::RecorderSink;
  Graph();
  struct Impl;
  std::vector<NodeInfo> nodes_;
  std::vector<BufferInfo> buffers_;
  std::unique_ptr<Impl> impl_;  // bodies, tensors, reachability
};

// Records the ops of this thread while alive (they still run as usual).
class Recorder {
 public:
  Recorder();
  ~Recorder();
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  // Stops recording and returns the graph. keep: tensors whose memory must outlive every
  // replay, for the memory plan: outputs such as the loss, and the gradients a caller reads
  // after a step (external buffers, read before the graph writes them, are always kept).
  Graph finish(std::span<const Tensor> keep = {});
  Graph finish(std::initializer_list<std::reference_wrapper<const Tensor>> keep);

 private:
  std::unique_ptr<detail::RecorderSink> sink_;
};

// Which stream runs each node, and which nodes on other streams it waits for.
struct Schedule {
  int streams = 1;
  std::vector<int> stream_of;                     // per node, in [0, streams)
  std::vector<std::vector<std::size_t>> waits;    // per node: nodes on other streams to wait for
};

// Places nodes on up to streams streams in recording order: a node continues the stream of a
// predecessor that was the last node placed there, else starts on the least busy stream;
// it waits (by event) for every predecessor on another stream not already ordered before it.
Schedule schedule(const Graph& graph, int streams);

// A race found in a schedule, as a race detector reports it.
struct Race {
  std::string description;  // "node 12 'features.0/relu_backward' on stream 1 reads buffer 7 (...) written by ..."
};
// Checks, with vector clocks over the schedule's stream order and waits, that every read of
// a buffer is ordered after the write that produced it and every write after the previous
// write and all reads since. Empty when the schedule is safe.
// With a memory plan, buffers that share arena memory count as one: a write to either is
// ordered after the other's last accesses (a reuse after the last read).
std::vector<Race> check_stream_safety(const Graph& graph, const Schedule& schedule,
                                      const MemoryPlan* plan = nullptr);

struct ExecutorOptions {
  int streams = 2;                   // >= 1
  bool check_stream_safety = false;  // check the schedule (and the memory plan) once, throw on a race
  // Move the graph's transient buffers into one arena laid out by plan_memory (at
  // construction, on current_stream()). Tensors not named in Recorder::finish's keep list
  // then share memory: read them only inside the graph.
  bool plan_memory = false;
  bool profile = false;              // time every node with CUDA events (see timing_report)
  // Capture the first run, all streams of it, as one CUDA graph (strata/core/cuda_graph.h)
  // and replay that: one launch a step instead of one per kernel. Bodies read what changes
  // per step from the device (learning rates, step counts, Philox offsets) and update it
  // through replay hooks (graph::on_each_replay, strata/core/op.h); not with profile.
  bool cuda_graph = false;
};

// Per-node device time over the profiled runs of an executor.
struct NodeTiming {
  std::size_t node = 0;
  std::string name;  // "features.3/conv2d_backward_filter"
  Phase phase = Phase::forward;
  int stream = 0;
  std::uint64_t runs = 0;
  double total_ms = 0.0;
};

// Replays a graph on a pool of its own streams: fork from the caller's stream, run each node
// on its stream after waiting for its cross-stream predecessors' events, join back.
class Executor {
 public:
  explicit Executor(Graph graph, const ExecutorOptions& options = {});
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues one replay, ordered after the work already on stream; later work on stream is
  // ordered after it. Nothing waits for the host.
  void run(cudaStream_t stream);
  void run() { run(current_stream()); }
  // With ExecutorOptions::cuda_graph: whether the CUDA graph has been captured (by the first run).
  bool captured() const noexcept { return cuda_graph_.captured(); }

  const Graph& graph() const noexcept { return graph_; }
  const Schedule& schedule() const noexcept { return schedule_; }
  // With ExecutorOptions::plan_memory: the plan in use (else empty).
  const MemoryPlan& memory_plan() const noexcept;

  // With ExecutorOptions::profile: every node's time summed over the runs so far (waits for
  // the last run to finish), in node order. Empty without profiling.
  std::vector<NodeTiming> timings();
  // The same as a table, slowest nodes first, with each one's share of the summed node time
  // (nodes on different streams overlap, so the shares describe work, not wall time).
  std::string timing_report();

 private:
  void collect_timings();
  void enqueue(cudaStream_t stream);  // the nodes, forked from and joined back into stream

  Graph graph_;
  Schedule schedule_;
  std::vector<Stream> streams_;
  std::vector<std::optional<Event>> node_done_;  // for nodes waited for on another stream
  std::vector<Event> stream_joined_;
  Event forked_;
  // Profiling: a start and an end event per node, harvested before they are reused.
  std::vector<Event> node_started_;
  std::vector<Event> node_finished_;
  std::vector<NodeTiming> timings_;
  bool timings_pending_ = false;
  bool use_cuda_graph_ = false;
  std::unique_ptr<MemoryPlan> memory_plan_;
  CudaGraph cuda_graph_;
  // Run before each launch; declared after the graph so that what they hold (device
  // scalars from the graph's pool) goes first.
  std::vector<std::function<void(cudaStream_t)>> replay_hooks_;
};

// Buffers of a graph packed into one arena: transient buffers share memory when their
// lifetimes are ordered (every use of one runs before the first write of the other), kept
// and external buffers have memory of their own.
struct MemoryPlan {
  std::vector<std::size_t> offset;  // per buffer: byte offset in the arena (planned buffers)
  std::vector<bool> planned;        // per buffer: placed in the arena (transient)
  std::size_t arena_bytes = 0;      // the arena the transient buffers are placed in
  // The most bytes live at once in recording order, transient buffers and the running node's
  // workspace: no placement on one stream needs less than live_bytes + kept_bytes.
  std::size_t live_bytes = 0;
  std::size_t transient_bytes = 0;  // their naive sum (no reuse)
  std::size_t kept_bytes = 0;       // outputs, gradients kept, external buffers
  // Workspaces nodes allocate while they run (kernel temporaries, not in the arena): the
  // sum of the `streams` largest, since at most that many nodes run at once.
  std::size_t workspace_bytes = 0;
  std::size_t peak_bytes() const noexcept { return arena_bytes + kept_bytes + workspace_bytes; }
  std::size_t naive_bytes() const noexcept { return transient_bytes + kept_bytes + workspace_bytes; }
};
// streams: the executor's streams. One stream runs the nodes in recording order, so buffers
// may share memory by that order; on several, only by the graph's edges (less sharing), and
// up to `streams` workspaces may be live at once.
MemoryPlan plan_memory(const Graph& graph, int streams = 1);

// The largest batch in [1, max_batch] whose step fits budget_bytes by the memory plan's
// peak on one stream, with the peak of that batch; batch 0 when not even 1 fits. record_step(batch)
// records the step's graph for a batch size (running it once); the peak must not shrink
// as the batch grows, so a binary search over recorded steps finds the exact answer.
struct BatchFit {
  std::int64_t batch = 0;
  std::size_t peak_bytes = 0;
};
BatchFit largest_batch(std::size_t budget_bytes, const std::function<Graph(std::int64_t batch)>& record_step,
                       std::int64_t max_batch);

}  // namespace strata::graph
