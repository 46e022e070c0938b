// airbench94 (Keller Jordan, 2024: 94% on CIFAR-10 in a few seconds on an A100), as its
// airbench94.py trains it:
//  - the whitening conv's weight from the data (whitening.h), frozen; its bias trains only in
//    the first 3 epochs;
//  - label-smoothed (0.2) cross-entropy summed over the batch;
//  - Nesterov SGD, momentum 0.85, with k = 1024 * (1 + 1 / (1 - 0.85)): lr = 11.5 / k and
//    PyTorch's weight_decay = (0.0153 * batch / k) / lr, so that the decay per step is
//    0.0153 * batch / k times the schedule's factor; batch-norm biases at 64 times the
//    learning rate with the same decay per step;
//  - batch 1024, drop-last, ceil(9.9 epochs) of steps, the factor rising linearly
//    0.2 -> 1.0 over the first 23% of the steps, then falling linearly to 0.07;
//  - lookahead every 5 steps over every float tensor of the state but the frozen whitening
//    weight (so weights and batch-norm running statistics): ema = lerp(ema, w, 1 - d),
//    w = ema, d = 0.95^5 * (step / total)^3;
//    at the end the weights become the average.
// Where this differs from airbench94.py, and why it does not matter:
//  - airbench copies its lookahead state before the whitening weight is set, so its first
//    lookahead (d = 1e-6) leaves 1e-6 of the random initial whitening weight in the frozen
//    one; here the averages start from the weights of the first step.
//  - airbench trains in fp16 (batch norm in fp32); Strata trains in fp32.
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <strata/layers/ema.h>
#include <strata/layers/lr_schedule.h>
#include <strata/layers/sgd.h>

#include "recipe_common.h"
#include "whitening.h"

namespace cifar10 {

namespace lr = strata::lr;
namespace nn = strata::nn;
namespace optim = strata::optim;
using strata::Tensor;

Airbench94Rates airbench94_rates(const Airbench94Hyperparameters& hyp, int batch_size, double lr_scale) {
  const double kilostep_scale = 1024.0 * (1.0 + 1.0 / (1.0 - hyp.momentum));
  const double learning_rate = hyp.lr / kilostep_scale * lr_scale;
  const double decay_per_step = hyp.weight_decay * batch_size / kilostep_scale;
  const double bias_learning_rate = learning_rate * hyp.bias_scaler;
  return {.lr = learning_rate,
          .weight_decay = decay_per_step / learning_rate,
          .bias_lr = bias_learning_rate,
          .bias_weight_decay = decay_per_step / bias_learning_rate};
}

lr::SchedulePtr airbench94_schedule(std::int64_t total_steps, const Airbench94Hyperparameters& hyp) {
  const auto warmup = static_cast<std::int64_t>(static_cast<double>(total_steps) * hyp.warmup_fraction);
  // airbench: step < warmup: 0.2 + 0.8 * step / warmup; after: 1 - 0.93 * (step - warmup) / (total - warmup).
  std::vector<lr::Knot> knots;
  if (warmup > 0) knots.push_back({0, 0.2});
  knots.push_back({warmup, 1.0});
  if (total_steps > warmup) knots.push_back({total_steps, hyp.final_factor});
  return lr::piecewise_linear_lr(knots);
}

double airbench94_lookahead_decay(std::int64_t steps, std::int64_t total_steps, const Airbench94Hyperparameters& hyp) {
  const double progress = static_cast<double>(steps) / static_cast<double>(total_steps);
  return std::pow(hyp.lookahead_base, hyp.lookahead_every) * progress * progress * progress;
}

namespace {

// The fused batch norm + GELU runs Strata's kernels under every engine; a run on cuDNN keeps
// the two separate so that cuDNN computes both.
Airbench94NetOptions for_engine(Airbench94NetOptions options, strata::Engine engine) {
  if (engine != strata::Engine::custom) options.fuse_norm_activation = false;
  return options;
}

class Airbench94Recipe final : public SgdRecipe {
 public:
  Airbench94Recipe(const RecipeOptions& options, const Airbench94NetOptions& net_options)
      : SgdRecipe({.name = "airbench94",
                   .batch_size = 1024,
                   .epochs = 9.9,
                   .drop_last = true,
                   .loss = {.label_smoothing = kHyp.label_smoothing, .reduction = nn::Reduction::sum}},
                  options) {
    set_net(airbench94_net(for_engine(net_options, strata::resolve_engine(options.engine))));
    auto& whiten = net().at<nn::Conv2d>(kAirbenchWhitenLayer);
    whiten_weight_ = whiten.weight();
    whiten_bias_ = whiten.bias();
    whiten_weight_.set_requires_grad(false);  // set from the data, then frozen
    // airbench's groups: parameters named "norm" (the batch-norm biases), then the others.
    std::vector<Tensor> norm_biases, others;
    for (const auto& [name, parameter] : net().named_parameters()) {
      if (!parameter.requires_grad()) continue;
      (name.find("norm") != std::string::npos ? norm_biases : others).push_back(parameter);
    }
    const Airbench94Rates rates = airbench94_rates(kHyp, batch_size(), options.lr_scale);
    set_optimizer(std::make_unique<optim::SGD>(
        std::vector<optim::SgdParamGroup>{
            {.params = norm_biases, .lr = rates.bias_lr, .weight_decay = rates.bias_weight_decay},
            {.params = others, .lr = rates.lr, .weight_decay = rates.weight_decay}},
        optim::SgdOptions{.lr = rates.lr, .momentum = kHyp.momentum, .nesterov = true}));
    start_lookahead(strata::current_stream());
  }

  AugmentOptions augment_options() const override {
    return {.translate = 2, .alternating_flip = true, .cutout = 0};
  }

  void initialise(const DeviceImages& train, cudaStream_t stream) override {
    SgdRecipe::initialise(train, stream);
    const Tensor weight = whitening_weight(train, augment_options().normalisation, {}, stream);  // (24, 3, 2, 2)
    whiten_weight_.copy_from(weight, stream);
  }

  void finish(cudaStream_t stream) override { lookahead_->lookahead(1.0, stream); }

 protected:
  lr::SchedulePtr make_schedule(std::int64_t total_steps) const override {
    return airbench94_schedule(total_steps, kHyp);
  }

  void before_step(std::int64_t step) override {
    // The averages start from the weights the first step starts from (a resume restores them).
    if (step == 0) start_lookahead(strata::current_stream());
    // Without requires_grad the bias gets no gradient, and SGD skips it (as PyTorch's).
    whiten_bias_.set_requires_grad(step / run_batches_per_epoch() < kHyp.whiten_bias_epochs);
  }

  void after_step(std::int64_t step, cudaStream_t stream) override {
    const std::int64_t steps = step + 1;
    if (steps % kHyp.lookahead_every == 0) {
      lookahead_->lookahead(airbench94_lookahead_decay(steps, run_total_steps(), kHyp), stream);
    }
  }

  strata::NamedTensors extra_state() const override { return lookahead_->state_dict("lookahead."); }

 private:
  static constexpr Airbench94Hyperparameters kHyp{};

  // The averages start as copies of every float tensor of the state but the frozen whitening
  // weight (made in the constructor too, so that a checkpoint can be loaded into them before
  // any step). airbench averages that weight too, which leaves it as it is; here the update
  // d * w + (1 - d) * w would round it by an ulp now and then.
  void start_lookahead(cudaStream_t stream) {
    std::vector<Tensor> tracked;
    for (const auto& [name, tensor] : net().state_dict()) {
      const bool frozen = tensor.shares_storage_with(whiten_weight_);
      if (tensor.dtype() == strata::DType::f32 && !frozen) tracked.push_back(tensor);
    }
    lookahead_ = std::make_unique<optim::ExponentialMovingAverage>(std::move(tracked), stream);
  }

  Tensor whiten_weight_;  // (24, 3, 2, 2)
  Tensor whiten_bias_;    // (24)
  std::unique_ptr<optim::ExponentialMovingAverage> lookahead_;
};

}  // namespace

std::unique_ptr<SgdRecipe> make_airbench94_recipe(const RecipeOptions& options, const Airbench94NetOptions& net) {
  return std::make_unique<Airbench94Recipe>(options, net);
}

}  // namespace cifar10
