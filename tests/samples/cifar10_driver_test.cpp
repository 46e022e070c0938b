// The CIFAR-10 sample's driver (samples/cifar10): metrics files, the SVG plot, checkpoint
// sidecars, the synthetic set, the command line, and the training loop itself on the
// synthetic set in the simulator: that it learns, and that a run stopped after one epoch
// and resumed from its checkpoint ends bit-identical to an uninterrupted run.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <strata/core/engine.h>

#include "samples/cifar10/checkpoint.h"
#include "samples/cifar10/metrics.h"
#include "samples/cifar10/parity_report.h"
#include "samples/cifar10/plot.h"
#include "samples/cifar10/progress.h"
#include "samples/cifar10/synthetic_images.h"
#include "samples/cifar10/text_files.h"
#include "samples/cifar10/train_loop.h"
#include "tests/samples/cifar10_driver_support.h"

namespace cifar10 {
namespace {

namespace fs = std::filesystem;

// A fresh folder under the system's temporary folder, removed at the end of the test.
class TemporaryFolder {
 public:
  explicit TemporaryFolder(const std::string& name)
      : path_(fs::temp_directory_path() / ("strata_cifar10_" + name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TemporaryFolder() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string read_bytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

RunMetrics sample_metrics() {
  RunMetrics metrics;
  metrics.summary.net = "seed";
  metrics.summary.engine = "custom";
  metrics.summary.data = "synthetic";
  metrics.summary.seed = 7;
  metrics.summary.batch_size = 64;
  metrics.summary.steps = 30;
  metrics.summary.total_steps = 40;
  metrics.summary.training_seconds = 12.5;
  metrics.summary.test_accuracy = 0.8125;
  metrics.summary.test_accuracy_tta = 0.8250;
  for (int i = 1; i <= 3; ++i) {
    metrics.steps.push_back({.step = 10 * i,
                             .epoch = i - 1,
                             .loss = 2.5 / i,
                             .train_accuracy = 0.25 * i,
                             .images_per_second = 1000.0 + i,
                             .elapsed_seconds = 4.0 * i});
    metrics.epochs.push_back({.epoch = i - 1,
                              .step = 10 * i,
                              .elapsed_seconds = 4.0 * i,
                              .test_accuracy = i == 2 ? std::optional<double>(0.5) : std::nullopt});
  }
  return metrics;
}

// --- metrics ---

TEST(Cifar10Metrics, PathsReplaceACsvOrJsonExtensionAndAppendOtherwise) {
  EXPECT_EQ(metrics_paths("run").csv, fs::path("run.csv"));
  EXPECT_EQ(metrics_paths("run").json, fs::path("run.json"));
  EXPECT_EQ(metrics_paths("out/run.csv").json, fs::path("out/run.json"));
  EXPECT_EQ(metrics_paths("out/run.json").csv, fs::path("out/run.csv"));
  EXPECT_EQ(metrics_paths("run.v2").csv, fs::path("run.v2.csv"));
}

TEST(Cifar10Metrics, CsvHasAHeaderAndARowPerRecordThatReadBack) {
  const RunMetrics metrics = sample_metrics();
  std::istringstream csv(metrics_csv(metrics.steps));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "step,epoch,loss,train_accuracy,images_per_second,elapsed_seconds");
  for (const StepRecord& expected : metrics.steps) {
    ASSERT_TRUE(std::getline(csv, line));
    long long step = 0;
    int epoch = 0;
    double loss = 0, accuracy = 0, speed = 0, elapsed = 0;
    ASSERT_EQ(std::sscanf(line.c_str(), "%lld,%d,%lf,%lf,%lf,%lf", &step, &epoch, &loss, &accuracy, &speed, &elapsed),
              6)
        << line;
    EXPECT_EQ(step, expected.step);
    EXPECT_EQ(epoch, expected.epoch);
    EXPECT_NEAR(loss, expected.loss, 1e-8);
    EXPECT_NEAR(accuracy, expected.train_accuracy, 1e-8);
    EXPECT_NEAR(speed, expected.images_per_second, 1e-5);
    EXPECT_NEAR(elapsed, expected.elapsed_seconds, 1e-8);
  }
  EXPECT_FALSE(std::getline(csv, line));
}

TEST(Cifar10Metrics, JsonHoldsTheSummaryTheSeriesAndNullForWhatWasNotMeasured) {
  const RunMetrics metrics = sample_metrics();
  const nlohmann::json json = nlohmann::json::parse(metrics_json(metrics));
  EXPECT_EQ(json.at("summary").at("net"), "seed");
  EXPECT_EQ(json.at("summary").at("steps"), 30);
  EXPECT_DOUBLE_EQ(json.at("summary").at("test_accuracy").get<double>(), 0.8125);
  EXPECT_DOUBLE_EQ(json.at("summary").at("test_accuracy_tta").get<double>(), 0.8250);
  EXPECT_TRUE(json.at("summary").at("time_to_target_seconds").is_null());
  ASSERT_EQ(json.at("steps").size(), 3u);
  EXPECT_EQ(json.at("steps")[2].at("step"), 30);
  EXPECT_DOUBLE_EQ(json.at("steps")[0].at("loss").get<double>(), 2.5);
  ASSERT_EQ(json.at("epochs").size(), 3u);
  EXPECT_TRUE(json.at("epochs")[0].at("test_accuracy").is_null());
  EXPECT_DOUBLE_EQ(json.at("epochs")[1].at("test_accuracy").get<double>(), 0.5);
}

TEST(Cifar10Metrics, WritesBothFilesCreatingTheFolder) {
  const TemporaryFolder folder("metrics");
  write_metrics(sample_metrics(), folder.path() / "deep" / "run.json");
  EXPECT_EQ(read_bytes(folder.path() / "deep" / "run.csv"), metrics_csv(sample_metrics().steps));
  EXPECT_EQ(read_bytes(folder.path() / "deep" / "run.json"), metrics_json(sample_metrics()));
  EXPECT_FALSE(fs::exists(folder.path() / "deep" / "run.json.tmp"));
}

TEST(Cifar10Metrics, AnUnwritableFileIsAnErrorNamingIt) {
  const TemporaryFolder folder("unwritable");
  const fs::path blocker = folder.path() / "file";
  write_text_file(blocker, "not a folder");
  try {
    write_text_file(blocker / "run.csv", "x");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find((blocker / "run.csv").string()), std::string::npos) << error.what();
  }
}

// --- plot ---

TEST(Cifar10Plot, TicksAreRoundNumbersCoveringTheRange) {
  EXPECT_EQ(axis_ticks(0, 100, 5), (std::vector<double>{0, 20, 40, 60, 80, 100}));
  EXPECT_EQ(axis_ticks(0, 480, 6), (std::vector<double>{0, 100, 200, 300, 400, 500}));
  const std::vector<double> small = axis_ticks(0.13, 2.31, 5);
  EXPECT_LE(small.front(), 0.13);
  EXPECT_GE(small.back(), 2.31);
  EXPECT_DOUBLE_EQ(small[1] - small[0], 0.5);
  EXPECT_GE(axis_ticks(3, 3, 5).size(), 2u);  // a flat range still has an axis
}

// Checks that svg is well-formed XML in the subset the plot writes: a declaration, then
// elements whose tags nest and close in order, attributes quoted; returns the element names
// in document order, or an empty list with the reason in failure.
std::vector<std::string> parse_svg_elements(const std::string& svg, std::string& failure) {
  std::vector<std::string> names, open;
  std::size_t at = svg.find("?>");
  if (!svg.starts_with("<?xml") || at == std::string::npos) {
    failure = "no XML declaration";
    return {};
  }
  at += 2;
  while ((at = svg.find('<', at)) != std::string::npos) {
    const std::size_t end = svg.find('>', at);
    if (end == std::string::npos) {
      failure = "unterminated tag at " + std::to_string(at);
      return {};
    }
    std::string tag = svg.substr(at + 1, end - at - 1);
    at = end + 1;
    if (tag.starts_with('/')) {
      if (open.empty() || open.back() != tag.substr(1)) {
        failure = "</" + tag.substr(1) + "> closes " + (open.empty() ? "nothing" : "<" + open.back() + ">");
        return {};
      }
      open.pop_back();
      continue;
    }
    const bool self_closing = tag.ends_with('/');
    if (self_closing) tag.pop_back();
    const std::string name = tag.substr(0, tag.find(' '));
    if (std::count(tag.begin(), tag.end(), '"') % 2 != 0) {
      failure = "unbalanced quotes in <" + tag + ">";
      return {};
    }
    names.push_back(name);
    if (!self_closing) open.push_back(name);
  }
  if (!open.empty()) failure = "<" + open.back() + "> is never closed";
  return failure.empty() ? names : std::vector<std::string>{};
}

TEST(Cifar10Plot, SvgIsWellFormedWithAxesCurvesAndLabels) {
  const std::string svg = plot_svg(sample_metrics());
  std::string failure;
  const std::vector<std::string> elements = parse_svg_elements(svg, failure);
  ASSERT_TRUE(failure.empty()) << failure << "\n" << svg;
  ASSERT_FALSE(elements.empty());
  EXPECT_EQ(elements.front(), "svg");
  EXPECT_EQ(std::count(elements.begin(), elements.end(), "polyline"), 2);  // loss, training accuracy
  EXPECT_EQ(std::count(elements.begin(), elements.end(), "circle"), 2);    // one epoch's test accuracy, the final
  EXPECT_GE(std::count(elements.begin(), elements.end(), "line"), 10);     // grid lines and legend
  for (const char* label : {">step<", ">loss (mean per image)<", ">accuracy (%)<", "81.25%", "82.50% with TTA"}) {
    EXPECT_NE(svg.find(label), std::string::npos) << label;
  }
  EXPECT_EQ(svg.find("nan"), std::string::npos);
}

TEST(Cifar10Plot, EmptyAndDivergedRunsStillGiveAWellFormedPlot) {
  RunMetrics metrics;
  metrics.summary.net = "a<b&c";  // escaped
  std::string failure;
  EXPECT_FALSE(parse_svg_elements(plot_svg(metrics), failure).empty()) << failure;
  EXPECT_NE(plot_svg(metrics).find("a&lt;b&amp;c"), std::string::npos);
  metrics = sample_metrics();
  metrics.steps[1].loss = std::nan("");
  const std::string svg = plot_svg(metrics);
  EXPECT_FALSE(parse_svg_elements(svg, failure).empty()) << failure;
  EXPECT_EQ(svg.find("nan"), std::string::npos);
}

// --- checkpoint sidecars ---

CheckpointInfo sample_checkpoint(std::int64_t next_step) {
  return {.net = "seed",
          .seed = 3,
          .batch_size = 64,
          .train_images = 1000,
          .batches_per_epoch = 15,
          .total_steps = 45,
          .next_step = next_step,
          .epoch = static_cast<int>(next_step / 15),
          .training_seconds = 1.5,
          .deterministic = true,
          .args = {"strata_cifar10", "--net", "seed"}};
}

TEST(Cifar10Checkpoint, TheLatestCompletePairIsFoundAndOlderPairsRemoved) {
  const TemporaryFolder folder("checkpoint");
  EXPECT_FALSE(find_latest_checkpoint(folder.path()));
  EXPECT_FALSE(find_latest_checkpoint(folder.path() / "missing"));
  for (const std::int64_t step : {15, 30}) {
    write_text_file(checkpoint_state_file(folder.path(), step), "state");
    write_checkpoint_sidecar(folder.path(), sample_checkpoint(step));
  }
  EXPECT_FALSE(fs::exists(checkpoint_state_file(folder.path(), 15)));
  EXPECT_FALSE(fs::exists(checkpoint_sidecar_file(folder.path(), 15)));
  // A state file without its sidecar (a crash between the two writes) is not a checkpoint.
  write_text_file(checkpoint_state_file(folder.path(), 45), "state");
  const std::optional<CheckpointInfo> latest = find_latest_checkpoint(folder.path());
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->next_step, 30);
  EXPECT_EQ(latest->epoch, 2);
  EXPECT_EQ(latest->net, "seed");
  EXPECT_EQ(latest->seed, 3u);
  EXPECT_EQ(latest->args, sample_checkpoint(30).args);
  EXPECT_DOUBLE_EQ(latest->training_seconds, 1.5);
  const nlohmann::json sidecar = nlohmann::json::parse(read_text_file(checkpoint_sidecar_file(folder.path(), 30)));
  EXPECT_EQ(sidecar.at("state_file"), checkpoint_state_file(folder.path(), 30).filename().string());
}

TEST(Cifar10Checkpoint, ACorruptSidecarIsAnErrorNamingItAndTheWayOut) {
  const TemporaryFolder folder("corrupt");
  write_text_file(checkpoint_state_file(folder.path(), 15), "state");
  write_text_file(checkpoint_sidecar_file(folder.path(), 15), "{\"format\": ");
  try {
    find_latest_checkpoint(folder.path());
    FAIL() << "expected an error";
  } catch (const std::runtime_error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find(checkpoint_sidecar_file(folder.path(), 15).string()), std::string::npos) << message;
    EXPECT_NE(message.find("start afresh"), std::string::npos) << message;
  }
}

TEST(Cifar10Checkpoint, MismatchesNameTheFlagAndBothValues) {
  EXPECT_TRUE(resume_mismatches(sample_checkpoint(15), sample_checkpoint(0)).empty());
  CheckpointInfo now = sample_checkpoint(0);
  now.seed = 4;
  now.net = "resnet18";
  const std::vector<std::string> mismatches = resume_mismatches(sample_checkpoint(15), now);
  ASSERT_EQ(mismatches.size(), 2u);
  EXPECT_EQ(mismatches[0], "--net: the checkpoint has seed, this run resnet18");
  EXPECT_EQ(mismatches[1], "--seed: the checkpoint has 3, this run 4");
}

// --- synthetic images, progress ---

TEST(Cifar10Synthetic, BalancedReproducibleAndDifferentPerSeed) {
  const HostImages a = make_synthetic_images(200, 1), b = make_synthetic_images(200, 1);
  const HostImages c = make_synthetic_images(200, 2);
  ASSERT_EQ(a.count(), 200);
  ASSERT_EQ(a.pixels.size(), 200 * kImageBytes);
  EXPECT_EQ(a.pixels, b.pixels);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_NE(a.pixels, c.pixels);
  std::map<int, int> per_class;
  for (const std::uint8_t label : a.labels) ++per_class[label];
  ASSERT_EQ(per_class.size(), 10u);
  for (const auto& [label, count] : per_class) EXPECT_EQ(count, 20) << "class " << label;
}

TEST(Cifar10Progress, TheLineSaysEpochStepSpeedLossAccuracyAndTime) {
  EXPECT_EQ(format_progress({.epoch = 2,
                             .epochs = 10,
                             .step = 120,
                             .total_steps = 480,
                             .images_per_second = 52310.4,
                             .loss = 1.23456,
                             .train_accuracy = 0.567,
                             .elapsed_seconds = 12.34}),
            "epoch  3/10  step   120/480    52310 img/s  loss 1.2346  train acc  56.7%  12.3 s");
}

// --- the command line ---

#ifdef STRATA_HAVE_CIFAR10_CLI
using testing::parse;

TEST(Cifar10CommandLine, FlagsFillTheOptions) {
  const ParseOutcome outcome = parse({"--net", "resnet18", "--epochs", "2.5", "--batch-size", "128", "--lr", "0.5",
                                      "--seed", "9", "--engine", "cudnn", "--deterministic", "--checkpoint", "ck",
                                      "--resume", "--subset", "5000", "--test-subset", "1000", "--time-limit", "30",
                                      "--no-tta", "--target-accuracy", "94", "--metrics", "m", "--plot", "p.svg",
                                      "--profile-steps", "10:20", "--synthetic", "--graph", "cuda", "--graph-streams",
                                      "3", "--conv-math", "bf16"});
  ASSERT_TRUE(outcome.command_line) << outcome.message;
  const TrainOptions& options = outcome.command_line->options;
  EXPECT_EQ(options.net, "resnet18");
  EXPECT_EQ(options.epochs, 2.5);
  EXPECT_EQ(options.batch_size, 128);
  EXPECT_EQ(options.lr_scale, 0.5);
  EXPECT_EQ(options.seed, 9u);
  EXPECT_EQ(options.engine, strata::Engine::cudnn);
  EXPECT_TRUE(options.deterministic);
  EXPECT_EQ(options.checkpoint_dir, fs::path("ck"));
  EXPECT_TRUE(options.resume);
  EXPECT_EQ(options.train_subset, 5000);
  EXPECT_EQ(options.test_subset, 1000);
  EXPECT_EQ(options.time_limit_seconds, 30);
  EXPECT_FALSE(options.tta);
  ASSERT_TRUE(options.target_accuracy);
  EXPECT_DOUBLE_EQ(*options.target_accuracy, 0.94);
  ASSERT_TRUE(options.profile_steps);
  EXPECT_EQ(options.profile_steps->first, 10);
  EXPECT_EQ(options.profile_steps->last, 20);
  EXPECT_EQ(options.conv_math, strata::kernels::ConvMath::bf16);
  EXPECT_TRUE(options.synthetic);
  EXPECT_EQ(options.graph, GraphMode::cuda);
  EXPECT_EQ(options.graph_streams, 3);
  EXPECT_EQ(outcome.command_line->metrics_file, fs::path("m"));
  EXPECT_EQ(outcome.command_line->plot_file, fs::path("p.svg"));
  EXPECT_TRUE(outcome.command_line->net_given);
  ASSERT_EQ(options.args.size(), 39u);  // the program's name and 38 arguments
  EXPECT_EQ(options.args[1], "--net");
}

TEST(Cifar10CommandLine, BadValuesAreErrorsThatSayWhatIsWrong) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--net", "vgg"}, "vgg"},
      {{"--engine", "tensorrt"}, "tensorrt"},
      {{"--epochs", "-1"}, "--epochs"},
      {{"--batch-size", "zero"}, "--batch-size"},
      {{"--profile-steps", "20:10"}, "A:B with A < B"},
      {{"--profile-steps", "5"}, "--profile-steps"},
      {{"--resume"}, "--checkpoint"},
      {{"--synthetic", "--data", "x"}, "--data"},
      {{"--target-accuracy", "140"}, "--target-accuracy"},
      {{"--min-test-accuracy", "-5"}, "--min-test-accuracy"},
      {{"--parity-engines", "custom,auto"}, "--parity-report"},
      {{"--parity-report", "--parity-engines", "custom,tensorrt"}, "'tensorrt' is not an engine"},
      {{"--parity-report", "--parity-engines", "cudnn"}, "separated by a comma"},
      {{"--parity-report", "--parity-engines", "auto,auto"}, "the same"},
      {{"--graph", "warp"}, "--graph"},
      {{"--conv-math", "fp16"}, "--conv-math"},
      {{"--precision", "fp8"}, "--precision"},
      {{"--graph-streams", "0"}, "--graph-streams"},
      {{"--no-such-flag"}, "no-such-flag"},
  };
  for (const auto& [args, expected] : cases) {
    const ParseOutcome outcome = parse(args);
    EXPECT_FALSE(outcome.command_line) << args[0];
    EXPECT_NE(outcome.exit_code, 0) << args[0];
    EXPECT_NE(outcome.message.find(expected), std::string::npos) << args[0] << ": " << outcome.message;
    EXPECT_NE(outcome.message.find("--help"), std::string::npos) << outcome.message;
  }
}

// --precision sets the autocast dtype and, unless --conv-math is given, tensor-core math.
TEST(Cifar10CommandLine, PrecisionChoosesAutocastAndTensorCoresUnlessConvMathIsGiven) {
  ParseOutcome outcome = parse({});
  ASSERT_TRUE(outcome.command_line) << outcome.message;
  EXPECT_EQ(outcome.command_line->options.precision, std::nullopt);
  EXPECT_EQ(outcome.command_line->options.conv_math, strata::kernels::ConvMath::fp32);

  outcome = parse({"--precision", "bf16"});
  ASSERT_TRUE(outcome.command_line) << outcome.message;
  EXPECT_EQ(outcome.command_line->options.precision, strata::DType::bf16);
  EXPECT_EQ(outcome.command_line->options.conv_math, strata::kernels::ConvMath::bf16);

  outcome = parse({"--precision", "f16", "--conv-math", "fp32"});
  ASSERT_TRUE(outcome.command_line) << outcome.message;
  EXPECT_EQ(outcome.command_line->options.precision, strata::DType::f16);
  EXPECT_EQ(outcome.command_line->options.conv_math, strata::kernels::ConvMath::fp32);

  outcome = parse({"--precision", "f32"});
  ASSERT_TRUE(outcome.command_line) << outcome.message;
  EXPECT_EQ(outcome.command_line->options.precision, std::nullopt);
}

// --conv-tile fixes the channels-last tensor-core tile; automatic by default.
TEST(Cifar10CommandLine, ConvTileChoosesTheTensorCoreBlockTile) {
  ParseOutcome outcome = parse({});
  ASSERT_TRUE(outcome.command_line) << outcome.message;
  EXPECT_EQ(outcome.command_line->options.conv_tile, strata::kernels::Conv2dTensorCoreTile::automatic);
  for (const strata::kernels::Conv2dTensorCoreTile tile :
       {strata::kernels::Conv2dTensorCoreTile::m64n64, strata::kernels::Conv2dTensorCoreTile::m128n128,
        strata::kernels::Conv2dTensorCoreTile::m128n64, strata::kernels::Conv2dTensorCoreTile::m128n128_wgmma,
        strata::kernels::Conv2dTensorCoreTile::m128n128_wgmma_tma}) {
    const std::string name(strata::kernels::to_string(tile));
    outcome = parse({"--conv-tile", name});
    ASSERT_TRUE(outcome.command_line) << name << ": " << outcome.message;
    EXPECT_EQ(outcome.command_line->options.conv_tile, tile) << name;
  }
  outcome = parse({"--conv-tile", "96x96"});
  EXPECT_FALSE(outcome.command_line);
  EXPECT_NE(outcome.message.find("--conv-tile"), std::string::npos) << outcome.message;
}

TEST(Cifar10CommandLine, ParityReportAndMinimumAccuracyFlags) {
  ParseOutcome outcome = parse({"--parity-report", "--parity-engines", "cudnn,custom", "--min-test-accuracy", "20"});
  ASSERT_TRUE(outcome.command_line) << outcome.message;
  EXPECT_TRUE(outcome.command_line->parity_report);
  EXPECT_EQ(outcome.command_line->parity_engines.reference, strata::Engine::cudnn);
  EXPECT_EQ(outcome.command_line->parity_engines.candidate, strata::Engine::custom);
  ASSERT_TRUE(outcome.command_line->min_test_accuracy);
  EXPECT_DOUBLE_EQ(*outcome.command_line->min_test_accuracy, 0.2);

  outcome = parse({"--parity-report"});
  ASSERT_TRUE(outcome.command_line) << outcome.message;
  EXPECT_EQ(outcome.command_line->parity_engines.reference, strata::Engine::custom);
  EXPECT_EQ(outcome.command_line->parity_engines.candidate, strata::Engine::cudnn);
  EXPECT_FALSE(outcome.command_line->min_test_accuracy);
  EXPECT_NE(apply_simulator_defaults(*outcome.command_line).find("the parity report"), std::string::npos);
}

TEST(Cifar10CommandLine, HelpExitsZeroAndSimulatorDefaultsFillOnlyWhatWasNotGiven) {
  const ParseOutcome help = parse({"--help"});
  EXPECT_FALSE(help.command_line);
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.message.find("--profile-steps"), std::string::npos);

  ParseOutcome outcome = parse({"--subset", "500", "--tta"});
  ASSERT_TRUE(outcome.command_line);
  const std::string banner = apply_simulator_defaults(*outcome.command_line);
  EXPECT_NE(banner.find("simulator"), std::string::npos);
  EXPECT_NE(banner.find("--net seed --test-subset 1000 --batch-size 32 --epochs 2 --time-limit 150"),
            std::string::npos)
      << banner;
  const TrainOptions& options = outcome.command_line->options;
  EXPECT_EQ(options.net, "seed");
  EXPECT_EQ(options.train_subset, 500);
  EXPECT_TRUE(options.tta);
  EXPECT_EQ(options.test_subset, kSimulatorTestSubset);
  EXPECT_EQ(options.batch_size, kSimulatorBatchSize);
  EXPECT_EQ(options.epochs, kSimulatorEpochs);
  EXPECT_EQ(options.time_limit_seconds, kSimulatorTimeLimitSeconds);
  EXPECT_EQ(options.graph, kDefaultGraphMode);  // the build's, simulator or not

  outcome = parse({"--net", "seed", "--subset", "0", "--test-subset", "0", "--batch-size", "256", "--epochs", "5",
                   "--no-tta", "--time-limit", "0"});
  ASSERT_TRUE(outcome.command_line);
  EXPECT_EQ(apply_simulator_defaults(*outcome.command_line), "");
  EXPECT_EQ(outcome.command_line->options.train_subset, 0);
}
#endif

// --- the training loop ---

using testing::small_run;

TEST(Cifar10TrainLoop, LearnsTheSyntheticSetAndReportsTheRun) {
  TrainOptions options = small_run();
  options.train_subset = 192;
  options.batch_size = 16;
  options.log_every = 4;
  options.target_accuracy = 0.5;
  const DataSets data = load_data_sets(options);
  ASSERT_EQ(data.train.count(), 192);
  ASSERT_EQ(data.test.count(), 24);
  const RunMetrics metrics = run_training(options, data, stdout);
  EXPECT_EQ(metrics.summary.steps, 24);
  EXPECT_EQ(metrics.summary.total_steps, 24);
  EXPECT_EQ(metrics.steps.size(), 6u);  // every 4 steps; epochs end at 12 and 24
  ASSERT_EQ(metrics.epochs.size(), 2u);
  ASSERT_TRUE(metrics.epochs[1].test_accuracy);
  EXPECT_GT(metrics.summary.test_accuracy, 0.5);
  EXPECT_TRUE(metrics.summary.time_to_target_seconds);
  EXPECT_GT(metrics.summary.peak_device_memory_bytes, 0u);
  EXPECT_GT(metrics.summary.training_seconds, 0);
  EXPECT_LT(metrics.steps.back().loss, metrics.steps.front().loss);
}

TEST(Cifar10TrainLoop, ATimeLimitStopsTrainingButNotTheEvaluation) {
  TrainOptions options = small_run();
  options.time_limit_seconds = 1e-3;  // up before the first step has run
  options.tta = true;
  const RunMetrics metrics = run_training(options, load_data_sets(options), stdout);
  EXPECT_TRUE(metrics.summary.stopped_by_time_limit);
  EXPECT_EQ(metrics.summary.steps, 1);
  ASSERT_EQ(metrics.steps.size(), 1u);  // the interval was read back before stopping
  EXPECT_TRUE(metrics.epochs.empty());
  EXPECT_GE(metrics.summary.test_accuracy, 0.0);
  EXPECT_TRUE(metrics.summary.test_accuracy_tta);
}

TEST(Cifar10TrainLoop, TooLargeASubsetIsAnErrorSayingTheLimit) {
  TrainOptions options = small_run();
  options.train_subset = kSyntheticTrainImages + 1;
  try {
    load_data_sets(options);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("--subset"), std::string::npos) << error.what();
  }
}

// --- the parity report ---

TEST(Cifar10Parity, EnginesAreReferenceThenCandidate) {
  const ParityEngines engines = parse_parity_engines("auto,CUDNN");
  EXPECT_EQ(engines.reference, strata::Engine::automatic);
  EXPECT_EQ(engines.candidate, strata::Engine::cudnn);
  EXPECT_THROW(parse_parity_engines(""), std::invalid_argument);
  EXPECT_THROW(parse_parity_engines("custom,cudnn,auto"), std::invalid_argument);
  EXPECT_THROW(parse_parity_engines("custom,"), std::invalid_argument);
}

// The seed network's nine layers, in forward order.
const std::vector<std::string> kSeedLayerTypes = {"Conv2d", "ReLU",      "MaxPool2d",         "Conv2d", "ReLU",
                                                  "MaxPool2d", "AdaptiveAvgPool2d", "Flatten", "Linear"};

// Custom against auto: where cuDNN is absent auto falls back to the same kernels, so every
// layer agrees exactly; on a GPU auto is cuDNN, and the layers agree within fp32 rounding.
TEST(Cifar10Parity, CustomAgainstAutoHasARowPerLayerAndTheJsonHoldsThem) {
  TrainOptions options = small_run();
  const TemporaryFolder folder("parity");
  const ParityRun run = run_parity_report(options, load_data_sets(options),
                                          {.reference = strata::Engine::custom, .candidate = strata::Engine::automatic},
                                          stdout);
  ASSERT_EQ(run.report.layers.size(), kSeedLayerTypes.size());
  for (std::size_t i = 0; i < kSeedLayerTypes.size(); ++i) {
    const strata::nn::LayerParity& layer = run.report.layers[i];
    EXPECT_EQ(layer.path, std::to_string(i));
    EXPECT_EQ(layer.type, kSeedLayerTypes[i]);
    EXPECT_EQ(layer.error, "") << layer.path;
    ASSERT_GE(layer.tensors.size(), 2u) << layer.path;  // output and dL_dx at least
    EXPECT_LT(layer.worst_rel(), strata::cudnn_available() ? 1e-3 : 1e-300) << layer.path;
  }
  EXPECT_EQ(run.report.input_shape, (strata::Shape{16, 3, 32, 32}));
  EXPECT_EQ(run.net, "seed");
  EXPECT_EQ(run.batch_size, 16);

  const fs::path json_file = write_parity_metrics(run, folder.path() / "parity.csv");
  EXPECT_EQ(json_file, folder.path() / "parity.json");
  const nlohmann::json json = nlohmann::json::parse(read_text_file(json_file))["parity_report"];
  EXPECT_EQ(json["net"], "seed");
  EXPECT_EQ(json["reference"], "custom");
  EXPECT_EQ(json["candidate"], "auto");
  EXPECT_EQ(json["input_shape"], nlohmann::json({16, 3, 32, 32}));
  ASSERT_EQ(json["layers"].size(), kSeedLayerTypes.size());
  EXPECT_EQ(json["layers"][8]["type"], "Linear");
  EXPECT_EQ(json["layers"][8]["tensors"][2]["name"], "weight.grad");
  EXPECT_TRUE(json["layers"][8]["tensors"][2]["max_rel"].is_number());
}

// Where cuDNN is absent, custom against cudnn is still a report: the layers with a cuDNN path
// hold its refusal (null in the JSON), the others their zeros.
TEST(Cifar10Parity, ACandidateThatFailsIsARowOfTheReport) {
  if (strata::cudnn_available()) GTEST_SKIP() << "cuDNN is available here";
  TrainOptions options = small_run();
  const ParityRun run = run_parity_report(options, load_data_sets(options), {}, stdout);
  ASSERT_EQ(run.report.layers.size(), kSeedLayerTypes.size());
  EXPECT_NE(run.report.layers[0].error.find("cuDNN"), std::string::npos) << run.report.layers[0].error;
  EXPECT_EQ(run.report.layers[8].error, "");  // Linear has no cuDNN path
  const nlohmann::json json = nlohmann::json::parse(parity_json(run))["parity_report"];
  EXPECT_TRUE(json["worst_rel"].is_null());
  EXPECT_TRUE(json["layers"][0]["worst_rel"].is_null());
  EXPECT_TRUE(json["layers"][0]["tensors"].empty());
  EXPECT_EQ(json["layers"][8]["worst_rel"], 0.0);
}

TEST(Cifar10TrainLoop, AResumedRunEndsBitIdenticalToAnUninterruptedOne) {
  const TemporaryFolder straight("straight"), interrupted("interrupted");
  TrainOptions options = small_run();
  const DataSets data = load_data_sets(options);

  options.checkpoint_dir = straight.path();
  const RunMetrics uninterrupted = run_training(options, data, stdout);

  options.checkpoint_dir = interrupted.path();
  options.stop_after_epochs = 1;
  const RunMetrics first_half = run_training(options, data, stdout);
  EXPECT_EQ(first_half.summary.steps, 3);
  options.stop_after_epochs = 0;
  options.resume = true;
  const RunMetrics second_half = run_training(options, data, stdout);
  EXPECT_EQ(second_half.summary.resumed_from_step, 3);
  EXPECT_EQ(second_half.summary.steps, 6);

  // Every step's loss and accuracy, bit for bit (a metrics row per step).
  ASSERT_EQ(uninterrupted.steps.size(), 6u);
  ASSERT_EQ(first_half.steps.size() + second_half.steps.size(), 6u);
  for (std::size_t i = 0; i < 6; ++i) {
    const StepRecord& resumed = i < 3 ? first_half.steps[i] : second_half.steps[i - 3];
    EXPECT_EQ(resumed.step, uninterrupted.steps[i].step);
    EXPECT_EQ(resumed.loss, uninterrupted.steps[i].loss) << "step " << i;
    EXPECT_EQ(resumed.train_accuracy, uninterrupted.steps[i].train_accuracy) << "step " << i;
  }
  EXPECT_EQ(second_half.summary.test_accuracy, uninterrupted.summary.test_accuracy);
  // The last checkpoints hold the same weights, optimizer and schedule state, byte for byte.
  const std::string straight_state = read_bytes(checkpoint_state_file(straight.path(), 6));
  ASSERT_FALSE(straight_state.empty());
  EXPECT_TRUE(straight_state == read_bytes(checkpoint_state_file(interrupted.path(), 6)));
}

}  // namespace
}  // namespace cifar10
