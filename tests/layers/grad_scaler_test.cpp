// optim::GradScaler: scaling the loss and its gradient, unscaling before the step, a step
// skipped on the device when a gradient is inf or NaN (SGD with and without dampening,
// AdamW: parameters, state and step counts as if the step had not been called) with the
// scale backing off, growth after the interval, the stage errors of PyTorch's GradScaler,
// the state round trip, whole steps recorded and replayed by the host graph and as one CUDA
// graph with the same bits as eager steps, and the host fallback for an optimizer that
// cannot skip on the device.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "strata/core/errors.h"
#include "strata/core/generator.h"
#include "strata/core/graph.h"
#include "strata/core/stream.h"
#include "strata/layers/adamw.h"
#include "strata/layers/functional.h"
#include "strata/layers/grad_scaler.h"
#include "strata/layers/modules.h"
#include "strata/layers/sgd.h"
#include "strata/layers/training_state.h"
#include "tests/core/safetensors_test_support.h"
#include "tests/kernels/device_values.h"
#include "tests/support/device_test.h"

namespace strata::optim {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
using testing::bit_patterns;
using GradScalerTest = testing::DeviceTest;

constexpr float kInf = std::numeric_limits<float>::infinity();

Tensor make_parameter(std::uint64_t seed, std::int64_t size) {
  Tensor parameter = testing::device_tensor(testing::random_uniform(seed, static_cast<std::size_t>(size)),
                                            Shape{size}, current_stream());
  parameter.set_requires_grad();
  return parameter;
}

// Sets the gradient values * factor (exact for powers of two).
void give_gradient(Tensor& parameter, std::vector<float> values, float factor) {
  for (float& value : values) value *= factor;
  parameter.set_grad(testing::device_tensor(values, parameter.shape(), current_stream()));
}

std::vector<std::uint32_t> bits_of(const Tensor& tensor) { return bit_patterns(tensor.to_vector<float>()); }

// Everything an optimizer would save: its step counts and the bits of its state tensors.
std::vector<std::uint64_t> optimizer_state_bits(const Optimizer& optimizer) {
  const OptimizerState state = optimizer.state_dict();
  std::vector<std::uint64_t> bits;
  for (const auto& [key, value] : state.metadata) {
    if (key.ends_with(".step")) bits.push_back(static_cast<std::uint64_t>(std::stoll(value)));
  }
  for (const auto& [name, tensor] : state.tensors) {
    for (const std::uint32_t word : bits_of(tensor)) bits.push_back(word);
  }
  return bits;
}

TEST_F(GradScalerTest, ScaleMultipliesTheLossAndItsGradient) {
  GradScaler scaler;  // 2^16
  Tensor x = make_parameter(9500, 5);
  const Tensor scaled = scaler.scale(x);
  std::vector<float> expected = x.to_vector<float>();
  for (float& value : expected) value *= 65536.0f;
  EXPECT_EQ(bits_of(scaled), bit_patterns(expected));
  const std::vector<float> upstream = testing::random_uniform(9501, 5);
  scaled.backward(testing::device_tensor(upstream, Shape{5}, current_stream()));
  std::vector<float> expected_gradient = upstream;
  for (float& value : expected_gradient) value *= 65536.0f;
  EXPECT_EQ(bits_of(x.grad()), bit_patterns(expected_gradient));
  EXPECT_EQ(scaler.get_scale(), 65536.0);
}

// Gradients of the scaled loss (g * 2^16), unscaled and stepped, give exactly the step of g.
TEST_F(GradScalerTest, StepUnscalesOnceAndMatchesAnUnscaledStep) {
  const SgdOptions options{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = true};
  Tensor scaled_parameter = make_parameter(9510, 4099);
  Tensor plain_parameter = make_parameter(9510, 4099);
  SGD scaled_sgd({scaled_parameter}, options);
  SGD plain_sgd({plain_parameter}, options);
  GradScaler scaler;
  for (int step = 0; step < 3; ++step) {
    const std::vector<float> gradient = testing::random_uniform(9520 + step, 4099);
    give_gradient(scaled_parameter, gradient, 65536.0f);
    give_gradient(plain_parameter, gradient, 1.0f);
    if (step == 1) scaler.unscale_(scaled_sgd);  // then step() must not unscale again
    scaler.step(scaled_sgd);
    scaler.update();
    plain_sgd.step();
  }
  EXPECT_EQ(bits_of(scaled_parameter), bits_of(plain_parameter));
  EXPECT_EQ(scaler.state_dict().growth_tracker, 3);
}

// A non-finite gradient in any parameter: no update, no step counted, and the scale halves;
// SGD and AdamW decide on the device.
TEST_F(GradScalerTest, NonFiniteGradientSkipsTheStepAndBacksOff) {
  for (const bool adamw : {false, true}) {
    SCOPED_TRACE(adamw ? "AdamW" : "SGD");
    std::vector<Tensor> parameters = {make_parameter(9530, 7), make_parameter(9531, 4100), make_parameter(9532, 3)};
    const std::vector<std::vector<std::uint32_t>> before = {bits_of(parameters[0]), bits_of(parameters[1]),
                                                            bits_of(parameters[2])};
    std::unique_ptr<Optimizer> optimizer;
    if (adamw) {
      optimizer = std::make_unique<AdamW>(parameters, AdamWOptions{.lr = 0.01});
    } else {
      optimizer = std::make_unique<SGD>(parameters, SgdOptions{.lr = 0.1, .momentum = 0.9});
    }
    EXPECT_TRUE(optimizer->can_skip_on_device());
    GradScaler scaler;
    for (std::size_t i = 0; i < parameters.size(); ++i) {
      std::vector<float> gradient = testing::random_uniform(9540 + i, static_cast<std::size_t>(parameters[i].numel()));
      if (i == 1) gradient[4099] = std::numeric_limits<float>::quiet_NaN();
      give_gradient(parameters[i], gradient, 1.0f);
    }
    scaler.step(*optimizer);
    scaler.update();
    for (std::size_t i = 0; i < parameters.size(); ++i) EXPECT_EQ(bits_of(parameters[i]), before[i]) << i;
    EXPECT_EQ(scaler.found_inf(*optimizer).to_vector<float>().front(), 1.0f);
    EXPECT_EQ(scaler.get_scale(), 32768.0);
    EXPECT_EQ(scaler.state_dict().growth_tracker, 0);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(optimizer->step_count(0, i), 0) << i;
  }
}

// After a skipped first step, SGD's next step is the first step of an SGD that never saw the
// skipped one: the device step count, left at 0, tells the kernel to start the buffers with
// the gradient (PyTorch's "buffer is None"), so dampening applies from the step after.
TEST_F(GradScalerTest, SgdAfterASkippedFirstStepMatchesAFreshStart) {
  const SgdOptions nesterov{.lr = 0.05, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true};
  const SgdOptions dampened{.lr = 0.05, .momentum = 0.9, .dampening = 0.3, .weight_decay = 5e-4};
  for (const SgdOptions& options : {nesterov, dampened}) {
    SCOPED_TRACE(options.dampening == 0.0 ? "Nesterov" : "dampening");
    Tensor scaled_parameter = make_parameter(9550, 33);
    Tensor plain_parameter = make_parameter(9550, 33);
    SGD scaled_sgd({scaled_parameter}, options);
    SGD plain_sgd({plain_parameter}, options);
    EXPECT_TRUE(scaled_sgd.can_skip_on_device());
    GradScaler scaler({.init_scale = 4.0});
    std::vector<float> bad = testing::random_uniform(9551, 33);
    bad[5] = kInf;
    give_gradient(scaled_parameter, bad, 1.0f);
    scaler.step(scaled_sgd);
    scaler.update();
    EXPECT_EQ(scaler.get_scale(), 2.0);
    EXPECT_EQ(scaled_sgd.step_count(0, 0), 0);
    for (int step = 0; step < 3; ++step) {
      const std::vector<float> gradient = testing::random_uniform(9560 + step, 33);
      give_gradient(scaled_parameter, gradient, 2.0f);
      give_gradient(plain_parameter, gradient, 1.0f);
      scaler.step(scaled_sgd);
      scaler.update();
      plain_sgd.step();
    }
    EXPECT_EQ(bits_of(scaled_parameter), bits_of(plain_parameter));
    EXPECT_EQ(optimizer_state_bits(scaled_sgd), optimizer_state_bits(plain_sgd));
  }
}

// PyTorch's GradScaler skips optimizer.step() entirely: AdamW's parameters, moments and step
// counts after a run with skipped steps are those of a run without them, bit for bit. C has
// no gradient at the first step and its first step is skipped. Only A has a gradient at the
// second skipped step, and A none at the step after it: A and B have then attempted as many
// steps, but their device counts differ (2 and 3), so the last step must launch them apart.
TEST_F(GradScalerTest, AdamwSkippedStepsAreNoSteps) {
  for (const bool amsgrad : {false, true}) {
    SCOPED_TRACE(amsgrad ? "amsgrad" : "adam");
    const AdamWOptions options{.lr = 0.01, .weight_decay = 0.05, .amsgrad = amsgrad};
    const std::vector<std::int64_t> sizes = {4099, 7, 33};
    std::vector<Tensor> scaled;
    std::vector<Tensor> plain;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      scaled.push_back(make_parameter(9630 + i, sizes[i]));
      plain.push_back(make_parameter(9630 + i, sizes[i]));
    }
    AdamW scaled_adamw(scaled, options);
    AdamW plain_adamw(plain, options);
    GradScaler scaler({.init_scale = 4.0});
    // Which parameters have a gradient at each step, and whether one of them is infinite.
    struct Step {
      std::vector<bool> has_gradient;
      bool non_finite;
    };
    const std::vector<Step> steps = {{{true, true, false}, false}, {{true, true, true}, true},
                                     {{true, true, true}, false},  {{true, false, false}, true},
                                     {{false, true, true}, false}, {{true, true, true}, false}};
    float scale = 4.0f;
    for (std::size_t step = 0; step < steps.size(); ++step) {
      for (std::size_t i = 0; i < sizes.size(); ++i) {
        if (!steps[step].has_gradient[i]) {
          scaled[i].set_grad(Tensor());
          plain[i].set_grad(Tensor());
          continue;
        }
        std::vector<float> gradient = testing::random_uniform(9640 + step * 10 + i, static_cast<std::size_t>(sizes[i]));
        give_gradient(plain[i], gradient, 1.0f);
        if (steps[step].non_finite && i == 0) gradient[4098] = kInf;
        give_gradient(scaled[i], gradient, scale);
      }
      scaler.step(scaled_adamw);
      scaler.update();
      if (steps[step].non_finite) {
        scale /= 2.0f;
      } else {
        plain_adamw.step();
      }
      EXPECT_EQ(scaler.get_scale(), scale) << "step " << step;
    }
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      EXPECT_EQ(bits_of(scaled[i]), bits_of(plain[i])) << i;
      EXPECT_EQ(scaled_adamw.step_count(0, static_cast<int>(i)), plain_adamw.step_count(0, static_cast<int>(i)));
    }
    EXPECT_EQ(scaled_adamw.step_count(0, 0), 3);
    EXPECT_EQ(scaled_adamw.step_count(0, 1), 4);
    EXPECT_EQ(scaled_adamw.step_count(0, 2), 3);
    EXPECT_EQ(optimizer_state_bits(scaled_adamw), optimizer_state_bits(plain_adamw));
  }
}

TEST_F(GradScalerTest, GrowsAfterTheIntervalOfFiniteSteps) {
  Tensor parameter = make_parameter(9580, 9);
  SGD sgd({parameter}, {.lr = 0.01});
  GradScaler scaler({.init_scale = 1024.0, .growth_interval = 3});
  const std::vector<double> scales = {1024.0, 1024.0, 2048.0, 2048.0, 2048.0, 4096.0};
  const std::vector<std::int64_t> trackers = {1, 2, 0, 1, 2, 0};
  for (std::size_t step = 0; step < scales.size(); ++step) {
    give_gradient(parameter, testing::random_uniform(9581 + step, 9), 1.0f);
    scaler.step(sgd);
    scaler.update();
    EXPECT_EQ(scaler.get_scale(), scales[step]) << "step " << step;
    EXPECT_EQ(scaler.state_dict().growth_tracker, trackers[step]) << "step " << step;
  }
  scaler.update(0.25, current_stream());  // a new scale by hand; the tracker stays
  EXPECT_EQ(scaler.get_scale(), 0.25);
}

TEST_F(GradScalerTest, StageErrorsAsPyTorch) {
  Tensor parameter = make_parameter(9590, 4);
  SGD sgd({parameter}, {.lr = 0.01});
  GradScaler scaler;
  EXPECT_THAT([&] { scaler.update(); }, ThrowsMessage<InvalidArgument>(HasSubstr("no inf checks were recorded")));
  give_gradient(parameter, testing::random_uniform(9591, 4), 1.0f);
  scaler.unscale_(sgd);
  EXPECT_THAT([&] { scaler.unscale_(sgd); }, ThrowsMessage<InvalidArgument>(HasSubstr("already been called")));
  scaler.step(sgd);
  EXPECT_THAT([&] { scaler.step(sgd); }, ThrowsMessage<InvalidArgument>(HasSubstr("step() has already been called")));
  EXPECT_THAT([&] { scaler.unscale_(sgd); }, ThrowsMessage<InvalidArgument>(HasSubstr("after step()")));
  scaler.update();
  scaler.unscale_(sgd);  // a new iteration
  EXPECT_THAT([] { GradScaler({.growth_factor = 0.5}); },
              ThrowsMessage<InvalidArgument>(HasSubstr("GradScaler.GradScaler: update_loss_scale: growth_factor")));
  EXPECT_THAT([] { GradScaler({.init_scale = 0.0}); }, ThrowsMessage<InvalidArgument>(HasSubstr("scale must be")));
}

TEST_F(GradScalerTest, DisabledScalerPassesThrough) {
  Tensor parameter = make_parameter(9600, 4);
  const std::vector<std::uint32_t> before = bits_of(parameter);
  SGD sgd({parameter}, {.lr = 0.5});
  GradScaler scaler({.enabled = false});
  EXPECT_TRUE(scaler.scale(parameter).shares_storage_with(parameter));
  give_gradient(parameter, {1.0f, kInf, 2.0f, 3.0f}, 1.0f);
  scaler.unscale_(sgd);
  scaler.step(sgd);  // no check: the step runs
  scaler.update();
  EXPECT_NE(bits_of(parameter), before);
  EXPECT_EQ(scaler.get_scale(), 1.0);
}

TEST_F(GradScalerTest, StateRoundTrip) {
  Tensor parameter = make_parameter(9610, 4);
  SGD sgd({parameter}, {.lr = 0.01});
  GradScaler scaler({.init_scale = 512.0, .growth_interval = 10});
  for (int step = 0; step < 4; ++step) {
    std::vector<float> gradient = testing::random_uniform(9611 + step, 4);
    if (step == 1) gradient[0] = kInf;
    give_gradient(parameter, gradient, 1.0f);
    scaler.step(sgd);
    scaler.update();
  }
  const GradScalerState saved = scaler.state_dict();
  EXPECT_EQ(saved.scale, 256.0);
  EXPECT_EQ(saved.growth_tracker, 2);
  EXPECT_EQ(saved.growth_interval, 10);

  GradScaler restored;
  restored.load_state_dict(saved);
  const GradScalerState loaded = restored.state_dict();
  EXPECT_EQ(loaded.scale, saved.scale);
  EXPECT_EQ(loaded.growth_tracker, saved.growth_tracker);
  EXPECT_EQ(loaded.growth_interval, saved.growth_interval);
  EXPECT_EQ(loaded.growth_factor, saved.growth_factor);

  GradScalerState bad = saved;
  bad.growth_tracker = 10;
  EXPECT_THAT([&] { restored.load_state_dict(bad); }, ThrowsMessage<InvalidArgument>(HasSubstr("growth tracker")));
  EXPECT_EQ(restored.state_dict().growth_tracker, 2);  // unchanged

  // Without a synchronisation: the device tensors through the training-state file.
  testing::TemporaryFolder folder;
  save_training_state(folder / "train.safetensors", {.optimizer = sgd, .tensors = scaler.state_tensors()},
                      {.global_step = 4});
  GradScaler resumed({.init_scale = 512.0, .growth_interval = 10});
  SGD resumed_sgd({make_parameter(9620, 4)}, {.lr = 0.01});
  load_training_state(folder / "train.safetensors", {.optimizer = resumed_sgd, .tensors = resumed.state_tensors()});
  EXPECT_EQ(resumed.get_scale(), 256.0);
  EXPECT_EQ(resumed.state_dict().growth_tracker, 2);
}

// ---- recorded steps -----------------------------------------------------------------------

constexpr std::int64_t kBatch = 4;
constexpr int kSteps = 7;

enum class Kind : std::uint8_t { sgd_nesterov, sgd_dampened, adamw };

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::sgd_nesterov: return "SGD with Nesterov momentum";
    case Kind::sgd_dampened: return "SGD with dampening";
    case Kind::adamw: return "AdamW";
  }
  return "?";
}

// A small classifier, an optimizer and a scaler with a short growth interval; the steps 3 and
// 4 put an infinity in the input, so their gradients are NaN. With plain_first_step, step 0
// is an unscaled optimizer.step(), so the step counts move to the device at step 1.
struct ScaledTrainer {
  std::unique_ptr<nn::Sequential> model;
  std::unique_ptr<Optimizer> optimizer;
  GradScaler scaler{{.init_scale = 256.0, .growth_interval = 2}};
  Tensor inputs = Tensor::empty({kBatch, 6}, DType::f32, current_stream());
  Tensor labels = Tensor::empty({kBatch}, DType::i64, current_stream());
  bool plain_first_step;

  ScaledTrainer(Kind kind, bool unscaled_first_step) : plain_first_step(unscaled_first_step) {
    manual_seed(17);
    model = std::make_unique<nn::Sequential>(nn::Linear(6, 8), nn::ReLU(), nn::Linear(8, 3));
    switch (kind) {
      case Kind::sgd_nesterov:
        optimizer =
            std::make_unique<SGD>(model->parameters(), SgdOptions{.lr = 0.05, .momentum = 0.9, .nesterov = true});
        break;
      case Kind::sgd_dampened:
        optimizer =
            std::make_unique<SGD>(model->parameters(), SgdOptions{.lr = 0.05, .momentum = 0.9, .dampening = 0.2});
        break;
      case Kind::adamw:
        optimizer = std::make_unique<AdamW>(model->parameters(), AdamWOptions{.lr = 0.01, .amsgrad = true});
        break;
    }
  }

  void load_batch(int step) {
    std::vector<float> values = testing::random_uniform(9700 + static_cast<std::uint64_t>(step), kBatch * 6);
    if (step == 3 || step == 4) values[static_cast<std::size_t>(step)] = kInf;
    inputs.copy_from(Tensor::from_vector(values, inputs.shape()), current_stream());
    std::vector<std::int64_t> targets;
    for (std::int64_t i = 0; i < kBatch; ++i) targets.push_back((i + step) % 3);
    labels.copy_from(Tensor::from_vector(targets, labels.shape()), current_stream());
  }

  Tensor step(int step) {
    optimizer->zero_grad();
    Tensor loss = F::cross_entropy(model->forward(inputs), labels);
    if (step == 0 && plain_first_step) {
      loss.backward();
      optimizer->step();
      return loss;
    }
    scaler.scale(loss).backward();
    scaler.step(*optimizer);
    scaler.update();
    return loss;
  }

  // Parameters, optimizer state and step counts, scale and growth tracker.
  std::vector<std::uint64_t> state_bits() const {
    std::vector<std::uint64_t> bits;
    for (const Tensor& parameter : model->parameters()) {
      const std::vector<std::uint32_t> some = bits_of(parameter);
      bits.insert(bits.end(), some.begin(), some.end());
    }
    const std::vector<std::uint64_t> state = optimizer_state_bits(*optimizer);
    bits.insert(bits.end(), state.begin(), state.end());
    bits.push_back(std::bit_cast<std::uint32_t>(scaler.scale_tensor().to_vector<float>().front()));
    bits.push_back(static_cast<std::uint32_t>(scaler.growth_tracker_tensor().to_vector<std::int32_t>().front()));
    return bits;
  }
};

std::vector<std::uint64_t> train_eagerly(Kind kind, bool plain_first_step) {
  ScaledTrainer trainer(kind, plain_first_step);
  for (int step = 0; step < kSteps; ++step) {
    trainer.load_batch(step);
    trainer.step(step);
  }
  // The skips and growths happened: 256 -> 512 (step 1) -> 256 -> 128 (3, 4) -> 256 (6); or,
  // when step 0 is not scaled, 256 -> 512 (step 2) -> 256 -> 128 (3, 4) -> 256 (6).
  EXPECT_EQ(trainer.scaler.get_scale(), 256.0);
  // The two skipped steps were not counted.
  EXPECT_EQ(trainer.optimizer->step_count(0, 0), kSteps - 2);
  return trainer.state_bits();
}

// Steps before recorded_step eager, recorded_step recorded, the rest replayed (the skipped
// steps among them, or the recorded step itself one of them).
std::vector<std::uint64_t> train_with_graph(Kind kind, bool plain_first_step, int streams, bool cuda_graph,
                                            int recorded_step = 1) {
  ScaledTrainer trainer(kind, plain_first_step);
  for (int step = 0; step < recorded_step; ++step) {
    trainer.load_batch(step);
    trainer.step(step);
  }
  trainer.load_batch(recorded_step);
  std::optional<graph::Executor> executor;
  {
    graph::Recorder recorder;
    const Tensor loss = trainer.step(recorded_step);
    // With the memory plan, as a training loop runs it: buffers first written inside the
    // graph move into its arena.
    executor.emplace(recorder.finish({loss}), graph::ExecutorOptions{.streams = streams,
                                                                     .check_stream_safety = true,
                                                                     .plan_memory = true,
                                                                     .cuda_graph = cuda_graph});
  }
  for (int step = recorded_step + 1; step < kSteps; ++step) {
    trainer.load_batch(step);
    executor->run();
  }
  EXPECT_EQ(executor->captured(), cuda_graph);
  return trainer.state_bits();
}

TEST_F(GradScalerTest, RecordedAndCudaGraphStepsMatchEagerSteps) {
  struct Case {
    Kind kind;
    bool plain_first_step;
  };
  for (const Case& setup : {Case{Kind::sgd_nesterov, false}, Case{Kind::sgd_dampened, false},
                            Case{Kind::adamw, false}, Case{Kind::adamw, true}, Case{Kind::sgd_dampened, true}}) {
    SCOPED_TRACE(std::string(kind_name(setup.kind)) + (setup.plain_first_step ? ", unscaled first step" : ""));
    const std::vector<std::uint64_t> eager = train_eagerly(setup.kind, setup.plain_first_step);
    EXPECT_EQ(train_with_graph(setup.kind, setup.plain_first_step, 1, false), eager) << "host graph, one stream";
    EXPECT_EQ(train_with_graph(setup.kind, setup.plain_first_step, 3, false), eager) << "host graph, three streams";
    EXPECT_EQ(train_with_graph(setup.kind, setup.plain_first_step, 3, true), eager) << "one CUDA graph";
  }
}

// The step recorded is a skipped one (step 3's gradients are NaN): the replays after it must
// read the flag each one writes, not the recording's. (A regression, with the memory plan of
// train_with_graph: the flag, first written inside the graph, moved into the arena while the
// update kept the address it had when recorded, so every replay skipped as step 3 did.)
TEST_F(GradScalerTest, StepsReplayedAfterARecordedSkippedStepMatchEagerSteps) {
  for (const Kind kind : {Kind::sgd_nesterov, Kind::adamw}) {
    SCOPED_TRACE(kind_name(kind));
    const std::vector<std::uint64_t> eager = train_eagerly(kind, false);
    EXPECT_EQ(train_with_graph(kind, false, 1, false, /*recorded_step=*/3), eager) << "host graph, one stream";
    EXPECT_EQ(train_with_graph(kind, false, 3, true, /*recorded_step=*/3), eager) << "one CUDA graph";
  }
}

// An optimizer whose update cannot read the flag: the scaler reads it on the host (one
// synchronisation), skips the whole step, and refuses to record it.
class HostOnlyOptimizer final : public Optimizer {
 public:
  explicit HostOnlyOptimizer(std::vector<Tensor> params) : Optimizer("HostOnly") {
    add_param_group(std::move(params), 0.1);
  }
  int updates = 0;

 protected:
  std::vector<std::string> state_names(int) const override { return {}; }
  bool batches_by_exact_step() const override { return false; }
  void update(std::span<StepBatch>, cudaStream_t) override { ++updates; }
  void write_options(detail::StateWriter&) const override {}
  std::vector<std::optional<std::vector<std::string>>> read_options(detail::StateReader&) const override {
    return {std::vector<std::string>{}};
  }
  void install_options(detail::StateReader&) override {}
};

TEST_F(GradScalerTest, HostDecidedStepSkipsOnTheHostAndCannotBeRecorded) {
  Tensor parameter = make_parameter(9800, 4);
  HostOnlyOptimizer optimizer({parameter});
  EXPECT_FALSE(optimizer.can_skip_on_device());
  GradScaler scaler;
  give_gradient(parameter, {1.0f, kInf, 2.0f, 3.0f}, 1.0f);
  scaler.step(optimizer);
  scaler.update();
  EXPECT_EQ(optimizer.updates, 0);
  EXPECT_EQ(optimizer.step_count(0, 0), 0);
  give_gradient(parameter, testing::random_uniform(9801, 4), 1.0f);
  scaler.step(optimizer);
  scaler.update();
  EXPECT_EQ(optimizer.updates, 1);
  EXPECT_THAT([&] { optimizer.step_unless_found_inf(scaler.found_inf(optimizer), current_stream()); },
              ThrowsMessage<InvalidArgument>(HasSubstr("cannot skip a step on the device")));
  graph::Recorder recorder;
  EXPECT_THAT([&] { scaler.step(optimizer); },
              ThrowsMessage<InvalidArgument>(HasSubstr("cannot skip a step on the device")));
}

}  // namespace
}  // namespace strata::optim
