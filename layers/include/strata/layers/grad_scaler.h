// Dynamic loss scaling for mixed-precision training, as torch.cuda.amp.GradScaler: the loss
// is multiplied by a scale before the backward, so that small gradients do not flush to zero
// in f16; unscale_ divides the gradients back and notes whether any is inf or NaN; step skips
// the optimizer's update when one is; update multiplies the scale by backoff_factor after
// such a step and by growth_factor after growth_interval steps in a row without one.
//
// The scale, the growth tracker and each optimizer's found-inf flag live on the device, and
// the kernels read them as they run (strata/kernels/grad_scaler.h): scale, unscale_, update
// and, for an optimizer that can skip a step on the device (Optimizer::can_skip_on_device:
// SGD and AdamW, whose kernels read the flag and whose step counts then live on the device,
// left as they were by a skipped step, as PyTorch's fused optimizers), step never wait for
// the host, so the whole step can be recorded and replayed as one CUDA graph
// (docs/graph.md). For an optimizer that cannot, step reads the flag on the host, as
// PyTorch's GradScaler does for optimizers without fused kernels: one synchronisation per
// step, and such a step cannot be recorded (step throws under a graph::Recorder).
//
//   optim::GradScaler scaler;                       // PyTorch's defaults: 2^16, x2, x0.5, 2000
//   for (...) {
//     optimizer.zero_grad();
//     scaler.scale(F::cross_entropy(model(x), targets)).backward();
//     scaler.unscale_(optimizer);                   // optional: to clip the true gradients
//     optim::clip_grad_norm_(optimizer.parameters(), 1.0);
//     scaler.step(optimizer);                       // skipped if a gradient is inf or NaN
//     scaler.update();
//   }
//
// Gradients must be f32 (Strata's optimizers keep f32 parameters: master weights whose
// casts, F::to_dtype, give f32 gradients), as PyTorch refuses to unscale f16 gradients.
#pragma once

#include <cstdint>
#include <map>

#include <cuda_runtime_api.h>

#include "strata/core/safetensors.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/layers/optimizer.h"

namespace strata::optim {

// PyTorch's defaults.
struct GradScalerOptions {
  double init_scale = 65536.0;          // 2^16; finite and > 0
  double growth_factor = 2.0;           // > 1
  double backoff_factor = 0.5;          // in (0, 1)
  std::int64_t growth_interval = 2000;  // in [1, 2^31)
  // false: scale returns its input, step is optimizer.step(), unscale_ and update do nothing.
  bool enabled = true;
};

// What torch.cuda.amp.GradScaler.state_dict() holds: "scale", "growth_factor",
// "backoff_factor", "growth_interval", "_growth_tracker".
struct GradScalerState {
  double scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  std::int64_t growth_interval = 2000;
  std::int64_t growth_tracker = 0;  // successful steps since the scale last changed
};

class GradScaler {
 public:
  // Allocates the scale and the growth tracker on current_stream(). Throws InvalidArgument
  // for options out of the ranges above.
  explicit GradScaler(const GradScalerOptions& options = {});
  GradScaler(const GradScaler&) = delete;
  GradScaler& operator=(const GradScaler&) = delete;

  bool is_enabled() const noexcept { return enabled_; }

  // outputs * scale, a new tensor on current_stream() (outputs: an f32 device tensor, the
  // loss); recorded by autograd, so its backward multiplies by the scale too. Disabled:
  // outputs itself.
  Tensor scale(const Tensor& outputs);

  // Multiplies the defined gradients of optimizer's parameters by 1 / scale in place (one
  // multi-tensor launch) and sets the optimizer's found-inf flag when any of them holds an
  // inf or a NaN. At most once per optimizer between update()s, and not after step().
  void unscale_(Optimizer& optimizer, cudaStream_t stream);
  void unscale_(Optimizer& optimizer) { unscale_(optimizer, current_stream()); }

  // unscale_(optimizer) unless done since the last update(), then the optimizer's step,
  // unless a gradient was inf or NaN (see the header's comment for which optimizers decide
  // that on the device). Once per optimizer between update()s.
  void step(Optimizer& optimizer, cudaStream_t stream);
  void step(Optimizer& optimizer) { step(optimizer, current_stream()); }

  // The new scale from the found-inf flags of the optimizers unscaled since the last update
  // (kernels::update_loss_scale, on the device); then every optimizer may be unscaled and
  // stepped again. Throws InvalidArgument when none was.
  void update(cudaStream_t stream);
  void update() { update(current_stream()); }
  // Sets the scale to new_scale (finite, > 0) instead; the growth tracker stays, as PyTorch.
  void update(double new_scale, cudaStream_t stream);

  // The scale, () f32 on the device (this scaler's own tensor, not a copy).
  const Tensor& scale_tensor() const noexcept { return scale_; }
  // The growth tracker, () i32 on the device.
  const Tensor& growth_tracker_tensor() const noexcept { return growth_tracker_; }
  // optimizer's found-inf flag, () f32 on the device: 1 when its last unscale_ met an inf or
  // a NaN. Undefined before its first unscale_.
  Tensor found_inf(const Optimizer& optimizer) const;
  // The scale's value: waits for current_stream(). 1 when disabled, as PyTorch's get_scale.
  double get_scale() const;

  // PyTorch's state_dict: reads the scale and the growth tracker, waiting for
  // current_stream(). For a checkpoint without a wait, save state_tensors() instead.
  GradScalerState state_dict() const;
  // Validates state (the options' ranges, scale finite and > 0, 0 <= growth_tracker <
  // growth_interval) and installs it, the device values written on current_stream().
  void load_state_dict(const GradScalerState& state);
  // {"grad_scaler.scale", "grad_scaler.growth_tracker"}: the device tensors themselves, for
  // TrainingState::tensors (strata/layers/training_state.h), which restores them in place.
  NamedTensors state_tensors() const;

 private:
  enum class Stage : std::uint8_t { ready, unscaled, stepped };
  struct OptimizerRecord {
    Stage stage = Stage::ready;
    Tensor found_inf;  // () f32, allocated at the first unscale_ and reused
  };

  bool enabled_;
  double growth_factor_;
  double backoff_factor_;
  std::int64_t growth_interval_;
  Tensor scale_;           // () f32
  Tensor growth_tracker_;  // () i32
  std::map<const Optimizer*, OptimizerRecord> optimizers_;
};

}  // namespace strata::optim
