// strata_cifar10 --runs N [--warmup]: the same configuration trained N times from scratch
// with seeds --seed, --seed + 1, ..., each run reported as a single run is, then the mean and
// the standard deviation of the training times and accuracies: what an accuracy target over
// several seeds and a time comparison with the PyTorch reference (its --seeds, which also
// warms up first) are read from.
#pragma once

#include <cstdio>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "metrics.h"
#include "train_loop.h"

namespace cifar10 {

// runs runs of options on data, seeds options.seed + i; with warmup first an unreported run
// with seed options.seed + runs. Progress and each run's summary go to out. Throws what
// run_training throws.
std::vector<RunMetrics> run_repeated(const TrainOptions& options, const DataSets& data, int runs, bool warmup,
                                     std::FILE* out);

// "mean of 10 runs: training 3.512 s (std 0.021), test accuracy 93.91% (std 0.14%), with TTA
// 94.05% (std 0.12%)" (the TTA part only when every run has it).
std::string format_runs_summary(std::span<const RunSummary> runs);

// --metrics FILE with --runs: each run's files as FILE-seedS (metrics_paths), and
// FILE-runs.json. Returns the paths written, the summary's last.
std::vector<std::filesystem::path> write_runs_metrics(std::span<const RunMetrics> runs,
                                                      const std::filesystem::path& file);

}  // namespace cifar10
