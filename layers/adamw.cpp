// AdamW: options per group, and one kernels::adamw_step for all batches of a step (each
// batch: parameters of one group with the same step count).
#include "strata/layers/adamw.h"

#include <span>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "layers/optimizer_state_io.h"
#include "strata/core/errors.h"
#include "strata/kernels/optimizer_adamw.h"

namespace strata::optim {

namespace {

constexpr const char* kName = "AdamW";

kernels::AdamWParams kernel_params(const AdamWOptions& options, double lr) {
  return {.lr = lr,
          .beta1 = options.beta1,
          .beta2 = options.beta2,
          .eps = options.eps,
          .weight_decay = options.weight_decay,
          .amsgrad = options.amsgrad,
          .maximize = options.maximize};
}

AdamWOptions resolve(const AdamWParamGroup& group, const AdamWOptions& defaults) {
  return {.lr = group.lr.value_or(defaults.lr),
          .beta1 = group.beta1.value_or(defaults.beta1),
          .beta2 = group.beta2.value_or(defaults.beta2),
          .eps = group.eps.value_or(defaults.eps),
          .weight_decay = group.weight_decay.value_or(defaults.weight_decay),
          .amsgrad = group.amsgrad.value_or(defaults.amsgrad),
          .maximize = group.maximize.value_or(defaults.maximize)};
}



}  // namespace

AdamW::AdamW(std::vector<Tensor> params, const AdamWOptions& options)
    : AdamW(std::vector<ParamGroup>{{.params = std::move(params)}}, options) {}

AdamW::AdamW(std::vector<ParamGroup> groups, const AdamWOptions& defaults) : GroupedOptimizer(kName) {
  for (ParamGroup& group : groups) add_group(std::move(group.params), resolve(group, defaults));
  check_has_parameters();
}

// The kernel's checks (PyTorch's), with the group named.
void AdamW::check_options(const AdamWOptions& options, double lr, int group) const {
  try {
    kernels::check_adamw_params(kernel_params(options, lr));
  } catch (const InvalidArgument& error) {
    throw InvalidArgument(fmt::format("{}: parameter group {}: {}", kName, group, error.what()));
  }
}

std::vector<std::string> AdamW::state_names_for(const AdamWOptions& options) const {
  if (options.amsgrad) return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
  return {"exp_avg", "exp_avg_sq"};
}

std::optional<AdamWOptions> AdamW::read_group_options(detail::StateReader& reader, int group) const {
  const std::optional<double> beta1 = reader.number(detail::group_key(group, "beta1"));
  const std::optional<double> beta2 = reader.number(detail::group_key(group, "beta2"));
  const std::optional<double> eps = reader.number(detail::group_key(group, "eps"));
  const std::optional<double> weight_decay = reader.number(detail::group_key(group, "weight_decay"));
  const std::optional<bool> amsgrad = reader.flag(detail::group_key(group, "amsgrad"));
  const std::optional<bool> maximize = reader.flag(detail::group_key(group, "maximize"));
  if (!beta1 || !beta2 || !eps || !weight_decay || !amsgrad || !maximize) return std::nullopt;
  return AdamWOptions{.beta1 = *beta1,
                      .beta2 = *beta2,
                      .eps = *eps,
                      .weight_decay = *weight_decay,
                      .amsgrad = *amsgrad,
                      .maximize = *maximize};
}


void AdamW::update(std::span<StepBatch> batches, cudaStream_t stream) {
  std::vector<kernels::AdamWGroup> groups;
  for (StepBatch& batch : batches) {
    const AdamWOptions& options = group_options(batch.group);
    kernels::AdamWParams params = kernel_params(options, lr(batch.group));
    params.lr_device = lr_device(batch.group);  // the same float as lr; a captured CUDA graph reads it at replay
    params.found_inf = batch.found_inf;
    std::span<Tensor> max_exp_avg_sqs;
    if (options.amsgrad) max_exp_avg_sqs = batch.state[2];
    // PyTorch increments state["step"] before the update: the first update is step 1.
    groups.push_back({.tensors = {.parameters = batch.parameters,
                                  .gradients = batch.gradients,
                                  .exp_avgs = batch.state[0],
                                  .exp_avg_sqs = batch.state[1],
                                  .max_exp_avg_sqs = max_exp_avg_sqs},
                      .params = params,
                      .step = {.step = batch.steps_before + 1,
                               .step_device = batch.step_device,
                               .steps_before_device = batch.steps_before_device}});
  }
  kernels::adamw_step(groups, stream);
}

void AdamW::write_options(detail::StateWriter& writer) const {
  for (int g = 0; g < num_groups(); ++g) {
    const AdamWOptions& options = group_options(g);
    writer.number(detail::group_key(g, "beta1"), options.beta1);
    writer.number(detail::group_key(g, "beta2"), options.beta2);
    writer.number(detail::group_key(g, "eps"), options.eps);
    writer.number(detail::group_key(g, "weight_decay"), options.weight_decay);
    writer.flag(detail::group_key(g, "amsgrad"), options.amsgrad);
    writer.flag(detail::group_key(g, "maximize"), options.maximize);
  }
}



}  // namespace strata::optim
