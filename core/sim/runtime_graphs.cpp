// Graphs of the simulated device: the graphs stream capture produces, their instantiation
// and their launch. A launch is one operation on the launch stream that runs the nodes one
// after the other in a topological order: the capture order, or with a schedule seed
// (strata::sim::set_schedule_seed) a random order that respects only the recorded
// dependencies, so that a fork/join edge missing from a capture shows up as a wrong result.
// As in CUDA, a launch is ordered after the previous launch of the same executable graph,
// and a graph may be destroyed once instantiated.
#include <algorithm>
#include <optional>
#include <random>
#include <unordered_set>

#include "core/sim/runtime.h"
#include "core/sim/runtime_internal.h"

using namespace strata::sim::runtime_internal;

namespace {

struct ExecutableNode {
  Task work;
  AfterFailure after_failure = AfterFailure::run;
  std::vector<size_t> dependencies;  // indices of earlier nodes
};

using ExecutableNodes = std::vector<ExecutableNode>;

}  // namespace

// The object behind a cudaGraphExec_t: a snapshot of the graph's nodes, shared with the
// launches still queued so that destroying it never pulls work from under them.
struct CUgraphExec_st {
  std::shared_ptr<const ExecutableNodes> nodes;
  std::mutex mutex;  // guards the two below
  uint64_t launches = 0;
  std::optional<StreamPoint> last_launch;
};

namespace {

class GraphRegistry {
 public:
  static GraphRegistry& instance() {
    // Leaked on purpose, like the simulator's other registries.
    static auto* registry = new GraphRegistry();
    return *registry;
  }

  void add(const void* handle) {
    std::lock_guard lock(mutex_);
    live_.insert(handle);
  }
  bool contains(const void* handle) {
    std::lock_guard lock(mutex_);
    return handle != nullptr && live_.contains(handle);
  }
  bool remove(const void* handle) {
    std::lock_guard lock(mutex_);
    return live_.erase(handle) != 0;
  }

 private:
  std::mutex mutex_;
  std::unordered_set<const void*> live_;  // graphs and executable graphs
};

// Kahn's algorithm; among the nodes ready to run, the first (capture order) or, with a
// schedule seed, a random one.
std::vector<size_t> launch_order(const ExecutableNodes& nodes, std::optional<uint64_t> seed, uint64_t launch) {
  std::vector<size_t> order(nodes.size());
  if (!seed) {
    for (size_t i = 0; i < nodes.size(); ++i) order[i] = i;
    return order;
  }
  std::mt19937_64 random(*seed ^ (launch * 0x9e3779b97f4a7c15ull));
  std::vector<size_t> waiting_on(nodes.size());
  std::vector<std::vector<size_t>> dependents(nodes.size());
  std::vector<size_t> ready;
  for (size_t i = 0; i < nodes.size(); ++i) {
    waiting_on[i] = nodes[i].dependencies.size();
    for (size_t dependency : nodes[i].dependencies) dependents[dependency].push_back(i);
    if (waiting_on[i] == 0) ready.push_back(i);
  }
  order.clear();
  while (!ready.empty()) {
    const size_t pick = std::uniform_int_distribution<size_t>(0, ready.size() - 1)(random);
    const size_t node = ready[pick];
    ready[pick] = ready.back();
    ready.pop_back();
    order.push_back(node);
    for (size_t dependent : dependents[node]) {
      if (--waiting_on[dependent] == 0) ready.push_back(dependent);
    }
  }
  return order;
}

void run_nodes(const ExecutableNodes& nodes, const std::vector<size_t>& order) {
  for (size_t index : order) {
    const ExecutableNode& node = nodes[index];
    if (node.after_failure == AfterFailure::skip && device_failed()) continue;
    run_operation(node.work);
  }
}

}  // namespace

namespace strata::sim::runtime_internal {

cudaGraph_t adopt_graph(std::unique_ptr<CUgraph_st> graph) {
  cudaGraph_t handle = graph.release();
  GraphRegistry::instance().add(handle);
  return handle;
}

}  // namespace strata::sim::runtime_internal

// Upload and node priorities change nothing here; graphs launched from the device and
// freeing graph allocations at launch (no memory nodes are simulated) are not supported.
cudaError_t CUDARTAPI cudaGraphInstantiate(cudaGraphExec_t* pGraphExec, cudaGraph_t graph, unsigned long long flags) {
  constexpr unsigned long long kAccepted = cudaGraphInstantiateFlagUpload | cudaGraphInstantiateFlagUseNodePriority;
  if (pGraphExec == nullptr || (flags & ~kAccepted) != 0) return fail(cudaErrorInvalidValue);
  if (!GraphRegistry::instance().contains(graph)) return fail(cudaErrorInvalidValue);
  auto nodes = std::make_shared<ExecutableNodes>();
  nodes->reserve(graph->nodes.size());
  for (const auto& node : graph->nodes) {
    ExecutableNode& copy = nodes->emplace_back();
    copy.work = node->work;
    copy.after_failure = node->after_failure;
    for (const CUgraphNode_st* dependency : node->dependencies) copy.dependencies.push_back(dependency->index);
  }
  auto* exec = new CUgraphExec_st();
  exec->nodes = std::move(nodes);
  GraphRegistry::instance().add(exec);
  *pGraphExec = exec;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaGraphInstantiateWithFlags(cudaGraphExec_t* pGraphExec, cudaGraph_t graph,
                                                    unsigned long long flags) {
  return cudaGraphInstantiate(pGraphExec, graph, flags);
}

// Launching into a capturing stream records the whole launch as one (child graph) node.
cudaError_t CUDARTAPI cudaGraphLaunch(cudaGraphExec_t graphExec, cudaStream_t stream) {
  if (!GraphRegistry::instance().contains(graphExec)) return fail(cudaErrorInvalidValue);
  const std::shared_ptr<CUstream_st> resolved = resolve_stream(stream);
  if (resolved == nullptr) return fail(cudaErrorInvalidResourceHandle);
  std::lock_guard lock(graphExec->mutex);
  std::vector<size_t> order = launch_order(*graphExec->nodes, strata::sim::schedule_seed(), graphExec->launches);
  Task launch = [nodes = graphExec->nodes, order = std::move(order), previous = graphExec->last_launch] {
    if (previous) wait_for(*previous);
    run_nodes(*nodes, order);
  };
  const Queued queued = queue_operation(resolved, cudaGraphNodeTypeGraph, std::move(launch), AfterFailure::run);
  if (queued.status != cudaSuccess) return queued.status;
  ++graphExec->launches;
  if (queued.point) graphExec->last_launch = queued.point;
  return cudaSuccess;
}

// Launches still queued run to completion.
cudaError_t CUDARTAPI cudaGraphExecDestroy(cudaGraphExec_t graphExec) {
  if (!GraphRegistry::instance().remove(graphExec)) return fail(cudaErrorInvalidValue);
  delete graphExec;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaGraphDestroy(cudaGraph_t graph) {
  if (!GraphRegistry::instance().remove(graph)) return fail(cudaErrorInvalidValue);
  delete graph;
  return cudaSuccess;
}

// With nodes null: the count. Otherwise up to *numNodes handles, and *numNodes set to the
// number written.
cudaError_t CUDARTAPI cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t* nodes, size_t* numNodes) {
  if (numNodes == nullptr || !GraphRegistry::instance().contains(graph)) return fail(cudaErrorInvalidValue);
  if (nodes == nullptr) {
    *numNodes = graph->nodes.size();
    return cudaSuccess;
  }
  const size_t written = std::min(*numNodes, graph->nodes.size());
  for (size_t i = 0; i < written; ++i) nodes[i] = graph->nodes[i].get();
  *numNodes = written;
  return cudaSuccess;
}

// Edges as parallel from/to arrays, in capture order of their target. Edge data is all
// zeros: the simulator records plain full dependencies only.
cudaError_t CUDARTAPI cudaGraphGetEdges(cudaGraph_t graph, cudaGraphNode_t* from, cudaGraphNode_t* to,
                                        cudaGraphEdgeData* edgeData, size_t* numEdges) {
  if (numEdges == nullptr || (from == nullptr) != (to == nullptr) || (edgeData != nullptr && from == nullptr) ||
      !GraphRegistry::instance().contains(graph)) {
    return fail(cudaErrorInvalidValue);
  }
  size_t count = 0;
  for (const auto& node : graph->nodes) {
    for (CUgraphNode_st* dependency : node->dependencies) {
      if (from != nullptr && count < *numEdges) {
        from[count] = dependency;
        to[count] = node.get();
        if (edgeData != nullptr) edgeData[count] = cudaGraphEdgeData{};
      }
      ++count;
    }
  }
  if (from != nullptr) {
    for (size_t i = count; i < *numEdges; ++i) {
      from[i] = nullptr;
      to[i] = nullptr;
    }
    *numEdges = std::min(*numEdges, count);
  } else {
    *numEdges = count;
  }
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaGraphNodeGetType(cudaGraphNode_t node, enum cudaGraphNodeType* pType) {
  if (node == nullptr || pType == nullptr) return fail(cudaErrorInvalidValue);
  *pType = node->type;
  return cudaSuccess;
}
