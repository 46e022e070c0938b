// A network with its training recipe, as the CIFAR-10 sample's --net chooses: seed,
// airbench94 or resnet18. The driver (main.cpp, train_loop.cpp) runs every recipe the same
// way: initialise on the training images, then train_step for each batch, end_epoch after
// each epoch, finish, and evaluate; save_state/load_state make checkpoints.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <cuda_runtime_api.h>

#include <strata/core/config.h>
#include <strata/core/dtype.h>
#include <strata/core/engine.h>
#include <strata/core/tensor.h>
#include <strata/kernels/conv2d.h>
#include <strata/layers/module.h>

#include "device_images.h"

namespace cifar10 {

// How train_step runs the step (--graph; step_graph.h): every op eagerly; forward, loss,
// backward and optimizer step recorded once as a host graph (strata/core/graph.h) and replayed
// over graph_streams streams; or that graph captured as one CUDA graph, one launch a step.
enum class GraphMode : std::uint8_t { off, replay, cuda };
// The build's default: one CUDA graph a step on a GPU (no launch or host overhead per kernel);
// host-graph replay in the simulator, where a launch costs nothing next to a simulated kernel
// and replay is the cheaper path that still records, schedules and checks the same graph.
inline constexpr GraphMode kDefaultGraphMode = STRATA_BACKEND_SIM != 0 ? GraphMode::replay : GraphMode::cuda;
// "off", "replay", "cuda".
std::string_view graph_mode_name(GraphMode mode) noexcept;
// The mode of a name; throws std::invalid_argument listing the names otherwise.
GraphMode graph_mode_from_name(std::string_view name);

struct RecipeOptions {
  int batch_size = 0;        // 0: the recipe's own (airbench94: 1024)
  double epochs = 0;         // 0: the recipe's own (airbench94: 9.9)
  double lr_scale = 1.0;     // --lr: multiplies the recipe's learning rates
  std::uint64_t seed = 0;
  std::optional<strata::Engine> engine = std::nullopt;  // none: the process default
  GraphMode graph = GraphMode::off;  // how train_step runs (the driver's default: kDefaultGraphMode)
  int graph_streams = 2;             // streams a replay runs on (GraphMode::replay and cuda), >= 1
  // --conv-math: every Conv2d's math (fp32, or tf32/bf16 on tensor cores: strata/kernels/conv2d.h).
  strata::kernels::ConvMath conv_math = strata::kernels::ConvMath::fp32;
  // --precision: the autocast dtype of the forward and the loss (strata/core/autocast.h), bf16
  // or f16; none: f32 throughout. f16 adds dynamic loss scaling (optim::GradScaler).
  std::optional<strata::DType> precision = std::nullopt;
  // --channels-last: the memory format of the images the network gets (training batches and
  // evaluation chunks); every op keeps its input's format from there (docs/kernels.md).
  strata::MemoryFormat memory_format = strata::MemoryFormat::contiguous;
};

struct StepResult {
  strata::Tensor loss;     // () f32 on the device: the step's loss as the recipe reports it (mean per image)
  strata::Tensor correct;  // () i64 or f32 on the device: how many of the batch were classified right
};

class Recipe {
 public:
  virtual ~Recipe() = default;
  virtual std::string_view name() const = 0;
  virtual strata::nn::Module& model() = 0;
  virtual int batch_size() const = 0;
  // Whether the loader leaves out each epoch's last partial batch (airbench94: yes); the
  // EpochLoader must be built with this, since the schedules count on it.
  virtual bool drop_last() const = 0;
  virtual AugmentOptions augment_options() const = 0;
  // How the loader should store the training batches: as the network's first layer reads them.
  virtual BatchStorage batch_storage() const = 0;
  // Steps in the whole run, for the schedules, given the loader's batches per epoch. The run
  // ends after this many steps, possibly inside its last epoch (airbench94: 9.9 epochs).
  virtual std::int64_t total_steps(std::int64_t batches_per_epoch) const = 0;
  // Before training: data-dependent initialisation (airbench94's whitening), timed with the
  // run; also sets the schedules for train.count() images (batch_size(), drop_last()), so it
  // comes before the first train_step. A resume may skip it: load_state restores all of it.
  virtual void initialise(const DeviceImages& train, cudaStream_t stream) = 0;
  // One optimisation step on batch; step counts from 0 over the whole run, one more each
  // call (a step out of turn is a std::logic_error).
  virtual StepResult train_step(const Batch& batch, std::int64_t step, cudaStream_t stream) = 0;
  // The loss train_step minimises, of logits (B, 10) against labels (B) i64, as a () tensor
  // with gradients (its reduction the recipe's): for diagnostics such as the parity report.
  virtual strata::Tensor training_loss(const strata::Tensor& logits, const strata::Tensor& labels) = 0;
  // After each epoch (counted from 0); the recipes keep no per-epoch state of their own.
  virtual void end_epoch(int epoch) = 0;
  // After the last step (airbench94: the weights become the lookahead average).
  virtual void finish(cudaStream_t stream) = 0;
  // Logits (N, 10) f32 of normalised images (N, 3, 32, 32), in eval mode, without gradients;
  // tta: airbench's six-view test-time augmentation where the recipe has it.
  virtual strata::Tensor evaluate_logits(const strata::Tensor& images, bool tta, cudaStream_t stream) = 0;
  // Checkpoints: everything a resume needs (weights, buffers, optimizer and schedule state,
  // lookahead averages, the step that comes next) in one file written atomically
  // (strata/layers/training_state.h); load_state restores it all or nothing and returns the
  // next step. A file of another recipe or shape is a clear error.
  virtual void save_state(const std::filesystem::path& file, std::int64_t next_step, cudaStream_t stream) = 0;
  virtual std::int64_t load_state(const std::filesystem::path& file, cudaStream_t stream) = 0;
};

// "seed", "airbench94" or "resnet18"; throws std::invalid_argument listing those otherwise.
std::unique_ptr<Recipe> make_recipe(std::string_view net, const RecipeOptions& options);

}  // namespace cifar10
