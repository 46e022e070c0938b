// An exponential moving average of weights (for EMA or lookahead evaluation) over parallel
// lists of tensors, and the copy and swap that put the averages in the model's place for an
// evaluation and back:
//   average = decay * average + (1 - decay) * parameter
//
//   ema_update(averages, parameters, {.decay = 0.999}, stream);   // after every step
//   swap_tensors(parameters, averages, stream);                   // evaluate with the averages
//   swap_tensors(parameters, averages, stream);                   // and back to training
#pragma once

#include <span>

#include <cuda_runtime_api.h>

#include "strata/core/tensor.h"

namespace strata::kernels {

struct EmaParams {
  double decay = 0.999;  // in [0, 1]
  // When set: a () f32 device scalar read by the kernel as it runs, instead of decay (for a
  // decay that warms up with the step count in a captured CUDA graph). Not checked.
  const float* decay_device = nullptr;
};

// averages[i] (updated in place) and parameters[i]: f32 device tensors of one shape; the
// averages must not share memory with any other tensor of the call.
void ema_update(std::span<Tensor> averages, std::span<const Tensor> parameters, const EmaParams& params,
                cudaStream_t stream);

// destinations[i] = sources[i], all in a few launches. Tensor i of both lists of one shape;
// destinations must not share memory with any other tensor of the call.
void copy_tensors(std::span<const Tensor> sources, std::span<Tensor> destinations, cudaStream_t stream);

// Exchanges the contents of a[i] and b[i], all in a few launches; no tensor may share
// memory with another.
void swap_tensors(std::span<Tensor> a, std::span<Tensor> b, cudaStream_t stream);

}  // namespace strata::kernels
