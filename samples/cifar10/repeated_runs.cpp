// --runs and --warmup (repeated_runs.h): the loop over seeds and the statistics of its runs.
#include "repeated_runs.h"

#include <stdexcept>

#include "text_files.h"

namespace cifar10 {

namespace {

std::filesystem::path with_suffix(const std::filesystem::path& file, const std::string& suffix) {
  std::filesystem::path stem = file;
  if (file.extension() == ".csv" || file.extension() == ".json") stem.replace_extension();
  stem += suffix;
  return stem;
}

}  // namespace

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
  const RunsStatistics statistics = runs_statistics(runs);
  char text[256];
  std::snprintf(text, sizeof text, "mean of %zu run%s: training %.3f s (std %.3f), test accuracy %.2f%% (std %.2f%%)",
                statistics.runs, statistics.runs == 1 ? "" : "s", statistics.training_seconds.mean,
                statistics.training_seconds.std, 100 * statistics.test_accuracy.mean,
                100 * statistics.test_accuracy.std);
  std::string line = text;
  if (statistics.test_accuracy_tta) {
    std::snprintf(text, sizeof text, ", with TTA %.2f%% (std %.2f%%)", 100 * statistics.test_accuracy_tta->mean,
                  100 * statistics.test_accuracy_tta->std);
    line += text;
  }
  return line + '\n';
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
