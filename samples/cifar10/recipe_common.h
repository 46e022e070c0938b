// What the three recipes share (recipe_seed.cpp, recipe_airbench94.cpp, recipe_resnet18.cpp):
// a network, softmax cross-entropy, Nesterov SGD with parameter groups, a learning-rate
// schedule over the whole run, evaluation (with airbench's six views on request) and the
// checkpoint file. Private to the sample and its tests.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <cuda_runtime_api.h>

#include <strata/core/tensor.h>
#include <strata/layers/grad_scaler.h>
#include <strata/layers/lr_schedule.h>
#include <strata/layers/modules.h>
#include <strata/layers/sgd.h>

#include "nets.h"
#include "recipe.h"
#include "step_graph.h"

namespace cifar10 {

// Batches an epoch of images gives.
std::int64_t batches_per_epoch(std::int64_t images, int batch_size, bool drop_last);

class SgdRecipe : public Recipe {
 public:
  std::string_view name() const override { return name_; }
  strata::nn::Module& model() override { return *net_; }
  int batch_size() const override { return batch_size_; }
  bool drop_last() const override { return drop_last_; }
  // In the autocast dtype (the first layer is a conv, which autocast lowers to it: the same
  // bits as an f32 batch cast there) and RecipeOptions::memory_format.
  BatchStorage batch_storage() const override;
  std::int64_t total_steps(std::int64_t batches_per_epoch) const override;
  // Sets the schedule for train.count() images; recipes with data-dependent initialisation
  // extend it.
  void initialise(const DeviceImages& train, cudaStream_t stream) override;
  StepResult train_step(const Batch& batch, std::int64_t step, cudaStream_t stream) override;
  strata::Tensor training_loss(const strata::Tensor& logits, const strata::Tensor& labels) override;
  void end_epoch(int /*epoch*/) override {}
  void finish(cudaStream_t /*stream*/) override {}
  strata::Tensor evaluate_logits(const strata::Tensor& images, bool tta, cudaStream_t stream) override;
  void save_state(const std::filesystem::path& file, std::int64_t next_step, cudaStream_t stream) override;
  std::int64_t load_state(const std::filesystem::path& file, cudaStream_t stream) override;

  // For tests and reports.
  strata::nn::Sequential& net() { return *net_; }
  const strata::optim::SGD& optimizer() const { return *optimizer_; }
  const strata::lr::Scheduler& scheduler() const { return scheduler_; }
  // The loss scaler of an f16 run (RecipeOptions::precision), else null.
  const strata::optim::GradScaler* grad_scaler() const noexcept { return scaler_.get(); }
  double epochs() const noexcept { return epochs_; }
  // How train_step runs (RecipeOptions::graph): graphs recorded, steps replayed, the graph.
  const StepGraph& step_graph() const noexcept { return *step_graph_; }
  // The run's length as initialise or load_state set it (0 before).
  std::int64_t run_batches_per_epoch() const noexcept { return batches_per_epoch_; }
  std::int64_t run_total_steps() const noexcept { return total_steps_; }

 protected:
  struct Setup {
    std::string name;
    int batch_size = 0;   // the recipe's default (RecipeOptions::batch_size overrides)
    double epochs = 0;    // likewise
    bool drop_last = true;
    strata::nn::CrossEntropyLossOptions loss{};
  };
  // Seeds Strata's generator with options.seed: the derived constructor then builds the net
  // (set_net) and the optimizer (set_optimizer), in that order.
  SgdRecipe(const Setup& setup, const RecipeOptions& options);

  void set_net(strata::nn::Sequential net);
  void set_optimizer(std::unique_ptr<strata::optim::SGD> optimizer);
  const RecipeOptions& options() const noexcept { return options_; }

  // The learning-rate factor of every step of a run of total_steps.
  virtual strata::lr::SchedulePtr make_schedule(std::int64_t total_steps) const = 0;
  // Before the forward of step (airbench: whether the whitening bias still trains).
  virtual void before_step(std::int64_t /*step*/) {}
  // After the optimizer step (airbench: the lookahead).
  virtual void after_step(std::int64_t /*step*/, cudaStream_t /*stream*/) {}
  // Tensors a checkpoint holds besides the model's state (airbench: the lookahead averages).
  virtual strata::NamedTensors extra_state() const { return {}; }
  // The reported loss per image, from the loss the step minimised (reduction as Setup::loss).
  strata::Tensor loss_per_image(const strata::Tensor& loss, std::int64_t batch) const;

 private:
  // The model's state ("model.<key>") and extra_state(): what a checkpoint holds besides the
  // optimizer and the schedule.
  strata::NamedTensors state_tensors() const;
  // Zero the gradients, forward, loss, backward, optimizer step: what StepGraph records.
  StepResult forward_backward_update(const Batch& batch, cudaStream_t stream);
  // What a recorded step assumes besides its tensors: the batch's shape, dtype and format and which
  // parameters train; a step whose key differs records anew.
  std::string phase_key(const Batch& batch) const;
  // Whether every parameter that trains has its optimizer state (SGD starts a momentum
  // buffer at a parameter's first update, which a replay would not repeat).
  bool optimizer_state_ready() const;

  std::string name_;
  RecipeOptions options_;
  int batch_size_;
  double epochs_;
  bool drop_last_;
  strata::nn::CrossEntropyLoss loss_fn_;
  strata::nn::CrossEntropyLossOptions loss_options_;
  std::unique_ptr<strata::nn::Sequential> net_;
  std::unique_ptr<strata::optim::SGD> optimizer_;
  // A constant factor until initialise (or a checkpoint) gives the run's schedule.
  strata::lr::Scheduler scheduler_;
  std::int64_t batches_per_epoch_ = 0;
  std::int64_t total_steps_ = 0;
  TestViews views_;
  // Dynamic loss scaling, with RecipeOptions::precision f16 only (bf16 has f32's range).
  std::unique_ptr<strata::optim::GradScaler> scaler_;
  // After the net and the optimizer: its graph refers to both, so it goes first.
  std::unique_ptr<StepGraph> step_graph_;
};

std::unique_ptr<SgdRecipe> make_seed_recipe(const RecipeOptions& options, const SeedNetOptions& net = {});
std::unique_ptr<SgdRecipe> make_airbench94_recipe(const RecipeOptions& options, const Airbench94NetOptions& net = {});
std::unique_ptr<SgdRecipe> make_resnet18_recipe(const RecipeOptions& options);

// airbench94's hyperparameters, as its hyp dictionary holds them.
struct Airbench94Hyperparameters {
  double lr = 11.5;               // per 1024 examples
  double momentum = 0.85;
  double weight_decay = 0.0153;   // per 1024 examples
  double bias_scaler = 64.0;      // batch-norm biases: lr times this (weight decay divided by it)
  float label_smoothing = 0.2f;
  int whiten_bias_epochs = 3;
  double warmup_fraction = 0.23;  // of the steps: the factor 0.2 -> 1.0
  double final_factor = 0.07;
  int lookahead_every = 5;
  double lookahead_base = 0.95;   // decay = (base^every) * (step / total)^3
};

// airbench94's learning rate and weight decay of a group (PyTorch's SGD weight decay,
// added to the gradient, is decay / lr so that lr * it is the decay per step):
//   k = 1024 * (1 + 1 / (1 - momentum)),  lr = hyp.lr / k,  decay = hyp.weight_decay * batch / k.
struct Airbench94Rates {
  double lr = 0;                  // other parameters
  double weight_decay = 0;        // PyTorch's weight_decay option for them
  double bias_lr = 0;             // batch-norm biases
  double bias_weight_decay = 0;   // its option
};
Airbench94Rates airbench94_rates(const Airbench94Hyperparameters& hyp, int batch_size, double lr_scale);

// airbench94's triangle: 0.2 at step 0 rising linearly to 1.0 at int(0.23 * total), then
// falling linearly to 0.07 at total.
strata::lr::SchedulePtr airbench94_schedule(std::int64_t total_steps, const Airbench94Hyperparameters& hyp = {});
// The lookahead decay after step steps (1-based): base^every * (steps / total)^3.
double airbench94_lookahead_decay(std::int64_t steps, std::int64_t total_steps,
                                  const Airbench94Hyperparameters& hyp = {});

}  // namespace cifar10
