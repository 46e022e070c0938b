// Recording: grad mode, scopes, nodes, edges, and the node that adds into a leaf's grad().
#include "strata/core/autograd.h"

#include <atomic>
#include <utility>

#include "core/autograd_meta.h"
#include "core/check.h"
#include "core/format.h"

namespace strata::autograd {

namespace {

thread_local bool grad_enabled = true;
thread_local std::string scope_of_thread;
std::atomic<std::uint64_t> next_sequence_nr{0};

// Adds incoming gradients into a leaf's grad(), kept in the leaf's memory format (PyTorch's
// layout contract: an optimizer walks a parameter and its gradient in one memory order):
// adopts the first one when nothing else holds its storage and it is in that format (no
// copy), copies (converting) it otherwise, and accumulates in place after that.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<detail::AutogradMeta> leaf) : Node({}), leaf_(std::move(leaf)) {
    add_output(0, leaf_->shape, leaf_->dtype);
  }

  Gradients apply(Gradients dL_doutputs, cudaStream_t stream) override {
    Tensor& incoming = dL_doutputs.at(0);
    if (!incoming.defined()) return {};
    Tensor& grad = leaf_->grad;
    if (!grad.defined()) {
      const MemoryFormat format = incoming.dim() == 4 ? leaf_->memory_format : incoming.memory_format();
      const bool in_format = incoming.memory_format() == format || layouts_coincide(incoming.shape());
      if (in_format && detail::TensorAccess::owns_storage_alone(incoming)) {
        grad = std::move(incoming).detach();
      } else {
        grad = Tensor::empty(incoming.shape(), incoming.dtype(), stream, format);
        grad.copy_from(incoming, stream);
      }
    } else {
      grad.add_(incoming, 1.0f, stream);
    }
    return {};
  }
  std::string name() const override { return "AccumulateGrad"; }

 private:
  std::shared_ptr<detail::AutogradMeta> leaf_;
};

class FunctionNode final : public Node {
 public:
  FunctionNode(std::string name, std::vector<Edge> next_edges, BackwardFunction backward)
      : Node(std::move(next_edges)), name_(std::move(name)), backward_(std::move(backward)) {}

  Gradients apply(Gradients dL_doutputs, cudaStream_t stream) override {
    STRATA_CHECK(backward_ != nullptr,
                 "backward: trying to run {}{}{} a second time, but its saved tensors were freed by the first "
                 "backward; pass BackwardOptions{{.retain_graph = true}} to the first call to keep them",
                 scope().empty() ? "" : scope(), scope().empty() ? "" : "/", name_);
    return backward_(std::move(dL_doutputs), stream);
  }
  std::string name() const override { return name_; }
  void release_saved() override {
    if (!kept_) backward_ = nullptr;
  }
  void keep() { kept_ = true; }

 private:
  std::string name_;
  BackwardFunction backward_;
  bool kept_ = false;  // keep_after_backward
};

}  // namespace

Node::Node(std::vector<Edge> next_edges)
    : next_edges_(std::move(next_edges)), sequence_nr_(next_sequence_nr.fetch_add(1)), scope_(scope_of_thread) {}

Node::~Node() = default;

void Node::add_output(int output_nr, const Shape& shape, DType dtype) {
  const auto index = static_cast<std::size_t>(output_nr);
  if (outputs_.size() <= index) outputs_.resize(index + 1);
  outputs_[index] = {shape, dtype};
}

bool is_grad_enabled() noexcept { return grad_enabled; }
void set_grad_enabled(bool enabled) noexcept { grad_enabled = enabled; }

ScopeGuard::ScopeGuard(std::string scope) : previous_(std::exchange(scope_of_thread, std::move(scope))) {}
ScopeGuard::~ScopeGuard() { scope_of_thread = std::move(previous_); }
const std::string& current_scope() noexcept { return scope_of_thread; }

bool needs_grad(std::initializer_list<std::reference_wrapper<const Tensor>> inputs) {
  if (!grad_enabled) return false;
  for (const Tensor& input : inputs) {
    if (input.requires_grad()) return true;
  }
  return false;
}

bool needs_grad(std::span<const Tensor> inputs) {
  if (!grad_enabled) return false;
  for (const Tensor& input : inputs) {
    if (input.requires_grad()) return true;
  }
  return false;
}

Edge gradient_edge(const Tensor& tensor) {
  const auto& meta = detail::TensorAccess::meta(tensor);
  if (meta == nullptr) return {};
  if (meta->grad_fn != nullptr) return {meta->grad_fn, meta->output_nr};
  if (!meta->requires_grad) return {};
  std::shared_ptr<Node> accumulator = meta->accumulator.lock();
  if (accumulator == nullptr) {
    accumulator = std::make_shared<AccumulateGrad>(meta);
    meta->accumulator = accumulator;
  }
  return {accumulator, 0};
}

void set_history(Tensor& output, const std::shared_ptr<Node>& node, int output_nr) {
  STRATA_CHECK(output.defined(), "autograd: {} produced an undefined output {}", node->name(), output_nr);
  // A fresh meta: output may be a view sharing its storage with an input, and must not
  // share that input's history.
  auto meta = std::make_shared<detail::AutogradMeta>();
  meta->requires_grad = true;
  meta->grad_fn = node;
  meta->output_nr = output_nr;
  meta->shape = output.shape();
  meta->dtype = output.dtype();
  detail::TensorAccess::meta(output) = std::move(meta);
  node->add_output(output_nr, output.shape(), output.dtype());
}

void keep_after_backward(const std::shared_ptr<Node>& node) {
  auto* function = dynamic_cast<FunctionNode*>(node.get());
  STRATA_CHECK(function != nullptr, "autograd::keep_after_backward: {} is not a node made by autograd::record",
               node == nullptr ? std::string("a null node") : node->name());
  function->keep();
}

std::shared_ptr<Node> record(std::string name, std::span<const Tensor> inputs, std::span<Tensor> outputs,
                             BackwardFunction backward) {
  std::vector<Edge> edges;
  edges.reserve(inputs.size());
  for (const Tensor& input : inputs) edges.push_back(gradient_edge(input));
  auto node = std::make_shared<FunctionNode>(std::move(name), std::move(edges), std::move(backward));
  for (std::size_t i = 0; i < outputs.size(); ++i) set_history(outputs[i], node, static_cast<int>(i));
  return node;
}

std::shared_ptr<Node> record(std::string name, std::initializer_list<std::reference_wrapper<const Tensor>> inputs,
                             std::initializer_list<std::reference_wrapper<Tensor>> outputs,
                             BackwardFunction backward) {
  std::vector<Edge> edges;
  edges.reserve(inputs.size());
  for (const Tensor& input : inputs) edges.push_back(gradient_edge(input));
  auto node = std::make_shared<FunctionNode>(std::move(name), std::move(edges), std::move(backward));
  int output_nr = 0;
  for (Tensor& output : outputs) set_history(output, node, output_nr++);
  return node;
}

}  // namespace strata::autograd
