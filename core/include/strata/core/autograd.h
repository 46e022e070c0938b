// Reverse-mode automatic differentiation, as PyTorch's autograd: an op applied to tensors
// that require gradients records a Node holding what its backward needs; backward() on a
// scalar loss walks those nodes from the loss to the leaves, each once, after every node
// that feeds it, and adds each leaf's gradient into Tensor::grad().
//
//   Tensor w = Tensor::empty({16, 3, 3, 3}, DType::f32, stream).set_requires_grad();
//   Tensor loss = F::cross_entropy(model(x), targets);
//   loss.backward();                          // w.grad() now holds dL/dw
//   { autograd::NoGradGuard no_grad; evaluate(model); }
//
// An op author writes the forward, then, when needs_grad() says so, a Node:
//
//   Tensor y = kernels::relu_forward(x, {}, stream);
//   if (autograd::needs_grad({x})) {
//     autograd::record("ReluBackward", {x}, y, [y = y.detach()](autograd::Gradients dL_dy, cudaStream_t s) {
//       return autograd::Gradients{kernels::relu_backward(dL_dy[0], y, {}, s)};
//     });
//   }
//
// Every node runs on the stream given to backward() (the current stream by default) and
// never synchronises with the host.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "strata/core/tensor.h"

namespace strata::autograd {

class Node;

// Gradients flowing through a node: one per output (into apply) or per input (out of it).
// An undefined Tensor means "no gradient", which the engine treats as zeros.
using Gradients = std::vector<Tensor>;

// Where a gradient goes: input input_nr of node. Leaves that require gradients get an
// accumulating node of their own; an invalid edge (no node) drops the gradient.
struct Edge {
  std::shared_ptr<Node> node;
  int input_nr = 0;
  bool valid() const noexcept { return node != nullptr; }
};

// One recorded op. apply() receives dL/d(each output) and returns dL/d(each input), in
// the order of next_edges(); it may return an undefined tensor for an input whose edge is
// invalid. Nodes are made by the op's forward and owned by the outputs' grad_fn.
class Node {
 public:
  explicit Node(std::vector<Edge> next_edges);
  virtual ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  virtual Gradients apply(Gradients dL_doutputs, cudaStream_t stream) = 0;
  // "Conv2dBackward": for NVTX ranges and error messages.
  virtual std::string name() const = 0;
  // Frees what the forward saved; called after apply() unless the graph is retained.
  virtual void release_saved() {}

  const std::vector<Edge>& next_edges() const noexcept { return next_edges_; }
  // The outputs the forward gave this node (set by set_history): their number, and the
  // shape and dtype of each, which its gradient must have.
  int num_outputs() const noexcept { return static_cast<int>(outputs_.size()); }
  const Shape& output_shape(int output_nr) const { return outputs_.at(static_cast<std::size_t>(output_nr)).shape; }
  DType output_dtype(int output_nr) const { return outputs_.at(static_cast<std::size_t>(output_nr)).dtype; }
  void add_output(int output_nr, const Shape& shape, DType dtype);
  // Creation order: nodes made later run earlier when both are ready.
  std::uint64_t sequence_nr() const noexcept { return sequence_nr_; }
  // Where the op ran, e.g. "features.3" when a module made it; names NVTX ranges
  // ("features.3/Conv2dBackward") and errors.
  const std::string& scope() const noexcept { return scope_; }

 private:
  struct OutputInfo {
    Shape shape;
    DType dtype = DType::f32;
  };
  std::vector<Edge> next_edges_;
  std::vector<OutputInfo> outputs_;
  std::uint64_t sequence_nr_;
  std::string scope_;
};

// A node whose backward is a function; release_saved() drops the function and with it
// everything it captured. Applying it again after that is an error saying so.
using BackwardFunction = std::function<Gradients(Gradients dL_doutputs, cudaStream_t stream)>;

// Whether ops record nodes on this thread (true unless a NoGradGuard is alive).
bool is_grad_enabled() noexcept;
void set_grad_enabled(bool enabled) noexcept;

// Turns recording off on this thread while alive, restoring the previous mode after.
class GradModeGuard {
 public:
  explicit GradModeGuard(bool enabled) : previous_(is_grad_enabled()) { set_grad_enabled(enabled); }
  ~GradModeGuard() { set_grad_enabled(previous_); }
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool previous_;
};
class NoGradGuard : public GradModeGuard {
 public:
  NoGradGuard() : GradModeGuard(false) {}
};

// The module path ops are recorded under on this thread ("features.3"), set by Module.
class ScopeGuard {
 public:
  explicit ScopeGuard(std::string scope);
  ~ScopeGuard();
  ScopeGuard(const ScopeGuard&) = delete;
  ScopeGuard& operator=(const ScopeGuard&) = delete;

 private:
  std::string previous_;
};
const std::string& current_scope() noexcept;

// Whether an op on these inputs must record a node: grad mode is on and one of them
// requires gradients.
bool needs_grad(std::initializer_list<std::reference_wrapper<const Tensor>> inputs);
bool needs_grad(std::span<const Tensor> inputs);

// The edge a gradient for tensor takes: its grad_fn for an op's output, the accumulating
// node for a leaf that requires gradients, an invalid edge otherwise.
Edge gradient_edge(const Tensor& tensor);

// Makes output a non-leaf produced by output output_nr of node (requires_grad becomes true).
void set_history(Tensor& output, const std::shared_ptr<Node>& node, int output_nr = 0);

// Records a function node with one edge per input (in order) and sets the history of
// outputs (output i is output i of the node). Returns the node.
std::shared_ptr<Node> record(std::string name, std::initializer_list<std::reference_wrapper<const Tensor>> inputs,
                             std::initializer_list<std::reference_wrapper<Tensor>> outputs, BackwardFunction backward);
std::shared_ptr<Node> record(std::string name, std::span<const Tensor> inputs, std::span<Tensor> outputs,
                             BackwardFunction backward);
// The one-output form.
inline std::shared_ptr<Node> record(std::string name, std::initializer_list<std::reference_wrapper<const Tensor>> inputs,
                                    Tensor& output, BackwardFunction backward) {
  return record(std::move(name), inputs, {std::ref(output)}, std::move(backward));
}

// Marks a node made by record whose backward captured nothing worth freeing (a cast keeps
// only a dtype): backward never releases it, so that a graph reached through it more than
// once (a parameter cast that autocast caches for several forwards) can run backward again
// without retain_graph. Throws InvalidArgument for a node record did not make.
void keep_after_backward(const std::shared_ptr<Node>& node);

struct BackwardOptions {
  // Keep saved tensors so that backward can run through the graph again.
  bool retain_graph = false;
};

// Computes the gradient of root with respect to every leaf that requires gradients and
// adds it into the leaf's grad() (setting it when undefined). dL_droot has root's shape;
// it may be undefined only when root has a single element (the gradient is then 1).
// Throws InvalidArgument when root does not require gradients, when dL_droot is missing
// for a non-scalar root or has the wrong shape, and when the graph was already freed by
// an earlier backward.
void backward(const Tensor& root, const Tensor& dL_droot, cudaStream_t stream, const BackwardOptions& options = {});

}  // namespace strata::autograd
