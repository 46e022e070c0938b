// strata_cifar10 --parity-report: the recipe's network, initialised on the training images as
// for training (airbench94's whitening is real), compared layer by layer on two engines on one
// training batch with the recipe's loss (strata/layers/engine_parity.h); no training.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

#include <strata/core/engine.h>
#include <strata/layers/engine_parity.h>

#include "train_loop.h"

namespace cifar10 {

// --parity-engines A,B: A is the reference (its outputs and gradients feed the next layers),
// B the candidate.
struct ParityEngines {
  strata::Engine reference = strata::Engine::custom;
  strata::Engine candidate = strata::Engine::cudnn;
};

// "custom,cudnn" and the like (engine names as strata::engine_from_name reads them); throws
// std::invalid_argument quoting text and saying what is wrong otherwise.
ParityEngines parse_parity_engines(const std::string& text);

// What the report was made on, for the metrics JSON.
struct ParityRun {
  std::string net;
  std::string engine_after;  // the model's engine as chosen (--engine, or the process default)
  std::string data;
  bool simulator = false;
  std::uint64_t seed = 0;
  int batch_size = 0;
  std::int64_t train_images = 0;
  strata::nn::EngineParityReport report;
};

// Builds options.net's recipe, initialises it on data.train, takes batch 0 of epoch 0 from the
// training loader (augmented and normalised as training sees it) and runs the report on it
// with the recipe's training loss; prints a heading, a note where the candidate needs a cuDNN
// that is absent, and the table to out. Throws std::exception when the run cannot go on (a
// candidate engine that fails is a row of the report, not an error).
ParityRun run_parity_report(const TrainOptions& options, const DataSets& data, const ParityEngines& engines,
                            std::FILE* out);

// {"parity_report": {run..., "reference", "candidate", "input_shape", "worst_rel", "layers":
// [{"path", "type", "summary", "error", "tensors": [{"name", "max_abs", "max_rel",
// "reference_max_abs", "problem"}]}]}}, indented; an infinite difference (a failed or
// impossible comparison) is null.
std::string parity_json(const ParityRun& run);

// Writes parity_json to metrics_paths(file).json (atomically; no CSV: there are no steps) and
// returns that path. Throws std::runtime_error naming the file that could not be written.
std::filesystem::path write_parity_metrics(const ParityRun& run, const std::filesystem::path& file);

}  // namespace cifar10
