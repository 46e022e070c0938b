// The engine parity report: where, layer by layer, two engines (strata/core/engine.h) give
// different numbers for one model. Each layer runs on both engines from the SAME input (the
// reference engine's output of the layer before) and with the SAME upstream gradient (the
// reference engine's dL_dx of the layer after), so a difference belongs to that layer alone
// instead of accumulating through the network; the report gives, per layer, the largest
// difference of its output, of dL_dx and of each parameter's gradient.
//
//   nn::EngineParityReport report = nn::engine_parity(model, images, [&](const Tensor& logits) {
//     return loss_fn(logits, labels);
//   });                                            // custom (reference) against cudnn
//   std::cout << report;                           // a table, one block of rows per layer
//   if (report.worst_rel() > 1e-4) ...
//
// Layers: a Sequential is followed into its children (nested Sequentials too), in forward
// order; any other module, a leaf (Conv2d, ReLU, ...) or a container that is not a chain
// (Residual, Concat), is one layer of the report, compared as a whole. A model that is not a
// Sequential is therefore a single row.
//
// Side effects, and what is restored: the runs use the model's current mode (train or eval)
// and the default generator from where it stands for each layer, so that dropout draws the
// same mask on both engines; afterwards the generator, every buffer (batch norm's running
// statistics) and every parameter's gradient are as they were before the report. The engines
// are chosen with Module::set_engine on each layer, which cannot be undone (a layer does not
// say which engine it had): afterwards the model is set to EngineParityOptions::engine_after,
// or to the reference engine when none is given. Synchronises the stream (results are read
// back to compare them); runs on current_stream(). Not for use inside CUDA-graph capture.
#pragma once

#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "strata/core/engine.h"
#include "strata/core/tensor.h"
#include "strata/layers/module.h"

namespace strata::nn {

// How far one tensor of the candidate engine is from the reference engine's.
struct TensorDifference {
  std::string name;                // "output", "dL_dx", or a parameter's gradient: "weight.grad"
  double max_abs = 0;              // max |candidate - reference| over the elements
  double max_rel = 0;              // max_abs / max |reference| (0 when both are all zeros)
  double reference_max_abs = 0;    // max |reference|
  std::string problem;             // empty, or why no comparison was possible (then max_* are infinite)
};

// One layer of the report.
struct LayerParity {
  std::string path;     // the module's dotted path ("features.3"); "(model)" for a root
  std::string type;     // its type name ("Conv2d")
  std::string summary;  // its summary ("Conv2d 64->128, 3x3")
  // output, dL_dx, then each parameter's gradient in registration order; empty when the
  // candidate engine threw.
  std::vector<TensorDifference> tensors;
  std::string error;  // the candidate engine's exception message, when it threw
  // The largest max_rel of the layer (infinite after an error or a problem).
  double worst_rel() const;
};

struct EngineParityReport {
  Engine reference = Engine::custom;
  Engine candidate = Engine::cudnn;
  Shape input_shape;
  std::vector<LayerParity> layers;  // in forward order

  // The largest max_rel over every layer.
  double worst_rel() const;
  // The report as a table: one row per compared tensor, grouped by layer, and the worst.
  std::string table() const;
};

std::ostream& operator<<(std::ostream& os, const EngineParityReport& report);

struct EngineParityOptions {
  Engine reference = Engine::custom;  // whose outputs and gradients feed the next layers
  Engine candidate = Engine::cudnn;
  // The engine every layer is set to at the end (Module::set_engine); none: reference.
  std::optional<Engine> engine_after = std::nullopt;
};

// The report for model on input x, the last layer's upstream gradient being dL_dy (the shape
// of the model's output).
EngineParityReport engine_parity(UnaryModule& model, const Tensor& x, const Tensor& dL_dy,
                                 const EngineParityOptions& options = {});

// The same with the upstream gradient of a loss: dL_dy is the gradient of loss(output) (a
// scalar tensor), taken on the reference engine's output of the whole model.
EngineParityReport engine_parity(UnaryModule& model, const Tensor& x,
                                 const std::function<Tensor(const Tensor& output)>& loss,
                                 const EngineParityOptions& options = {});

}  // namespace strata::nn
