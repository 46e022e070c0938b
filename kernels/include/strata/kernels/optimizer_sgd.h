// The update of stochastic gradient descent, as torch.optim.SGD (PyTorch 1.13) does it,
// over parallel lists of tensors in a few fused launches. Per element:
//   g = gradient (negated when maximize)
//   g = g + weight_decay * parameter                    if weight_decay != 0
//   if momentum != 0:
//     buffer = g                                        on the first step (PyTorch: buffer is None)
//     buffer = momentum * buffer + (1 - dampening) * g  afterwards
//     g = nesterov ? g + momentum * buffer : buffer
//   parameter = parameter - lr * g
// The optimizer classes of layers/ keep the buffers and the first-step flag (on the host, or
// as a step count on the device); this is the kernel they call. Parameter groups, each with
// its own hyperparameters, share the launches: one for the groups without momentum and one
// for those with, for a model's groups (more only past the capacity of a launch).
//
//   sgd_step({.parameters = p, .gradients = g, .momentum_buffers = buffers},
//            {.lr = 0.1, .momentum = 0.9, .nesterov = true}, MomentumBuffers::uninitialized, stream);
//   // ... and MomentumBuffers::initialized from the second step on
//   const SgdGroup groups[] = {{.tensors = weights, .params = {.lr = 0.1, .weight_decay = 5e-4}},
//                              {.tensors = biases, .params = {.lr = 0.2}}};
//   sgd_step(groups, stream);  // one launch
#pragma once

#include <cstdint>
#include <limits>
#include <span>

#include <cuda_runtime_api.h>

#include "strata/core/tensor.h"

namespace strata::kernels {

// Hyperparameters as PyTorch's, in double as Python holds them; the kernel computes in
// float. lr has no default, as in PyTorch: it must be set, unless lr_device is.
struct SgdParams {
  double lr = std::numeric_limits<double>::quiet_NaN();
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  bool maximize = false;
  // When set: a () f32 device scalar read by the kernel as it runs, instead of lr, so a
  // captured CUDA graph follows a learning-rate schedule. Its value is not checked.
  const float* lr_device = nullptr;
  // When set: a () f32 device flag read by the kernel as it runs; non-zero leaves every
  // tensor as it was (a step that dynamic loss scaling skips, strata/layers/grad_scaler.h).
  const float* found_inf = nullptr;
  // When set: a () f32 device count of the updates the momentum buffers have had, read by
  // the kernel as it runs instead of the MomentumBuffers argument: 0 is the first step
  // (uninitialized), more is initialized. With found_inf it makes a skipped first step
  // exactly no step, dampening or not: the caller advances the count after the step unless
  // it was skipped (advance_step_counts, strata/kernels/grad_scaler.h).
  const float* steps_before_device = nullptr;
};

// Whether the momentum buffers hold a previous step's value. uninitialized is PyTorch's
// "buffer is None": the step sets the buffers to the gradient (with weight decay) and
// ignores what they held, so they may be uninitialised memory. One state for the whole
// call: tensors whose buffers start later (no gradient at the first step) go in a call of
// their own.
enum class MomentumBuffers : std::uint8_t { uninitialized, initialized };

// The parallel lists of one step: f32 device tensors, tensor i of every list of one shape.
struct SgdTensors {
  std::span<Tensor> parameters;  // updated in place
  std::span<const Tensor> gradients;
  std::span<Tensor> momentum_buffers;  // updated in place; ignored (may be empty) when momentum == 0
};

// Throws InvalidArgument with PyTorch's conditions: lr (unless lr_device), momentum and
// weight_decay finite and >= 0, dampening finite; nesterov needs momentum > 0 and dampening 0.
void check_sgd_params(const SgdParams& params);

// One parameter group of a step: its tensors, hyperparameters and buffer state.
struct SgdGroup {
  SgdTensors tensors;
  SgdParams params;
  MomentumBuffers buffers = MomentumBuffers::uninitialized;  // unused when params.momentum == 0
};

// One step of every group, bit for bit as one call per group: one launch for the groups
// without momentum and one for those with (more only when they hold more tensors or groups
// than a launch's kernel parameters do). Each group's device scalars (lr_device, found_inf,
// steps_before_device) are its own. Tensors that the step writes must not share memory with
// any other tensor of the call, in any group; the indices of error messages count across the
// groups, in order. Empty tensors and groups without tensors take no launch.
void sgd_step(std::span<const SgdGroup> groups, cudaStream_t stream);

// One step of one group. Tensors that the step writes must not share memory with any other
// tensor of the call. Empty tensors are skipped.
void sgd_step(const SgdTensors& tensors, const SgdParams& params, MomentumBuffers buffers, cudaStream_t stream);

}  // namespace strata::kernels
