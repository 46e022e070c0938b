// Modules, as torch.nn.Module: a layer owns its parameters (tensors that require gradients)
// and buffers (state such as batch norm's running statistics), registered by name, and its
// child modules; the tree gives PyTorch's key names ("features.0.weight"), train/eval
// switching, zero_grad, state dicts saved and loaded as safetensors, and a printed tree.
//
//   auto model = nn::Sequential(nn::Conv2d(3, 16, 3, {.padding = 1}), nn::ReLU(), nn::MaxPool2d(2));
//   Tensor y = model(x);                         // (N, 16, H/2, W/2)
//   model.save("model.safetensors");
//   std::cout << model;                          // Sequential(\n  (0): Conv2d(3, 16, ...
//
// Every module knows its dotted path from the root ("features.3"), set when it is
// registered as a child. UnaryModule::forward opens an NVTX range and an autograd scope
// named by that path, and an InvalidArgument thrown inside (by a shape check or an F:: op)
// comes out prefixed, once, with the innermost module's path and summary:
//   "features.3 (Conv2d 64->128, 3x3): expected 64 input channels, got input (8, 128, 16, 16)"
//
// Modules cannot be copied (a copy would share or duplicate parameters by accident); they
// can be moved until they are registered anywhere, and children are held by shared_ptr.
#pragma once

#include <concepts>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "strata/core/engine.h"
#include "strata/core/safetensors.h"
#include "strata/core/tensor.h"

namespace strata::nn {

class Module {
 public:
  virtual ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  Module& operator=(Module&&) = delete;

  // PyTorch's class name: "Conv2d".
  virtual std::string type_name() const = 0;
  // What PyTorch's extra_repr shows between the parentheses: "3, 16, kernel_size=(3, 3), ...".
  virtual std::string extra_repr() const { return {}; }
  // The layer in short, for error messages: "Conv2d 64->128, 3x3". Default: type_name().
  virtual std::string summary() const { return type_name(); }

  // Dotted path from the root module ("features.3"); empty for a root.
  const std::string& path() const noexcept { return path_; }
  // "features.3 (Conv2d 64->128, 3x3)", or the summary alone for a root: what errors begin with.
  std::string describe() const;
  // The tree, as PyTorch prints a module.
  std::string repr() const;

  // Training mode for this module and every descendant (dropout drops, batch norm uses and
  // updates batch statistics); eval() is train(false). Modules start in training mode.
  void train(bool training = true);
  void eval() { train(false); }
  bool is_training() const noexcept { return training_; }

  // Runs every layer of this tree that has an engine choice (strata/core/engine.h; those
  // that override take_engine) on engine, overriding the process default for this model
  // only. Layers without a cuDNN path keep running the custom kernels: when engine is not
  // custom, a warning lists their types, once per process.
  void set_engine(Engine engine);

  // Every parameter of the tree, each once (a module or tensor registered twice counts
  // once), in registration order depth first: own parameters, then each child's. The
  // tensors share storage and autograd state with the module's: setting requires_grad or
  // grad on them acts on the module.
  std::vector<Tensor> parameters() const;
  // The same with PyTorch's dotted names: "features.0.weight".
  NamedTensors named_parameters() const;
  // Buffers ("bn.running_mean", "bn.num_batches_tracked"), each once.
  NamedTensors named_buffers() const;
  // Everything a checkpoint holds, in PyTorch's state_dict order: per module its
  // parameters, then its buffers, then its children's entries.
  NamedTensors state_dict() const;
  // The direct children with their names, in registration order.
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const noexcept {
    return children_;
  }

  // Clears every parameter's gradient (set_to_none), or fills the existing ones with zeros
  // on current_stream().
  void zero_grad(bool set_to_none = true);

  // state_dict() to a safetensors file (atomically), through current_stream().
  void save(const std::filesystem::path& path) const;
  // Loads a safetensors file into state_dict() in place, on current_stream(), all or
  // nothing: a missing or unexpected key (when strict), or any dtype or shape that differs,
  // throws IoError listing every difference and leaves the module untouched. Non-strict
  // loads report the keys they skipped.
  SafetensorsLoadReport load(const std::filesystem::path& path, bool strict = true);
  // The same from tensors in memory (e.g. weights converted from another framework), as
  // PyTorch's load_state_dict: copied on current_stream() after everything was compared;
  // a difference throws InvalidArgument listing all of them and changes nothing.
  SafetensorsLoadReport load_state_dict(const NamedTensors& state, bool strict = true);

 protected:
  Module() = default;
  // For building a module as a value and moving it into a container (Sequential takes
  // layers by value). Only before registration: children keep no pointer to their parent.
  Module(Module&&) noexcept = default;

  // Registers a parameter (marked requires_grad) or a buffer under name: unique within this
  // module, not empty, without dots. Returns a handle sharing the tensor and its autograd
  // state, for the layer to keep.
  Tensor register_parameter(std::string name, Tensor tensor);
  Tensor register_buffer(std::string name, Tensor tensor);
  // Registers a child (setting its path, and its descendants', below this module's).
  template <typename M>
    requires std::derived_from<M, Module>
  std::shared_ptr<M> register_module(std::string name, std::shared_ptr<M> module) {
    register_child(std::move(name), module);
    return module;
  }

  // Runs body as this module's forward: inside an NVTX range "<path>/forward" and an
  // autograd scope named by the path, turning an InvalidArgument or NotSupported (an engine
  // that cannot run the layer) from inside into one prefixed with describe() (once: an
  // enclosing module's run_forward passes it on).
  Tensor run_forward(const std::function<Tensor()>& body) const;

  // A layer with an engine choice takes engine as its own and returns true (Conv2d, say); the
  // default has none and returns false. Called by set_engine for every module of the tree.
  virtual bool take_engine(Engine engine);

 private:
  void register_child(std::string name, std::shared_ptr<Module> module);
  void check_new_name(const std::string& name, std::string_view kind) const;
  void set_path(std::string path);
  // Offers engine to this module and its descendants; appends the types of the leaves
  // without an engine choice.
  void offer_engine(Engine engine, std::vector<std::string>& without_choice);
  // The tree's entries with their full names, depth first, appended to out.
  enum class Entries { parameters, buffers, state };
  void collect(Entries entries, const std::string& prefix, NamedTensors& out) const;

  std::string path_;
  bool training_ = true;
  NamedTensors parameters_;
  NamedTensors buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

std::ostream& operator<<(std::ostream& os, const Module& module);

// A module with one input and one output: the layers a Sequential chains. forward() is not
// virtual: it checks the input with check_input() (which names what it expected and the
// input's shape), then runs forward_impl(), inside run_forward().
class UnaryModule : public Module {
 public:
  Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }

 protected:
  UnaryModule() = default;
  UnaryModule(UnaryModule&&) noexcept = default;

  // Throws InvalidArgument (message without the module prefix, which forward adds) for a
  // (defined) input this layer cannot take. Default: anything goes (the F:: op checks).
  virtual void check_input(const Tensor& x) const;
  virtual Tensor forward_impl(const Tensor& x) = 0;
};

// A UnaryModule held by shared_ptr, made implicitly from a module value (moved in) or from
// a shared_ptr (to share a module between places): what containers take, so that
//   nn::Concat({nn::Conv2d(16, 8, 1), nn::MaxPool2d(3, {.stride = 1, .padding = 1})})
// works as in Python. As torch::nn::AnyModule in libtorch.
class AnyModule {
 public:
  template <typename M>
    requires std::derived_from<std::remove_cvref_t<M>, UnaryModule> && (!std::is_lvalue_reference_v<M>)
  AnyModule(M&& module)  // NOLINT(google-explicit-constructor): implicit by design
      : module_(std::make_shared<std::remove_cvref_t<M>>(std::forward<M>(module))) {}
  template <typename M>
    requires std::derived_from<M, UnaryModule>
  AnyModule(std::shared_ptr<M> module)  // NOLINT(google-explicit-constructor)
      : module_(std::move(module)) {}

  const std::shared_ptr<UnaryModule>& get() const noexcept { return module_; }

 private:
  std::shared_ptr<UnaryModule> module_;
};

// Layers applied in order, as torch.nn.Sequential; children are named "0", "1", ...
//   auto model = nn::Sequential(nn::Conv2d(3, 16, 3, {.padding = 1}), nn::ReLU(), nn::MaxPool2d(2));
// (Write `auto model = nn::Sequential(...)` or braces: `nn::Sequential model(nn::ReLU(), nn::ReLU())`
// declares a function, C++'s most vexing parse.)
class Sequential : public UnaryModule {
 public:
  Sequential() = default;
  template <typename... Layers>
    requires(sizeof...(Layers) >= 1 && (std::convertible_to<Layers, AnyModule> && ...))
  explicit Sequential(Layers&&... layers) {
    (push_back(AnyModule(std::forward<Layers>(layers))), ...);
  }
  Sequential(Sequential&&) noexcept = default;

  // Appends a layer, named by its index.
  void push_back(AnyModule layer);
  std::size_t size() const noexcept { return layers_.size(); }
  bool empty() const noexcept { return layers_.empty(); }
  // Layer i; throws InvalidArgument when i >= size().
  UnaryModule& operator[](std::size_t i) const;
  // Layer i as the handle this Sequential holds, to put the same layer in another container.
  const std::shared_ptr<UnaryModule>& layer_ptr(std::size_t i) const;
  // Layer i as T; throws InvalidArgument when it is another type.
  template <typename T>
    requires std::derived_from<T, UnaryModule>
  T& at(std::size_t i) const {
    UnaryModule& layer = (*this)[i];
    auto* typed = dynamic_cast<T*>(&layer);
    if (typed == nullptr) throw_wrong_type(i);
    return *typed;
  }

  std::string type_name() const override { return "Sequential"; }

 protected:
  Tensor forward_impl(const Tensor& x) override;

 private:
  [[noreturn]] void throw_wrong_type(std::size_t i) const;

  std::vector<std::shared_ptr<UnaryModule>> layers_;
};

}  // namespace strata::nn
