// The CIFAR-10 sample's training run, callable from main() and from tests: load the images,
// build the recipe, train it epoch by epoch with a live progress line, checkpoints and an
// optional time limit, then evaluate on the test set and return what was measured.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <strata/core/dtype.h>
#include <strata/core/engine.h>
#include <strata/kernels/conv2d.h>

#include "cifar10_files.h"
#include "metrics.h"
#include "profiling.h"
#include "recipe.h"

namespace cifar10 {

struct TrainOptions {
  std::string net = "airbench94";
  std::string data_flag;   // --data; empty: STRATA_CIFAR10_DIR (cifar10::locate_batches_dir)
  bool synthetic = false;  // a generated set instead of CIFAR-10 (synthetic_images.h)
  double epochs = 0;       // 0: the recipe's own
  int batch_size = 0;      // 0: the recipe's own
  double lr_scale = 1.0;
  std::uint64_t seed = 0;
  std::optional<strata::Engine> engine;  // none: the process default (STRATA_ENGINE)
  bool deterministic = false;
  GraphMode graph = kDefaultGraphMode;  // --graph: how each training step runs
  int graph_streams = 2;                // --graph-streams: what a replay runs on
  strata::kernels::ConvMath conv_math = strata::kernels::ConvMath::fp32;  // --conv-math
  // --conv-tile: the block tile of the channels-last tensor-core convs (process-wide).
  strata::kernels::Conv2dTensorCoreTile conv_tile = strata::kernels::Conv2dTensorCoreTile::automatic;
  std::optional<strata::DType> precision;  // --precision: the autocast dtype; none: f32
  // --channels-last: the network's input, hence its activations, channels-last.
  strata::MemoryFormat memory_format = strata::MemoryFormat::contiguous;
  std::int64_t train_subset = 0;  // balanced subset of the training set; 0: all of it
  std::int64_t test_subset = 0;   // ... of the test set
  double time_limit_seconds = 0;  // stop training after this much training time; 0: none
  int stop_after_epochs = 0;      // stop after this many epochs in this run (to resume later); 0: none
  bool tta = true;                // also evaluate with the recipe's test-time augmentation
  std::optional<double> target_accuracy;  // in [0, 1]: evaluate at epoch ends, report time to it
  std::filesystem::path checkpoint_dir;   // empty: no checkpoints
  bool resume = false;                    // continue from checkpoint_dir's latest checkpoint
  std::optional<StepWindow> profile_steps;
  int log_every = 10;  // steps between readbacks of loss and accuracy (and progress updates)
  bool interactive = false;  // progress line rewritten in place (stdout is a terminal)
  std::vector<std::string> args;  // the command line, for checkpoint sidecars
};

struct DataSets {
  HostImages train;
  HostImages test;
  std::string source;  // the folder read, or "synthetic"
};

// Images per set in --synthetic mode, before --subset and --test-subset.
inline constexpr std::int64_t kSyntheticTrainImages = 10000;
inline constexpr std::int64_t kSyntheticTestImages = 2000;

// The training and test sets as options ask: CIFAR-10 from options.data_flag or
// STRATA_CIFAR10_DIR, or the synthetic set, cut to balanced subsets. Throws
// std::runtime_error with what to do when the data is missing or a subset is too large.
DataSets load_data_sets(const TrainOptions& options);

// Trains and evaluates; progress and the final summary go to out. Throws std::exception
// (Strata's errors, std::runtime_error with what to change) when the run cannot go on.
RunMetrics run_training(const TrainOptions& options, const DataSets& data, std::FILE* out);

// The summary's lines as printed at the end of a run.
std::string format_summary(const RunSummary& summary);

}  // namespace cifar10
