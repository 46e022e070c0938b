// The kernels of dynamic loss scaling (optim::GradScaler, strata/layers/grad_scaler.h), as
// PyTorch's torch._amp_foreach_non_finite_check_and_unscale_ and torch._amp_update_scale_.
// The scale, the growth tracker and the found-inf flags live on the device and are read when
// the kernels run: nothing waits for the host, and a step captured in a CUDA graph follows
// the scale without being captured again.
//
//   multiply_by_scale(loss, scale, scaled_loss, stream);              // () f32
//   found_inf.fill(0.0, stream);
//   unscale_gradients(gradients, scale, found_inf, stream);         // one launch for them all
//   update_loss_scale(scale, growth_tracker, {&found_inf, 1}, {}, stream);
//   advance_step_counts(step_counts, found_inf.data<float>(), stream);  // after the optimizer's step
#pragma once

#include <cstdint>
#include <span>

#include <cuda_runtime_api.h>

#include "strata/core/tensor.h"

namespace strata::kernels {

// y = x * scale, with scale a () f32 device scalar read as the kernel runs. x and y are f32
// device tensors of one shape; y may be x itself.
void multiply_by_scale(const Tensor& x, const Tensor& scale, Tensor& y, cudaStream_t stream);

// Sets found_inf (() f32) to 1 when an element of gradients is infinite or NaN, leaving it
// as it was otherwise (zero it first), and multiplies every gradient in place by inv_scale =
// float(1 / double(scale)) (as PyTorch's scale.double().reciprocal().float()); all of them,
// whether or not one is non-finite, as PyTorch. gradients: f32 device tensors of any
// shapes, none sharing memory with another, scale or found_inf; scale () f32. One
// multi-tensor launch (kernels/multi_tensor.cuh) for up to 148 gradients, one more per 148.
void unscale_gradients(std::span<Tensor> gradients, const Tensor& scale, Tensor& found_inf, cudaStream_t stream);

// PyTorch's defaults (torch.cuda.amp.GradScaler).
struct LossScaleUpdateParams {
  double growth_factor = 2.0;           // > 1
  double backoff_factor = 0.5;          // in (0, 1)
  std::int64_t growth_interval = 2000;  // in [1, 2^31)
};

// Most found-inf flags one update_loss_scale reads (one per optimizer of the step).
inline constexpr int kMaxFoundInfFlags = 32;

// Throws InvalidArgument naming the parameter unless it is in the range given above.
void check_loss_scale_update_params(const LossScaleUpdateParams& params);

// One update, as torch._amp_update_scale_: if any of found_infs (() f32 each, at most
// kMaxFoundInfFlags) is non-zero, scale = float(scale * backoff_factor) and growth_tracker
// = 0; otherwise growth_tracker + 1 successful steps: when that reaches growth_interval,
// scale = float(scale * growth_factor) unless that is infinite, and growth_tracker = 0;
// else growth_tracker += 1. scale () f32 and growth_tracker () i32, on the device, written
// in place; one thread does it all.
void update_loss_scale(Tensor& scale, Tensor& growth_tracker, std::span<const Tensor> found_infs,
                       const LossScaleUpdateParams& params, cudaStream_t stream);

// Adds 1 to each of counts (() f32 device scalars: the optimizer's step counts of the
// parameters of one launch) unless found_inf (() f32 on the device, or null: always) is
// non-zero when the kernel runs: PyTorch's fused optimizers' state_steps += 1 then
// state_steps -= found_inf, in one multi-tensor launch (one more per 148 counts). Queue it
// after the step that read the counts: stream order makes every block of that step read the
// count before this changes it. Exact up to 2^24.
void advance_step_counts(std::span<Tensor> counts, const float* found_inf, cudaStream_t stream);

}  // namespace strata::kernels
