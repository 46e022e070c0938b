// The training-state file: a tiny model (dropout, linear, cross-entropy) trained with
// Nesterov SGD, a warm-up and cosine schedule and a moving average resumes bit for bit from
// a model file and a training-state file into freshly built objects; and every kind of bad
// file (missing or extra entries, other shapes, a truncated file, a missing scheduler) is an
// IoError listing what differs, with nothing changed.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "strata/core/errors.h"
#include "strata/core/generator.h"
#include "strata/core/safetensors.h"
#include "strata/core/stream.h"
#include "strata/layers/ema.h"
#include "strata/layers/functional.h"
#include "strata/layers/lr_schedule.h"
#include "strata/layers/sgd.h"
#include "strata/layers/training_state.h"
#include "tests/core/safetensors_test_support.h"
#include "tests/kernels/device_values.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"

namespace strata::optim {
namespace {

using ::testing::HasSubstr;

constexpr std::int64_t kBatch = 4;
constexpr std::int64_t kFeatures = 5;
constexpr std::int64_t kClasses = 3;
constexpr std::int64_t kTotalSteps = 6;

std::vector<std::uint32_t> bits_of(const Tensor& tensor) { return testing::bit_patterns(tensor.to_vector<float>()); }

// y (N, classes) = dropout(x) (N, features) weight^T + bias, its own seeds for the weights.
struct TinyModel {
  Tensor weight;  // (classes, features)
  Tensor bias;    // (classes)

  explicit TinyModel(std::uint64_t seed) {
    const cudaStream_t stream = current_stream();
    weight = testing::device_tensor(testing::random_uniform(seed, kClasses * kFeatures, -0.5f, 0.5f),
                                    Shape{kClasses, kFeatures}, stream);
    bias = testing::device_tensor(testing::random_uniform(seed + 1, kClasses, -0.5f, 0.5f), Shape{kClasses}, stream);
    weight.set_requires_grad();
    bias.set_requires_grad();
  }
  std::vector<Tensor> parameters() const { return {weight, bias}; }
  NamedTensors state_dict() const { return {{"weight", weight}, {"bias", bias}}; }
};

// Everything a training run builds, fresh.
struct Training {
  TinyModel model;
  SGD sgd;
  lr::Scheduler scheduler;
  ExponentialMovingAverage ema;

  explicit Training(std::uint64_t model_seed)
      : model(model_seed),
        sgd({{.params = {model.weight}}, {.params = {model.bias}, .lr = 0.4, .weight_decay = 0.0}},
            {.lr = 0.2, .momentum = 0.9, .weight_decay = 5e-3, .nesterov = true}),
        scheduler(lr::sequential_lr({lr::linear_lr({.start_factor = 0.2, .total_iters = 2}),
                                     lr::cosine_annealing_lr({.t_max = kTotalSteps - 2})},
                                    {2})),
        ema(model.parameters()) {}

  TrainingState state() { return {.optimizer = sgd, .scheduler = &scheduler, .tensors = ema.state_dict()}; }

  // Steps [from, to): batch s is a function of s alone, as a data loader's position gives it.
  void train(std::int64_t from, std::int64_t to) {
    const cudaStream_t stream = current_stream();
    for (std::int64_t step = from; step < to; ++step) {
      const Tensor x =
          testing::device_tensor(testing::random_uniform(1000 + static_cast<std::uint64_t>(step), kBatch * kFeatures),
                                 Shape{kBatch, kFeatures}, stream);
      std::vector<std::int64_t> labels;
      for (std::int64_t n = 0; n < kBatch; ++n) labels.push_back((step * 7 + n) % kClasses);
      const Tensor targets = testing::device_tensor(labels, Shape{kBatch}, stream);
      sgd.set_lr_factor(scheduler.factor());
      sgd.zero_grad();
      F::cross_entropy(F::linear(F::dropout(x, 0.25f, /*training=*/true), model.weight, model.bias), targets)
          .backward();
      sgd.step();
      scheduler.step();
      ema.update(0.8);
    }
  }
};

class TrainingStateTest : public testing::DeviceTest {
 protected:
  testing::TemporaryFolder folder_;
};

TEST_F(TrainingStateTest, ResumesBitIdentically) {
  manual_seed(7);
  Training uninterrupted(1);
  uninterrupted.train(0, kTotalSteps);
  const GeneratorState uninterrupted_generator = default_generator().state();

  manual_seed(7);
  std::filesystem::path model_file = folder_ / "model.safetensors";
  std::filesystem::path state_file = folder_ / "train.safetensors";
  {
    Training first(1);
    first.train(0, 3);
    save_safetensors(model_file, first.model.state_dict(), current_stream());
    save_training_state(state_file, first.state(),
                        {.global_step = 3, .data_position = {{"epoch", "0"}, {"batch", "3"}}});
  }

  manual_seed(12345);  // everything below must come from the files
  Training resumed(99);
  resumed.train(0, 1);  // and a step of its own, which the load replaces
  load_safetensors_into(model_file, resumed.model.state_dict(), current_stream());
  const TrainingProgress progress = load_training_state(state_file, resumed.state());
  EXPECT_EQ(progress.global_step, 3);
  EXPECT_EQ(progress.data_position, (std::map<std::string, std::string>{{"batch", "3"}, {"epoch", "0"}}));
  EXPECT_EQ(resumed.scheduler.steps_taken(), 3);
  resumed.train(progress.global_step, kTotalSteps);

  EXPECT_EQ(bits_of(resumed.model.weight), bits_of(uninterrupted.model.weight));
  EXPECT_EQ(bits_of(resumed.model.bias), bits_of(uninterrupted.model.bias));
  EXPECT_EQ(bits_of(resumed.ema.averages()[0]), bits_of(uninterrupted.ema.averages()[0]));
  EXPECT_EQ(default_generator().state(), uninterrupted_generator);
  EXPECT_EQ(resumed.sgd.lr(0), uninterrupted.sgd.lr(0));
}

TEST_F(TrainingStateTest, TheFileHoldsEveryPieceUnderItsPrefix) {
  manual_seed(3);
  Training training(1);
  training.train(0, 2);
  save_training_state(folder_ / "train.safetensors", training.state(),
                      {.global_step = 2, .data_position = {{"epoch", "1"}}});
  const SafetensorsHeader header = read_safetensors_header(folder_ / "train.safetensors");
  EXPECT_EQ(header.metadata.at("format"), "strata.training_state.v1");
  EXPECT_EQ(header.metadata.at("global_step"), "2");
  EXPECT_EQ(header.metadata.at("data.epoch"), "1");
  EXPECT_EQ(header.metadata.at("optimizer.optimizer"), "SGD");
  EXPECT_EQ(header.metadata.at("optimizer.state.0.0.step"), "2");
  EXPECT_EQ(header.metadata.at("scheduler.step"), "2");
  EXPECT_EQ(header.metadata.at("scheduler.schedule"), training.scheduler.schedule().to_string());
  EXPECT_EQ(header.metadata.at("generator.seed"), "3");
  EXPECT_EQ(header.metadata.at("generator.offset"), std::to_string(default_generator().state().offset));
  std::vector<std::string> names;
  for (const SafetensorsEntry& entry : header.entries) names.push_back(entry.name);
  EXPECT_THAT(names,
              ::testing::UnorderedElementsAre("optimizer.state.0.0.momentum_buffer",
                                              "optimizer.state.1.0.momentum_buffer", "tensors.ema.0", "tensors.ema.1"));
}

// Only an optimizer, and one without state tensors: a file of metadata alone.
TEST_F(TrainingStateTest, OptionalPiecesCanBeLeftOut) {
  TinyModel model(4);
  SGD sgd(model.parameters(), {.lr = 0.1});
  const TrainingState state{.optimizer = sgd, .generator = nullptr};
  save_training_state(folder_ / "plain.safetensors", state, {.global_step = 9});
  const SafetensorsHeader header = read_safetensors_header(folder_ / "plain.safetensors");
  EXPECT_TRUE(header.entries.empty());
  EXPECT_FALSE(header.metadata.contains("scheduler.step"));
  EXPECT_FALSE(header.metadata.contains("generator.seed"));
  sgd.set_lr(0, 0.5);
  EXPECT_EQ(load_training_state(folder_ / "plain.safetensors", state).global_step, 9);
  EXPECT_EQ(sgd.lr(0), 0.1);
}

// A file saved after two steps, and a target trained one step, whose state must survive
// every refused load.
class TrainingStateErrors : public TrainingStateTest {
 protected:
  void SetUp() override {
    TrainingStateTest::SetUp();
    if (IsSkipped()) return;
    manual_seed(5);
    Training source(1);
    source.train(0, 2);
    save_training_state(file_, source.state(), {.global_step = 2});
    target_ = std::make_unique<Training>(2);
    target_->train(0, 1);
    manual_seed(77);
    before_ = snapshot();
  }

  struct Snapshot {
    OptimizerState optimizer;  // host copies
    std::map<std::string, std::string> scheduler;
    GeneratorState generator;
    std::vector<std::uint32_t> ema;
  };
  Snapshot snapshot() {
    Snapshot result{.optimizer = {},
                    .scheduler = target_->scheduler.state_dict(),
                    .generator = default_generator().state(),
                    .ema = bits_of(target_->ema.averages()[0])};
    const OptimizerState state = target_->sgd.state_dict();
    result.optimizer.metadata = state.metadata;
    for (const auto& [name, tensor] : state.tensors) result.optimizer.tensors.emplace_back(name, tensor.to_host());
    return result;
  }
  void expect_unchanged() {
    const Snapshot now = snapshot();
    EXPECT_EQ(now.optimizer.metadata, before_.optimizer.metadata);
    ASSERT_EQ(now.optimizer.tensors.size(), before_.optimizer.tensors.size());
    for (std::size_t i = 0; i < now.optimizer.tensors.size(); ++i) {
      EXPECT_EQ(bits_of(now.optimizer.tensors[i].second), bits_of(before_.optimizer.tensors[i].second));
    }
    EXPECT_EQ(now.scheduler, before_.scheduler);
    EXPECT_EQ(now.generator, before_.generator);
    EXPECT_EQ(now.ema, before_.ema);
  }
  // Loading path into the target throws an IoError containing each of parts.
  void expect_refused(const std::filesystem::path& path, const std::vector<std::string>& parts) {
    try {
      load_training_state(path, target_->state());
      ADD_FAILURE() << "no exception";
    } catch (const IoError& error) {
      for (const std::string& part : parts) EXPECT_THAT(error.what(), HasSubstr(part));
    }
    expect_unchanged();
  }
  // Rewrites the file with edit applied to its tensors and metadata.
  template <typename Edit>
  std::filesystem::path edited(Edit edit) {
    SafetensorsFile file = load_safetensors(file_);
    edit(file);
    const std::filesystem::path path = folder_ / "edited.safetensors";
    save_safetensors(path, file.tensors, file.metadata, nullptr);
    return path;
  }

  std::filesystem::path file_ = folder_ / "train.safetensors";
  std::unique_ptr<Training> target_;
  Snapshot before_;
};

TEST_F(TrainingStateErrors, MissingAndExtraKeysAreListed) {
  const std::filesystem::path path = edited([](SafetensorsFile& file) {
    std::erase_if(file.tensors, [](const auto& entry) { return entry.first == "optimizer.state.1.0.momentum_buffer"; });
    file.tensors.emplace_back("tensors.ema.7", Tensor::from_vector<float>({1.0f}, Shape{1}));
    file.metadata.erase("global_step");
    file.metadata["generator.colour"] = "blue";
  });
  expect_refused(path, {"nothing was changed", "missing tensor 'state.1.0.momentum_buffer'",
                        "unexpected tensor 'tensors.ema.7' (f32 (1))", "missing metadata 'global_step'",
                        "unexpected metadata 'generator.colour'"});
}

TEST_F(TrainingStateErrors, ShapesThatDifferAreListed) {
  const std::filesystem::path path = edited([](SafetensorsFile& file) {
    for (auto& [name, tensor] : file.tensors) {
      if (name == "tensors.ema.1") tensor = Tensor::from_vector<float>({1.0f, 2.0f}, Shape{2});
      if (name == "optimizer.state.0.0.momentum_buffer") tensor = Tensor::from_vector<float>({1.0f}, Shape{1, 1});
    }
  });
  expect_refused(path,
                 {"tensor 'tensors.ema.1' is f32 (2) in the file but the target is f32 (3)",
                  "tensor 'state.0.0.momentum_buffer' is f32 (1, 1) but parameter 0 of group 0 needs f32 (3, 5)"});
}

TEST_F(TrainingStateErrors, TruncatedOrForeignFilesAreRefused) {
  const std::string bytes = testing::read_file(file_);
  const std::filesystem::path truncated = folder_ / "truncated.safetensors";
  testing::write_file(truncated, bytes.substr(0, bytes.size() - 7));
  EXPECT_THROW(load_training_state(truncated, target_->state()), IoError);
  expect_unchanged();

  const std::filesystem::path model = folder_ / "model.safetensors";
  save_safetensors(model, target_->model.state_dict(), current_stream());
  expect_refused(model, {"is not a training-state file", "metadata 'format' is missing"});
}

TEST_F(TrainingStateErrors, SchedulerAndGeneratorMustBeThereWhenGiven) {
  TrainingState without = target_->state();
  without.scheduler = nullptr;
  without.generator = nullptr;
  EXPECT_THAT([&] { load_training_state(file_, without); },
              ::testing::ThrowsMessage<IoError>(
                  ::testing::AllOf(HasSubstr("the file holds a scheduler state but no scheduler was given"),
                                   HasSubstr("the file holds a generator state but no generator was given"))));
  const std::filesystem::path path = edited([](SafetensorsFile& file) {
    file.metadata.erase("scheduler.step");
    file.metadata["scheduler.schedule"] = "no_such_lr()";
  });
  expect_refused(path, {"scheduler:"});
  expect_unchanged();
}

}  // namespace
}  // namespace strata::optim
