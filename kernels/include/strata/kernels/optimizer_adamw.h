// The update of AdamW (decoupled weight decay), as torch.optim.AdamW (PyTorch 1.13) does
// it, over parallel lists of tensors in a few fused launches. Per element, at step t >= 1
// (PyTorch's state["step"] after its increment):
//   g = gradient (negated when maximize)
//   parameter = parameter * (1 - lr * weight_decay)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g^2
//   v_max = max(v_max, v)                                   with amsgrad, else v_max = v
//   parameter = parameter - lr / (1 - beta1^t) * m / (sqrt(v_max) / sqrt(1 - beta2^t) + eps)
// Both moments start at zero before step 1; the optimizer classes of layers/ keep them and
// the step count. Parameter groups, each with its own hyperparameters and step count, share
// the launches: one for the groups without amsgrad and one for those with.
//
//   adamw_step({.parameters = p, .gradients = g, .exp_avgs = m, .exp_avg_sqs = v},
//              {.lr = 1e-3, .weight_decay = 0.05}, {.step = t}, stream);
#pragma once

#include <cstdint>
#include <span>

#include <cuda_runtime_api.h>

#include "strata/core/tensor.h"

namespace strata::kernels {

// Hyperparameters with PyTorch's defaults, in double as Python holds them; the kernel
// computes in float, the bias corrections in double.
struct AdamWParams {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
  bool amsgrad = false;
  bool maximize = false;
  // When set: a () f32 device scalar read by the kernel as it runs, instead of lr, so a
  // captured CUDA graph follows a learning-rate schedule. Its value is not checked.
  const float* lr_device = nullptr;
  // When set: a () f32 device flag read by the kernel as it runs; non-zero leaves every
  // tensor as it was (a step that dynamic loss scaling skips, strata/layers/grad_scaler.h).
  const float* found_inf = nullptr;
};

// The parallel lists of one step: f32 device tensors, tensor i of every list of one shape.
struct AdamWTensors {
  std::span<Tensor> parameters;  // updated in place
  std::span<const Tensor> gradients;
  std::span<Tensor> exp_avgs;         // m, updated in place; zeros before step 1
  std::span<Tensor> exp_avg_sqs;      // v, updated in place; zeros before step 1
  std::span<Tensor> max_exp_avg_sqs;  // amsgrad only (else ignored, may be empty); zeros before step 1
};

// The step count t of the update, from the host or from a () f32 device scalar (exact up
// to 2^24; its value is not checked): step_device holds t itself, written by the caller
// before the launch (a replay hook of a captured CUDA graph); steps_before_device holds the
// updates before this one, t - 1, as PyTorch's capturable and fused AdamW keep state["step"]
// on the device: the caller advances it after the step, unless the step was skipped
// (advance_step_counts, strata/kernels/grad_scaler.h), so a skipped step leaves t as it was.
struct AdamWStep {
  std::int64_t step = 1;
  const float* step_device = nullptr;          // wins over step when set
  const float* steps_before_device = nullptr;  // wins over step_device and step when set
};

// Throws InvalidArgument with PyTorch's conditions: lr (unless lr_device), eps and
// weight_decay finite and >= 0; 0 <= beta1, beta2 < 1.
void check_adamw_params(const AdamWParams& params);

// One parameter group of a step: its tensors, hyperparameters and step count.
struct AdamWGroup {
  AdamWTensors tensors;
  AdamWParams params;
  AdamWStep step;
};

// One step of every group, bit for bit as one call per group: one launch for the groups
// without amsgrad and one for those with (more only when they hold more tensors or groups
// than a launch's kernel parameters do). Each group's device scalars are its own. Tensors
// that the step writes must not share memory with any other tensor of the call, in any
// group; the indices of error messages count across the groups, in order. Empty tensors and
// groups without tensors take no launch.
void adamw_step(std::span<const AdamWGroup> groups, cudaStream_t stream);

// One step of one group. Tensors that the step writes must not share memory with any other
// tensor of the call. Empty tensors are skipped. step.step must be >= 1 unless a device
// scalar gives the step count.
void adamw_step(const AdamWTensors& tensors, const AdamWParams& params, const AdamWStep& step, cudaStream_t stream);

}  // namespace strata::kernels
