// SGD: options per group, and one kernels::sgd_step for all batches of a step.
#include "strata/layers/sgd.h"

#include <span>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "layers/optimizer_state_io.h"
#include "strata/core/errors.h"
#include "strata/kernels/optimizer_sgd.h"

namespace strata::optim {

namespace {

constexpr const char* kName = "SGD";

kernels::SgdParams kernel_params(const SgdOptions& options, double lr) {
  return {.lr = lr,
          .momentum = options.momentum,
          .dampening = options.dampening,
          .weight_decay = options.weight_decay,
          .nesterov = options.nesterov,
          .maximize = options.maximize};
}

SgdOptions resolve(const SgdParamGroup& group, const SgdOptions& defaults) {
  return {.lr = group.lr.value_or(defaults.lr),
          .momentum = group.momentum.value_or(defaults.momentum),
          .dampening = group.dampening.value_or(defaults.dampening),
          .weight_decay = group.weight_decay.value_or(defaults.weight_decay),
          .nesterov = group.nesterov.value_or(defaults.nesterov),
          .maximize = group.maximize.value_or(defaults.maximize)};
}



}  // namespace

SGD::SGD(std::vector<Tensor> params, const SgdOptions& options)
    : SGD(std::vector<ParamGroup>{{.params = std::move(params)}}, options) {}

SGD::SGD(std::vector<ParamGroup> groups, const SgdOptions& defaults) : GroupedOptimizer(kName) {
  for (ParamGroup& group : groups) add_group(std::move(group.params), resolve(group, defaults));
  check_has_parameters();
}

// The kernel's checks (PyTorch's), with the group named.
void SGD::check_options(const SgdOptions& options, double lr, int group) const {
  try {
    kernels::check_sgd_params(kernel_params(options, lr));
  } catch (const InvalidArgument& error) {
    throw InvalidArgument(fmt::format("{}: parameter group {}: {}", kName, group, error.what()));
  }
}

std::vector<std::string> SGD::state_names_for(const SgdOptions& options) const {
  if (options.momentum == 0.0) return {};
  return {"momentum_buffer"};
}

std::optional<SgdOptions> SGD::read_group_options(detail::StateReader& reader, int group) const {
  const std::optional<double> momentum = reader.number(detail::group_key(group, "momentum"));
  const std::optional<double> dampening = reader.number(detail::group_key(group, "dampening"));
  const std::optional<double> weight_decay = reader.number(detail::group_key(group, "weight_decay"));
  const std::optional<bool> nesterov = reader.flag(detail::group_key(group, "nesterov"));
  const std::optional<bool> maximize = reader.flag(detail::group_key(group, "maximize"));
  if (!momentum || !dampening || !weight_decay || !nesterov || !maximize) return std::nullopt;
  return SgdOptions{.momentum = *momentum,
                    .dampening = *dampening,
                    .weight_decay = *weight_decay,
                    .nesterov = *nesterov,
                    .maximize = *maximize};
}


void SGD::update(std::span<StepBatch> batches, cudaStream_t stream) {
  std::vector<kernels::SgdGroup> groups;
  for (StepBatch& batch : batches) {
    std::span<Tensor> momentum_buffers;
    if (!batch.state.empty()) momentum_buffers = batch.state[0];
    kernels::SgdParams params = kernel_params(group_options(batch.group), lr(batch.group));
    params.lr_device = lr_device(batch.group);  // the same float as lr; a captured CUDA graph reads it at replay
    params.found_inf = batch.found_inf;
    params.steps_before_device = batch.steps_before_device;  // when set, it decides the first step
    groups.push_back({.tensors = {.parameters = batch.parameters,
                                  .gradients = batch.gradients,
                                  .momentum_buffers = momentum_buffers},
                      .params = params,
                      .buffers = batch.steps_before == 0 ? kernels::MomentumBuffers::uninitialized
                                                         : kernels::MomentumBuffers::initialized});
  }
  kernels::sgd_step(groups, stream);
}

// The kernel skips on found_inf and decides PyTorch's "buffer is None" first step from the
// device step count, which a skipped step leaves as it was: dampening applies from the
// first step that was not skipped.
bool SGD::can_skip_on_device() const { return true; }

void SGD::write_options(detail::StateWriter& writer) const {
  for (int g = 0; g < num_groups(); ++g) {
    const SgdOptions& options = group_options(g);
    writer.number(detail::group_key(g, "momentum"), options.momentum);
    writer.number(detail::group_key(g, "dampening"), options.dampening);
    writer.number(detail::group_key(g, "weight_decay"), options.weight_decay);
    writer.flag(detail::group_key(g, "nesterov"), options.nesterov);
    writer.flag(detail::group_key(g, "maximize"), options.maximize);
  }
}



}  // namespace strata::optim
