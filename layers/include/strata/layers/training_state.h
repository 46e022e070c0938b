// The training-state file, for an exact resume: one safetensors file (strata/core/
// safetensors.h) holding the optimizer's state tensors and, as text in its "__metadata__",
// the optimizer's hyperparameters and step counts, the schedule and its position, the random
// generator's seed and offset, the global step and where the loop is in the data. The
// model's weights go in a file of their own (save_safetensors of its state_dict()), so that
// evaluation and fine-tuning read them without the training state.
//
//   // Save (both writes are atomic):
//   save_safetensors("model.safetensors", model.state_dict(), stream);
//   optim::save_training_state("train.safetensors", {.optimizer = sgd, .scheduler = &scheduler},
//                              {.global_step = step, .data_position = {{"epoch", "3"}, {"batch", "17"}}});
//   // Resume, after building the model, optimizer and scheduler as before:
//   load_safetensors_into("model.safetensors", model.state_dict(), stream);
//   optim::TrainingProgress progress =
//       optim::load_training_state("train.safetensors", {.optimizer = sgd, .scheduler = &scheduler});
//
// Loading validates the whole file against the live objects before changing any of them: a
// truncated or corrupt file, a missing or extra entry, a shape that differs, a schedule that
// does not parse is an IoError listing every difference, and nothing is changed.
//
// File layout: tensors "optimizer.<name>" (OptimizerState::tensors) and "tensors.<name>"
// (TrainingState::tensors); metadata "format" ("strata.training_state.v1"), "global_step",
// "optimizer.<key>" (OptimizerState::metadata), "scheduler.schedule" and "scheduler.step"
// (lr::Scheduler::state_dict), "generator.seed" and "generator.offset", "data.<key>".
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include <cuda_runtime_api.h>

#include "strata/core/generator.h"
#include "strata/core/safetensors.h"
#include "strata/core/stream.h"
#include "strata/layers/lr_schedule.h"
#include "strata/layers/optimizer.h"

namespace strata::optim {

// Where the training loop is: saved with the state, returned by the load.
struct TrainingProgress {
  std::int64_t global_step = 0;  // >= 0
  // Caller-defined, e.g. {{"epoch", "3"}, {"batch", "17"}}.
  std::map<std::string, std::string> data_position = {};
};

// The live objects a training-state file saves and restores.
struct TrainingState {
  Optimizer& optimizer;
  lr::Scheduler* scheduler = nullptr;           // none: the file holds no schedule
  Generator* generator = &default_generator();  // none: the file holds no generator state
  // More tensors to save and restore in place, e.g. ExponentialMovingAverage::state_dict().
  NamedTensors tensors = {};
};

// Writes the state and progress to path atomically (path holds its old contents or the
// complete new file). Device tensors are copied on stream, which is then synchronised.
// Throws IoError when the file cannot be written, InvalidArgument for two state.tensors of
// one name or a negative global step.
void save_training_state(const std::filesystem::path& path, const TrainingState& state,
                         const TrainingProgress& progress, cudaStream_t stream);
inline void save_training_state(const std::filesystem::path& path, const TrainingState& state,
                                const TrainingProgress& progress) {
  save_training_state(path, state, progress, current_stream());
}

// Restores the optimizer (Optimizer::load_state_dict), the scheduler, the generator and
// state.tensors (in place) from path, and returns the saved progress. The file must hold
// exactly what state names: a scheduler and a generator state if and only if state has them.
// Copies to the device are queued on stream.
TrainingProgress load_training_state(const std::filesystem::path& path, const TrainingState& state,
                                     cudaStream_t stream);
inline TrainingProgress load_training_state(const std::filesystem::path& path, const TrainingState& state) {
  return load_training_state(path, state, current_stream());
}

}  // namespace strata::optim
