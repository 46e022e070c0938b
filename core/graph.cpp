// The graph of a recorded step: buffers identified by storage, dependencies from the reads
// and writes of each op in recording order, and reachability for the memory plan.
#include "strata/core/graph.h"

#include <algorithm>
#include <unordered_map>
#include <utility>

#include "core/autograd_meta.h"
#include "core/check.h"
#include "core/format.h"
#include "core/nvtx.h"
#include "core/graph_impl.h"
#include "core/op_recording.h"

namespace strata::graph {


std::string NodeInfo::name() const { return scope.empty() ? op : fmt::format("{}/{}", scope, op); }

Graph::Graph() : impl_(std::make_unique<Impl>()) {}
Graph::Graph(Graph&&) noexcept = default;
Graph& Graph::operator=(Graph&&) noexcept = default;
Graph::~Graph() = default;

bool Graph::precedes(std::size_t a, std::size_t b) const {
  if (a >= b) return false;  // recording order is a topological order
  return (impl_->ancestors.at(b)[a / 64] >> (a % 64) & 1u) != 0;
}

void Graph::run_node(std::size_t i, cudaStream_t stream) const {
  const std::string name = nodes_.at(i).name();
  NvtxRange range(name.c_str());
  const StreamGuard guard(stream, current_device());
  impl_->bodies.at(i)(stream);
}

void Graph::record_stream(cudaStream_t stream) const {
  for (const Tensor& tensor : impl_->buffer_tensors) tensor.record_stream(stream);
}

namespace detail {

class RecorderSink final : public OpSink {
 public:
  void record(RecordedOp op) override { ops_.push_back(std::move(op)); }
  Graph build(std::span<const Tensor> keep);

 private:
  std::size_t buffer_of(const Tensor& tensor, Graph& graph, const std::string& writer);
  std::vector<RecordedOp> ops_;
  std::unordered_map<const void*, std::size_t> buffer_index_;
};

std::size_t RecorderSink::buffer_of(const Tensor& tensor, Graph& graph, const std::string& writer) {
  const void* id = strata::detail::TensorAccess::storage_id(tensor);
  auto [entry, added] = buffer_index_.try_emplace(id, graph.buffers_.size());
  if (added) {
    graph.buffers_.push_back({.label = fmt::format("{} {} {}", writer, tensor.shape(), tensor.dtype())});
    graph.impl_->buffer_tensors.push_back(tensor);
  }
  BufferInfo& buffer = graph.buffers_[entry->second];
  buffer.bytes = std::max(buffer.bytes, tensor.nbytes());
  return entry->second;
}

Graph RecorderSink::build(std::span<const Tensor> keep) {
  Graph graph;
  std::vector<std::ptrdiff_t> last_write;           // per buffer
  std::vector<std::vector<std::size_t>> readers;    // per buffer: reads since the last write
  const auto track = [&](std::size_t buffer) {
    if (last_write.size() <= buffer) {
      last_write.resize(buffer + 1, -1);
      readers.resize(buffer + 1);
    }
  };
  for (std::size_t i = 0; i < ops_.size(); ++i) {
    RecordedOp& op = ops_[i];
    NodeInfo node{.op = op.name, .scope = op.scope, .phase = op.phase, .workspace_bytes = op.workspace_bytes};
    const std::string name = node.name();
    for (const Tensor& tensor : op.reads) node.reads.push_back(buffer_of(tensor, graph, "read by " + name));
    for (const Tensor& tensor : op.writes) node.writes.push_back(buffer_of(tensor, graph, name + " output"));
    for (auto* list : {&node.reads, &node.writes}) {
      std::ranges::sort(*list);
      list->erase(std::unique(list->begin(), list->end()), list->end());
    }
    std::vector<std::size_t>& predecessors = node.predecessors;
    for (const std::size_t buffer : node.reads) {
      track(buffer);
      if (last_write[buffer] >= 0) predecessors.push_back(static_cast<std::size_t>(last_write[buffer]));
      BufferInfo& info = graph.buffers_[buffer];
      if (info.first_write < 0) info.external = true;  // read before the graph writes it
      info.last_use = static_cast<std::ptrdiff_t>(i);
      info.uses.push_back(i);
    }
    for (const std::size_t buffer : node.writes) {
      track(buffer);
      if (last_write[buffer] >= 0) predecessors.push_back(static_cast<std::size_t>(last_write[buffer]));
      for (const std::size_t reader : readers[buffer]) {
        if (reader != i) predecessors.push_back(reader);
      }
      BufferInfo& info = graph.buffers_[buffer];
      if (info.first_write < 0) info.first_write = static_cast<std::ptrdiff_t>(i);
      info.last_use = static_cast<std::ptrdiff_t>(i);
      if (info.uses.empty() || info.uses.back() != i) info.uses.push_back(i);
    }
    // Reads are registered after the writes' dependencies so that an in-place op does not
    // wait for itself.
    for (const std::size_t buffer : node.reads) readers[buffer].push_back(i);
    for (const std::size_t buffer : node.writes) {
      last_write[buffer] = static_cast<std::ptrdiff_t>(i);
      readers[buffer].clear();
    }
    std::ranges::sort(predecessors);
    predecessors.erase(std::unique(predecessors.begin(), predecessors.end()), predecessors.end());
    graph.nodes_.push_back(std::move(node));
    graph.impl_->bodies.push_back(std::move(op.body));
  }
  ops_.clear();

  for (BufferInfo& buffer : graph.buffers_) buffer.kept = buffer.external;
  for (const Tensor& tensor : keep) {
    if (!tensor.defined()) continue;
    const auto found = buffer_index_.find(strata::detail::TensorAccess::storage_id(tensor));
    if (found != buffer_index_.end()) graph.buffers_[found->second].kept = true;
  }

  // Ancestor bitsets, in recording (topological) order.
  const std::size_t words = (graph.nodes_.size() + 63) / 64;
  auto& ancestors = graph.impl_->ancestors;
  ancestors.assign(graph.nodes_.size(), std::vector<std::uint64_t>(words, 0));
  for (std::size_t i = 0; i < graph.nodes_.size(); ++i) {
    for (const std::size_t p : graph.nodes_[i].predecessors) {
      ancestors[i][p / 64] |= std::uint64_t{1} << (p % 64);
      for (std::size_t w = 0; w < words; ++w) ancestors[i][w] |= ancestors[p][w];
    }
  }
  return graph;
}

}  // namespace detail

Recorder::Recorder() : sink_(std::make_unique<detail::RecorderSink>()) {
  STRATA_CHECK(detail::op_sink() == nullptr,
               "graph::Recorder: this thread is already recording a graph; recorders do not nest");
  detail::set_op_sink(sink_.get());
}

Recorder::~Recorder() {
  if (detail::op_sink() == sink_.get()) detail::set_op_sink(nullptr);
}

Graph Recorder::finish(std::span<const Tensor> keep) {
  STRATA_CHECK(detail::op_sink() == sink_.get(), "graph::Recorder::finish: the recording was already finished");
  detail::set_op_sink(nullptr);
  return sink_->build(keep);
}

Graph Recorder::finish(std::initializer_list<std::reference_wrapper<const Tensor>> keep) {
  std::vector<Tensor> tensors;
  for (const Tensor& tensor : keep) tensors.push_back(tensor);
  return finish(std::span<const Tensor>(tensors));
}

}  // namespace strata::graph
