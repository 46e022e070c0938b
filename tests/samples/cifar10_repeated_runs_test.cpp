// strata_cifar10 --runs and --warmup (samples/cifar10/repeated_runs.h; the statistics are
// metrics.h's): the statistics and their text and JSON, the files --metrics writes, the
// command line's flags and conflicts, and the runs themselves on the synthetic set in the
// simulator: seeds in order, each run the single run of its seed bit for bit whatever ran
// before it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "samples/cifar10/repeated_runs.h"
#include "samples/cifar10/train_loop.h"
#include "tests/samples/cifar10_driver_support.h"

namespace cifar10 {
namespace {

namespace fs = std::filesystem;

RunSummary summary_of(std::uint64_t seed, double seconds, double accuracy, std::optional<double> tta) {
  RunSummary summary;
  summary.net = "seed";
  summary.seed = seed;
  summary.training_seconds = seconds;
  summary.test_accuracy = accuracy;
  summary.test_accuracy_tta = tta;
  return summary;
}

TEST(Cifar10Runs, MeanAndPopulationStandardDeviation) {
  const std::vector<double> values = {1.0, 2.0, 3.0, 4.0};
  const MeanAndStd statistic = mean_and_std(values);
  EXPECT_DOUBLE_EQ(statistic.mean, 2.5);
  EXPECT_DOUBLE_EQ(statistic.std, std::sqrt(1.25));  // numpy.std: divided by n
  const std::vector<double> one = {0.93};
  EXPECT_EQ(mean_and_std(one).std, 0.0);
  EXPECT_THROW(mean_and_std(std::vector<double>{}), std::invalid_argument);
}

TEST(Cifar10Runs, SummaryLineAndJsonHoldTheMeansAndEveryRun) {
  const std::vector<RunSummary> runs = {summary_of(3, 3.0, 0.93, 0.94), summary_of(4, 4.0, 0.95, 0.96)};
  EXPECT_EQ(format_runs_summary(runs),
            "mean of 2 runs: training 3.500 s (std 0.500), test accuracy 94.00% (std 1.00%), with TTA 95.00% "
            "(std 1.00%)\n");
  const nlohmann::json json = nlohmann::json::parse(runs_json(runs));
  ASSERT_EQ(json.at("runs").size(), 2u);
  EXPECT_EQ(json.at("runs")[1].at("seed"), 4);
  EXPECT_DOUBLE_EQ(json.at("mean").at("training_seconds").at("mean").get<double>(), 3.5);
  EXPECT_NEAR(json.at("mean").at("test_accuracy").at("std").get<double>(), 0.01, 1e-12);
  EXPECT_DOUBLE_EQ(json.at("mean").at("test_accuracy_tta").at("mean").get<double>(), 0.95);
  // Without TTA in every run there is no TTA mean.
  const std::vector<RunSummary> partly = {summary_of(3, 3.0, 0.93, 0.94), summary_of(4, 4.0, 0.95, std::nullopt)};
  EXPECT_EQ(format_runs_summary(partly).find("TTA"), std::string::npos);
  EXPECT_TRUE(nlohmann::json::parse(runs_json(partly)).at("mean").at("test_accuracy_tta").is_null());
}

TEST(Cifar10Runs, MetricsFilesPerSeedAndTheSummary) {
  const fs::path folder = fs::temp_directory_path() / ("strata_cifar10_runs_" + std::to_string(::getpid()));
  fs::remove_all(folder);
  std::vector<RunMetrics> runs(2);
  runs[0].summary = summary_of(7, 1.0, 0.5, std::nullopt);
  runs[1].summary = summary_of(8, 2.0, 0.7, std::nullopt);
  const std::vector<fs::path> written = write_runs_metrics(runs, folder / "ab94.json");
  const std::vector<fs::path> expected = {folder / "ab94-seed7.csv", folder / "ab94-seed7.json",
                                          folder / "ab94-seed8.csv", folder / "ab94-seed8.json",
                                          folder / "ab94-runs.json"};
  EXPECT_EQ(written, expected);
  for (const fs::path& file : expected) EXPECT_TRUE(fs::exists(file)) << file;
  fs::remove_all(folder);
}

#ifdef STRATA_HAVE_CIFAR10_CLI
TEST(Cifar10Runs, FlagsAndWhatTheyCannotBeCombinedWith) {
  ParseOutcome outcome = testing::parse({});
  ASSERT_TRUE(outcome.command_line) << outcome.message;
  EXPECT_EQ(outcome.command_line->runs, 1);
  EXPECT_FALSE(outcome.command_line->warmup);
  outcome = testing::parse({"--runs", "10", "--warmup", "--metrics", "m", "--min-test-accuracy", "93"});
  ASSERT_TRUE(outcome.command_line) << outcome.message;
  EXPECT_EQ(outcome.command_line->runs, 10);
  EXPECT_TRUE(outcome.command_line->warmup);
  using testing::parse;
  for (const auto& [args, expected] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--runs", "0"}, "--runs"},
           {{"--runs", "2", "--plot", "p.svg"}, "--plot"},
           {{"--runs", "2", "--checkpoint", "ck"}, "--checkpoint"},
           {{"--warmup", "--parity-report"}, "--parity-report"}}) {
    outcome = parse(args);
    EXPECT_FALSE(outcome.command_line) << args[0];
    EXPECT_NE(outcome.message.find(expected), std::string::npos) << outcome.message;
  }
}
#endif

// Two runs after a warm-up: seeds 5 and 6, each the bits of a lone run of its seed.
TEST(Cifar10Runs, EachRunIsTheLoneRunOfItsSeed) {
  TrainOptions options = testing::small_run();
  options.test_subset = 16;
  options.batch_size = 8;  // six steps in the one epoch
  options.epochs = 1;
  const DataSets data = load_data_sets(options);
  const std::vector<RunMetrics> runs = run_repeated(options, data, 2, /*warmup=*/true, stdout);
  ASSERT_EQ(runs.size(), 2u);
  for (std::size_t i = 0; i < runs.size(); ++i) {
    TrainOptions lone_options = options;
    lone_options.seed = options.seed + i;
    const RunMetrics lone = run_training(lone_options, data, stdout);
    EXPECT_EQ(runs[i].summary.seed, lone_options.seed);
    ASSERT_EQ(runs[i].steps.size(), lone.steps.size());
    for (std::size_t step = 0; step < lone.steps.size(); ++step) {
      EXPECT_EQ(runs[i].steps[step].loss, lone.steps[step].loss) << "run " << i << ", step " << step;
    }
    EXPECT_EQ(runs[i].summary.test_accuracy, lone.summary.test_accuracy) << "run " << i;
  }
  EXPECT_NE(runs[0].steps.back().loss, runs[1].steps.back().loss);  // different seeds, different runs
}

}  // namespace
}  // namespace cifar10
