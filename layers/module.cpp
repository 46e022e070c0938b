// Module's registry, tree walks, state dicts, printing and the forward wrapper that names
// errors and NVTX ranges by module path.
#include "strata/layers/module.h"

#include <algorithm>
#include <ostream>
#include <unordered_set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/check.h"
#include "core/engine_internal.h"
#include "core/nvtx.h"
#include "strata/core/autograd.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"

namespace strata::nn {

namespace {

// An InvalidArgument already prefixed with the innermost module: enclosing modules pass it
// on unchanged. Callers see (and catch) it as InvalidArgument.
class ModuleInvalidArgument final : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};
class ModuleNotSupported final : public NotSupported {
 public:
  using NotSupported::NotSupported;
};

std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// PyTorch's _addindent: every line but the first indented by two spaces.
std::string indent_continuation_lines(const std::string& text) {
  std::string indented;
  for (const char c : text) {
    indented += c;
    if (c == '\n') indented += "  ";
  }
  return indented;
}

}  // namespace

Module::~Module() = default;

std::string Module::describe() const { return path_.empty() ? summary() : path_ + " (" + summary() + ")"; }

// As torch.nn.Module.__repr__: a one-line extra_repr stays inline when there are no
// children; otherwise extra_repr's lines and then "(name): child" lines, one per line.
std::string Module::repr() const {
  std::vector<std::string> lines;
  const std::string extra = extra_repr();
  std::size_t extra_lines = 0;
  if (!extra.empty()) {
    std::size_t begin = 0;
    for (std::size_t end = extra.find('\n'); ; end = extra.find('\n', begin)) {
      lines.push_back(extra.substr(begin, end == std::string::npos ? std::string::npos : end - begin));
      ++extra_lines;
      if (end == std::string::npos) break;
      begin = end + 1;
    }
  }
  for (const auto& [name, child] : children_) {
    lines.push_back("(" + name + "): " + indent_continuation_lines(child->repr()));
  }
  std::string text = type_name() + "(";
  if (extra_lines == 1 && children_.empty()) {
    text += lines.front();
  } else if (!lines.empty()) {
    for (const std::string& line : lines) text += "\n  " + line;
    text += "\n";
  }
  return text + ")";
}

std::ostream& operator<<(std::ostream& os, const Module& module) { return os << module.repr(); }

void Module::train(bool training) {
  training_ = training;
  for (const auto& child : children_) child.second->train(training);
}

void Module::set_engine(Engine engine) {
  std::vector<std::string> without_choice;
  offer_engine(engine, without_choice);
  std::ranges::sort(without_choice);
  without_choice.erase(std::unique(without_choice.begin(), without_choice.end()), without_choice.end());
  if (engine != Engine::custom && !without_choice.empty()) {
    detail::warn_once(fmt::format("set_engine({}): {} run Strata's custom kernels (no cuDNN path)",
                                  engine_name(engine), fmt::join(without_choice, ", ")));
  }
}

bool Module::take_engine(Engine /*engine*/) { return false; }

void Module::offer_engine(Engine engine, std::vector<std::string>& without_choice) {
  if (!take_engine(engine) && children_.empty()) without_choice.push_back(type_name());
  for (const auto& child : children_) child.second->offer_engine(engine, without_choice);
}

void Module::check_new_name(const std::string& name, std::string_view kind) const {
  STRATA_CHECK(!name.empty() && name.find('.') == std::string::npos,
               "{}: {} name '{}' must be non-empty and contain no '.'", type_name(), kind, name);
  const auto taken = [&](const auto& entries) {
    for (const auto& entry : entries) {
      if (entry.first == name) return true;
    }
    return false;
  };
  STRATA_CHECK(!taken(parameters_) && !taken(buffers_) && !taken(children_),
               "{}: cannot register {} '{}': the name is already taken", type_name(), kind, name);
}

Tensor Module::register_parameter(std::string name, Tensor tensor) {
  check_new_name(name, "parameter");
  STRATA_CHECK(tensor.defined(), "{}: parameter '{}' is undefined", type_name(), name);
  // Before the copy is stored: the autograd state is created here and shared by every copy.
  tensor.set_requires_grad(true);
  parameters_.emplace_back(std::move(name), tensor);
  return tensor;
}

Tensor Module::register_buffer(std::string name, Tensor tensor) {
  check_new_name(name, "buffer");
  STRATA_CHECK(tensor.defined(), "{}: buffer '{}' is undefined", type_name(), name);
  buffers_.emplace_back(std::move(name), tensor);
  return tensor;
}

void Module::register_child(std::string name, std::shared_ptr<Module> module) {
  check_new_name(name, "module");
  STRATA_CHECK(module != nullptr, "{}: module '{}' is null", type_name(), name);
  STRATA_CHECK(module.get() != this, "{}: a module cannot be its own child", type_name());
  module->set_path(join_name(path_, name));
  children_.emplace_back(std::move(name), std::move(module));
}

void Module::set_path(std::string path) {
  path_ = std::move(path);
  for (const auto& [name, child] : children_) child->set_path(join_name(path_, name));
}

void Module::collect(Entries entries, const std::string& prefix, NamedTensors& out) const {
  if (entries != Entries::buffers) {
    for (const auto& [name, tensor] : parameters_) out.emplace_back(join_name(prefix, name), tensor);
  }
  if (entries != Entries::parameters) {
    for (const auto& [name, tensor] : buffers_) out.emplace_back(join_name(prefix, name), tensor);
  }
  for (const auto& [name, child] : children_) child->collect(entries, join_name(prefix, name), out);
}

namespace {

// The first entry for each tensor: a module shared between two places (or one tensor
// registered twice) is one set of parameters, as PyTorch's remove_duplicate.
NamedTensors without_repeats(NamedTensors entries) {
  std::unordered_set<const void*> seen;
  NamedTensors unique;
  for (auto& entry : entries) {
    if (seen.insert(entry.second.data_ptr()).second) unique.push_back(std::move(entry));
  }
  return unique;
}

}  // namespace

NamedTensors Module::named_parameters() const {
  NamedTensors entries;
  collect(Entries::parameters, "", entries);
  return without_repeats(std::move(entries));
}

NamedTensors Module::named_buffers() const {
  NamedTensors entries;
  collect(Entries::buffers, "", entries);
  return without_repeats(std::move(entries));
}

NamedTensors Module::state_dict() const {
  NamedTensors entries;
  collect(Entries::state, "", entries);
  return entries;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> tensors;
  for (auto& entry : named_parameters()) tensors.push_back(std::move(entry.second));
  return tensors;
}

void Module::zero_grad(bool set_to_none) {
  for (Tensor& parameter : parameters()) {
    if (set_to_none) {
      parameter.set_grad(Tensor());
    } else if (parameter.grad().defined()) {
      Tensor grad = parameter.grad();  // shares the gradient's storage
      grad.fill(0.0, current_stream());
    }
  }
}

void Module::save(const std::filesystem::path& path) const { save_safetensors(path, state_dict(), current_stream()); }

SafetensorsLoadReport Module::load(const std::filesystem::path& path, bool strict) {
  return load_safetensors_into(path, state_dict(), current_stream(), {.strict = strict});
}

SafetensorsLoadReport Module::load_state_dict(const NamedTensors& state, bool strict) {
  return load_tensors_into(state, state_dict(), current_stream(), {.strict = strict});
}

Tensor Module::run_forward(const std::function<Tensor()>& body) const {
  const NvtxRange range(((path_.empty() ? type_name() : path_) + "/forward").c_str());
  const autograd::ScopeGuard scope(path_);
  try {
    return body();
  } catch (const ModuleInvalidArgument&) {
    throw;
  } catch (const InvalidArgument& error) {
    throw ModuleInvalidArgument(describe() + ": " + error.what());
  } catch (const ModuleNotSupported&) {
    throw;
  } catch (const NotSupported& error) {
    throw ModuleNotSupported(describe() + ": " + error.what());
  }
}

Tensor UnaryModule::forward(const Tensor& x) {
  return run_forward([&] {
    STRATA_CHECK(x.defined(), "the input is undefined");
    check_input(x);
    return forward_impl(x);
  });
}

void UnaryModule::check_input(const Tensor& /*x*/) const {}

}  // namespace strata::nn
