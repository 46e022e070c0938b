// The global norm of a list of gradients, as if they were one concatenated vector, and
// clipping by it as torch.nn.utils.clip_grad_norm_ (PyTorch 1.13): everything stays on the
// device, nothing waits for the host, and the norm comes back as a () device tensor.
//
// Deterministic: each chunk of each tensor writes a partial result to a workspace, and one
// block reduces the partials in a fixed order, so the norm has the same bits on every run.
// The L2 norm sums the squares in double (more accurate than PyTorch, which takes each
// tensor's norm in float, then the norm of those norms).
//
// Non-finite gradients behave as in PyTorch with error_if_nonfinite=False: a NaN anywhere
// makes the norm NaN, and the clip then turns every gradient into NaN; an infinite element
// makes the norm inf, the clip coefficient 0, so finite elements become 0 and infinite ones
// NaN. To raise an error instead, read the returned norm on the host (a synchronisation).
//
//   Tensor norm = clip_grad_norm(gradients, {.max_norm = 1.0}, stream);  // () f32 on the device
#pragma once

#include <cstdint>
#include <span>

#include <cuda_runtime_api.h>

#include "strata/core/tensor.h"

namespace strata::kernels {

enum class GradNormType : std::uint8_t {
  l2,        // sqrt of the sum of squares
  infinity,  // the largest |element|; NaN if any element is NaN
};

struct GradNormParams {
  GradNormType norm_type = GradNormType::l2;
};

// total_norm () f32 on the device = the norm of all elements of tensors (f32 device
// tensors of any shapes). 0 for no tensors or no elements.
void grad_norm(std::span<const Tensor> tensors, Tensor& total_norm, const GradNormParams& params, cudaStream_t stream);
Tensor grad_norm(std::span<const Tensor> tensors, const GradNormParams& params, cudaStream_t stream);

struct ClipGradNormParams {
  double max_norm = 1.0;  // >= 0; infinity leaves gradients of a finite norm as they are
  GradNormType norm_type = GradNormType::l2;
};

// PyTorch's clip_grad_norm_: total = the norm of gradients (into total_norm, () f32);
// coefficient = max_norm / (total + 1e-6), clamped to at most 1 (NaN stays NaN); every
// gradient is multiplied by it in place, where it is not 1. The gradients must not share
// memory with each other or total_norm.
void clip_grad_norm(std::span<Tensor> gradients, Tensor& total_norm, const ClipGradNormParams& params,
                    cudaStream_t stream);
Tensor clip_grad_norm(std::span<Tensor> gradients, const ClipGradNormParams& params, cudaStream_t stream);

}  // namespace strata::kernels
