// --runs and --warmup (repeated_runs.h): the loop over seeds and the statistics of its runs.
#include "repeated_runs.h"

#include <cmath>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "text_files.h"

namespace cifar10 {

namespace {

using nlohmann::ordered_json;

// Summary fields over all runs; TTA accuracies only when every run has one.
std::vector<double> training_seconds(std::span<const RunSummary> runs) {
  std::vector<double> values;
  for (const RunSummary& run : runs) values.push_back(run.training_seconds);
  return values;
}
std::vector<double> test_accuracies(std::span<const RunSummary> runs) {
  std::vector<double> values;
  for (const RunSummary& run : runs) values.push_back(run.test_accuracy);
  return values;
}
std::vector<double> tta_accuracies(std::span<const RunSummary> runs) {
  std::vector<double> values;
  for (const RunSummary& run : runs) {
    if (!run.test_accuracy_tta) return {};
    values.push_back(*run.test_accuracy_tta);
  }
  return values;
}

ordered_json statistic_json(std::span<const double> values) {
  if (values.empty()) return nullptr;
  const MeanAndStd statistic = mean_and_std(values);
  return {{"mean", statistic.mean}, {"std", statistic.std}};
}

std::filesystem::path with_suffix(const std::filesystem::path& file, const std::string& suffix) {
  std::filesystem::path stem = file;
  if (file.extension() == ".csv" || file.extension() == ".json") stem.replace_extension();
  stem += suffix;
  return stem;
}

}  // namespace

MeanAndStd mean_and_std(std::span<const double> values) {
  if (values.empty()) throw std::invalid_argument("mean_and_std: no values");
  double sum = 0;
  for (const double value : values) sum += value;
  const double mean = sum / static_cast<double>(values.size());
  double squares = 0;
  for (const double value : values) squares += (value - mean) * (value - mean);
  return {mean, std::sqrt(squares / static_cast<double>(values.size()))};
}

std::vector<RunMetrics> run_repeated(const TrainOptions& options, const DataSets& data, int runs, bool warmup,
                                     std::FILE* out) {
  if (runs < 1) throw std::invalid_argument("--runs " + std::to_string(runs) + ": at least 1");
  TrainOptions run_options = options;
  if (warmup) {
    run_options.seed = options.seed + static_cast<std::uint64_t>(runs);
    std::fprintf(out, "warm-up run (seed %llu, not reported)\n", static_cast<unsigned long long>(run_options.seed));
    run_training(run_options, data, out);
  }
  std::vector<RunMetrics> results;
  for (int i = 0; i < runs; ++i) {
    run_options.seed = options.seed + static_cast<std::uint64_t>(i);
    std::fprintf(out, "\nrun %d of %d (seed %llu)\n", i + 1, runs, static_cast<unsigned long long>(run_options.seed));
    results.push_back(run_training(run_options, data, out));
  }
  std::vector<RunSummary> summaries;
  for (const RunMetrics& result : results) summaries.push_back(result.summary);
  std::fprintf(out, "\n%s", format_runs_summary(summaries).c_str());
  std::fflush(out);
  return results;
}

std::string format_runs_summary(std::span<const RunSummary> runs) {
  const MeanAndStd seconds = mean_and_std(training_seconds(runs));
  const MeanAndStd accuracy = mean_and_std(test_accuracies(runs));
  char text[256];
  std::snprintf(text, sizeof text, "mean of %zu run%s: training %.3f s (std %.3f), test accuracy %.2f%% (std %.2f%%)",
                runs.size(), runs.size() == 1 ? "" : "s", seconds.mean, seconds.std, 100 * accuracy.mean,
                100 * accuracy.std);
  std::string line = text;
  if (const std::vector<double> tta = tta_accuracies(runs); !tta.empty()) {
    const MeanAndStd with_tta = mean_and_std(tta);
    std::snprintf(text, sizeof text, ", with TTA %.2f%% (std %.2f%%)", 100 * with_tta.mean, 100 * with_tta.std);
    line += text;
  }
  return line + '\n';
}

std::string runs_json(std::span<const RunSummary> runs) {
  ordered_json each = ordered_json::array();
  for (const RunSummary& run : runs) each.push_back(ordered_json::parse(summary_json_text(run)));
  const ordered_json document = {
      {"runs", each},
      {"mean",
       {{"training_seconds", statistic_json(training_seconds(runs))},
        {"test_accuracy", statistic_json(test_accuracies(runs))},
        {"test_accuracy_tta", statistic_json(tta_accuracies(runs))}}}};
  return document.dump(2) + '\n';
}

std::vector<std::filesystem::path> write_runs_metrics(std::span<const RunMetrics> runs,
                                                      const std::filesystem::path& file) {
  std::vector<std::filesystem::path> written;
  std::vector<RunSummary> summaries;
  for (const RunMetrics& run : runs) {
    const std::filesystem::path run_file = with_suffix(file, "-seed" + std::to_string(run.summary.seed));
    write_metrics(run, run_file);
    const MetricsPaths paths = metrics_paths(run_file);
    written.push_back(paths.csv);
    written.push_back(paths.json);
    summaries.push_back(run.summary);
  }
  std::filesystem::path summary = with_suffix(file, "-runs");
  summary += ".json";
  write_text_file(summary, runs_json(summaries));
  written.push_back(summary);
  return written;
}

}  // namespace cifar10
