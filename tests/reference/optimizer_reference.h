// CPU references of the optimizer kernels (SGD, AdamW, gradient norm and clipping, EMA of
// weights), in double with plain loops over one tensor at a time, written from PyTorch's
// definitions (torch.optim.SGD, torch.optim.AdamW, torch.nn.utils.clip_grad_norm_).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "strata/kernels/optimizer_adamw.h"
#include "strata/kernels/optimizer_sgd.h"

namespace strata::reference {

// One SGD step of one tensor with params' host values (lr_device is ignored). buffer is
// used only when momentum != 0; first_step sets it to the gradient (PyTorch's None buffer).
void sgd_step(std::vector<double>& parameter, std::span<const double> gradient, std::vector<double>& buffer,
              const kernels::SgdParams& params, bool first_step);

// The state of one tensor under AdamW: both moments and, with amsgrad, the largest v.
struct AdamWState {
  std::vector<double> exp_avg;
  std::vector<double> exp_avg_sq;
  std::vector<double> max_exp_avg_sq;  // amsgrad only
};

// One AdamW step t (>= 1) of one tensor with params' host values.
void adamw_step(std::vector<double>& parameter, std::span<const double> gradient, AdamWState& state,
                const kernels::AdamWParams& params, std::int64_t step);

// The norm of all elements of all tensors together: sqrt of the sum of squares, or the
// largest |element| (NaN when any element is NaN). 0 when there are none.
double l2_norm(const std::vector<std::vector<double>>& tensors);
double infinity_norm(const std::vector<std::vector<double>>& tensors);

// clip_grad_norm_: multiplies every gradient by min(max_norm / (norm + 1e-6), 1) (NaN
// when the norm is NaN) and returns the norm.
double clip_grad_norm(std::vector<std::vector<double>>& gradients, double max_norm, bool infinity_norm_type);

// average = decay * average + (1 - decay) * parameter.
void ema_update(std::vector<double>& average, std::span<const double> parameter, double decay);

}  // namespace strata::reference
