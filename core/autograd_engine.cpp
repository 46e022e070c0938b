// backward(): runs every node reachable from the root once, after all the nodes that feed
// it gradients, summing the gradients that meet at one tensor, and frees each node's saved
// tensors as soon as it has run (unless the graph is retained).
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/autograd_meta.h"
#include "core/check.h"
#include "core/format.h"
#include "core/nvtx.h"
#include "core/tensor_ops.h"
#include "strata/core/autograd.h"
#include "strata/core/op.h"

namespace strata::autograd {

namespace {

std::string describe(const Node& node) {
  return node.scope().empty() ? node.name() : fmt::format("{}/{}", node.scope(), node.name());
}

// The number of edges into each node reachable from root: a node runs when all of them
// have delivered their gradient.
std::unordered_map<Node*, int> count_dependencies(Node* root) {
  std::unordered_map<Node*, int> dependencies{{root, 0}};
  std::vector<Node*> to_visit{root};
  while (!to_visit.empty()) {
    Node* node = to_visit.back();
    to_visit.pop_back();
    for (const Edge& edge : node->next_edges()) {
      if (!edge.valid()) continue;
      auto [entry, first_visit] = dependencies.try_emplace(edge.node.get(), 0);
      ++entry->second;
      if (first_visit) to_visit.push_back(edge.node.get());
    }
  }
  return dependencies;
}

// a + b into a new tensor: the gradients summed here may be shared with other consumers. Both
// have the dtype of the tensor they are for (check_gradient), f32, f16 or bf16; the sum is
// computed in f32 and rounded once to it; in a's memory format (b converted when it differs).
Tensor sum_gradients(const Tensor& a, const Tensor& b_in_any_format, cudaStream_t stream) {
  const Tensor b = b_in_any_format.to_memory_format(a.memory_format(), stream);
  Tensor sum = Tensor::empty(a.shape(), a.dtype(), stream, a.memory_format());
  graph::run_op_on(stream, "sum_gradients", {a, b}, {sum},
                   [first = a.detach(), second = b.detach(), sum](cudaStream_t s) mutable {
                     detail::launch_add(first.memory_ptr(), second.memory_ptr(), sum.memory_ptr(), sum.dtype(),
                                        first.numel(), 1.0f, s);
                   });
  return sum;
}

void check_gradient(const Node& producer, std::size_t input, const Tensor& gradient, const Node& consumer,
                    int output_nr) {
  const Shape& expected = consumer.output_shape(output_nr);
  STRATA_CHECK(gradient.shape() == expected && gradient.dtype() == consumer.output_dtype(output_nr),
               "backward: {} returned a gradient of shape {} and dtype {} for its input {}, which has shape {} "
               "and dtype {} (a bug in that op's backward)",
               describe(producer), gradient.shape(), gradient.dtype(), input, expected,
               consumer.output_dtype(output_nr));
}

struct LaterFirst {
  bool operator()(const std::shared_ptr<Node>& a, const std::shared_ptr<Node>& b) const {
    return a->sequence_nr() < b->sequence_nr();
  }
};

}  // namespace

void backward(const Tensor& root, const Tensor& dL_droot, cudaStream_t stream, const BackwardOptions& options) {
  NvtxRange range("backward");
  STRATA_CHECK(root.defined(), "backward: the tensor is undefined");
  STRATA_CHECK(root.requires_grad(),
               "backward: the tensor of shape {} does not require gradients and has no grad_fn: no input of the "
               "ops that made it requires gradients, or it was made under a NoGradGuard",
               root.shape());
  STRATA_CHECK(stream != nullptr, "backward: no stream given; Strata never uses the default stream");
  const graph::PhaseGuard phase(graph::Phase::backward);

  Tensor seed = dL_droot;
  if (!seed.defined()) {
    STRATA_CHECK(root.numel() == 1,
                 "backward: a gradient can be implied only for a tensor of one element (a scalar loss); this one "
                 "has shape {}: pass dL_droot of that shape, or reduce it to a scalar first",
                 root.shape());
    seed = Tensor::empty(root.shape(), root.dtype(), stream);
    seed.fill(1.0, stream);
  } else {
    STRATA_CHECK(seed.shape() == root.shape() && seed.dtype() == root.dtype() && seed.is_device(),
                 "backward: dL_droot ({}, {}, {} memory) must be a device tensor of the root's shape {} and dtype {}",
                 seed.shape(), seed.dtype(), memory_kind_name(seed.memory_kind()), root.shape(), root.dtype());
  }

  const Edge root_edge = gradient_edge(root);
  std::unordered_map<Node*, int> dependencies = count_dependencies(root_edge.node.get());
  std::unordered_map<Node*, Gradients> pending;  // gradients delivered to nodes not yet run
  pending[root_edge.node.get()].resize(static_cast<std::size_t>(root_edge.node->num_outputs()));
  pending[root_edge.node.get()][static_cast<std::size_t>(root_edge.input_nr)] = seed;

  std::priority_queue<std::shared_ptr<Node>, std::vector<std::shared_ptr<Node>>, LaterFirst> ready;
  ready.push(root_edge.node);
  while (!ready.empty()) {
    std::shared_ptr<Node> node = ready.top();
    ready.pop();
    Gradients dL_doutputs = std::move(pending[node.get()]);
    pending.erase(node.get());
    dL_doutputs.resize(static_cast<std::size_t>(node->num_outputs()));

    bool any_gradient = false;
    for (const Tensor& gradient : dL_doutputs) any_gradient = any_gradient || gradient.defined();
    Gradients dL_dinputs;
    if (any_gradient) {
      // Ops see a gradient for every output: the missing ones are zeros.
      for (std::size_t i = 0; i < dL_doutputs.size(); ++i) {
        if (!dL_doutputs[i].defined()) {
          const int output_nr = static_cast<int>(i);
          dL_doutputs[i] = Tensor::zeros(node->output_shape(output_nr), node->output_dtype(output_nr), stream);
        }
      }
      const std::string node_name = describe(*node);
      NvtxRange node_range(node_name.c_str());
      // The ops of a node's backward are recorded under the module that ran its forward.
      const ScopeGuard scope(node->scope());
      dL_dinputs = node->apply(std::move(dL_doutputs), stream);
      if (!options.retain_graph) node->release_saved();
      STRATA_CHECK(dL_dinputs.empty() || dL_dinputs.size() == node->next_edges().size(),
                   "backward: {} returned {} gradients for {} inputs (a bug in that op's backward)", node_name,
                   dL_dinputs.size(), node->next_edges().size());
    }

    const std::vector<Edge>& edges = node->next_edges();
    for (std::size_t i = 0; i < edges.size(); ++i) {
      const Edge& edge = edges[i];
      if (!edge.valid()) continue;
      if (i < dL_dinputs.size() && dL_dinputs[i].defined()) {
        check_gradient(*node, i, dL_dinputs[i], *edge.node, edge.input_nr);
        Gradients& slot = pending[edge.node.get()];
        slot.resize(static_cast<std::size_t>(edge.node->num_outputs()));
        Tensor& target = slot[static_cast<std::size_t>(edge.input_nr)];
        target = target.defined() ? sum_gradients(target, dL_dinputs[i], stream) : std::move(dL_dinputs[i]);
      }
      if (--dependencies[edge.node.get()] == 0) ready.push(edge.node);
    }
  }
}

}  // namespace strata::autograd
