// What a CIFAR-10 run measured: a row per logged interval of steps, a row per epoch and the
// final summary, written as CSV (the rows, for spreadsheets and pandas) and JSON (everything,
// for scripts comparing runs). The files are written atomically.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace cifar10 {

// The steps since the previous row: their mean loss and training accuracy, and the speed.
struct StepRecord {
  std::int64_t step = 0;  // steps done so far, over the whole run (the row covers the steps before)
  int epoch = 0;          // from 0
  double loss = 0;        // mean per image over the interval
  double train_accuracy = 0;  // in [0, 1], over the interval's (augmented) training images
  double images_per_second = 0;
  double elapsed_seconds = 0;  // training time so far (evaluations and checkpoints excluded)
};

struct EpochRecord {
  int epoch = 0;
  std::int64_t step = 0;  // steps done at the end of the epoch
  double elapsed_seconds = 0;
  std::optional<double> test_accuracy;  // evaluated only for --target-accuracy
};

struct RunSummary {
  std::string net;
  std::string engine;  // "custom", "cudnn", "auto"
  std::string graph;   // how the steps ran (--graph): "off", "replay", "cuda"
  std::string precision = "f32";   // --precision: "f32", "bf16", "f16"
  std::string conv_math = "fp32";  // --conv-math: "fp32", "tf32", "bf16"
  std::string conv_tile = "automatic";  // --conv-tile: "automatic", "64x64", "128x128"
  std::string data;    // where the images came from: a folder, or "synthetic"
  bool simulator = false;
  bool deterministic = false;
  std::uint64_t seed = 0;
  int batch_size = 0;
  std::int64_t train_images = 0;
  std::int64_t test_images = 0;
  std::int64_t steps = 0;        // steps done at the end (over all resumed runs)
  std::int64_t total_steps = 0;  // steps the recipe's schedule has
  std::int64_t resumed_from_step = 0;
  bool stopped_by_time_limit = false;
  double training_seconds = 0;  // initialisation + steps + finish; evaluations and checkpoints excluded
  double test_accuracy = 0;     // in [0, 1], without test-time augmentation
  std::optional<double> test_accuracy_tta;
  std::optional<double> target_accuracy;
  std::optional<double> time_to_target_seconds;  // training time when the target was first reached
  std::size_t peak_device_memory_bytes = 0;
};

struct RunMetrics {
  RunSummary summary;
  std::vector<StepRecord> steps;
  std::vector<EpochRecord> epochs;
};

// The two files --metrics FILE names: FILE with its extension (if .csv or .json) replaced by
// .csv and .json; any other name gets both appended ("run" -> run.csv, run.json).
struct MetricsPaths {
  std::filesystem::path csv;
  std::filesystem::path json;
};
MetricsPaths metrics_paths(const std::filesystem::path& file);

// "step,epoch,loss,train_accuracy,images_per_second,elapsed_seconds" and a line per record.
std::string metrics_csv(const std::vector<StepRecord>& steps);
// The mean and the population standard deviation (numpy's std, as the PyTorch reference
// prints) of values; throws std::invalid_argument for none.
struct MeanAndStd {
  double mean = 0;
  double std = 0;
};
MeanAndStd mean_and_std(std::span<const double> values);

// What several runs of one configuration (strata_cifar10 --runs) report, over all of them; the
// TTA accuracy only when every run has one.
struct RunsStatistics {
  std::size_t runs = 0;
  MeanAndStd training_seconds;
  MeanAndStd test_accuracy;
  std::optional<MeanAndStd> test_accuracy_tta;
};
RunsStatistics runs_statistics(std::span<const RunSummary> runs);

// {"runs": [each run's summary, as metrics_json writes it], "mean": {"training_seconds":
// {"mean", "std"}, "test_accuracy": ..., "test_accuracy_tta": ... or null}}, indented.
std::string runs_json(std::span<const RunSummary> runs);
// {"summary": {...}, "steps": [{...}], "epochs": [{...}]}, indented; absent optionals are null.
std::string metrics_json(const RunMetrics& metrics);

// Writes both files; throws std::runtime_error naming the file that could not be written.
void write_metrics(const RunMetrics& metrics, const std::filesystem::path& file);

}  // namespace cifar10
