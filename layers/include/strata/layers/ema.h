// An exponential moving average of a model's weights, for evaluating with the averages (EMA
// evaluation) or for airbench's lookahead, where the weights jump to the average every few
// steps. Runs as fused multi-tensor launches (strata/kernels/optimizer_ema.h).
//
//   optim::ExponentialMovingAverage ema(model_parameters);   // averages start as copies
//   ...; optimizer.step(); ema.update(0.999);
//   ema.swap();  evaluate(model);  ema.swap();               // evaluate with the averages
//   // Lookahead (airbench): ema = lerp(ema, w, 1 - decay); w = ema.
//   if (step % 5 == 0) ema.lookahead(std::pow(0.95, 5));
#pragma once

#include <span>
#include <string>
#include <utility>
#include <vector>

#include <cuda_runtime_api.h>

#include "strata/core/safetensors.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"

namespace strata::optim {

class ExponentialMovingAverage {
 public:
  // Tracks parameters (f32 device tensors, none sharing memory; BatchNorm's running
  // statistics may be among them, as in airbench). The averages are f32 copies of them,
  // made on stream.
  ExponentialMovingAverage(std::vector<Tensor> parameters, cudaStream_t stream);
  explicit ExponentialMovingAverage(std::vector<Tensor> parameters)
      : ExponentialMovingAverage(std::move(parameters), current_stream()) {}

  // average = decay * average + (1 - decay) * parameter, for each; decay in [0, 1].
  void update(double decay, cudaStream_t stream);
  void update(double decay) { update(decay, current_stream()); }

  // destinations[i] = average i (destinations of the parameters' shapes, e.g. another copy
  // of the model).
  void copy_to(std::span<Tensor> destinations, cudaStream_t stream) const;
  void copy_to(std::span<Tensor> destinations) const { copy_to(destinations, current_stream()); }

  // Exchanges the averages and the parameters' values: call once to evaluate with the
  // averages, and again to return to training.
  void swap(cudaStream_t stream);
  void swap() { swap(current_stream()); }

  // update(decay), then every parameter = its average: airbench's lookahead step.
  void lookahead(double decay, cudaStream_t stream);
  void lookahead(double decay) { lookahead(decay, current_stream()); }

  const std::vector<Tensor>& parameters() const noexcept { return parameters_; }
  const std::vector<Tensor>& averages() const noexcept { return averages_; }

  // The averages as "<prefix><i>" ("ema.0", "ema.1", ...), sharing their storage: saved with
  // the model or a training state, and loaded in place (load_safetensors_into).
  NamedTensors state_dict(const std::string& prefix = "ema.") const;

 private:
  std::vector<Tensor> parameters_;
  std::vector<Tensor> averages_;  // (each parameter's shape) f32
};

}  // namespace strata::optim
