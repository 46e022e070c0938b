// The engine parity report (strata/layers/engine_parity.h): a reference pass through the
// chain of layers for their inputs, then, last layer first, each layer on both engines with
// the reference's upstream gradient, compared on the host in double.
#include "strata/layers/engine_parity.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/check.h"
#include "strata/core/autograd.h"
#include "strata/core/errors.h"
#include "strata/core/generator.h"
#include "strata/core/stream.h"

namespace strata::nn {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

// The layers of the report, in forward order: a Sequential's children (nested Sequentials
// followed into), any other module as a whole.
void collect_layers(UnaryModule& module, std::vector<UnaryModule*>& layers) {
  if (auto* sequential = dynamic_cast<Sequential*>(&module)) {
    for (std::size_t i = 0; i < sequential->size(); ++i) collect_layers((*sequential)[i], layers);
    return;
  }
  layers.push_back(&module);
}

// What the report leaves as it found: the default generator, every buffer and every
// parameter's gradient of the model. Restored by restore_buffers() before each layer's run
// (batch norm in training mode updates its running statistics at every forward), and by
// the destructor at the end, even when the report throws.
class ModelState {
 public:
  ModelState(const Module& model, cudaStream_t stream) : stream_(stream), generator_(default_generator().state()) {
    for (const auto& [name, buffer] : model.named_buffers()) {
      Tensor copy = Tensor::empty(buffer.shape(), buffer.dtype(), stream);
      copy.copy_from(buffer, stream);
      buffers_.emplace_back(buffer, std::move(copy));
    }
    for (const Tensor& parameter : model.parameters()) gradients_.emplace_back(parameter, parameter.grad());
  }
  ~ModelState() {
    try {
      restore_buffers();
      for (auto& [parameter, gradient] : gradients_) parameter.set_grad(gradient);
      default_generator().set_state(generator_);
    } catch (const std::exception& error) {
      log_warning(fmt::format("engine parity report: restoring the model's state failed: {}", error.what()));
    }
  }
  ModelState(const ModelState&) = delete;
  ModelState& operator=(const ModelState&) = delete;

  void restore_buffers() {
    for (auto& [buffer, copy] : buffers_) buffer.copy_from(copy, stream_);
  }

 private:
  cudaStream_t stream_;
  GeneratorState generator_;
  std::vector<std::pair<Tensor, Tensor>> buffers_;    // (the model's buffer, its value before)
  std::vector<std::pair<Tensor, Tensor>> gradients_;  // (a parameter, its gradient before)
};

// One layer's results on one engine.
struct LayerRun {
  Tensor output;                       // detached
  Tensor dL_dx;                        // undefined without an upstream gradient
  std::vector<Tensor> parameter_grads;  // as parameters(); undefined for those without one
};

LayerRun run_layer(UnaryModule& layer, const Tensor& x, const Tensor& dL_dy, Engine engine,
                   const GeneratorState& generator, ModelState& state) {
  state.restore_buffers();
  default_generator().set_state(generator);
  layer.set_engine(engine);
  std::vector<Tensor> parameters = layer.parameters();
  for (Tensor& parameter : parameters) parameter.set_grad(Tensor());
  const autograd::GradModeGuard grad_mode(true);
  Tensor input = x.detach();
  if (is_floating_point(input.dtype())) input.set_requires_grad(true);
  const Tensor y = layer.forward(input);
  LayerRun run{.output = y.detach(), .dL_dx = Tensor(), .parameter_grads = {}};
  if (dL_dy.defined() && y.requires_grad()) {
    y.backward(dL_dy);
    if (input.requires_grad()) run.dL_dx = input.grad();
  }
  for (const Tensor& parameter : parameters) run.parameter_grads.push_back(parameter.grad());
  return run;
}

std::vector<double> host_values(const Tensor& tensor, cudaStream_t stream) {
  const Tensor f32 = tensor.dtype() == DType::f32 ? tensor : tensor.to_dtype(DType::f32, stream);
  const std::vector<float> values = f32.to_vector<float>(stream);
  return {values.begin(), values.end()};
}

// The difference of candidate from reference; a NaN against a number, or infinities that
// differ, count as an infinite difference.
TensorDifference compare(std::string name, const Tensor& reference, const Tensor& candidate, Engine reference_engine,
                         Engine candidate_engine, cudaStream_t stream) {
  TensorDifference difference;
  difference.name = std::move(name);
  const auto impossible = [&](std::string problem) {
    difference.problem = std::move(problem);
    difference.max_abs = kInfinity;
    difference.max_rel = kInfinity;
    return difference;
  };
  if (!reference.defined() || !candidate.defined()) {
    const Engine missing = reference.defined() ? candidate_engine : reference_engine;
    return impossible(fmt::format("none from {}", engine_name(missing)));
  }
  if (reference.shape() != candidate.shape()) {
    return impossible(fmt::format("shapes differ: {} from {}, {} from {}", reference.shape().to_string(),
                                  engine_name(reference_engine), candidate.shape().to_string(),
                                  engine_name(candidate_engine)));
  }
  const std::vector<double> expected = host_values(reference, stream);
  const std::vector<double> actual = host_values(candidate, stream);
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double a = expected[i];
    const double b = actual[i];
    double gap = 0;
    if (std::isnan(a) || std::isnan(b)) {
      gap = std::isnan(a) && std::isnan(b) ? 0 : kInfinity;
    } else if (a != b) {
      gap = std::fabs(a - b);  // infinite when one of them is
    }
    difference.max_abs = std::max(difference.max_abs, gap);
    if (std::isfinite(a)) difference.reference_max_abs = std::max(difference.reference_max_abs, std::fabs(a));
  }
  if (difference.max_abs > 0) {
    difference.max_rel =
        difference.reference_max_abs > 0 ? difference.max_abs / difference.reference_max_abs : kInfinity;
  }
  return difference;
}

std::vector<TensorDifference> compare_runs(const UnaryModule& layer, const LayerRun& reference,
                                           const LayerRun& candidate, const EngineParityOptions& options,
                                           cudaStream_t stream) {
  std::vector<TensorDifference> differences;
  const auto add = [&](std::string name, const Tensor& expected, const Tensor& actual) {
    if (!expected.defined() && !actual.defined()) return;  // nothing to compare on either side
    differences.push_back(compare(std::move(name), expected, actual, options.reference, options.candidate, stream));
  };
  add("output", reference.output, candidate.output);
  add("dL_dx", reference.dL_dx, candidate.dL_dx);
  const NamedTensors parameters = layer.named_parameters();
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    add(parameters[i].first + ".grad", reference.parameter_grads[i], candidate.parameter_grads[i]);
  }
  return differences;
}

EngineParityReport run_report(UnaryModule& model, const Tensor& x,
                              const std::function<Tensor(const Tensor& output)>& upstream_gradient,
                              const EngineParityOptions& options) {
  STRATA_CHECK(x.defined(), "engine parity report for {}: the input is undefined", model.describe());
  std::vector<UnaryModule*> layers;
  collect_layers(model, layers);
  STRATA_CHECK(!layers.empty(), "engine parity report for {}: the model has no layers", model.describe());
  const cudaStream_t stream = current_stream();
  EngineParityReport report{
      .reference = options.reference, .candidate = options.candidate, .input_shape = x.shape(), .layers = {}};
  {
    ModelState state(model, stream);
    // The reference pass: each layer's input, and where the generator stood before it.
    std::vector<Tensor> inputs;
    std::vector<GeneratorState> generators;
    Tensor output = x;
    {
      const autograd::NoGradGuard no_grad;
      for (UnaryModule* layer : layers) {
        inputs.push_back(output);
        generators.push_back(default_generator().state());
        state.restore_buffers();
        layer->set_engine(options.reference);
        output = layer->forward(output).detach();
      }
    }
    Tensor dL_dy = upstream_gradient(output);
    STRATA_CHECK(dL_dy.defined() && dL_dy.shape() == output.shape(),
                 "engine parity report for {}: the upstream gradient must have the output's shape {}, got {}",
                 model.describe(), output.shape().to_string(), dL_dy.defined() ? dL_dy.shape().to_string() : "none");

    report.layers.resize(layers.size());
    for (std::size_t i = layers.size(); i-- > 0;) {
      UnaryModule& layer = *layers[i];
      LayerParity& row = report.layers[i];
      row.path = layer.path().empty() ? "(model)" : layer.path();
      row.type = layer.type_name();
      row.summary = layer.summary();
      const LayerRun reference = run_layer(layer, inputs[i], dL_dy, options.reference, generators[i], state);
      try {
        const LayerRun candidate = run_layer(layer, inputs[i], dL_dy, options.candidate, generators[i], state);
        row.tensors = compare_runs(layer, reference, candidate, options, stream);
      } catch (const Error& error) {
        row.error = error.what();
      }
      dL_dy = reference.dL_dx;
    }
  }
  model.set_engine(options.engine_after.value_or(options.reference));
  return report;
}

std::string number(double value) { return std::isinf(value) ? "inf" : fmt::format("{:.2e}", value); }

}  // namespace

double LayerParity::worst_rel() const {
  if (!error.empty()) return kInfinity;
  double worst = 0;
  for (const TensorDifference& tensor : tensors) worst = std::max(worst, tensor.max_rel);
  return worst;
}

double EngineParityReport::worst_rel() const {
  double worst = 0;
  for (const LayerParity& layer : layers) worst = std::max(worst, layer.worst_rel());
  return worst;
}

std::string EngineParityReport::table() const {
  std::size_t path_width = 5;
  std::size_t type_width = 4;
  std::size_t name_width = 6;
  for (const LayerParity& layer : layers) {
    path_width = std::max(path_width, layer.path.size());
    type_width = std::max(type_width, layer.type.size());
    for (const TensorDifference& tensor : layer.tensors) name_width = std::max(name_width, tensor.name.size());
  }
  std::string text = fmt::format(
      "engine parity on input {}: {} against {} (the reference), each layer from the reference's input and\n"
      "upstream gradient; max rel = max |difference| / max |reference|\n",
      input_shape.to_string(), engine_name(candidate), engine_name(reference));
  text += fmt::format("{:<{}}  {:<{}}  {:<{}}  {:>9}  {:>9}  {:>9}\n", "layer", path_width, "type", type_width,
                      "tensor", name_width, "max abs", "max rel", "max |ref|");
  for (const LayerParity& layer : layers) {
    if (!layer.error.empty()) {
      text += fmt::format("{:<{}}  {:<{}}  {} failed: {}\n", layer.path, path_width, layer.type, type_width,
                          engine_name(candidate), layer.error);
      continue;
    }
    bool first = true;
    for (const TensorDifference& tensor : layer.tensors) {
      text += fmt::format("{:<{}}  {:<{}}  {:<{}}  {:>9}  {:>9}  {:>9}{}\n", first ? layer.path : "", path_width,
                          first ? layer.type : "", type_width, tensor.name, name_width, number(tensor.max_abs),
                          number(tensor.max_rel), number(tensor.reference_max_abs),
                          tensor.problem.empty() ? "" : "  " + tensor.problem);
      first = false;
    }
  }
  // The worst: a failure first, else the largest relative difference.
  const auto failed = std::ranges::find_if(layers, [](const LayerParity& layer) { return !layer.error.empty(); });
  if (failed != layers.end()) {
    text += fmt::format("worst: {} failed at {} ({})\n", engine_name(candidate), failed->path, failed->type);
    return text;
  }
  const LayerParity* worst_layer = nullptr;
  const TensorDifference* worst_tensor = nullptr;
  for (const LayerParity& layer : layers) {
    for (const TensorDifference& tensor : layer.tensors) {
      if (worst_tensor == nullptr || tensor.max_rel > worst_tensor->max_rel) {
        worst_layer = &layer;
        worst_tensor = &tensor;
      }
    }
  }
  if (worst_tensor != nullptr) {
    text += fmt::format("worst: max rel {} at {} ({}), {}\n", number(worst_tensor->max_rel), worst_layer->path,
                        worst_layer->type, worst_tensor->name);
  }
  return text;
}

std::ostream& operator<<(std::ostream& os, const EngineParityReport& report) { return os << report.table(); }

EngineParityReport engine_parity(UnaryModule& model, const Tensor& x, const Tensor& dL_dy,
                                 const EngineParityOptions& options) {
  return run_report(model, x, [&](const Tensor& /*output*/) { return dL_dy; }, options);
}

EngineParityReport engine_parity(UnaryModule& model, const Tensor& x,
                                 const std::function<Tensor(const Tensor& output)>& loss,
                                 const EngineParityOptions& options) {
  return run_report(
      model, x,
      [&](const Tensor& output) {
        const autograd::GradModeGuard grad_mode(true);
        Tensor logits = output.detach();
        logits.set_requires_grad(true);
        loss(logits).backward();
        return logits.grad();
      },
      options);
}

}  // namespace strata::nn
