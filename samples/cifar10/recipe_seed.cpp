// The seed recipe: the small network of samples/train_seed at CIFAR-10 widths, trained with
// Nesterov SGD on a one-cycle schedule, as a baseline that any working build learns with.
#include <memory>

#include <strata/layers/lr_schedule.h>
#include <strata/layers/sgd.h>

#include "recipe_common.h"

namespace cifar10 {
namespace {

namespace lr = strata::lr;
namespace optim = strata::optim;

constexpr double kLearningRate = 0.2;  // the one cycle's peak, for batch 256

class SeedRecipe final : public SgdRecipe {
 public:
  SeedRecipe(const RecipeOptions& options, const SeedNetOptions& net_options)
      : SgdRecipe(
            {.name = "seed", .batch_size = 256, .epochs = 5, .drop_last = true, .loss = {.label_smoothing = 0.1f}},
            options) {
    set_net(seed_net(net_options));
    set_optimizer(std::make_unique<optim::SGD>(
        net().parameters(),
        optim::SgdOptions{
            .lr = kLearningRate * options.lr_scale, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true}));
  }

  AugmentOptions augment_options() const override {
    return {.translate = 2, .alternating_flip = true, .cutout = 0};
  }

 protected:
  lr::SchedulePtr make_schedule(std::int64_t total_steps) const override {
    return lr::one_cycle_lr({.total_steps = total_steps, .pct_start = 0.25});
  }
};

}  // namespace

std::unique_ptr<SgdRecipe> make_seed_recipe(const RecipeOptions& options, const SeedNetOptions& net) {
  return std::make_unique<SeedRecipe>(options, net);
}

}  // namespace cifar10
