// The training program behind tests/layers/determinism_test.cpp: a few steps of the seed
// network with batch norm and dropout, written as a user writes a training loop, so that the
// test can run it in fresh processes under different simulator thread counts and schedules
// (STRATA_SIM_THREADS, STRATA_SIM_SEED) and compare the weights the runs end with.
//
//   strata_determinism_training report
//       prints "deterministic=on" or "deterministic=off" (the switch as the environment set
//       it), or "error: <message>" and exits with 2 when STRATA_DETERMINISTIC is malformed.
//   strata_determinism_training train --steps N --out FILE
//                                     [--checkpoint-after K --checkpoint DIR] [--resume DIR]
//       trains steps [0, N) (from the checkpoint's step with --resume) and saves the model's
//       state_dict to FILE; --checkpoint-after K saves model and training state to DIR after
//       step K and carries on.
// Prints "error: <message>" and exits with 1 on any other failure.
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "strata/core/determinism.h"
#include "strata/core/errors.h"
#include "strata/core/generator.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/layers/adamw.h"
#include "strata/layers/lr_schedule.h"
#include "strata/layers/module.h"
#include "strata/layers/modules.h"
#include "strata/layers/training_state.h"
#include "tests/layers/synthetic_images.h"

namespace {

using namespace strata;

constexpr std::int64_t kBatch = 16;
constexpr std::uint64_t kModelSeed = 20240805;
constexpr std::uint64_t kDataSeed = 11;

struct TrainOptions {
  std::int64_t steps = 0;
  std::filesystem::path out;
  std::optional<std::int64_t> checkpoint_after;
  std::filesystem::path checkpoint;
  std::filesystem::path resume;
};

// The seed network with batch norm after the first convolution and dropout on the second
// one's activations (an (N, C, H, W) mask) and on the pooled features (an (N, C) mask).
nn::Sequential make_model() {
  return nn::Sequential(nn::Conv2d(3, 8, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d(8), nn::ReLU(),
                        nn::MaxPool2d(2), nn::Conv2d(8, 16, 3, {.padding = 1}), nn::ReLU(), nn::Dropout(0.25f),
                        nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Dropout(0.1f),
                        nn::Linear(16, testing::kSyntheticClasses));
}

std::int64_t parse_count(std::string_view flag, std::string_view text) {
  std::int64_t parsed = -1;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), parsed);
  if (error != std::errc() || end != text.data() + text.size() || parsed < 0) {
    throw std::invalid_argument(std::string(flag) + " expects a count, got '" + std::string(text) + "'");
  }
  return parsed;
}

TrainOptions parse_train_options(const std::vector<std::string_view>& args) {
  TrainOptions options;
  for (std::size_t i = 0; i < args.size(); i += 2) {
    if (i + 1 >= args.size()) throw std::invalid_argument("missing value after " + std::string(args[i]));
    const std::string_view flag = args[i];
    const std::string_view value = args[i + 1];
    if (flag == "--steps") {
      options.steps = parse_count(flag, value);
    } else if (flag == "--out") {
      options.out = value;
    } else if (flag == "--checkpoint-after") {
      options.checkpoint_after = parse_count(flag, value);
    } else if (flag == "--checkpoint") {
      options.checkpoint = value;
    } else if (flag == "--resume") {
      options.resume = value;
    } else {
      throw std::invalid_argument("unknown option " + std::string(flag));
    }
  }
  if (options.steps < 1 || options.out.empty()) throw std::invalid_argument("train needs --steps N and --out FILE");
  if (options.checkpoint_after.has_value() == options.checkpoint.empty()) {
    throw std::invalid_argument("--checkpoint-after and --checkpoint go together");
  }
  return options;
}

void train(const TrainOptions& options) {
  const cudaStream_t stream = current_stream();
  const testing::SyntheticImages data =
      testing::make_synthetic_images({.count = static_cast<int>(options.steps * kBatch), .seed = kDataSeed});
  const Tensor images = Tensor::from_vector(data.images, data.batch_shape()).to_device(stream);  // (S*B, 3, H, W)
  const Tensor labels = Tensor::from_vector(data.labels, {options.steps * kBatch}).to_device(stream);

  manual_seed(kModelSeed);
  nn::Sequential model = make_model();
  optim::AdamW adamw(model.parameters(), {.lr = 0.01, .weight_decay = 5e-4});
  lr::Scheduler scheduler(lr::cosine_annealing_lr({.t_max = options.steps}));
  nn::CrossEntropyLoss cross_entropy;
  const optim::TrainingState state{.optimizer = adamw, .scheduler = &scheduler};

  std::int64_t first_step = 0;
  if (!options.resume.empty()) {
    model.load(options.resume / "model.safetensors");
    first_step = optim::load_training_state(options.resume / "training_state.safetensors", state).global_step;
  }
  for (std::int64_t step = first_step; step < options.steps; ++step) {
    adamw.set_lr_factor(scheduler.factor());
    adamw.zero_grad();
    const Tensor loss =
        cross_entropy(model(images.narrow(0, step * kBatch, kBatch)), labels.narrow(0, step * kBatch, kBatch));
    loss.backward();
    adamw.step();
    scheduler.step();
    std::printf("step %lld: loss %.9g\n", static_cast<long long>(step), static_cast<double>(loss.to_vector<float>()[0]));
    if (options.checkpoint_after && step + 1 == *options.checkpoint_after) {
      std::filesystem::create_directories(options.checkpoint);
      model.save(options.checkpoint / "model.safetensors");
      optim::save_training_state(options.checkpoint / "training_state.safetensors", state, {.global_step = step + 1});
    }
  }
  cross_entropy.check_targets();
  model.save(options.out);
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  try {
    if (args.size() == 1 && args[0] == "report") {
      try {
        std::printf("deterministic=%s\n", is_deterministic() ? "on" : "off");
      } catch (const InvalidArgument& error) {
        std::printf("error: %s\n", error.what());
        return 2;
      }
      return 0;
    }
    if (!args.empty() && args[0] == "train") {
      train(parse_train_options({args.begin() + 1, args.end()}));
      return 0;
    }
    throw std::invalid_argument("usage: strata_determinism_training report | train --steps N --out FILE "
                                "[--checkpoint-after K --checkpoint DIR] [--resume DIR]");
  } catch (const std::exception& error) {
    std::printf("error: %s\n", error.what());
    return 1;
  }
}
