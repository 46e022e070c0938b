// optim::GradScaler: scaling the loss and its gradient, unscaling before the step, a step
// skipped when a gradient is inf or NaN (on the device for SGD, on the host for AdamW) with
// the scale backing off, growth after the interval, the stage errors of PyTorch's
// GradScaler, the state round trip, and whole steps recorded and replayed by the host graph
// and as one CUDA graph with the same bits as eager steps.
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

// A non-finite gradient in any parameter: no update, and the scale halves. SGD decides on
// the device (its step count still advances); AdamW on the host (its count does not).
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
    EXPECT_EQ(optimizer->can_skip_on_device(), !adamw);
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
    EXPECT_EQ(optimizer->step_count(0, 0), adamw ? 0 : 1);
  }
}

// After a skipped first step, SGD's next step is the first step of an SGD that never saw the
// skipped one (its buffers were left at zero, and dampening is 0).
TEST_F(GradScalerTest, SgdAfterASkippedFirstStepMatchesAFreshStart) {
  const SgdOptions options{.lr = 0.05, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true};
  Tensor scaled_parameter = make_parameter(9550, 33);
  Tensor plain_parameter = make_parameter(9550, 33);
  SGD scaled_sgd({scaled_parameter}, options);
  SGD plain_sgd({plain_parameter}, options);
  GradScaler scaler({.init_scale = 4.0});
  std::vector<float> bad = testing::random_uniform(9551, 33);
  bad[5] = kInf;
  give_gradient(scaled_parameter, bad, 1.0f);
  scaler.step(scaled_sgd);
  scaler.update();
  EXPECT_EQ(scaler.get_scale(), 2.0);
  for (int step = 0; step < 2; ++step) {
    const std::vector<float> gradient = testing::random_uniform(9560 + step, 33);
    give_gradient(scaled_parameter, gradient, 2.0f);
    give_gradient(plain_parameter, gradient, 1.0f);
    scaler.step(scaled_sgd);
    scaler.update();
    plain_sgd.step();
  }
  EXPECT_EQ(bits_of(scaled_parameter), bits_of(plain_parameter));
  // With dampening the rule would differ: the scaler then reads the flag on the host.
  Tensor damped_parameter = make_parameter(9570, 3);
  EXPECT_FALSE(SGD({damped_parameter}, {.lr = 0.1, .momentum = 0.9, .dampening = 0.1}).can_skip_on_device());
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

// A small classifier, SGD and a scaler with a short growth interval; the steps 3 and 4 put
// an infinity in the input, so their gradients are NaN.
struct ScaledTrainer {
  std::unique_ptr<nn::Sequential> model;
  std::unique_ptr<SGD> sgd;
  GradScaler scaler{{.init_scale = 256.0, .growth_interval = 2}};
  Tensor inputs = Tensor::empty({kBatch, 6}, DType::f32, current_stream());
  Tensor labels = Tensor::empty({kBatch}, DType::i64, current_stream());

  ScaledTrainer() {
    manual_seed(17);
    model = std::make_unique<nn::Sequential>(nn::Linear(6, 8), nn::ReLU(), nn::Linear(8, 3));
    sgd = std::make_unique<SGD>(model->parameters(), SgdOptions{.lr = 0.05, .momentum = 0.9, .nesterov = true});
  }

  void load_batch(int step) {
    std::vector<float> values = testing::random_uniform(9700 + static_cast<std::uint64_t>(step), kBatch * 6);
    if (step == 3 || step == 4) values[static_cast<std::size_t>(step)] = kInf;
    inputs.copy_from(Tensor::from_vector(values, inputs.shape()), current_stream());
    std::vector<std::int64_t> targets;
    for (std::int64_t i = 0; i < kBatch; ++i) targets.push_back((i + step) % 3);
    labels.copy_from(Tensor::from_vector(targets, labels.shape()), current_stream());
  }

  Tensor step() {
    sgd->zero_grad();
    Tensor loss = F::cross_entropy(model->forward(inputs), labels);
    scaler.scale(loss).backward();
    scaler.step(*sgd);
    scaler.update();
    return loss;
  }

  std::vector<std::uint32_t> state_bits() const {
    std::vector<std::uint32_t> bits;
    for (const Tensor& parameter : model->parameters()) {
      const std::vector<std::uint32_t> some = bits_of(parameter);
      bits.insert(bits.end(), some.begin(), some.end());
    }
    bits.push_back(std::bit_cast<std::uint32_t>(scaler.scale_tensor().to_vector<float>().front()));
    bits.push_back(static_cast<std::uint32_t>(scaler.growth_tracker_tensor().to_vector<std::int32_t>().front()));
    return bits;
  }
};

std::vector<std::uint32_t> train_eagerly() {
  ScaledTrainer trainer;
  for (int step = 0; step < kSteps; ++step) {
    trainer.load_batch(step);
    trainer.step();
  }
  // The skips and growths happened: 256 -> 512 (step 1) -> 256 -> 128 (3, 4) -> 256 (6).
  EXPECT_EQ(trainer.scaler.get_scale(), 256.0);
  return trainer.state_bits();
}

// Step 0 eager, step 1 recorded, the rest replayed (the skipped steps among them).
std::vector<std::uint32_t> train_with_graph(int streams, bool cuda_graph) {
  ScaledTrainer trainer;
  trainer.load_batch(0);
  trainer.step();
  trainer.load_batch(1);
  std::optional<graph::Executor> executor;
  {
    graph::Recorder recorder;
    const Tensor loss = trainer.step();
    executor.emplace(recorder.finish({loss}), graph::ExecutorOptions{.streams = streams,
                                                                     .check_stream_safety = true,
                                                                     .cuda_graph = cuda_graph});
  }
  for (int step = 2; step < kSteps; ++step) {
    trainer.load_batch(step);
    executor->run();
  }
  EXPECT_EQ(executor->captured(), cuda_graph);
  return trainer.state_bits();
}

TEST_F(GradScalerTest, RecordedAndCudaGraphStepsMatchEagerSteps) {
  const std::vector<std::uint32_t> eager = train_eagerly();
  EXPECT_EQ(train_with_graph(1, false), eager) << "host graph, one stream";
  EXPECT_EQ(train_with_graph(3, false), eager) << "host graph, three streams";
  EXPECT_EQ(train_with_graph(3, true), eager) << "one CUDA graph";
}

TEST_F(GradScalerTest, HostDecidedStepCannotBeRecorded) {
  Tensor parameter = make_parameter(9800, 4);
  AdamW adamw({parameter}, {.lr = 0.01});
  GradScaler scaler;
  give_gradient(parameter, testing::random_uniform(9801, 4), 1.0f);
  graph::Recorder recorder;
  EXPECT_THAT([&] { scaler.step(adamw); },
              ThrowsMessage<InvalidArgument>(HasSubstr("cannot skip a step on the device")));
}

}  // namespace
}  // namespace strata::optim
