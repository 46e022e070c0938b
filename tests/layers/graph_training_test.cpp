// Whole training steps through the host graph: the seed network and a residual model with
// batch norm, concat and dropout are recorded once (after a warm-up step, as CUDA Graphs
// need), replayed by the executor over several streams with the stream-safety checker on,
// and must give bit-identical weights to the same steps run eagerly, under random simulator
// schedules. The memory plan's peak is checked against the allocator's measured peak.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "strata/core/allocator.h"
#include "strata/core/config.h"
#include "strata/core/device.h"
#include "strata/core/errors.h"
#include "strata/core/generator.h"
#include "strata/core/graph.h"
#include "strata/core/stream.h"
#include "strata/layers/module.h"
#include "strata/layers/modules.h"
#include "strata/layers/adamw.h"
#include "strata/layers/sgd.h"
#include "tests/kernels/device_values.h"
#include "tests/layers/synthetic_images.h"
#include "tests/support/device_test.h"
#if STRATA_BACKEND_SIM
#include "core/sim/runtime.h"
#endif

namespace strata {
namespace {

using GraphTrainingTest = testing::DeviceTest;

constexpr std::int64_t kBatch = 16;

std::unique_ptr<nn::Sequential> seed_network() {
  return std::make_unique<nn::Sequential>(nn::Conv2d(3, 8, 3, {.padding = 1}), nn::ReLU(), nn::MaxPool2d(2),
                                          nn::Conv2d(8, 16, 3, {.padding = 1}), nn::ReLU(), nn::MaxPool2d(2),
                                          nn::AdaptiveAvgPool2d(1), nn::Flatten(),
                                          nn::Linear(16, testing::kSyntheticClasses));
}

// Branches for the executor to run side by side: a residual block and a two-way concat.
std::unique_ptr<nn::Sequential> residual_network_with(float dropout) {
  return std::make_unique<nn::Sequential>(
      nn::Conv2d(3, 8, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d(8), nn::ReLU(),
      nn::Residual(nn::Sequential(nn::Conv2d(8, 8, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d(8),
                                  nn::ReLU(), nn::Conv2d(8, 8, 3, {.padding = 1}))),
      nn::Concat({nn::Conv2d(8, 4, 1), nn::Sequential(nn::MaxPool2d(3, {.stride = 1, .padding = 1}),
                                                      nn::Conv2d(8, 4, 1))}),
      nn::MaxPool2d(2), nn::Dropout(dropout), nn::AdaptiveAvgPool2d(1), nn::Flatten(),
      nn::Linear(8, testing::kSyntheticClasses));
}
std::unique_ptr<nn::Sequential> residual_network() { return residual_network_with(0.1f); }

// A model, its optimizer and static input buffers that each step's batch is copied into.
struct Trainer {
  std::unique_ptr<nn::Sequential> model;
  std::unique_ptr<optim::Optimizer> optimizer;
  nn::CrossEntropyLoss cross_entropy;
  Tensor images = Tensor::empty({kBatch, 3, 12, 12}, DType::f32, current_stream());
  Tensor labels = Tensor::empty({kBatch}, DType::i64, current_stream());

  explicit Trainer(const std::function<std::unique_ptr<nn::Sequential>()>& make_model, bool adamw = false) {
    manual_seed(3);
    model = make_model();
    if (adamw) {
      optimizer = std::make_unique<optim::AdamW>(model->parameters(), optim::AdamWOptions{.lr = 0.01});
    } else {
      const optim::SgdOptions options{.lr = 0.05, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true};
      optimizer = std::make_unique<optim::SGD>(model->parameters(), options);
    }
  }

  Tensor step() {
    optimizer->zero_grad();
    Tensor loss = cross_entropy(model->forward(images), labels);
    loss.backward();
    optimizer->step();
    return loss;
  }

  // Batch index of data (wrapping around) into the static inputs.
  void load_batch(const testing::SyntheticImages& data, int index) {
    const std::size_t pixels = 3 * 12 * 12;
    const std::size_t first = static_cast<std::size_t>(index * kBatch) % static_cast<std::size_t>(data.count);
    const auto image_begin = data.images.begin() + static_cast<std::ptrdiff_t>(first * pixels);
    const auto label_begin = data.labels.begin() + static_cast<std::ptrdiff_t>(first);
    const std::vector<float> batch_images(image_begin, image_begin + static_cast<std::ptrdiff_t>(kBatch * pixels));
    const std::vector<std::int64_t> batch_labels(label_begin, label_begin + kBatch);
    images.copy_from(Tensor::from_vector(batch_images, images.shape()), current_stream());
    labels.copy_from(Tensor::from_vector(batch_labels, labels.shape()), current_stream());
  }

  std::vector<std::uint32_t> weight_bits() const {
    std::vector<std::uint32_t> bits;
    for (const auto& [name, tensor] : model->state_dict()) {
      if (tensor.dtype() != DType::f32) continue;
      const std::vector<std::uint32_t> some = testing::bit_patterns(tensor.to_vector<float>());
      bits.insert(bits.end(), some.begin(), some.end());
    }
    return bits;
  }
};

constexpr int kSteps = 5;

// A learning rate that changes every step, as a schedule's does.
double lr_factor(int step) { return 1.0 - 0.15 * step; }

std::vector<std::uint32_t> train_eagerly(const std::function<std::unique_ptr<nn::Sequential>()>& make_model,
                                         const testing::SyntheticImages& data, bool adamw = false) {
  Trainer trainer(make_model, adamw);
  for (int step = 0; step < kSteps; ++step) {
    trainer.load_batch(data, step);
    trainer.optimizer->set_lr_factor(lr_factor(step));
    trainer.step();
  }
  return trainer.weight_bits();
}

// Step 0 eagerly (the optimizer's buffers start there), step 1 recorded, the rest replayed.
std::vector<std::uint32_t> train_with_graph(const std::function<std::unique_ptr<nn::Sequential>()>& make_model,
                                            const testing::SyntheticImages& data, int streams,
                                            std::uint64_t schedule_seed, bool cuda_graph = false,
                                            bool adamw = false) {
#if STRATA_BACKEND_SIM
  sim::set_schedule_seed(schedule_seed);
#else
  static_cast<void>(schedule_seed);
#endif
  Trainer trainer(make_model, adamw);
  trainer.load_batch(data, 0);
  trainer.optimizer->set_lr_factor(lr_factor(0));
  trainer.step();
  trainer.load_batch(data, 1);
  trainer.optimizer->set_lr_factor(lr_factor(1));
  std::optional<graph::Executor> executor;
  {
    graph::Recorder recorder;
    const Tensor loss = trainer.step();
    std::vector<Tensor> keep{loss};
    for (const Tensor& parameter : trainer.model->parameters()) keep.push_back(parameter.grad());
    // More than one stream: the memory plan too (one stream runs the buffers as recorded).
    executor.emplace(recorder.finish(keep), graph::ExecutorOptions{.streams = streams,
                                                                   .check_stream_safety = true,
                                                                   .plan_memory = streams > 1,
                                                                   .cuda_graph = cuda_graph});
  }
  for (int step = 2; step < kSteps; ++step) {
    trainer.load_batch(data, step);
    trainer.optimizer->set_lr_factor(lr_factor(step));  // between replays, outside the graph
    executor->run();
  }
  EXPECT_EQ(executor->captured(), cuda_graph);
  std::vector<std::uint32_t> bits = trainer.weight_bits();
#if STRATA_BACKEND_SIM
  sim::set_schedule_seed(std::nullopt);
#endif
  return bits;
}

void expect_graph_matches_eager(const std::function<std::unique_ptr<nn::Sequential>()>& make_model) {
  const testing::SyntheticImages data = testing::make_synthetic_images({.count = 64, .seed = 5});
  const std::vector<std::uint32_t> eager = train_eagerly(make_model, data);
  EXPECT_EQ(train_with_graph(make_model, data, 1, 0), eager) << "one stream";
  for (const std::uint64_t seed : {11u, 12u}) {
    EXPECT_EQ(train_with_graph(make_model, data, 3, seed), eager) << "three streams, schedule seed " << seed;
  }
}

TEST_F(GraphTrainingTest, SeedNetworkOnThreeStreamsMatchesEagerSteps) { expect_graph_matches_eager(seed_network); }

TEST_F(GraphTrainingTest, ResidualNetworkOnThreeStreamsMatchesEagerSteps) {
  expect_graph_matches_eager(residual_network);
}

// The whole step, three streams of it, as one CUDA graph: captured by the first replay,
// then one launch per step, with what changes per step (learning rate, dropout's Philox
// offset, AdamW's step count) written before each launch by the replay hooks.
TEST_F(GraphTrainingTest, WholeStepAsOneCudaGraphMatchesEagerSteps) {
  const testing::SyntheticImages data = testing::make_synthetic_images({.count = 64, .seed = 5});
  for (const auto& make_model : {std::function(seed_network), std::function(residual_network)}) {
    const std::vector<std::uint32_t> eager = train_eagerly(make_model, data);
    EXPECT_EQ(train_with_graph(make_model, data, 1, 21, /*cuda_graph=*/true), eager) << "one stream";
    EXPECT_EQ(train_with_graph(make_model, data, 3, 21, /*cuda_graph=*/true), eager) << "three streams";
  }
  const std::vector<std::uint32_t> adamw = train_eagerly(residual_network, data, /*adamw=*/true);
  EXPECT_EQ(train_with_graph(residual_network, data, 3, 22, /*cuda_graph=*/true, /*adamw=*/true), adamw) << "AdamW";
}

// With the update cut into one launch per parameter, the last layer's update depends only on
// its own gradients: it may run while the first layer's filter gradient is computed.
TEST_F(GraphTrainingTest, BucketedUpdatesOverlapTheBackwardAndKeepTheBits) {
  const testing::SyntheticImages data = testing::make_synthetic_images({.count = 64, .seed = 5});
  const auto train = [&](bool graph_mode) {
    Trainer trainer(seed_network);
    trainer.optimizer->set_bucket_bytes(1);
    trainer.load_batch(data, 0);
    trainer.step();
    std::optional<graph::Executor> executor;
    trainer.load_batch(data, 1);  // outside the recording: its copies would be replayed too
    if (graph_mode) {
      graph::Recorder recorder;
      trainer.step();
      graph::Graph graph = recorder.finish();
      std::ptrdiff_t first_filter_gradient = -1;
      std::vector<std::size_t> updates;
      for (std::size_t i = 0; i < graph.size(); ++i) {
        if (graph.node(i).name() == "0/conv2d_backward_filter") first_filter_gradient = static_cast<std::ptrdiff_t>(i);
        if (graph.node(i).name() == "optimizer/sgd_step") updates.push_back(i);
      }
      EXPECT_EQ(updates.size(), trainer.model->parameters().size());
      EXPECT_GE(first_filter_gradient, 0);
      EXPECT_FALSE(graph.precedes(static_cast<std::size_t>(first_filter_gradient), updates.back()));
      executor.emplace(std::move(graph), graph::ExecutorOptions{.streams = 3, .check_stream_safety = true});
    } else {
      trainer.step();
    }
    for (int step = 2; step < kSteps; ++step) {
      trainer.load_batch(data, step);
      if (executor) {
        executor->run();
      } else {
        trainer.step();
      }
    }
    return trainer.weight_bits();
  };
  EXPECT_EQ(train(true), train(false));
}

TEST_F(GraphTrainingTest, BackwardWorkSpreadsOverStreams) {
  Trainer trainer(residual_network);
  const testing::SyntheticImages data = testing::make_synthetic_images({.count = 16, .seed = 5});
  trainer.load_batch(data, 0);
  trainer.step();
  graph::Recorder recorder;
  trainer.step();
  const graph::Graph graph = recorder.finish();
  const graph::Schedule schedule = graph::schedule(graph, 3);
  std::vector<int> nodes_per_stream(3, 0);
  for (const int stream : schedule.stream_of) ++nodes_per_stream[static_cast<std::size_t>(stream)];
  EXPECT_GT(nodes_per_stream[1], 0);  // independent work exists: data vs filter gradients, branches
  EXPECT_TRUE(graph::check_stream_safety(graph, schedule).empty());
}

TEST_F(GraphTrainingTest, MemoryPlanPeakIsWithinTheAllocatorsMeasuredPeak) {
  Trainer trainer(seed_network);
  const testing::SyntheticImages data = testing::make_synthetic_images({.count = 16, .seed = 5});
  trainer.load_batch(data, 0);
  trainer.step();
  // The allocator's peak over one plain eager step (which frees each activation when its
  // last handle goes, during the backward)...
  stream_synchronize(current_stream());
  reset_peak_device_memory(current_device());
  trainer.step();
  stream_synchronize(current_stream());
  const std::size_t measured = device_memory_stats(current_device()).peak_in_use_bytes;
  // ...against the plan of the same step, recorded.
  graph::Recorder recorder;
  const Tensor loss = trainer.step();
  std::vector<Tensor> keep{loss};
  for (const Tensor& parameter : trainer.model->parameters()) keep.push_back(parameter.grad());
  const graph::MemoryPlan plan = graph::plan_memory(recorder.finish(keep));
  std::printf("memory plan: peak %zu bytes (arena %zu for %zu live at most of %zu transient, %zu kept, %zu "
              "workspace); allocator measured %zu over an eager step\n",
              plan.peak_bytes(), plan.arena_bytes, plan.live_bytes, plan.transient_bytes, plan.kept_bytes,
              plan.workspace_bytes, measured);
  EXPECT_GT(plan.workspace_bytes, 0u);  // conv2d's filter-gradient split, batch statistics, ...
  EXPECT_LE(plan.live_bytes, plan.arena_bytes + plan.workspace_bytes);
  EXPECT_LT(plan.arena_bytes, plan.transient_bytes);
  // The plan's live bytes are what the eager step holds at its peak, up to the recording's
  // extra copies of first gradients and the allocator's rounding: within 10%.
  const std::size_t live_peak = plan.live_bytes + plan.kept_bytes;
  EXPECT_LE(live_peak, measured + measured / 10);
  EXPECT_GE(live_peak, measured - measured / 10);
  // The arena adds the placement's fragmentation, bounded here.
  EXPECT_LE(plan.peak_bytes(), measured + measured / 2);
}

}  // namespace
}  // namespace strata
