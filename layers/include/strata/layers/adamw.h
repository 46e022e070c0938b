// Adam with decoupled weight decay, as torch.optim.AdamW (PyTorch 1.13); the math is
// kernels::adamw_step's (strata/kernels/optimizer_adamw.h). Each parameter keeps its own
// step count (for the bias correction) and moments, which start at zero at its first step
// with a gradient.
//
//   optim::AdamW adamw(parameters, {.lr = 3e-4, .weight_decay = 0.05});
//   optim::AdamW adamw({{.params = decayed}, {.params = norms_and_biases, .weight_decay = 0.0}}, {.lr = 3e-4});
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "strata/core/tensor.h"
#include "strata/layers/grouped_optimizer.h"

namespace strata::optim {

// PyTorch's defaults.
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
  bool amsgrad = false;
  bool maximize = false;
};

// A parameter group: options left unset take the optimizer's defaults.
struct AdamWParamGroup {
  std::vector<Tensor> params;
  std::optional<double> lr = std::nullopt;
  std::optional<double> beta1 = std::nullopt;
  std::optional<double> beta2 = std::nullopt;
  std::optional<double> eps = std::nullopt;
  std::optional<double> weight_decay = std::nullopt;
  std::optional<bool> amsgrad = std::nullopt;
  std::optional<bool> maximize = std::nullopt;
};

extern template class GroupedOptimizer<AdamWOptions>;

class AdamW final : public GroupedOptimizer<AdamWOptions> {
 public:
  using ParamGroup = AdamWParamGroup;

  // Throws InvalidArgument with PyTorch's conditions (kernels::check_adamw_params), naming
  // the group, and for parameters that are not f32 device leaves or appear twice.
  AdamW(std::vector<Tensor> params, const AdamWOptions& options = {});
  AdamW(std::vector<ParamGroup> groups, const AdamWOptions& defaults);

  // True: the kernel reads the found-inf flag, and the step count of the bias correction
  // from the device, where a skipped step leaves it as it was.
  bool can_skip_on_device() const override { return true; }

 protected:
  bool batches_by_exact_step() const override { return true; }
  void update(std::span<StepBatch> batches, cudaStream_t stream) override;
  void write_options(detail::StateWriter& writer) const override;
  void check_options(const AdamWOptions& options, double lr, int group) const override;
  std::vector<std::string> state_names_for(const AdamWOptions& options) const override;
  std::optional<AdamWOptions> read_group_options(detail::StateReader& reader, int group) const override;
};

}  // namespace strata::optim
