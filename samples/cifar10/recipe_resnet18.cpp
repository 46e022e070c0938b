// The ResNet-18 recipe, a standard comparison for airbench94: the CIFAR ResNet-18 trained
// with Nesterov SGD (momentum 0.9, weight decay 5e-4 on every parameter), batch 512 at a
// peak learning rate of 0.4 (0.1 per 128 images, scaled linearly with the batch), a linear
// warm-up from a tenth of it over the first 2 of 30 epochs, then a cosine to 0; random
// translation by up to 4 pixels and airbench's alternating flip; no label smoothing.
#include <algorithm>
#include <memory>

#include <strata/layers/lr_schedule.h>
#include <strata/layers/sgd.h>

#include "recipe_common.h"

namespace cifar10 {
namespace {

namespace lr = strata::lr;
namespace optim = strata::optim;

constexpr double kLearningRatePer128 = 0.1;
constexpr double kWarmupEpochs = 2;
constexpr double kEpochs = 30;

class ResNet18Recipe final : public SgdRecipe {
 public:
  explicit ResNet18Recipe(const RecipeOptions& options)
      : SgdRecipe({.name = "resnet18", .batch_size = 512, .epochs = kEpochs, .drop_last = true}, options) {
    set_net(resnet18_net());
    const double learning_rate = kLearningRatePer128 * batch_size() / 128.0 * options.lr_scale;
    set_optimizer(std::make_unique<optim::SGD>(
        net().parameters(),
        optim::SgdOptions{.lr = learning_rate, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true}));
  }

  AugmentOptions augment_options() const override {
    return {.translate = 4, .alternating_flip = true, .cutout = 0};
  }

 protected:
  lr::SchedulePtr make_schedule(std::int64_t total_steps) const override {
    if (total_steps < 2) return lr::constant_lr({.factor = 1.0, .total_iters = 0});
    const auto warmup = std::clamp<std::int64_t>(
        static_cast<std::int64_t>(static_cast<double>(total_steps) * kWarmupEpochs / epochs()), 1, total_steps - 1);
    return lr::sequential_lr({lr::linear_lr({.start_factor = 0.1, .end_factor = 1.0, .total_iters = warmup}),
                              lr::cosine_annealing_lr({.t_max = total_steps - warmup})},
                             {warmup});
  }
};

}  // namespace

std::unique_ptr<SgdRecipe> make_resnet18_recipe(const RecipeOptions& options) {
  return std::make_unique<ResNet18Recipe>(options);
}

}  // namespace cifar10
