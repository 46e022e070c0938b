#include "recipe_common.h"

#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include <strata/core/autocast.h>
#include <strata/core/autograd.h>
#include <strata/core/generator.h>
#include <strata/core/safetensors.h>
#include <strata/layers/functional.h>
#include <strata/layers/modules.h>
#include <strata/layers/training_state.h>

namespace cifar10 {

namespace nn = strata::nn;
namespace F = strata::F;
namespace lr = strata::lr;
namespace optim = strata::optim;
using strata::Tensor;

namespace {

// Checkpoint metadata (the training-state file's "data.<key>"): which recipe wrote it, and
// the run length its schedules were made for.
constexpr const char* kRecipeKey = "recipe";
constexpr const char* kBatchesPerEpochKey = "batches_per_epoch";
constexpr const char* kTotalStepsKey = "total_steps";
// Images per evaluation forward: bounds the activations of the largest network.
constexpr std::int64_t kEvaluationChunk = 2000;

}  // namespace

std::int64_t batches_per_epoch(std::int64_t images, int batch_size, bool drop_last) {
  return drop_last ? images / batch_size : (images + batch_size - 1) / batch_size;
}

SgdRecipe::SgdRecipe(const Setup& setup, const RecipeOptions& options)
    : name_(setup.name),
      options_(options),
      batch_size_(options.batch_size > 0 ? options.batch_size : setup.batch_size),
      epochs_(options.epochs > 0 ? options.epochs : setup.epochs),
      drop_last_(setup.drop_last),
      loss_fn_(setup.loss),
      loss_options_(setup.loss),
      scheduler_(lr::constant_lr({.factor = 1.0, .total_iters = 0})),
      step_graph_(std::make_unique<StepGraph>(options.graph, options.graph_streams)) {
  if (options.lr_scale <= 0 || !std::isfinite(options.lr_scale)) {
    throw std::invalid_argument("recipe " + name_ + ": the learning-rate scale must be positive, not " +
                                std::to_string(options.lr_scale));
  }
  if (options.precision && *options.precision != strata::DType::bf16 && *options.precision != strata::DType::f16) {
    throw std::invalid_argument("recipe " + name_ + ": the precision must be bf16 or f16 (or none for f32), not " +
                                std::string(strata::dtype_name(*options.precision)));
  }
  if (options.precision == strata::DType::f16) scaler_ = std::make_unique<optim::GradScaler>();
  strata::manual_seed(options.seed);  // the initial weights, and any later draw
}

namespace {

// Sets the math of every Conv2d below module.
void set_conv_math(nn::Module& module, strata::kernels::ConvMath math) {
  for (const auto& [name, child] : module.named_children()) {
    if (auto* conv = dynamic_cast<nn::Conv2d*>(child.get())) conv->set_math(math);
    set_conv_math(*child, math);
  }
}

}  // namespace

void SgdRecipe::set_net(nn::Sequential net) {
  net_ = std::make_unique<nn::Sequential>(std::move(net));
  if (options_.engine) net_->set_engine(*options_.engine);
  set_conv_math(*net_, options_.conv_math);
}

void SgdRecipe::set_optimizer(std::unique_ptr<optim::SGD> optimizer) { optimizer_ = std::move(optimizer); }

std::int64_t SgdRecipe::total_steps(std::int64_t batches_per_epoch) const {
  return static_cast<std::int64_t>(std::ceil(static_cast<double>(batches_per_epoch) * epochs_));
}

void SgdRecipe::initialise(const DeviceImages& train, cudaStream_t /*stream*/) {
  const std::int64_t batches = batches_per_epoch(train.count(), batch_size_, drop_last_);
  if (batches < 1) {
    throw std::invalid_argument("recipe " + name_ + ": no batch of " + std::to_string(batch_size_) + " fits " +
                                std::to_string(train.count()) + " training images (drop_last " +
                                (drop_last_ ? "on" : "off") + ")");
  }
  batches_per_epoch_ = batches;
  total_steps_ = total_steps(batches);
  scheduler_ = lr::Scheduler(make_schedule(total_steps_));
}

Tensor SgdRecipe::loss_per_image(const Tensor& loss, std::int64_t batch) const {
  strata::autograd::NoGradGuard no_grad;
  if (loss_options_.reduction == strata::kernels::Reduction::sum) {
    return F::mul(loss.detach(), 1.0f / static_cast<float>(batch));
  }
  return loss.detach();
}

StepResult SgdRecipe::train_step(const Batch& batch, std::int64_t step, cudaStream_t stream) {
  if (total_steps_ == 0) {
    throw std::logic_error("recipe " + name_ + ": train_step before initialise or load_state");
  }
  if (step != scheduler_.steps_taken()) {
    throw std::logic_error("recipe " + name_ + ": train_step(" + std::to_string(step) + ") when step " +
                           std::to_string(scheduler_.steps_taken()) + " comes next");
  }
  strata::StreamGuard on_stream(stream, strata::current_device());
  before_step(step);
  // Outside the graph: the optimizer's device learning rates, which its recorded (and
  // captured) update launches read as they run, so the schedule needs no new recording.
  optimizer_->set_lr_factor(scheduler_.factor());
  // A partial batch (drop_last off) runs eagerly: one a epoch, not worth a graph of its own.
  const bool full_batch = batch.images.size(0) == batch_size_;
  const StepResult result = step_graph_->run(
      batch, phase_key(batch), full_batch && optimizer_state_ready(),
      [this, stream](const Batch& inputs) { return forward_backward_update(inputs, stream); }, stream);
  scheduler_.step();
  after_step(step, stream);
  return result;
}

BatchStorage SgdRecipe::batch_storage() const {
  return {.dtype = options_.precision.value_or(strata::DType::f32), .memory_format = options_.memory_format};
}

StepResult SgdRecipe::forward_backward_update(const Batch& batch, cudaStream_t stream) {
  optimizer_->zero_grad();
  Tensor logits, loss;
  {
    // The forward and the loss in the run's precision; the parameters stay f32 (their casts
    // give f32 gradients) and so does the loss.
    strata::AutocastGuard autocast(options_.precision);
    // The batch in the run's memory format: the loader writes it so (batch_storage()), and a
    // batch made otherwise gets a recorded copy (F::to_memory_format) that a step graph replays.
    logits = (*net_)(F::to_memory_format(batch.images, options_.memory_format));  // (B, 10)
    loss = training_loss(logits, batch.labels);
  }
  if (scaler_) {
    scaler_->scale(loss).backward();
    scaler_->step(*optimizer_, stream);  // skipped on the device when a gradient overflowed
    scaler_->update(stream);
  } else {
    loss.backward();
    optimizer_->step(stream);
  }
  return {.loss = loss_per_image(loss, batch.images.size(0)), .correct = count_correct(logits, batch.labels)};
}

std::string SgdRecipe::phase_key(const Batch& batch) const {
  std::string key = batch.images.to_string() + " " + batch.labels.shape().to_string() + " trains ";
  for (int group = 0; group < optimizer_->num_groups(); ++group) {
    for (const Tensor& parameter : optimizer_->params(group)) key += parameter.requires_grad() ? '1' : '0';
  }
  return key;
}

bool SgdRecipe::optimizer_state_ready() const {
  for (int group = 0; group < optimizer_->num_groups(); ++group) {
    const std::vector<Tensor>& parameters = optimizer_->params(group);
    for (std::size_t i = 0; i < parameters.size(); ++i) {
      if (parameters[i].requires_grad() && optimizer_->step_count(group, static_cast<int>(i)) == 0) return false;
    }
  }
  return true;
}

Tensor SgdRecipe::training_loss(const Tensor& logits, const Tensor& labels) { return loss_fn_(logits, labels); }

Tensor SgdRecipe::evaluate_logits(const Tensor& images, bool tta, cudaStream_t stream) {
  strata::StreamGuard on_stream(stream, strata::current_device());
  strata::autograd::NoGradGuard no_grad;
  strata::AutocastGuard autocast(options_.precision);
  net_->eval();
  std::vector<Tensor> chunks;
  try {
    for (std::int64_t first = 0; first < images.size(0); first += kEvaluationChunk) {
      const Tensor chunk = images.narrow(0, first, std::min(kEvaluationChunk, images.size(0) - first));
      // The network runs in the run's memory format; the test-time views are made from the
      // chunk as loaded (linear maps of NCHW rows, nets.cpp) and converted for the network.
      chunks.push_back(tta ? six_view_logits(*net_, chunk, views_, options_.memory_format)
                           : (*net_)(F::to_memory_format(chunk, options_.memory_format)));
    }
  } catch (...) {
    net_->train();
    throw;
  }
  net_->train();
  // f32 whatever the precision: autocast leaves the last linear layer's logits in its dtype.
  return F::to_dtype(chunks.size() == 1 ? chunks.front() : F::cat(chunks, 0), strata::DType::f32);
}

strata::NamedTensors SgdRecipe::state_tensors() const {
  strata::NamedTensors tensors;
  for (const auto& [key, tensor] : net_->state_dict()) tensors.emplace_back("model." + key, tensor);
  for (auto& extra : extra_state()) tensors.push_back(std::move(extra));
  if (scaler_) {
    for (auto& scaler_state : scaler_->state_tensors()) tensors.push_back(std::move(scaler_state));
  }
  return tensors;
}

void SgdRecipe::save_state(const std::filesystem::path& file, std::int64_t next_step, cudaStream_t stream) {
  optim::save_training_state(file, {.optimizer = *optimizer_, .scheduler = &scheduler_, .tensors = state_tensors()},
                             {.global_step = next_step,
                              .data_position = {{kRecipeKey, name_},
                                                {kBatchesPerEpochKey, std::to_string(batches_per_epoch_)},
                                                {kTotalStepsKey, std::to_string(total_steps_)}}},
                             stream);
}

std::int64_t SgdRecipe::load_state(const std::filesystem::path& file, cudaStream_t stream) {
  // Which recipe wrote the file, before the load compares tensors (whose differences would
  // say less). load_training_state then validates everything before changing anything.
  const strata::SafetensorsMetadata metadata = strata::read_safetensors_header(file).metadata;
  const auto metadata_entry = [&](const char* key) -> const std::string& {
    const auto found = metadata.find(std::string("data.") + key);
    if (found == metadata.end()) {
      throw std::runtime_error(file.string() + " is not a checkpoint of the CIFAR-10 sample (it has no data." + key +
                               " entry)");
    }
    return found->second;
  };
  const auto count = [&](const char* key) -> std::int64_t {
    const std::string& text = metadata_entry(key);
    std::size_t used = 0;
    std::int64_t value = -1;
    try {
      value = std::stoll(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != text.size() || value < 1) {
      throw std::runtime_error(file.string() + ": data." + key + " is not a positive count: '" + text + "'");
    }
    return value;
  };
  if (metadata_entry(kRecipeKey) != name_) {
    throw std::runtime_error(file.string() + " is a checkpoint of the recipe " + metadata_entry(kRecipeKey) +
                             ", not " + name_);
  }
  const std::int64_t saved_batches = count(kBatchesPerEpochKey), saved_total = count(kTotalStepsKey);
  // The optimizer's state becomes new tensors: a graph recorded before refers to the old ones.
  step_graph_->reset();
  const optim::TrainingProgress progress = optim::load_training_state(
      file, {.optimizer = *optimizer_, .scheduler = &scheduler_, .tensors = state_tensors()}, stream);
  batches_per_epoch_ = saved_batches;
  total_steps_ = saved_total;
  return progress.global_step;
}

std::unique_ptr<Recipe> make_recipe(std::string_view net, const RecipeOptions& options) {
  if (net == "seed") return make_seed_recipe(options);
  if (net == "airbench94") return make_airbench94_recipe(options);
  if (net == "resnet18") return make_resnet18_recipe(options);
  throw std::invalid_argument("unknown network '" + std::string(net) + "': choose seed, airbench94 or resnet18");
}

}  // namespace cifar10
