#include "metrics.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "text_files.h"

namespace cifar10 {

namespace {

using nlohmann::ordered_json;

template <typename T>
ordered_json optional_json(const std::optional<T>& value) {
  return value ? ordered_json(*value) : ordered_json(nullptr);
}

// Nine significant digits: every f32 (the device's losses are f32) reads back exactly.
std::string number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", value);
  return text;
}

ordered_json summary_json(const RunSummary& summary) {
  return {
      {"net", summary.net},
      {"engine", summary.engine},
      {"graph", summary.graph},
      {"precision", summary.precision},
      {"conv_math", summary.conv_math},
      {"conv_tile", summary.conv_tile},
      {"data", summary.data},
      {"simulator", summary.simulator},
      {"deterministic", summary.deterministic},
      {"seed", summary.seed},
      {"batch_size", summary.batch_size},
      {"train_images", summary.train_images},
      {"test_images", summary.test_images},
      {"steps", summary.steps},
      {"total_steps", summary.total_steps},
      {"resumed_from_step", summary.resumed_from_step},
      {"stopped_by_time_limit", summary.stopped_by_time_limit},
      {"training_seconds", summary.training_seconds},
      {"test_accuracy", summary.test_accuracy},
      {"test_accuracy_tta", optional_json(summary.test_accuracy_tta)},
      {"target_accuracy", optional_json(summary.target_accuracy)},
      {"time_to_target_seconds", optional_json(summary.time_to_target_seconds)},
      {"peak_device_memory_bytes", summary.peak_device_memory_bytes},
  };
}

}  // namespace

MetricsPaths metrics_paths(const std::filesystem::path& file) {
  std::filesystem::path stem = file;
  if (file.extension() == ".csv" || file.extension() == ".json") stem.replace_extension();
  std::filesystem::path csv = stem, json = stem;
  csv += ".csv";
  json += ".json";
  return {csv, json};
}

std::string metrics_csv(const std::vector<StepRecord>& steps) {
  std::string text = "step,epoch,loss,train_accuracy,images_per_second,elapsed_seconds\n";
  for (const StepRecord& row : steps) {
    text += std::to_string(row.step) + ',' + std::to_string(row.epoch) + ',' + number(row.loss) + ',' +
            number(row.train_accuracy) + ',' + number(row.images_per_second) + ',' + number(row.elapsed_seconds) +
            '\n';
  }
  return text;
}

std::string metrics_json(const RunMetrics& metrics) {
  ordered_json steps = ordered_json::array();
  for (const StepRecord& row : metrics.steps) {
    steps.push_back({{"step", row.step},
                     {"epoch", row.epoch},
                     {"loss", row.loss},
                     {"train_accuracy", row.train_accuracy},
                     {"images_per_second", row.images_per_second},
                     {"elapsed_seconds", row.elapsed_seconds}});
  }
  ordered_json epochs = ordered_json::array();
  for (const EpochRecord& row : metrics.epochs) {
    epochs.push_back({{"epoch", row.epoch},
                      {"step", row.step},
                      {"elapsed_seconds", row.elapsed_seconds},
                      {"test_accuracy", optional_json(row.test_accuracy)}});
  }
  const ordered_json document = {{"summary", summary_json(metrics.summary)}, {"steps", steps}, {"epochs", epochs}};
  return document.dump(2) + '\n';
}

MeanAndStd mean_and_std(std::span<const double> values) {
  if (values.empty()) throw std::invalid_argument("mean_and_std: no values");
  double sum = 0;
  for (const double value : values) sum += value;
  const double mean = sum / static_cast<double>(values.size());
  double squares = 0;
  for (const double value : values) squares += (value - mean) * (value - mean);
  return {mean, std::sqrt(squares / static_cast<double>(values.size()))};
}

RunsStatistics runs_statistics(std::span<const RunSummary> runs) {
  std::vector<double> seconds, accuracies, tta;
  for (const RunSummary& run : runs) {
    seconds.push_back(run.training_seconds);
    accuracies.push_back(run.test_accuracy);
    if (run.test_accuracy_tta) tta.push_back(*run.test_accuracy_tta);
  }
  RunsStatistics statistics{.runs = runs.size(),
                            .training_seconds = mean_and_std(seconds),
                            .test_accuracy = mean_and_std(accuracies),
                            .test_accuracy_tta = std::nullopt};
  if (tta.size() == runs.size()) statistics.test_accuracy_tta = mean_and_std(tta);
  return statistics;
}

std::string runs_json(std::span<const RunSummary> runs) {
  const auto statistic_json = [](const MeanAndStd& statistic) {
    return ordered_json{{"mean", statistic.mean}, {"std", statistic.std}};
  };
  ordered_json each = ordered_json::array();
  for (const RunSummary& run : runs) each.push_back(summary_json(run));
  const RunsStatistics statistics = runs_statistics(runs);
  const ordered_json document = {
      {"runs", each},
      {"mean",
       {{"training_seconds", statistic_json(statistics.training_seconds)},
        {"test_accuracy", statistic_json(statistics.test_accuracy)},
        {"test_accuracy_tta", statistics.test_accuracy_tta ? statistic_json(*statistics.test_accuracy_tta)
                                                           : ordered_json(nullptr)}}}};
  return document.dump(2) + '\n';
}

void write_metrics(const RunMetrics& metrics, const std::filesystem::path& file) {
  const MetricsPaths paths = metrics_paths(file);
  write_text_file(paths.csv, metrics_csv(metrics.steps));
  write_text_file(paths.json, metrics_json(metrics));
}

}  // namespace cifar10
