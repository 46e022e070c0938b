// An optimizer step updates all parameter groups in one kernel launch per kernel variant:
// SGD (airbench94's groups: norm biases and the rest, with their own learning rate and weight
// decay) and AdamW with groups at different step counts, counted as the nodes of a captured
// CUDA graph, and bit for bit the steps of one optimizer per group; with a schedule and a
// found-inf flag read on the device.
#include <cstdint>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "strata/core/cuda_graph.h"
#include "strata/core/stream.h"
#include "strata/layers/adamw.h"
#include "strata/layers/sgd.h"
#include "tests/kernels/device_values.h"
#include "tests/kernels/optimizer_test_support.h"

namespace strata::optim {
namespace {

// Parameters of odd shapes, one list per group, with fresh gradients each step.
std::vector<std::vector<Tensor>> make_groups(const std::vector<std::vector<Shape>>& shapes, std::uint64_t seed) {
  std::vector<std::vector<Tensor>> groups;
  for (const std::vector<Shape>& group_shapes : shapes) {
    std::vector<Tensor>& group = groups.emplace_back();
    for (const Shape& shape : group_shapes) group.push_back(testing::random_leaf(seed++, shape));
  }
  return groups;
}

Tensor copy_of(const Tensor& source) {
  Tensor copy = Tensor::empty(source.shape(), DType::f32, current_stream());
  copy.copy_from(source, current_stream());
  return copy;
}

std::vector<std::vector<Tensor>> copies_of(const std::vector<std::vector<Tensor>>& groups) {
  std::vector<std::vector<Tensor>> copies;
  for (const std::vector<Tensor>& group : groups) {
    std::vector<Tensor>& copy = copies.emplace_back();
    for (const Tensor& parameter : group) {
      Tensor leaf = copy_of(parameter);
      leaf.set_requires_grad(true);
      copy.push_back(leaf);
    }
  }
  return copies;
}

// The same gradients on both copies; parameter i of group g gets one only when has(g, i).
template <typename Has>
void give_gradients(std::vector<std::vector<Tensor>>& a, std::vector<std::vector<Tensor>>& b, std::uint64_t seed,
                    Has has) {
  for (std::size_t g = 0; g < a.size(); ++g) {
    for (std::size_t i = 0; i < a[g].size(); ++i) {
      if (!has(g, i)) continue;
      const Tensor gradient = testing::random_device(seed++, a[g][i].shape());
      a[g][i].set_grad(copy_of(gradient));
      b[g][i].set_grad(copy_of(gradient));
    }
  }
}

::testing::AssertionResult groups_equal(const std::vector<std::vector<Tensor>>& a,
                                        const std::vector<std::vector<Tensor>>& b) {
  for (std::size_t g = 0; g < a.size(); ++g) {
    for (std::size_t i = 0; i < a[g].size(); ++i) {
      if (testing::bit_patterns(a[g][i].to_vector<float>()) != testing::bit_patterns(b[g][i].to_vector<float>())) {
        return ::testing::AssertionFailure() << "parameter " << i << " of group " << g << " differs";
      }
    }
  }
  return ::testing::AssertionSuccess();
}

const std::vector<std::vector<Shape>> kShapes = {{Shape{8}, Shape{3}, Shape{0}},
                                                 {Shape{8, 3, 3, 3}, Shape{5, 4097 + 3}, Shape{10, 7}},
                                                 {},
                                                 {Shape{17}}};

TEST(OptimizerSingleLaunch, SgdGroupsTakeOneLaunchAndMatchOneOptimizerPerGroup) {
  const Stream stream;
  const StreamGuard on_stream(stream);
  std::vector<std::vector<Tensor>> together = make_groups(kShapes, 10);
  std::vector<std::vector<Tensor>> apart = copies_of(together);
  const SgdOptions defaults{.lr = 0.1, .momentum = 0.85, .weight_decay = 5e-4, .nesterov = true};
  SGD sgd({{.params = together[0], .lr = 0.3, .weight_decay = 0.0},
           {.params = together[1]},
           {.params = together[2], .lr = 0.7},
           {.params = together[3], .lr = 0.02, .weight_decay = 0.1}},
          defaults);
  std::vector<std::unique_ptr<SGD>> per_group;
  per_group.push_back(std::make_unique<SGD>(apart[0], SgdOptions{.lr = 0.3, .momentum = 0.85, .nesterov = true}));
  per_group.push_back(std::make_unique<SGD>(apart[1], defaults));
  per_group.push_back(std::make_unique<SGD>(apart[3], SgdOptions{.lr = 0.02, .momentum = 0.85, .weight_decay = 0.1,
                                                                  .nesterov = true}));
  for (int step = 0; step < 4; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    // Step 0: group 3's parameter has no gradient yet, so its buffer starts a step later.
    give_gradients(together, apart, 100 + 10 * static_cast<std::uint64_t>(step),
                   [&](std::size_t g, std::size_t) { return step > 0 || g != 3; });
    const double factor = 1.0 / (step + 1);  // a schedule, written to the device lr of each group
    sgd.set_lr_factor(factor);
    for (auto& optimizer : per_group) optimizer->set_lr_factor(factor);
    // Step 1: group 3's buffer is new while the others' are not: still one update launch
    // (counted from step 2, once every state exists: a new state is also a fill).
    if (step < 2) {
      sgd.step(stream);
    } else {
      EXPECT_EQ(testing::launches_of(stream, [&] { sgd.step(stream); }), 1u);
    }
    for (auto& optimizer : per_group) optimizer->step(stream);
    EXPECT_TRUE(groups_equal(together, apart));
  }
}

TEST(OptimizerSingleLaunch, AdamWGroupsAtDifferentStepsTakeOneLaunchAndSkipOnFoundInf) {
  const Stream stream;
  const StreamGuard on_stream(stream);
  std::vector<std::vector<Tensor>> together = make_groups(kShapes, 200);
  std::vector<std::vector<Tensor>> apart = copies_of(together);
  AdamW adamw({{.params = together[0], .weight_decay = 0.0},
               {.params = together[1], .lr = 3e-3},
               {.params = together[2]},
               {.params = together[3], .lr = 1e-2, .beta1 = 0.8}},
              {.lr = 1e-3, .weight_decay = 0.05});
  std::vector<std::unique_ptr<AdamW>> per_group;
  per_group.push_back(std::make_unique<AdamW>(apart[0], AdamWOptions{.weight_decay = 0.0}));
  per_group.push_back(std::make_unique<AdamW>(apart[1], AdamWOptions{.lr = 3e-3, .weight_decay = 0.05}));
  per_group.push_back(std::make_unique<AdamW>(apart[3], AdamWOptions{.lr = 1e-2, .beta1 = 0.8, .weight_decay = 0.05}));
  Tensor found_inf = Tensor::zeros(Shape{}, DType::f32, stream);
  for (int step = 0; step < 5; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    // Group 0's last parameter starts a step late: its step count differs from its group's.
    give_gradients(together, apart, 300 + 10 * static_cast<std::uint64_t>(step),
                   [&](std::size_t g, std::size_t i) { return step > 0 || !(g == 0 && i == 1); });
    if (step < 2) {
      adamw.step(stream);
      for (auto& optimizer : per_group) optimizer->step(stream);
      EXPECT_TRUE(groups_equal(together, apart));
      continue;
    }
    // From step 2 on through the found-inf flag (the counts move to the device, one batch
    // per step count: still one launch for the update, one for the counts); step 3 is skipped.
    found_inf.fill(step == 3 ? 1.0 : 0.0, stream);
    if (step == 2) {
      adamw.step_unless_found_inf(found_inf, stream);  // the first such step writes the device counts
    } else {
      EXPECT_EQ(testing::launches_of(stream, [&] { adamw.step_unless_found_inf(found_inf, stream); }), 2u);
    }
    if (step != 3) {
      for (auto& optimizer : per_group) optimizer->step(stream);
    }
    EXPECT_TRUE(groups_equal(together, apart));
  }
  EXPECT_EQ(adamw.step_count(0, 0), 4);
  EXPECT_EQ(adamw.step_count(0, 1), 3);
}

}  // namespace
}  // namespace strata::optim
