// Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay,
// as torch.optim.SGD (PyTorch 1.13); the math is kernels::sgd_step's
// (strata/kernels/optimizer_sgd.h). A parameter's momentum buffer starts at its first step
// with a gradient, as PyTorch's "buffer is None" rule.
//
//   optim::SGD sgd(parameters, {.lr = 0.1, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true});
//   // Groups: no weight decay for biases, and their own learning rate.
//   optim::SGD sgd({{.params = weights}, {.params = biases, .lr = 0.2, .weight_decay = 0.0}},
//                  {.lr = 0.1, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true});
#pragma once

#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "strata/core/tensor.h"
#include "strata/layers/grouped_optimizer.h"

namespace strata::optim {

// PyTorch's defaults; lr has none and must be set.
struct SgdOptions {
  double lr = std::numeric_limits<double>::quiet_NaN();
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  bool maximize = false;
};

// A parameter group: options left unset take the optimizer's defaults.
struct SgdParamGroup {
  std::vector<Tensor> params;
  std::optional<double> lr = std::nullopt;
  std::optional<double> momentum = std::nullopt;
  std::optional<double> dampening = std::nullopt;
  std::optional<double> weight_decay = std::nullopt;
  std::optional<bool> nesterov = std::nullopt;
  std::optional<bool> maximize = std::nullopt;
};

extern template class GroupedOptimizer<SgdOptions>;

class SGD final : public GroupedOptimizer<SgdOptions> {
 public:
  using ParamGroup = SgdParamGroup;

  // Throws InvalidArgument with PyTorch's conditions (kernels::check_sgd_params), naming
  // the group, and for parameters that are not f32 device leaves or appear twice.
  SGD(std::vector<Tensor> params, const SgdOptions& options);
  SGD(std::vector<ParamGroup> groups, const SgdOptions& defaults);

  // True: the kernel reads the found-inf flag, and whether the momentum buffers start at this
  // step from the device step count, which a skipped step leaves as it was.
  bool can_skip_on_device() const override;

 protected:
  bool batches_by_exact_step() const override { return false; }
  void update(std::span<StepBatch> batches, cudaStream_t stream) override;
  void write_options(detail::StateWriter& writer) const override;
  void check_options(const SgdOptions& options, double lr, int group) const override;
  std::vector<std::string> state_names_for(const SgdOptions& options) const override;
  std::optional<SgdOptions> read_group_options(detail::StateReader& reader, int group) const override;
};

}  // namespace strata::optim
