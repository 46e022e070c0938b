// SGD: options per group, and one kernels::sgd_step per batch of a step.
#include "strata/layers/sgd.h"

#include <utility>

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

// The kernel's checks (PyTorch's), with the group named.
void check_options(const SgdOptions& options, double lr, int group) {
  try {
    kernels::check_sgd_params(kernel_params(options, lr));
  } catch (const InvalidArgument& error) {
    throw InvalidArgument(fmt::format("{}: parameter group {}: {}", kName, group, error.what()));
  }
}

SgdOptions resolve(const SgdParamGroup& group, const SgdOptions& defaults) {
  return {.lr = group.lr.value_or(defaults.lr),
          .momentum = group.momentum.value_or(defaults.momentum),
          .dampening = group.dampening.value_or(defaults.dampening),
          .weight_decay = group.weight_decay.value_or(defaults.weight_decay),
          .nesterov = group.nesterov.value_or(defaults.nesterov),
          .maximize = group.maximize.value_or(defaults.maximize)};
}

std::vector<std::string> state_names_for(const SgdOptions& options) {
  if (options.momentum == 0.0) return {};
  return {"momentum_buffer"};
}

// Every group's options as read_options reads them; an entry is nullopt where a problem was
// recorded.
std::vector<std::optional<SgdOptions>> parse_options(detail::StateReader& reader, int groups) {
  std::vector<std::optional<SgdOptions>> parsed;
  for (int g = 0; g < groups; ++g) {
    const std::optional<double> momentum = reader.number(detail::group_key(g, "momentum"));
    const std::optional<double> dampening = reader.number(detail::group_key(g, "dampening"));
    const std::optional<double> weight_decay = reader.number(detail::group_key(g, "weight_decay"));
    const std::optional<bool> nesterov = reader.flag(detail::group_key(g, "nesterov"));
    const std::optional<bool> maximize = reader.flag(detail::group_key(g, "maximize"));
    if (!momentum || !dampening || !weight_decay || !nesterov || !maximize) {
      parsed.emplace_back();
      continue;
    }
    const SgdOptions options{.momentum = *momentum,
                             .dampening = *dampening,
                             .weight_decay = *weight_decay,
                             .nesterov = *nesterov,
                             .maximize = *maximize};
    try {
      check_options(options, 0.0, g);
      parsed.emplace_back(options);
    } catch (const InvalidArgument& error) {
      reader.problem(fmt::format("the options of group {} are refused: {}", g, error.what()));
      parsed.emplace_back();
    }
  }
  return parsed;
}

}  // namespace

SGD::SGD(std::vector<Tensor> params, const SgdOptions& options)
    : SGD(std::vector<ParamGroup>{{.params = std::move(params)}}, options) {}

SGD::SGD(std::vector<ParamGroup> groups, const SgdOptions& defaults) : Optimizer(kName) {
  for (ParamGroup& group : groups) {
    const SgdOptions options = resolve(group, defaults);
    check_options(options, options.lr, num_groups());
    add_param_group(std::move(group.params), options.lr);
    group_options_.push_back(options);
  }
  check_has_parameters();
}

SgdOptions SGD::options(int group) const {
  const double current_lr = lr(group);  // checks the group index
  SgdOptions options = group_options_[static_cast<std::size_t>(group)];
  options.lr = current_lr;
  return options;
}

std::vector<std::string> SGD::state_names(int group) const {
  return state_names_for(group_options_.at(static_cast<std::size_t>(group)));
}

void SGD::update(int group, StepBatch& batch, cudaStream_t stream) {
  const SgdOptions& options = group_options_[static_cast<std::size_t>(group)];
  std::span<Tensor> momentum_buffers;
  if (!batch.state.empty()) momentum_buffers = batch.state[0];
  kernels::SgdParams params = kernel_params(options, lr(group));
  params.lr_device = lr_device(group);  // the same float as lr; a captured CUDA graph reads it at replay
  kernels::sgd_step(
      {.parameters = batch.parameters, .gradients = batch.gradients, .momentum_buffers = momentum_buffers}, params,
      batch.steps_before == 0 ? kernels::MomentumBuffers::uninitialized : kernels::MomentumBuffers::initialized,
      stream);
}

void SGD::write_options(detail::StateWriter& writer) const {
  for (int g = 0; g < num_groups(); ++g) {
    const SgdOptions& options = group_options_[static_cast<std::size_t>(g)];
    writer.number(detail::group_key(g, "momentum"), options.momentum);
    writer.number(detail::group_key(g, "dampening"), options.dampening);
    writer.number(detail::group_key(g, "weight_decay"), options.weight_decay);
    writer.flag(detail::group_key(g, "nesterov"), options.nesterov);
    writer.flag(detail::group_key(g, "maximize"), options.maximize);
  }
}

std::vector<std::optional<std::vector<std::string>>> SGD::read_options(detail::StateReader& reader) const {
  std::vector<std::optional<std::vector<std::string>>> names;
  for (const std::optional<SgdOptions>& options : parse_options(reader, num_groups())) {
    names.push_back(options ? std::optional(state_names_for(*options)) : std::nullopt);
  }
  return names;
}

void SGD::install_options(detail::StateReader& reader) {
  std::vector<SgdOptions> installed;
  for (const std::optional<SgdOptions>& options : parse_options(reader, num_groups()))
    installed.push_back(options.value());
  group_options_ = std::move(installed);
}

}  // namespace strata::optim
