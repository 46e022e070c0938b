// GradScaler: the per-optimizer stages of PyTorch's GradScaler (ready, unscaled, stepped),
// and ops around the device kernels of strata/kernels/grad_scaler.h.
#include "strata/layers/grad_scaler.h"

#include <cmath>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/format.h"
#include "core/op_recording.h"
#include "strata/core/autograd.h"
#include "strata/core/errors.h"
#include "strata/core/op.h"
#include "strata/kernels/grad_scaler.h"

namespace strata::optim {

namespace {

constexpr const char* kName = "GradScaler";

kernels::LossScaleUpdateParams update_params(double growth_factor, double backoff_factor,
                                             std::int64_t growth_interval) {
  return {.growth_factor = growth_factor, .backoff_factor = backoff_factor, .growth_interval = growth_interval};
}

// The kernel's checks of the options, with the call named.
void check_update_params(const kernels::LossScaleUpdateParams& params, const char* call) {
  try {
    kernels::check_loss_scale_update_params(params);
  } catch (const InvalidArgument& error) {
    throw InvalidArgument(fmt::format("{}.{}: {}", kName, call, error.what()));
  }
}

void check_scale_value(double scale, const char* call) {
  STRATA_CHECK(std::isfinite(scale) && scale > 0.0 && std::isfinite(static_cast<float>(scale)),
               "{}.{}: the scale must be finite (as an f32) and > 0, got {}", kName, call, scale);
}

// x * scale in a new tensor, as op name.
Tensor scaled_by(const char* name, const Tensor& x, const Tensor& scale, cudaStream_t stream) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), stream);
  graph::run_op_on(stream, name, {x, scale}, {y}, [x = x.detach(), scale, y](cudaStream_t s) mutable {
    kernels::multiply_by_scale(x, scale, y, s);
  });
  return y;
}

}  // namespace

GradScaler::GradScaler(const GradScalerOptions& options)
    : enabled_(options.enabled),
      growth_factor_(options.growth_factor),
      backoff_factor_(options.backoff_factor),
      growth_interval_(options.growth_interval) {
  check_scale_value(options.init_scale, "GradScaler");
  check_update_params(update_params(growth_factor_, backoff_factor_, growth_interval_), "GradScaler");
  const cudaStream_t stream = current_stream();
  scale_ = Tensor::empty({}, DType::f32, stream);
  scale_.fill(static_cast<double>(static_cast<float>(options.init_scale)), stream);
  growth_tracker_ = Tensor::zeros({}, DType::i32, stream);
}

Tensor GradScaler::scale(const Tensor& outputs) {
  if (!enabled_) return outputs;
  STRATA_CHECK(outputs.defined() && outputs.is_device() && outputs.dtype() == DType::f32,
               "{}.scale: outputs must be an f32 device tensor (the loss), got {}", kName,
               outputs.defined() ? outputs.to_string() : std::string("an undefined tensor"));
  Tensor scaled = scaled_by("grad_scaler_scale", outputs, scale_, current_stream());
  if (autograd::needs_grad({outputs})) {
    autograd::record("MulBackward", {outputs}, scaled,
                     [scale = scale_](autograd::Gradients dL_dscaled, cudaStream_t stream) {
                       return autograd::Gradients{
                           scaled_by("grad_scaler_scale_backward", dL_dscaled[0], scale, stream)};
                     });
  }
  return scaled;
}

void GradScaler::unscale_(Optimizer& optimizer, cudaStream_t stream) {
  if (!enabled_) return;
  OptimizerRecord& record = optimizers_[&optimizer];
  STRATA_CHECK(record.stage != Stage::unscaled,
               "{}.unscale_: unscale_() has already been called on this optimizer ({}) since the last update()", kName,
               optimizer.name());
  STRATA_CHECK(record.stage != Stage::stepped, "{}.unscale_: unscale_() is being called after step() ({})", kName,
               optimizer.name());
  std::vector<Tensor> gradients;  // share the gradients' storage: unscaled in place
  for (int group = 0; group < optimizer.num_groups(); ++group) {
    const std::vector<Tensor>& params = optimizer.params(group);
    for (std::size_t i = 0; i < params.size(); ++i) {
      const Tensor& gradient = params[i].grad();
      if (!gradient.defined()) continue;
      STRATA_CHECK(gradient.is_device() && gradient.dtype() == DType::f32,
                   "{}.unscale_: the gradient of parameter {} of group {} of {} ({}) must be an f32 device tensor, got "
                   "{} (f16 and bf16 gradients are not unscaled, as PyTorch's 'Attempting to unscale FP16 gradients')",
                   kName, i, group, optimizer.name(), params[i].shape(), gradient.to_string());
      gradients.push_back(gradient);
    }
  }
  if (!record.found_inf.defined()) record.found_inf = Tensor::empty({}, DType::f32, stream);
  const graph::PhaseGuard phase(graph::Phase::optimizer);
  std::vector<Tensor> reads = gradients;
  reads.push_back(scale_);
  // The flag is only written here, but it is the scaler's state, read after a step
  // (found_inf()): listed as read too, a recorded step keeps it out of the graph's arena,
  // whose memory later nodes reuse.
  reads.push_back(record.found_inf);
  std::vector<Tensor> writes = gradients;
  writes.push_back(record.found_inf);
  graph::run_op_on(stream, "grad_scaler_unscale", reads, writes,
                   [gradients, scale = scale_, found_inf = record.found_inf](cudaStream_t s) mutable {
                     found_inf.fill(0.0, s);
                     kernels::unscale_gradients(gradients, scale, found_inf, s);
                   });
  record.stage = Stage::unscaled;
}

void GradScaler::step(Optimizer& optimizer, cudaStream_t stream) {
  if (!enabled_) {
    optimizer.step(stream);
    return;
  }
  OptimizerRecord& record = optimizers_[&optimizer];
  STRATA_CHECK(record.stage != Stage::stepped,
               "{}.step: step() has already been called on this optimizer ({}) since the last update()", kName,
               optimizer.name());
  if (record.stage == Stage::ready) unscale_(optimizer, stream);
  if (optimizer.can_skip_on_device()) {
    optimizer.step_unless_found_inf(record.found_inf, stream);
  } else {
    STRATA_CHECK(graph::detail::op_sink() == nullptr,
                 "{}.step: {} cannot skip a step on the device, so the scaler reads the found-inf flag on the host, "
                 "which a recorded step cannot repeat; record a step of an optimizer that can (SGD, AdamW), or step "
                 "eagerly",
                 kName, optimizer.name());
    // One synchronisation per step: PyTorch's found_inf.item() for optimizers without fused kernels.
    if (record.found_inf.to_vector<float>(stream).front() == 0.0f) optimizer.step(stream);
  }
  record.stage = Stage::stepped;
}

void GradScaler::update(cudaStream_t stream) {
  if (!enabled_) return;
  std::vector<Tensor> found_infs;
  for (const auto& [optimizer, record] : optimizers_) {
    if (record.stage != Stage::ready) found_infs.push_back(record.found_inf);
  }
  STRATA_CHECK(!found_infs.empty(),
               "{}.update: no inf checks were recorded prior to update() (call step() or unscale_() first)", kName);
  std::vector<Tensor> reads = found_infs;
  reads.insert(reads.end(), {scale_, growth_tracker_});
  const std::vector<Tensor> writes = {scale_, growth_tracker_};
  const graph::PhaseGuard phase(graph::Phase::optimizer);
  graph::run_op_on(stream, "grad_scaler_update", reads, writes,
                   [scale = scale_, growth_tracker = growth_tracker_, found_infs,
                    params = update_params(growth_factor_, backoff_factor_, growth_interval_)](cudaStream_t s) mutable {
                     kernels::update_loss_scale(scale, growth_tracker, found_infs, params, s);
                   });
  for (auto& [optimizer, record] : optimizers_) record.stage = Stage::ready;
}

void GradScaler::update(double new_scale, cudaStream_t stream) {
  if (!enabled_) return;
  check_scale_value(new_scale, "update");
  scale_.fill(static_cast<double>(static_cast<float>(new_scale)), stream);
  for (auto& [optimizer, record] : optimizers_) record.stage = Stage::ready;
}

Tensor GradScaler::found_inf(const Optimizer& optimizer) const {
  const auto found = optimizers_.find(&optimizer);
  return found == optimizers_.end() ? Tensor() : found->second.found_inf;
}

double GradScaler::get_scale() const {
  if (!enabled_) return 1.0;
  return static_cast<double>(scale_.to_vector<float>(current_stream()).front());
}

GradScalerState GradScaler::state_dict() const {
  const cudaStream_t stream = current_stream();
  return {.scale = static_cast<double>(scale_.to_vector<float>(stream).front()),
          .growth_factor = growth_factor_,
          .backoff_factor = backoff_factor_,
          .growth_interval = growth_interval_,
          .growth_tracker = growth_tracker_.to_vector<std::int32_t>(stream).front()};
}

void GradScaler::load_state_dict(const GradScalerState& state) {
  check_scale_value(state.scale, "load_state_dict");
  check_update_params(update_params(state.growth_factor, state.backoff_factor, state.growth_interval),
                      "load_state_dict");
  STRATA_CHECK(state.growth_tracker >= 0 && state.growth_tracker < state.growth_interval,
               "{}.load_state_dict: the growth tracker must be in [0, growth_interval = {}), got {}", kName,
               state.growth_interval, state.growth_tracker);
  growth_factor_ = state.growth_factor;
  backoff_factor_ = state.backoff_factor;
  growth_interval_ = state.growth_interval;
  const cudaStream_t stream = current_stream();
  scale_.fill(static_cast<double>(static_cast<float>(state.scale)), stream);
  growth_tracker_.fill(static_cast<double>(state.growth_tracker), stream);
}

NamedTensors GradScaler::state_tensors() const {
  return {{"grad_scaler.scale", scale_}, {"grad_scaler.growth_tracker", growth_tracker_}};
}

}  // namespace strata::optim
