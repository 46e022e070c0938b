// Gradient clipping by the global norm, as torch.nn.utils.clip_grad_norm_ (PyTorch 1.13),
// over the gradients of parameters, in a few fused launches (kernels::clip_grad_norm of
// strata/kernels/grad_norm.h): nothing waits for the host, and the norm comes back as a ()
// f32 device tensor, the same bits on every run.
//
//   loss.backward();
//   Tensor norm = optim::clip_grad_norm_(optimizer.parameters(), 1.0);   // () f32 on the device
//   optimizer.step();
#pragma once

#include <span>

#include <cuda_runtime_api.h>

#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/kernels/grad_norm.h"

namespace strata::optim {

using kernels::GradNormType;

// total = the norm (l2 or infinity) of the defined gradients of params together (0 when
// none has one); each of those gradients is multiplied in place by max_norm / (total +
// 1e-6) when that is below 1 (a NaN norm turns them into NaN, as PyTorch's
// error_if_nonfinite=False). Returns total, queued on stream. max_norm >= 0.
Tensor clip_grad_norm_(std::span<const Tensor> params, double max_norm, GradNormType norm_type, cudaStream_t stream);
inline Tensor clip_grad_norm_(std::span<const Tensor> params, double max_norm,
                              GradNormType norm_type = GradNormType::l2) {
  return clip_grad_norm_(params, max_norm, norm_type, current_stream());
}

}  // namespace strata::optim
