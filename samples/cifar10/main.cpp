// strata_cifar10: trains seed, airbench94 or resnet18 on CIFAR-10 and prints the test
// accuracy (with and without test-time augmentation), the training time, the time to a
// target accuracy and the peak device memory; optionally checkpoints, resumes, writes
// metrics and a plot, and marks steps for Nsight; with --runs, trains several seeds and
// reports their mean; or, with --parity-report, compares two engines layer by layer on one
// batch instead of training. docs/cifar10.md describes the flags.
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <strata/core/config.h>
#include <strata/core/device.h>
#include <strata/core/engine.h>

#include "cli.h"
#include "parity_report.h"
#include "plot.h"
#include "profiling.h"
#include "repeated_runs.h"
#include "train_loop.h"

int main(int argc, char** argv) {
  using namespace cifar10;
  ParseOutcome parsed = parse_command_line(argc, argv);
  if (!parsed.command_line) {
    std::fputs(parsed.message.c_str(), parsed.exit_code == 0 ? stdout : stderr);
    return parsed.exit_code;
  }
  CommandLine& command_line = *parsed.command_line;
  TrainOptions& options = command_line.options;
  options.interactive = ::isatty(::fileno(stdout)) == 1;
  try {
#if STRATA_BACKEND_SIM
    if (const std::string banner = apply_simulator_defaults(command_line); !banner.empty()) {
      std::printf("%s\n\n", banner.c_str());
    }
#endif
    if (strata::device_count() == 0) {
      throw std::runtime_error("no CUDA device: nvidia-smi should list a GPU. Without one, build Strata's simulator "
                               "flavour (-DSTRATA_BACKEND=sim, or samples/main-job.sh does it for you)");
    }
    if (options.engine == strata::Engine::cudnn && !strata::cudnn_available()) {
      throw std::runtime_error("--engine cudnn: cuDNN is not available here (" +
                               std::string(strata::cudnn_unavailable_reason()) +
                               "); use --engine custom, or --engine auto to fall back to Strata's kernels");
    }
    if (options.profile_steps && !profiler_control_available()) {
      std::printf("--profile-steps: the simulator build has no CUDA profiler; the flag does nothing here\n");
    }
    std::printf("device %s\n", strata::describe(strata::device_properties()).c_str());
    strata::kernels::set_conv2d_tensor_core_tile(options.conv_tile);
    const DataSets data = load_data_sets(options);
    if (command_line.parity_report) {
      // A report, not a test: a candidate that fails is a row of it, and the exit is 0.
      const ParityRun run = run_parity_report(options, data, command_line.parity_engines, stdout);
      if (!command_line.metrics_file.empty()) {
        std::printf("parity report written to %s\n", write_parity_metrics(run, command_line.metrics_file).c_str());
      }
      return 0;
    }
    if (command_line.runs > 1 || command_line.warmup) {
      const std::vector<RunMetrics> runs =
          run_repeated(options, data, command_line.runs, command_line.warmup, stdout);
      if (!command_line.metrics_file.empty()) {
        const std::vector<std::filesystem::path> written = write_runs_metrics(runs, command_line.metrics_file);
        std::printf("metrics written to %s and %zu per-run files\n", written.back().c_str(), written.size() - 1);
      }
      std::vector<double> accuracies;
      for (const RunMetrics& run : runs) accuracies.push_back(run.summary.test_accuracy);
      const double mean_accuracy = mean_and_std(accuracies).mean;
      if (command_line.min_test_accuracy && mean_accuracy < *command_line.min_test_accuracy) {
        std::fflush(stdout);
        std::fprintf(stderr, "strata_cifar10: mean test accuracy %.2f%% is below --min-test-accuracy %.2f%%\n",
                     100 * mean_accuracy, 100 * *command_line.min_test_accuracy);
        return 1;
      }
      return 0;
    }
    const RunMetrics metrics = run_training(options, data, stdout);
    if (!command_line.metrics_file.empty()) {
      write_metrics(metrics, command_line.metrics_file);
      const MetricsPaths paths = metrics_paths(command_line.metrics_file);
      std::printf("metrics written to %s and %s\n", paths.csv.c_str(), paths.json.c_str());
    }
    if (!command_line.plot_file.empty()) {
      write_plot(metrics, command_line.plot_file);
      std::printf("plot written to %s\n", command_line.plot_file.c_str());
    }
    if (command_line.min_test_accuracy && metrics.summary.test_accuracy < *command_line.min_test_accuracy) {
      std::fflush(stdout);
      std::fprintf(stderr, "strata_cifar10: test accuracy %.2f%% is below --min-test-accuracy %.2f%%\n",
                   100 * metrics.summary.test_accuracy, 100 * *command_line.min_test_accuracy);
      return 1;
    }
    return 0;
  } catch (const std::exception& error) {
    std::fflush(stdout);
    std::fprintf(stderr, "strata_cifar10: %s\n", error.what());
    return 1;
  }
}
