#include "cli.h"

#include <cstdio>
#include <sstream>
#include <stdexcept>
#include <vector>

#include <CLI/CLI.hpp>

namespace cifar10 {

namespace {

// "A:B" with 0 <= A < B, as steps [A, B).
StepWindow parse_step_window(const std::string& text) {
  const auto colon = text.find(':');
  const auto is_number = [](const std::string& part) {
    return !part.empty() && part.size() < 18 && part.find_first_not_of("0123456789") == std::string::npos;
  };
  if (colon != std::string::npos && is_number(text.substr(0, colon)) && is_number(text.substr(colon + 1))) {
    const StepWindow window{std::stoll(text.substr(0, colon)), std::stoll(text.substr(colon + 1))};
    if (window.first < window.last) return window;
  }
  throw CLI::ValidationError("--profile-steps", "'" + text +
                                                    "' is not A:B with A < B (steps A to B-1, counted from 0 over "
                                                    "the whole run), e.g. 20:30");
}

}  // namespace

ParseOutcome parse_command_line(int argc, const char* const* argv) {
  CLI::App app{
      "strata_cifar10: trains a network on CIFAR-10 with Strata and reports its test accuracy, training time and "
      "peak device memory (docs/cifar10.md).",
      "strata_cifar10"};
  app.get_formatter()->column_width(34);
  CommandLine command_line;
  TrainOptions& options = command_line.options;
  std::string engine, profile_steps, parity_engines;
  double target_percent = 0, min_test_percent = 0;

  app.add_option("--net", options.net, "seed, airbench94 or resnet18")
      ->check(CLI::IsMember({"seed", "airbench94", "resnet18"}))
      ->capture_default_str();
  auto* data = app.add_option("--data", options.data_flag,
                              "cifar-10-batches-bin, or the folder holding it (default: $STRATA_CIFAR10_DIR)");
  auto* synthetic =
      app.add_flag("--synthetic", options.synthetic, "a generated 10-class set instead of CIFAR-10: no data needed");
  synthetic->excludes(data);
  auto* epochs =
      app.add_option("--epochs", options.epochs, "epochs to train (default: the recipe's; may be fractional)")
          ->check(CLI::PositiveNumber);
  auto* batch_size = app.add_option("--batch-size", options.batch_size, "images per step (default: the recipe's)")
      ->check(CLI::PositiveNumber);
  app.add_option("--lr", options.lr_scale, "multiplies the recipe's learning rates")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--seed", options.seed, "seeds the weights, the data order and the augmentation")
      ->capture_default_str();
  app.add_option("--engine", engine, "custom (Strata's kernels), cudnn, or auto (cuDNN where it can)")
      ->check(CLI::IsMember({"custom", "cudnn", "auto"}));
  app.add_flag("--deterministic", options.deterministic, "bit-reproducible ops (strata::set_deterministic)");
  std::string conv_math(strata::kernels::to_string(options.conv_math));
  auto* conv_math_option =
      app.add_option("--conv-math", conv_math,
                     "fp32 (exact), or tf32 / bf16: convolutions on tensor cores with inputs rounded to that type "
                     "(as PyTorch's allow_tf32; cuDNN runs TF32 for either); default bf16 with --precision bf16/f16")
          ->check(CLI::IsMember({"fp32", "tf32", "bf16"}))
          ->capture_default_str();
  std::string precision = "f32";
  app.add_option("--precision", precision,
                 "f32, or bf16 / f16: the forward and the loss under autocast (convolutions and linear layers in that "
                 "type on tensor cores, batch-norm statistics and the loss in f32, f32 master weights; f16 adds "
                 "dynamic loss scaling)")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}))
      ->capture_default_str();
  std::string conv_tile(strata::kernels::to_string(options.conv_tile));
  app.add_option("--conv-tile", conv_tile,
                 "the block tile of the tensor-core convolutions that copy channels-last operands asynchronously: "
                 "automatic (chosen per shape) or 64x64 / 128x128 / 128x64 fixed, to compare them; 128x128-wgmma: "
                 "128x128 on Hopper's warpgroup MMA in every pass (sm_90a builds); 128x128-wgmma-tma: the same, "
                 "the forward reading the weights through the Tensor Memory Accelerator")
      ->check(CLI::IsMember({"automatic", "64x64", "128x128", "128x64", "128x128-wgmma", "128x128-wgmma-tma"}))
      ->capture_default_str();
  bool channels_last = false;
  app.add_flag("--channels-last", channels_last,
               "the network's input images channels-last ((N, H, W, C) in memory), so its activations are too; "
               "same values as the default layout");
  std::string graph_mode(graph_mode_name(options.graph));
  app.add_option("--graph", graph_mode,
                 "off (every op eagerly), replay (the step recorded once, replayed on --graph-streams streams) or "
                 "cuda (that graph as one CUDA graph a step)")
      ->check(CLI::IsMember({"off", "replay", "cuda"}))
      ->capture_default_str();
  app.add_option("--graph-streams", options.graph_streams, "streams a replayed step runs on")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  auto* checkpoint = app.add_option("--checkpoint", options.checkpoint_dir,
                                    "save the training state in this folder at every epoch end");
  app.add_flag("--resume", options.resume, "continue from the latest checkpoint in --checkpoint's folder")
      ->needs(checkpoint);
  auto* subset = app.add_option("--subset", options.train_subset,
                                "train on this many class-balanced training images (default: all)")
                     ->check(CLI::NonNegativeNumber);
  auto* test_subset =
      app.add_option("--test-subset", options.test_subset, "evaluate on this many class-balanced test images")
          ->check(CLI::NonNegativeNumber);
  auto* time_limit = app.add_option("--time-limit", options.time_limit_seconds,
                                    "stop training after this many seconds of training, then evaluate; 0: none")
                         ->check(CLI::NonNegativeNumber);
  app.add_option("--stop-after-epochs", options.stop_after_epochs,
                 "stop after this many epochs of the schedule (with --checkpoint: continue later with --resume)")
      ->check(CLI::PositiveNumber);
  auto* tta = app.add_flag("--tta,!--no-tta", options.tta,
                           "also report the accuracy with test-time augmentation (default on)");
  app.add_option("--target-accuracy", target_percent,
                 "test accuracy in percent (e.g. 94): evaluate at epoch ends, report the time to reach it")
      ->check(CLI::Range(0.0, 100.0));
  auto* min_test_accuracy =
      app.add_option("--min-test-accuracy", min_test_percent,
                     "P: exit 1 when the final test accuracy (without TTA) is below P percent (a check for CI)")
          ->check(CLI::Range(0.0, 100.0));
  app.add_option("--runs", command_line.runs,
                               "N: train N times from scratch, seeds --seed to --seed + N - 1, and report each run "
                               "and the mean and standard deviation of the times and accuracies")
                   ->check(CLI::PositiveNumber);
  app.add_flag("--warmup", command_line.warmup,
                              "first an unreported run of the same configuration (seed --seed + N), so that one-time "
                              "costs stay out of the reported times, as the PyTorch reference's warm-up");
  app.add_option("--metrics", command_line.metrics_file,
                                 "write FILE.csv (per logged step) and FILE.json (all); with --runs, FILE-seedS.* "
                                 "per run and FILE-runs.json");
  auto* plot = app.add_option("--plot", command_line.plot_file, "write the loss and accuracy curves as an SVG file");
  app.add_option("--profile-steps", profile_steps,
                 "A:B: cudaProfilerStart before step A, Stop after step B-1 (nsys --capture-range=cudaProfilerApi)");
  auto* parity_report = app.add_flag("--parity-report", command_line.parity_report,
                                     "instead of training: compare two engines layer by layer on one training batch "
                                     "(docs/engines.md), print the table and exit");
  app.add_option("--parity-engines", parity_engines,
                 "A,B: the report's reference and candidate engines (default custom,cudnn)")
      ->needs(parity_report);
  app.add_option("--log-every", options.log_every, "steps between progress updates (each waits for the device)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();

  try {
    app.parse(argc, argv);
    if (!engine.empty()) options.engine = strata::engine_from_name(engine);
    options.graph = graph_mode_from_name(graph_mode);
    options.conv_math = conv_math == "tf32"   ? strata::kernels::ConvMath::tf32
                        : conv_math == "bf16" ? strata::kernels::ConvMath::bf16
                                              : strata::kernels::ConvMath::fp32;
    if (precision != "f32") {
      options.precision = precision == "bf16" ? strata::DType::bf16 : strata::DType::f16;
      // Reduced storage wants the tensor cores unless --conv-math says otherwise: with bf16
      // or f16 tensors, tf32/bf16 math multiplies the stored values exactly.
      if (conv_math_option->count() == 0) options.conv_math = strata::kernels::ConvMath::bf16;
    }
    options.conv_tile = conv_tile == "64x64"     ? strata::kernels::Conv2dTensorCoreTile::m64n64
                        : conv_tile == "128x128" ? strata::kernels::Conv2dTensorCoreTile::m128n128
                        : conv_tile == "128x64"  ? strata::kernels::Conv2dTensorCoreTile::m128n64
                        : conv_tile == "128x128-wgmma" ? strata::kernels::Conv2dTensorCoreTile::m128n128_wgmma
                        : conv_tile == "128x128-wgmma-tma"
                            ? strata::kernels::Conv2dTensorCoreTile::m128n128_wgmma_tma
                            : strata::kernels::Conv2dTensorCoreTile::automatic;
    if (channels_last) options.memory_format = strata::MemoryFormat::channels_last;
    if (!profile_steps.empty()) options.profile_steps = parse_step_window(profile_steps);
    if (target_percent > 0) options.target_accuracy = target_percent / 100;
    if (min_test_accuracy->count() > 0) command_line.min_test_accuracy = min_test_percent / 100;
    if (command_line.runs > 1 || command_line.warmup) {
      const char* flag = command_line.runs > 1 ? "--runs" : "--warmup";
      for (const CLI::Option* conflicting : {checkpoint, plot, parity_report}) {
        if (conflicting->count() > 0) {
          throw CLI::ValidationError(flag, "trains from scratch more than once: it cannot be combined with " +
                                               conflicting->get_name() + ", which is about one run");
        }
      }
    }
    if (!parity_engines.empty()) {
      try {
        command_line.parity_engines = parse_parity_engines(parity_engines);
      } catch (const std::invalid_argument& error) {
        throw CLI::ValidationError("--parity-engines", error.what());
      }
    }
  } catch (const CLI::ParseError& error) {
    std::ostringstream out, err;
    const int exit_code = app.exit(error, out, err);
    return {std::nullopt, exit_code, out.str() + err.str()};
  }
  command_line.net_given = app.count("--net") > 0;
  command_line.subset_given = subset->count() > 0;
  command_line.test_subset_given = test_subset->count() > 0;
  command_line.batch_size_given = batch_size->count() > 0;
  command_line.epochs_given = epochs->count() > 0;
  command_line.tta_given = tta->count() > 0;
  command_line.time_limit_given = time_limit->count() > 0;
  options.args.assign(argv, argv + argc);
  return {std::move(command_line), 0, ""};
}

std::string apply_simulator_defaults(CommandLine& command_line) {
  TrainOptions& options = command_line.options;
  std::string flags;
  const auto choose = [&flags](bool given, auto& value, const auto& simulator_value, const std::string& flag) {
    if (given) return;
    value = simulator_value;
    flags += (flags.empty() ? "" : " ") + flag;
  };
  choose(command_line.net_given, options.net, std::string(kSimulatorNet), "--net " + std::string(kSimulatorNet));
  choose(command_line.subset_given, options.train_subset, kSimulatorTrainSubset,
         "--subset " + std::to_string(kSimulatorTrainSubset));
  choose(command_line.test_subset_given, options.test_subset, kSimulatorTestSubset,
         "--test-subset " + std::to_string(kSimulatorTestSubset));
  choose(command_line.batch_size_given, options.batch_size, kSimulatorBatchSize,
         "--batch-size " + std::to_string(kSimulatorBatchSize));
  choose(command_line.epochs_given, options.epochs, kSimulatorEpochs,
         "--epochs " + std::to_string(static_cast<int>(kSimulatorEpochs)));
  choose(command_line.tta_given, options.tta, false, "--no-tta");
  choose(command_line.time_limit_given, options.time_limit_seconds, kSimulatorTimeLimitSeconds,
         "--time-limit " + std::to_string(static_cast<int>(kSimulatorTimeLimitSeconds)));
  if (flags.empty()) return "";
  if (command_line.parity_report) {
    return "This is Strata's simulator build (no GPU): the parity report takes the simulator's defaults " + flags +
           " (flags given on the command line override these); of them, --net, --subset and --batch-size matter "
           "to it.";
  }
  return "This is Strata's simulator build: there is no GPU, and every CUDA kernel runs on the CPU's simulated "
         "threads, far too slowly for a full CIFAR-10 run. So this is a short demonstration run with " +
         flags +
         " (flags given on the command line override these): about two minutes on 2 cores, ending with a test "
         "accuracy well above the 10% of chance but far below a full run's. For the real run, build with "
         "-DSTRATA_BACKEND=cuda on a machine with an NVIDIA GPU.";
}

}  // namespace cifar10
