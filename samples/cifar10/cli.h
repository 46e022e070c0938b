// strata_cifar10's command line (CLI11): flags into TrainOptions, errors as actionable
// messages, and the simulator build's short-run defaults.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "parity_report.h"
#include "train_loop.h"

namespace cifar10 {

struct CommandLine {
  TrainOptions options;
  std::filesystem::path metrics_file;  // empty: none
  std::filesystem::path plot_file;     // empty: none
  // --parity-report: the engine parity report on one training batch instead of training.
  bool parity_report = false;
  ParityEngines parity_engines;  // --parity-engines
  // --min-test-accuracy: exit 1 when the final test accuracy (without TTA) is below this
  // fraction in [0, 1], after writing metrics and plot (a check for CI).
  std::optional<double> min_test_accuracy;
  // --runs: train this many times, seeds --seed, --seed + 1, ..., and report the mean and
  // spread (repeated_runs.h); --warmup: an unreported run first.
  int runs = 1;
  bool warmup = false;
  // Which of the flags that the simulator defaults were given explicitly.
  bool net_given = false;
  bool subset_given = false;
  bool test_subset_given = false;
  bool batch_size_given = false;
  bool epochs_given = false;
  bool tta_given = false;
  bool time_limit_given = false;
};

// The command line parsed, or (for --help, or an error) nothing: then exit_code says how to
// exit (0 for --help) and message what to print (help text, or the error and a hint).
struct ParseOutcome {
  std::optional<CommandLine> command_line;
  int exit_code = 0;
  std::string message;
};
ParseOutcome parse_command_line(int argc, const char* const* argv);

// The simulator build's defaults (no GPU: every kernel runs on the CPU's simulated threads,
// some 30-70 images a second for the seed network on 2 cores), for the flags not given
// explicitly: the seed network's whole schedule on a subset in about two minutes, without
// test-time augmentation (six times the evaluation), bounded by a time limit.
inline constexpr const char* kSimulatorNet = "seed";
inline constexpr std::int64_t kSimulatorTrainSubset = 2000;
inline constexpr std::int64_t kSimulatorTestSubset = 1000;
inline constexpr int kSimulatorBatchSize = 32;
inline constexpr double kSimulatorEpochs = 2;
inline constexpr double kSimulatorTimeLimitSeconds = 150;
// Applies them; returns the banner that says which and why, empty when no flag changed.
std::string apply_simulator_defaults(CommandLine& command_line);

}  // namespace cifar10
