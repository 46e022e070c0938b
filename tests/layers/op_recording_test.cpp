// The contract the host graph's executor relies on (strata/core/op.h): a whole training step
// of the seed network (forward, loss.backward(), a Nesterov SGD step) records every piece
// of its device work as ops, named and phased as documented, and running the recorded
// bodies again, in order, is another training step, bit for bit; so is an AdamW step with
// batch norm and clipping, whose bias correction needs the step count of each replay.
// Dropout draws a fresh mask each time its op runs.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "strata/core/autograd.h"
#include "strata/core/generator.h"
#include "strata/core/op.h"
#include "strata/core/random.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/layers/functional.h"
#include "strata/layers/module.h"
#include "strata/layers/modules.h"
#include "strata/layers/adamw.h"
#include "strata/layers/clip_grad.h"
#include "strata/layers/sgd.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"
#include "tests/support/recording_sink.h"

namespace strata {
namespace {

using ::testing::Contains;
using graph::Phase;
using graph::detail::RecordedOp;
using testing::RecordingSink;
using OpRecordingTest = testing::DeviceTest;

constexpr std::int64_t kClasses = 5;

nn::Sequential seed_network() {
  return nn::Sequential(nn::Conv2d(3, 8, 3, {.padding = 1}), nn::ReLU(), nn::MaxPool2d(2),
                        nn::Conv2d(8, 16, 3, {.padding = 1}), nn::ReLU(), nn::MaxPool2d(2),
                        nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(16, kClasses));
}

// A network, its optimizer and a fixed batch: one training step as a user writes it.
struct Trainer {
  Trainer(const Tensor& images, const Tensor& labels)
      : model(seed_network()),
        sgd(model.parameters(), {.lr = 0.05, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true}),
        x(images),
        targets(labels) {}

  // The device work of a step; zero_grad (host only: set_to_none) comes before it.
  void forward_backward_step() {
    F::cross_entropy(model(x), targets).backward();
    sgd.step();
  }
  void step() {
    sgd.zero_grad();
    forward_backward_step();
  }

  nn::Sequential model;
  optim::SGD sgd;
  Tensor x;        // (N, 3, H, W)
  Tensor targets;  // (N) i64
};

std::vector<std::vector<float>> weights(const nn::Sequential& model) {
  std::vector<std::vector<float>> values;
  for (const Tensor& parameter : model.parameters()) values.push_back(parameter.to_vector<float>());
  return values;
}

const RecordedOp* find_op(const RecordingSink& sink, const std::string& name) {
  for (const RecordedOp& op : sink.ops) {
    if (op.name == name) return &op;
  }
  return nullptr;
}

TEST_F(OpRecordingTest, ReplayingARecordedTrainingStepIsAnotherStepBitForBit) {
  Stream stream;
  const StreamGuard on_stream(stream);
  Tensor x = Tensor::empty({2, 3, 8, 8}, DType::f32, stream);  // (N, C, H, W)
  fill_uniform(x, {.low = -1.0f, .high = 1.0f, .seed = 21}, stream);
  const Tensor targets = Tensor::from_vector(std::vector<std::int64_t>{3, 1}, {2}).to_device(stream);

  manual_seed(5);
  Trainer recorded(x, targets);
  manual_seed(5);
  Trainer eager(x, targets);
  ASSERT_EQ(weights(recorded.model), weights(eager.model));

  // A warm-up step initialises the momentum buffers; the recorded step assumes them.
  recorded.step();
  eager.step();
  recorded.sgd.zero_grad();
  RecordingSink sink;
  recorded.forward_backward_step();  // recorded, and run: the second step
  sink.stop();
  eager.step();
  ASSERT_EQ(weights(recorded.model), weights(eager.model));

  // Each replay reads the learning rate of its time, as step() would.
  for (const double factor : {1.0, 0.5, 0.25}) {
    SCOPED_TRACE(::testing::Message() << "lr factor " << factor);
    recorded.sgd.set_lr_factor(factor);
    sink.replay(stream);
    eager.sgd.set_lr_factor(factor);
    eager.step();
    const std::vector<std::vector<float>> replayed = weights(recorded.model);
    const std::vector<std::vector<float>> expected = weights(eager.model);
    ASSERT_EQ(replayed.size(), expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
      SCOPED_TRACE(::testing::Message() << "parameter " << i);
      EXPECT_TRUE(testing::all_equal(replayed[i], expected[i]));
    }
  }
  for (int g = 0; g < recorded.sgd.num_groups(); ++g) {
    for (std::size_t i = 0; i < recorded.sgd.params(g).size(); ++i) {
      const auto index = static_cast<int>(i);
      EXPECT_EQ(recorded.sgd.step_count(g, index), eager.sgd.step_count(g, index));
      EXPECT_EQ(recorded.sgd.step_count(g, index), 5);
    }
  }
}

TEST_F(OpRecordingTest, AStepRecordsNamedOpsInTheirPhases) {
  Stream stream;
  const StreamGuard on_stream(stream);
  Tensor x = Tensor::empty({2, 3, 8, 8}, DType::f32, stream);  // (N, C, H, W)
  fill_uniform(x, {.seed = 22}, stream);
  const Tensor targets = Tensor::from_vector(std::vector<std::int64_t>{0, 4}, {2}).to_device(stream);
  Trainer trainer(x, targets);
  trainer.step();
  trainer.sgd.zero_grad();

  RecordingSink sink;
  trainer.forward_backward_step();
  sink.stop();
  const std::vector<std::string> names = sink.names();
  for (const char* name :
       {"conv2d_forward", "relu_forward", "max_pool2d_forward", "adaptive_avg_pool2d_forward", "linear_forward",
        "softmax_cross_entropy_forward", "softmax_cross_entropy_backward", "linear_backward_data",
        "linear_backward_weight", "linear_backward_bias", "adaptive_avg_pool2d_backward", "max_pool2d_backward",
        "relu_backward", "conv2d_backward_data", "conv2d_backward_filter", "conv2d_backward_bias", "sgd_step"}) {
    EXPECT_THAT(names, Contains(name));
  }

  // The first layer's input needs no gradient: one data gradient, for the second conv.
  int backward_data = 0;
  for (const RecordedOp& op : sink.ops) {
    if (op.name == "conv2d_backward_data") {
      ++backward_data;
      EXPECT_EQ(op.scope, "3");
    }
  }
  EXPECT_EQ(backward_data, 1);

  // Forward ops first, then backward, then the optimizer; ops name their module.
  const std::vector<Phase> order{Phase::forward, Phase::backward, Phase::optimizer};
  std::size_t position = 0;
  for (const RecordedOp& op : sink.ops) {
    SCOPED_TRACE(op.name);
    while (position < order.size() && op.phase != order[position]) ++position;
    ASSERT_LT(position, order.size()) << "phase " << graph::phase_name(op.phase) << " out of order";
  }
  EXPECT_EQ(sink.ops.back().name, "sgd_step");
  EXPECT_EQ(sink.ops.back().phase, Phase::optimizer);
  const RecordedOp* conv = find_op(sink, "conv2d_forward");
  ASSERT_NE(conv, nullptr);
  EXPECT_EQ(conv->scope, "0");
  EXPECT_EQ(conv->phase, Phase::forward);
  const RecordedOp* filter = find_op(sink, "conv2d_backward_filter");
  ASSERT_NE(filter, nullptr);
  EXPECT_EQ(filter->phase, Phase::backward);

  // The SGD step reads every parameter, gradient and momentum buffer and writes the
  // parameters and buffers: 6 parameters.
  EXPECT_EQ(sink.ops.back().reads.size(), 18U);
  EXPECT_EQ(sink.ops.back().writes.size(), 12U);
}

// Batch norm (running statistics and batch counter updated in place), gradient clipping and
// AdamW, whose update depends on the step count: replays match eager steps bit for bit.
TEST_F(OpRecordingTest, ReplayedAdamWStepsWithBatchNormMatchEagerSteps) {
  Stream stream;
  const StreamGuard on_stream(stream);
  Tensor x = Tensor::empty({2, 3, 5, 5}, DType::f32, stream);  // (N, C, H, W)
  fill_uniform(x, {.low = -1.0f, .high = 1.0f, .seed = 31}, stream);
  const Tensor targets = Tensor::from_vector(std::vector<std::int64_t>{1, 2}, {2}).to_device(stream);
  struct Run {
    nn::Sequential model{nn::Conv2d(3, 4, 3), nn::BatchNorm2d(4), nn::ReLU(), nn::AdaptiveAvgPool2d(1),
                         nn::Flatten(), nn::Linear(4, 3)};
    optim::AdamW adamw{model.parameters(), {.lr = 0.01}};
  };
  manual_seed(8);
  Run recorded;
  manual_seed(8);
  Run eager;
  const auto forward_backward_step = [&](Run& run) {
    F::cross_entropy(run.model(x), targets).backward();
    optim::clip_grad_norm_(run.adamw.parameters(), 0.5);
    run.adamw.step();
  };
  const auto step = [&](Run& run) {
    run.adamw.zero_grad();
    forward_backward_step(run);
  };
  step(recorded);
  step(eager);
  recorded.adamw.zero_grad();
  RecordingSink sink;
  forward_backward_step(recorded);
  sink.stop();
  step(eager);

  const auto& batch_norm = dynamic_cast<const nn::BatchNorm2d&>(*recorded.model.named_children().at(1).second);
  const RecordedOp* forward = find_op(sink, "batch_norm2d_forward");
  ASSERT_NE(forward, nullptr);
  EXPECT_THAT(sink.names(), Contains("clip_grad_norm"));
  EXPECT_EQ(find_op(sink, "clip_grad_norm")->phase, Phase::optimizer);
  // The batch is counted by the forward's own statistics kernel: the op reads and writes the
  // counter, so that a replay orders it like the running statistics.
  for (const Tensor* statistic :
       {&batch_norm.running_mean(), &batch_norm.running_var(), &batch_norm.num_batches_tracked()}) {
    const auto same = [statistic](const Tensor& t) { return t.data_ptr() == statistic->data_ptr(); };
    EXPECT_TRUE(std::ranges::any_of(forward->reads, same));
    EXPECT_TRUE(std::ranges::any_of(forward->writes, same));
  }

  for (int replay = 0; replay < 3; ++replay) {
    sink.replay(stream);
    step(eager);
  }
  const std::vector<std::vector<float>> replayed = weights(recorded.model);
  const std::vector<std::vector<float>> expected = weights(eager.model);
  ASSERT_EQ(replayed.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "parameter " << i);
    EXPECT_TRUE(testing::all_equal(replayed[i], expected[i]));
  }
  const auto& eager_norm = dynamic_cast<const nn::BatchNorm2d&>(*eager.model.named_children().at(1).second);
  EXPECT_TRUE(testing::all_equal(batch_norm.running_var().to_vector<float>(stream),
                                 eager_norm.running_var().to_vector<float>(stream)));
  EXPECT_EQ(batch_norm.num_batches_tracked().to_vector<std::int64_t>(stream), std::vector<std::int64_t>{5});
  EXPECT_EQ(recorded.adamw.step_count(0, 0), 5);
}

TEST_F(OpRecordingTest, ADropoutOpDrawsAFreshMaskEachTimeItRuns) {
  Stream stream;
  const StreamGuard on_stream(stream);
  Tensor x = Tensor::empty({4, 33}, DType::f32, stream);
  x.fill(1.0, stream);
  manual_seed(3);
  RecordingSink sink;
  const Tensor y = F::dropout(x, 0.5f, /*training=*/true);
  sink.stop();
  ASSERT_EQ(sink.names(), std::vector<std::string>{"dropout_forward"});
  ASSERT_EQ(sink.ops[0].writes.size(), 2U);  // y and the mask
  const std::vector<float> recorded = y.to_vector<float>(stream);
  const GeneratorState before_replays = default_generator().state();

  sink.replay(stream);
  const std::vector<float> first = y.to_vector<float>(stream);
  sink.replay(stream);
  const std::vector<float> second = y.to_vector<float>(stream);
  EXPECT_NE(first, recorded);
  EXPECT_NE(second, first);
  // Each run reserved its own words of the generator's stream, one per element.
  EXPECT_EQ(default_generator().state().offset, before_replays.offset + 2 * 4 * 33);
  for (const float value : second) EXPECT_THAT(value, ::testing::AnyOf(0.0f, 2.0f));
  EXPECT_THAT(first, Contains(0.0f));
  EXPECT_THAT(first, Contains(2.0f));
}

}  // namespace
}  // namespace strata
