// The CIFAR-10 sample's training step through the host graph (samples/cifar10/step_graph.h,
// --graph): the seed recipe and a tiny airbench94 trained with --graph replay (three streams,
// asynchronous in the simulator) and cuda (one CUDA graph a step, which the simulator
// captures and replays) give the same bits as eager steps: every step's loss and correct
// count, and the whole training state (weights, batch-norm running statistics, momentum,
// schedule, lookahead averages) as the checkpoint file holds it. Across what a recording
// must survive: a learning rate that changes every step, a partial batch between full ones,
// airbench94's lookahead every 5 steps, its whitening bias freezing after epoch 3 (a new
// recording), a checkpoint written mid-run, and a resume (a fresh recording).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <strata/core/graph.h>
#include <strata/core/stream.h>
#include <strata/core/tensor.h>

#include "samples/cifar10/device_images.h"
#include "samples/cifar10/nets.h"
#include "samples/cifar10/recipe_common.h"
#include "samples/cifar10/step_graph.h"
#include "samples/cifar10/synthetic_images.h"
#include "tests/support/device_test.h"

namespace cifar10 {
namespace {

namespace fs = std::filesystem;
using strata::DType;
using strata::Tensor;

using StepGraphTest = strata::testing::DeviceTest;

cudaStream_t stream() { return strata::current_stream(); }

// Airbench94 small enough for the simulator (as cifar10_recipe_test.cpp's).
constexpr Airbench94NetOptions kTinyAirbench{.widths = {8, 8, 16}};

struct TinySet {
  DeviceImages images;
  explicit TinySet(std::int64_t count)
      : images(make_synthetic_images(count, /*seed=*/3), Placement::device, strata::current_stream()) {}

  // count images from first, in order, unaugmented.
  Batch batch(std::int64_t first, int count) const {
    return {images.normalised(first, count, Normalisation{}, stream()), images.labels().narrow(0, first, count)};
  }
};

struct TemporaryFile {
  fs::path path;
  explicit TemporaryFile(const std::string& name)
      : path(fs::temp_directory_path() / ("strata_step_graph_" + name + "_" + std::to_string(::getpid()))) {}
  ~TemporaryFile() {
    std::error_code ignored;
    fs::remove(path, ignored);
  }
};

std::string read_bytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

using MakeRecipe = std::function<std::unique_ptr<SgdRecipe>(GraphMode mode)>;

struct Plan {
  int batch_size = 0;
  std::int64_t last = 0;           // steps [first, last): first is 0, or the resumed step
  std::int64_t partial_step = -1;  // this step's batch has half the images (eager in every mode)
  std::int64_t save_after = -1;    // write a checkpoint after this many steps
  fs::path resume_from = {};       // load this checkpoint first
};

struct Outcome {
  std::vector<std::uint32_t> losses;  // per step: the reported loss's bits
  std::vector<std::int64_t> correct;  // per step
  std::string saved;                  // the checkpoint of Plan::save_after (empty: none)
  std::string final_state;            // the checkpoint after the last step and finish()
  int recordings = 0;
  std::int64_t replays = 0;
  bool captured = false;
  std::vector<std::string> graph_ops;  // the last recorded graph's nodes (empty: none)
};

Outcome train(const MakeRecipe& make, GraphMode mode, const TinySet& set, const Plan& plan) {
  const std::unique_ptr<SgdRecipe> recipe = make(mode);
  recipe->initialise(set.images, stream());
  std::int64_t step = 0;
  if (!plan.resume_from.empty()) step = recipe->load_state(plan.resume_from, stream());
  const std::int64_t batches = set.images.count() / plan.batch_size;
  const TemporaryFile file("state");
  Outcome outcome;
  for (; step < plan.last; ++step) {
    const std::int64_t first = step % batches * plan.batch_size;
    const int count = step == plan.partial_step ? plan.batch_size / 2 : plan.batch_size;
    const StepResult result = recipe->train_step(set.batch(first, count), step, stream());
    // Read at once: a replay's outputs are overwritten by the next one.
    outcome.losses.push_back(std::bit_cast<std::uint32_t>(result.loss.to_vector<float>(stream()).at(0)));
    outcome.correct.push_back(result.correct.to_vector<std::int64_t>(stream()).at(0));
    if (step + 1 == plan.save_after) {
      recipe->save_state(file.path, step + 1, stream());
      outcome.saved = read_bytes(file.path);
    }
  }
  const StepGraph& step_graph = recipe->step_graph();
  outcome.recordings = step_graph.recordings();
  outcome.replays = step_graph.replays();
  outcome.captured = step_graph.captured();
  if (const strata::graph::Graph* graph = step_graph.graph()) {
    for (const strata::graph::NodeInfo& node : graph->nodes()) outcome.graph_ops.push_back(node.op);
  }
  recipe->finish(stream());
  recipe->save_state(file.path, plan.last, stream());
  outcome.final_state = read_bytes(file.path);
  return outcome;
}

void expect_same_steps(const Outcome& graph, const Outcome& eager, const std::string& what) {
  EXPECT_EQ(graph.losses, eager.losses) << what;
  EXPECT_EQ(graph.correct, eager.correct) << what;
  EXPECT_EQ(graph.saved.size(), eager.saved.size()) << what;
  EXPECT_TRUE(graph.saved == eager.saved) << what << ": the mid-run checkpoints differ";
  ASSERT_FALSE(eager.final_state.empty());
  EXPECT_TRUE(graph.final_state == eager.final_state) << what << ": the final states differ";
}

bool contains(const std::vector<std::string>& ops, const std::string& op) {
  return std::find(ops.begin(), ops.end(), op) != ops.end();
}

std::unique_ptr<SgdRecipe> tiny_seed(GraphMode mode) {
  return make_seed_recipe({.batch_size = 8, .seed = 5, .graph = mode, .graph_streams = 3}, {.width1 = 4, .width2 = 8});
}

std::unique_ptr<SgdRecipe> tiny_airbench(GraphMode mode) {
  return make_airbench94_recipe({.batch_size = 4, .seed = 5, .graph = mode, .graph_streams = 3}, kTinyAirbench);
}

TEST(StepGraphMode, NamesReadBackAndOthersAreRefused) {
  for (const GraphMode mode : {GraphMode::off, GraphMode::replay, GraphMode::cuda}) {
    EXPECT_EQ(graph_mode_from_name(graph_mode_name(mode)), mode);
  }
  EXPECT_THROW(graph_mode_from_name("cudagraph"), std::invalid_argument);
  EXPECT_THROW(StepGraph(GraphMode::replay, 0), std::invalid_argument);
}

// Seven steps of a one-cycle schedule (the learning rate differs every step): step 0 eager
// (SGD's momentum buffers start there), step 1 recorded, a half batch at step 4 eager
// between replays, the rest replayed.
TEST_F(StepGraphTest, SeedRecipeReplaysAndCudaGraphMatchEagerSteps) {
  const TinySet set(16);
  const Plan plan{.batch_size = 8, .last = 7, .partial_step = 4, .save_after = 3};
  const Outcome eager = train(tiny_seed, GraphMode::off, set, plan);
  EXPECT_EQ(eager.recordings, 0);
  for (const GraphMode mode : {GraphMode::replay, GraphMode::cuda}) {
    const std::string what(graph_mode_name(mode));
    const Outcome graph = train(tiny_seed, mode, set, plan);
    expect_same_steps(graph, eager, what);
    EXPECT_EQ(graph.recordings, 1) << what;
    EXPECT_EQ(graph.replays, 4) << what << ": steps 2, 3, 5 and 6";
    EXPECT_EQ(graph.captured, mode == GraphMode::cuda) << what;
    // The learning rate is set outside the graph, on the optimizer's device scalars that
    // its update reads; the update, loss and correct count are inside.
    EXPECT_FALSE(contains(graph.graph_ops, "set_lr")) << what;
    EXPECT_TRUE(contains(graph.graph_ops, "sgd_step")) << what;
    EXPECT_TRUE(contains(graph.graph_ops, "conv2d_backward_filter")) << what;
  }
}

// Tiny airbench94, two batches an epoch: the lookahead after steps 4 and 9 (outside the
// graph), the whitening bias frozen from step 6 (epoch 3): steps 0 eager, 1 recorded, 2-5
// replayed, 6 recorded anew, 7-9 replayed.
TEST_F(StepGraphTest, Airbench94MatchesEagerStepsThroughLookaheadAndTheWhiteningFreeze) {
  const TinySet set(8);
  const Plan plan{.batch_size = 4, .last = 10, .save_after = 5};
  const Outcome eager = train(tiny_airbench, GraphMode::off, set, plan);
  for (const GraphMode mode : {GraphMode::replay, GraphMode::cuda}) {
    const std::string what(graph_mode_name(mode));
    const Outcome graph = train(tiny_airbench, mode, set, plan);
    expect_same_steps(graph, eager, what);
    EXPECT_EQ(graph.recordings, 2) << what;
    EXPECT_EQ(graph.replays, 7) << what;
    EXPECT_EQ(graph.captured, mode == GraphMode::cuda) << what;
    // Batch norm's statistics and batch count (one op; the final states compare the counts).
    EXPECT_TRUE(contains(graph.graph_ops, "batch_norm2d_activation_forward")) << what;
    EXPECT_FALSE(contains(graph.graph_ops, "ema_update")) << what << ": the lookahead is not in the graph";
  }
}

// The same run under autocast: bf16, and f16 with the loss scaler (scale, unscale, the
// device-side skip and the scale update inside the graph). The casts of the master weights
// are recorded ops like any other, so replays still give the eager steps bit for bit.
TEST_F(StepGraphTest, Airbench94UnderAutocastMatchesEagerSteps) {
  const TinySet set(8);
  const Plan plan{.batch_size = 4, .last = 7, .save_after = 5};
  for (const DType precision : {DType::bf16, DType::f16}) {
    const MakeRecipe make = [precision](GraphMode mode) {
      return make_airbench94_recipe(
          {.batch_size = 4, .seed = 5, .graph = mode, .graph_streams = 3, .precision = precision}, kTinyAirbench);
    };
    const Outcome eager = train(make, GraphMode::off, set, plan);
    for (const GraphMode mode : {GraphMode::replay, GraphMode::cuda}) {
      const std::string what = std::string(graph_mode_name(mode)) + " " + std::string(strata::dtype_name(precision));
      const Outcome graph = train(make, mode, set, plan);
      expect_same_steps(graph, eager, what);
      EXPECT_GE(graph.replays, 4) << what;
      EXPECT_TRUE(contains(graph.graph_ops, "cast")) << what << ": the master weights' casts";
      if (precision == DType::f16) {
        EXPECT_TRUE(contains(graph.graph_ops, "grad_scaler_unscale")) << what;
      }
    }
  }
}

// A checkpoint written by an eager run after 3 steps, resumed with each mode: the resumed
// run records at once (the optimizer state is loaded), crosses the lookahead and the freeze,
// and ends with the bits of the run that never stopped.
TEST_F(StepGraphTest, Airbench94ResumedWithAGraphEndsAsTheUninterruptedRun) {
  const TinySet set(8);
  const TemporaryFile checkpoint("resume");
  const Plan straight{.batch_size = 4, .last = 8, .save_after = 3};
  const Outcome eager = train(tiny_airbench, GraphMode::off, set, straight);
  {
    std::ofstream out(checkpoint.path, std::ios::binary);
    out << eager.saved;
  }
  for (const GraphMode mode : {GraphMode::replay, GraphMode::cuda}) {
    const std::string what(graph_mode_name(mode));
    const Outcome resumed = train(tiny_airbench, mode, set, {.batch_size = 4, .last = 8, .resume_from = checkpoint.path});
    EXPECT_EQ(resumed.recordings, 2) << what << ": at step 3 and at the freeze (step 6)";
    EXPECT_EQ(resumed.replays, 3) << what << ": steps 4, 5 and 7";
    EXPECT_EQ(resumed.losses, std::vector<std::uint32_t>(eager.losses.begin() + 3, eager.losses.end())) << what;
    EXPECT_TRUE(resumed.final_state == eager.final_state) << what << ": the final states differ";
  }
}

}  // namespace
}  // namespace cifar10
