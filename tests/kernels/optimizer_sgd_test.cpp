// sgd_step against the double reference over several steps (the first-step buffer rule,
// Nesterov, dampening, weight decay, maximize), on odd sizes and more tensors than one
// launch takes, with guard elements around every tensor; against PyTorch; an exact
// small-integer case; the device learning rate; the first step decided by a device step
// count, with a step skipped by the found-inf flag; and argument errors.
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kernels/multi_tensor_host.h"
#include "strata/core/cuda_graph.h"
#include "strata/core/stream.h"
#include "strata/kernels/grad_scaler.h"
#include "strata/kernels/optimizer_sgd.h"
#include "tests/kernels/device_values.h"
#include "tests/kernels/optimizer_test_support.h"
#include "tests/reference/optimizer_reference.h"
#include "tests/support/compare.h"
#include "tests/support/golden.h"

namespace strata::kernels {
namespace {

using testing::GuardedTensors;
using ::testing::HasSubstr;
using testing::HostLists;
using testing::ReferenceLists;
using testing::Tolerance;

// A few float roundings per step on values of order 1.
constexpr Tolerance kSgdTolerance{.abs_tol = 1e-6, .rel_tol = 1e-6};

struct SgdCase {
  const char* name;
  SgdParams params;
};

const SgdCase kSgdCases[] = {
    {"plain", {.lr = 0.1}},
    {"weight_decay", {.lr = 0.1, .weight_decay = 0.05}},
    {"momentum", {.lr = 0.05, .momentum = 0.9}},
    {"dampening_weight_decay", {.lr = 0.05, .momentum = 0.8, .dampening = 0.3, .weight_decay = 0.01}},
    {"nesterov", {.lr = 0.1, .momentum = 0.85, .weight_decay = 0.02, .nesterov = true}},
    {"maximize", {.lr = 0.1, .momentum = 0.5, .maximize = true}},
};

// Runs steps SGD steps on device tensors of the given shapes (in views with guards) and on
// the reference, comparing parameters and buffers after each step.
void expect_steps_match_reference(const SgdParams& params, const std::vector<Shape>& shapes, int steps,
                                  std::uint64_t seed) {
  const cudaStream_t stream = current_stream();
  const HostLists initial = testing::random_lists(seed, shapes);
  GuardedTensors parameters(initial, shapes, stream);
  GuardedTensors buffers = GuardedTensors::poisoned(shapes, stream, 1);  // unread on the first step
  ReferenceLists expected_parameters = testing::to_reference(initial);
  ReferenceLists expected_buffers(shapes.size());
  for (std::size_t i = 0; i < shapes.size(); ++i) expected_buffers[i].resize(initial[i].size());

  for (int step = 1; step <= steps; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const HostLists gradient_values = testing::random_lists(seed + 1000 * static_cast<std::uint64_t>(step), shapes);
    const GuardedTensors gradients(gradient_values, shapes, stream, 2);
    const MomentumBuffers state = step == 1 ? MomentumBuffers::uninitialized : MomentumBuffers::initialized;
    sgd_step(
        {.parameters = parameters.tensors(), .gradients = gradients.tensors(), .momentum_buffers = buffers.tensors()},
        params, state, stream);
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      const std::vector<double> gradient(gradient_values[i].begin(), gradient_values[i].end());
      reference::sgd_step(expected_parameters[i], gradient, expected_buffers[i], params, step == 1);
    }
    EXPECT_TRUE(testing::lists_close("parameters", parameters.values(stream), expected_parameters, kSgdTolerance));
    if (params.momentum != 0.0) {
      EXPECT_TRUE(testing::lists_close("momentum_buffers", buffers.values(stream), expected_buffers, kSgdTolerance));
    }
    EXPECT_TRUE(parameters.guards_intact(stream));
    EXPECT_TRUE(buffers.guards_intact(stream));
    EXPECT_TRUE(gradients.guards_intact(stream));
  }
}

class SgdCases : public ::testing::TestWithParam<SgdCase> {};

TEST_P(SgdCases, MatchesReferenceOverSeveralStepsOnOddSizes) {
  expect_steps_match_reference(GetParam().params, testing::kOddOptimizerShapes, 3, 100);
}

INSTANTIATE_TEST_SUITE_P(Sgd, SgdCases, ::testing::ValuesIn(kSgdCases),
                         [](const ::testing::TestParamInfo<SgdCase>& case_info) {
                           return std::string(case_info.param.name);
                         });

// More tensors than one launch takes, with and without momentum (depth 3 and 2).
TEST(Sgd, ManyTensorsSpanSeveralLaunches) {
  std::vector<Shape> shapes;
  const std::int64_t sizes[] = {1, 2, 3, 5, 8, 4096, 4099};
  for (int i = 0; i < 2 * multi_tensor_max_tensors(2) + 7; ++i) shapes.push_back(Shape{sizes[i % 7]});
  ASSERT_GT(shapes.size(), static_cast<std::size_t>(multi_tensor_max_tensors(3)) * 2);
  expect_steps_match_reference({.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01}, shapes, 2, 200);
  expect_steps_match_reference({.lr = 0.1, .weight_decay = 0.01}, shapes, 1, 300);
}

// Exact in float: lr 0.5, momentum 0.5 and small integers.
TEST(Sgd, ExactWithSmallIntegers) {
  const cudaStream_t stream = current_stream();
  std::vector<Tensor> parameters = {testing::device_tensor<float>({4, -2, 6}, Shape{3}, stream)};
  std::vector<Tensor> buffers = {testing::poisoned_tensor(Shape{3}, stream)};
  const SgdParams params{.lr = 0.5, .momentum = 0.5};
  std::vector<Tensor> gradients = {testing::device_tensor<float>({2, 4, -6}, Shape{3}, stream)};
  sgd_step({parameters, gradients, buffers}, params, MomentumBuffers::uninitialized, stream);
  EXPECT_TRUE(testing::all_equal(buffers[0].to_vector<float>(stream), std::vector<float>{2, 4, -6}));
  EXPECT_TRUE(testing::all_equal(parameters[0].to_vector<float>(stream), std::vector<float>{3, -4, 9}));
  gradients = {testing::device_tensor<float>({2, -2, 0}, Shape{3}, stream)};
  sgd_step({parameters, gradients, buffers}, params, MomentumBuffers::initialized, stream);
  EXPECT_TRUE(testing::all_equal(buffers[0].to_vector<float>(stream), std::vector<float>{3, 0, -3}));
  EXPECT_TRUE(testing::all_equal(parameters[0].to_vector<float>(stream), std::vector<float>{1.5f, -4, 10.5f}));
  // Nesterov: g + momentum * buffer = [2, -2, 0] + 0.5 * [3, 0, -3], on the same buffers.
  sgd_step({parameters, gradients, buffers}, {.lr = 0.5, .momentum = 0.5, .nesterov = true},
           MomentumBuffers::initialized, stream);
  EXPECT_TRUE(testing::all_equal(buffers[0].to_vector<float>(stream), std::vector<float>{3.5f, -2, -1.5f}));
  EXPECT_TRUE(testing::all_equal(parameters[0].to_vector<float>(stream), std::vector<float>{-0.375f, -2.5f, 10.875f}));
}

// A weight decay of 0 adds nothing, not 0 * parameter: an infinite parameter stays
// infinite rather than turning the gradient into NaN, as in PyTorch.
TEST(Sgd, ZeroWeightDecayIgnoresTheParameter) {
  const cudaStream_t stream = current_stream();
  std::vector<Tensor> parameters = {testing::device_tensor<float>({INFINITY, 1}, Shape{2}, stream)};
  const std::vector<Tensor> gradients = {testing::device_tensor<float>({1, 1}, Shape{2}, stream)};
  sgd_step({parameters, gradients, {}}, {.lr = 0.5}, MomentumBuffers::uninitialized, stream);
  EXPECT_TRUE(testing::all_equal(parameters[0].to_vector<float>(stream), std::vector<float>{INFINITY, 0.5f}));
}

TEST(Sgd, MatchesPyTorch) {
  const cudaStream_t stream = current_stream();
  int cases = 0;
  for (const testing::GoldenCase& golden : testing::read_golden("optimizers.txt")) {
    if (golden.name.rfind("sgd", 0) != 0) continue;
    SCOPED_TRACE("case " + golden.name);
    ++cases;
    const SgdParams params{.lr = golden.float_of("lr"),
                           .momentum = golden.float_of("momentum"),
                           .dampening = golden.float_of("dampening"),
                           .weight_decay = golden.float_of("weight_decay"),
                           .nesterov = golden.int_of("nesterov") != 0,
                           .maximize = golden.int_of("maximize") != 0};
    const auto tensors = static_cast<std::size_t>(golden.int_of("tensors"));
    std::vector<Tensor> parameters;
    std::vector<Tensor> buffers;
    for (std::size_t k = 0; k < tensors; ++k) {
      const testing::GoldenTensor& initial = golden.tensor_of("param" + std::to_string(k));
      const Shape shape(std::span<const std::int64_t>(initial.shape));
      parameters.push_back(testing::device_tensor(initial.values, shape, stream));
      buffers.push_back(testing::poisoned_tensor(shape, stream));
    }
    for (std::int64_t step = 1; step <= golden.int_of("steps"); ++step) {
      std::vector<Tensor> gradients;
      for (std::size_t k = 0; k < tensors; ++k) {
        const std::string key = "grad" + std::to_string(k) + "_step" + std::to_string(step);
        gradients.push_back(testing::device_tensor(golden.tensor_of(key).values, parameters[k].shape(), stream));
      }
      sgd_step({parameters, gradients, buffers}, params,
               step == 1 ? MomentumBuffers::uninitialized : MomentumBuffers::initialized, stream);
      for (std::size_t k = 0; k < tensors; ++k) {
        const std::string key = "param" + std::to_string(k) + "_step" + std::to_string(step);
        EXPECT_TRUE(testing::all_close(parameters[k].to_vector<float>(stream),
                                       testing::to_doubles(golden.tensor_of(key).values), kSgdTolerance))
            << key;
      }
    }
    for (std::size_t k = 0; k < tensors && params.momentum != 0.0; ++k) {
      const std::string key = "buffer" + std::to_string(k);
      EXPECT_TRUE(testing::all_close(buffers[k].to_vector<float>(stream),
                                     testing::to_doubles(golden.tensor_of(key).values), kSgdTolerance))
          << key;
    }
  }
  EXPECT_EQ(cases, 3);
}

// The learning rate read from device memory gives the same bits as the host value, and a
// new value written between steps takes effect with the same call (as a graph replay would).
TEST(Sgd, DeviceLearningRateMatchesHostBitForBit) {
  const cudaStream_t stream = current_stream();
  const std::vector<Shape> shapes = {Shape{5}, Shape{4097}, Shape{3, 3}};
  const HostLists initial = testing::random_lists(400, shapes);
  GuardedTensors host_parameters(initial, shapes, stream);
  GuardedTensors device_parameters(initial, shapes, stream);
  GuardedTensors host_buffers = GuardedTensors::poisoned(shapes, stream);
  GuardedTensors device_buffers = GuardedTensors::poisoned(shapes, stream);
  Tensor lr = Tensor::empty(Shape{}, DType::f32, stream);
  const SgdParams device_params{.momentum = 0.9, .weight_decay = 1e-3, .nesterov = true, .lr_device = lr.data<float>()};
  const float learning_rates[] = {0.1f, 0.037f, 0.0f};
  for (int step = 0; step < 3; ++step) {
    const GuardedTensors gradients(testing::random_lists(410 + static_cast<std::uint64_t>(step) * 10, shapes), shapes,
                                   stream);
    const MomentumBuffers state = step == 0 ? MomentumBuffers::uninitialized : MomentumBuffers::initialized;
    SgdParams host_params = device_params;
    host_params.lr_device = nullptr;
    host_params.lr = learning_rates[step];
    sgd_step({host_parameters.tensors(), gradients.tensors(), host_buffers.tensors()}, host_params, state, stream);
    lr.fill(learning_rates[step], stream);
    sgd_step({device_parameters.tensors(), gradients.tensors(), device_buffers.tensors()}, device_params, state,
             stream);
  }
  EXPECT_TRUE(testing::lists_equal("parameters", device_parameters.values(stream), host_parameters.values(stream)));
  EXPECT_TRUE(testing::lists_equal("momentum_buffers", device_buffers.values(stream), host_buffers.values(stream)));
}

// With dampening, PyTorch's first step sets the buffer to g and later ones dampen it. A
// device step count decides which as the kernel runs, whatever the MomentumBuffers argument
// says: a first step skipped by the found-inf flag leaves the count (and everything else) as
// it was, so the next step is the first, as if the skipped one had never been called.
TEST(Sgd, DeviceStepCountDecidesTheFirstStepAcrossASkippedOne) {
  const cudaStream_t stream = current_stream();
  const std::vector<Shape> shapes = {Shape{5}, Shape{4097}, Shape{3, 3}};
  const HostLists initial = testing::random_lists(430, shapes);
  GuardedTensors host_parameters(initial, shapes, stream);
  GuardedTensors device_parameters(initial, shapes, stream);
  GuardedTensors host_buffers = GuardedTensors::poisoned(shapes, stream);
  GuardedTensors device_buffers = GuardedTensors::poisoned(shapes, stream);
  const SgdParams host_params{.lr = 0.05, .momentum = 0.8, .dampening = 0.3, .weight_decay = 0.01};
  std::vector<Tensor> count{Tensor::zeros(Shape{}, DType::f32, stream)};
  Tensor found_inf = Tensor::empty(Shape{}, DType::f32, stream);
  SgdParams device_params = host_params;
  device_params.found_inf = found_inf.data<float>();
  device_params.steps_before_device = count[0].data<float>();
  const auto device_step = [&](const GuardedTensors& gradients, float flag) {
    found_inf.fill(flag, stream);
    // The argument contradicts the count: the count wins.
    sgd_step({device_parameters.tensors(), gradients.tensors(), device_buffers.tensors()}, device_params,
             MomentumBuffers::initialized, stream);
    advance_step_counts(count, found_inf.data<float>(), stream);
  };
  const GuardedTensors skipped(testing::random_lists(440, shapes), shapes, stream);
  device_step(skipped, 1.0f);
  EXPECT_EQ(count[0].to_vector<float>(stream).front(), 0.0f);
  EXPECT_TRUE(testing::lists_equal("parameters", device_parameters.values(stream), initial));
  for (int step = 0; step < 3; ++step) {
    const GuardedTensors gradients(testing::random_lists(450 + static_cast<std::uint64_t>(step) * 10, shapes), shapes,
                                   stream);
    const MomentumBuffers state = step == 0 ? MomentumBuffers::uninitialized : MomentumBuffers::initialized;
    sgd_step({host_parameters.tensors(), gradients.tensors(), host_buffers.tensors()}, host_params, state, stream);
    device_step(gradients, 0.0f);
  }
  EXPECT_EQ(count[0].to_vector<float>(stream).front(), 3.0f);
  EXPECT_TRUE(testing::lists_equal("parameters", device_parameters.values(stream), host_parameters.values(stream)));
  EXPECT_TRUE(testing::lists_equal("momentum_buffers", device_buffers.values(stream), host_buffers.values(stream)));
}

TEST(Sgd, EmptyListsAndEmptyTensorsAreNoOps) {
  const cudaStream_t stream = current_stream();
  EXPECT_NO_THROW(sgd_step({}, {.lr = 0.1, .momentum = 0.9}, MomentumBuffers::uninitialized, stream));
  std::vector<Tensor> empty = {Tensor::empty(Shape{0, 3}, DType::f32, stream)};
  std::vector<Tensor> empty_gradients = {Tensor::empty(Shape{0, 3}, DType::f32, stream)};
  std::vector<Tensor> empty_buffers = {Tensor::empty(Shape{0, 3}, DType::f32, stream)};
  EXPECT_NO_THROW(sgd_step({empty, empty_gradients, empty_buffers}, {.lr = 0.1, .momentum = 0.9},
                           MomentumBuffers::initialized, stream));
}

// One parameter group of the grouped tests: its shapes and hyperparameters.
struct SgdGroupCase {
  std::vector<Shape> shapes;
  SgdParams params;
};

// Device tensors of the groups: parameters and momentum buffers in guarded views.
struct SgdGroupTensors {
  std::vector<GuardedTensors> parameters;
  std::vector<GuardedTensors> buffers;

  SgdGroupTensors(const std::vector<SgdGroupCase>& cases, std::uint64_t seed, cudaStream_t stream) {
    for (std::size_t g = 0; g < cases.size(); ++g) {
      parameters.emplace_back(testing::random_lists(seed + 100 * g, cases[g].shapes), cases[g].shapes, stream);
      buffers.push_back(GuardedTensors::poisoned(cases[g].shapes, stream, 1));
    }
  }
  std::vector<SgdGroup> groups(const std::vector<SgdGroupCase>& cases, const std::vector<GuardedTensors>& gradients,
                               MomentumBuffers state) {
    std::vector<SgdGroup> result;
    for (std::size_t g = 0; g < cases.size(); ++g) {
      result.push_back({.tensors = {.parameters = parameters[g].tensors(),
                                    .gradients = gradients[g].tensors(),
                                    .momentum_buffers = buffers[g].tensors()},
                        .params = cases[g].params,
                        .buffers = state});
    }
    return result;
  }
  void expect_equal(const SgdGroupTensors& other, const std::vector<SgdGroupCase>& cases, cudaStream_t stream) const {
    for (std::size_t g = 0; g < parameters.size(); ++g) {
      SCOPED_TRACE("group " + std::to_string(g));
      EXPECT_TRUE(testing::lists_equal("parameters", parameters[g].values(stream), other.parameters[g].values(stream)));
      if (cases[g].params.momentum != 0.0) {
        EXPECT_TRUE(testing::lists_equal("momentum_buffers", buffers[g].values(stream), other.buffers[g].values(stream)));
      }
      EXPECT_TRUE(parameters[g].guards_intact(stream));
      EXPECT_TRUE(buffers[g].guards_intact(stream));
    }
  }
};

std::vector<GuardedTensors> group_gradients(const std::vector<SgdGroupCase>& cases, std::uint64_t seed,
                                            cudaStream_t stream) {
  std::vector<GuardedTensors> gradients;
  for (std::size_t g = 0; g < cases.size(); ++g) {
    gradients.emplace_back(testing::random_lists(seed + 100 * g, cases[g].shapes), cases[g].shapes, stream, 2);
  }
  return gradients;
}

// steps steps of the groups, one sgd_step per group on one copy and one sgd_step for all
// groups on another: the same bits. Returns the launches of each grouped step.
std::vector<std::size_t> expect_grouped_steps_match_per_group_steps(const std::vector<SgdGroupCase>& cases, int steps,
                                                                    std::uint64_t seed) {
  const Stream stream;
  const StreamGuard on_stream(stream);
  SgdGroupTensors per_group(cases, seed, stream);
  SgdGroupTensors grouped(cases, seed, stream);
  std::vector<std::size_t> launches;
  for (int step = 1; step <= steps; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const std::vector<GuardedTensors> gradients =
        group_gradients(cases, seed + 10000 * static_cast<std::uint64_t>(step), stream);
    const MomentumBuffers state = step == 1 ? MomentumBuffers::uninitialized : MomentumBuffers::initialized;
    for (const SgdGroup& group : per_group.groups(cases, gradients, state)) {
      sgd_step(group.tensors, group.params, group.buffers, stream);
    }
    const std::vector<SgdGroup> groups = grouped.groups(cases, gradients, state);
    launches.push_back(testing::launches_of(stream, [&] { sgd_step(groups, stream); }));
    grouped.expect_equal(per_group, cases, stream);
  }
  return launches;
}

// Groups with their own learning rate, weight decay, momentum, dampening, Nesterov and
// maximize, a group without tensors and one with an empty tensor: one launch for the groups
// without momentum, one for those with, and the bits of one call per group.
TEST(Sgd, GroupsInOneCallMatchPerGroupCallsBitForBit) {
  const std::vector<SgdGroupCase> cases = {
      {{Shape{4097}, Shape{3}}, {.lr = 0.1, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true}},
      {{}, {.lr = 0.2}},
      {{Shape{5}, Shape{0, 3}}, {.lr = 0.05, .momentum = 0.8, .dampening = 0.3}},
      {{Shape{17, 33}}, {.lr = 0.3, .weight_decay = 0.01}},
      {{Shape{7}, Shape{4}}, {.lr = 0.01, .momentum = 0.5, .maximize = true}},
      {{Shape{2, 3, 5, 7}}, {.lr = 0.2, .maximize = true}},
  };
  EXPECT_EQ(expect_grouped_steps_match_per_group_steps(cases, 3, 500), (std::vector<std::size_t>{2, 2, 2}));
  // Only groups with momentum: one launch.
  const std::vector<SgdGroupCase> momentum_only = {cases[0], cases[2], cases[4]};
  EXPECT_EQ(expect_grouped_steps_match_per_group_steps(momentum_only, 2, 600), (std::vector<std::size_t>{1, 1}));
  // No group with a tensor: no launch.
  const std::vector<SgdGroupCase> empty = {cases[1], {{Shape{0}}, {.lr = 0.1, .momentum = 0.9}}};
  EXPECT_EQ(expect_grouped_steps_match_per_group_steps(empty, 1, 700), (std::vector<std::size_t>{0}));
}

// More groups and more tensors than one launch's parameters hold: a few launches (a group
// may span two), far fewer than one per group, with the same bits.
TEST(Sgd, ManyGroupsAndTensorsSpanAFewLaunches) {
  std::vector<SgdGroupCase> cases;
  for (int g = 0; g < 40; ++g) {
    const double lr = 0.01 * (g + 1);
    std::vector<Shape> shapes = {Shape{g % 5 + 1}, Shape{3}, Shape{g == 7 ? 4099 : 8}};
    cases.push_back({shapes, g % 2 == 0 ? SgdParams{.lr = lr, .momentum = 0.9, .weight_decay = 1e-3 * g}
                                        : SgdParams{.lr = lr, .weight_decay = 1e-3 * g}});
  }
  const std::vector<std::size_t> launches = expect_grouped_steps_match_per_group_steps(cases, 2, 800);
  for (const std::size_t count : launches) {
    EXPECT_GE(count, 4u);   // 20 groups of each kind are more than one launch holds
    EXPECT_LE(count, 8u);
  }
}

// Each group reads its own device learning rate as the kernel runs: a captured grouped step
// replayed after new rates are written (a schedule) gives the bits of host-rate steps.
TEST(Sgd, DeviceLearningRatesPerGroupFollowGraphReplays) {
  const Stream stream;
  const StreamGuard on_stream(stream);
  std::vector<SgdGroupCase> cases = {{{Shape{5}, Shape{4097}}, {.momentum = 0.9, .nesterov = true}},
                                     {{Shape{3, 3}}, {.weight_decay = 0.02}},
                                     {{Shape{11}}, {.momentum = 0.5, .dampening = 0.2, .weight_decay = 1e-3}}};
  std::vector<Tensor> rates;
  std::vector<SgdGroupCase> device_cases = cases;
  for (SgdGroupCase& group : device_cases) {
    rates.push_back(Tensor::zeros(Shape{}, DType::f32, stream));
    group.params.lr_device = rates.back().data<float>();
  }
  SgdGroupTensors host(cases, 900, stream);
  SgdGroupTensors device(device_cases, 900, stream);
  // Static gradients, refilled before each replay, and buffers initialised by a first step.
  std::vector<GuardedTensors> gradients = group_gradients(cases, 950, stream);
  for (std::size_t g = 0; g < cases.size(); ++g) cases[g].params.lr = 0.0;
  for (const SgdGroup& group : host.groups(cases, gradients, MomentumBuffers::uninitialized)) {
    sgd_step(group.tensors, group.params, group.buffers, stream);
  }
  sgd_step(device.groups(device_cases, gradients, MomentumBuffers::uninitialized), stream);
  const std::vector<SgdGroup> captured = device.groups(device_cases, gradients, MomentumBuffers::initialized);
  CudaGraph graph;
  graph.capture(stream, [&] { sgd_step(captured, stream); });
  EXPECT_EQ(graph.node_count(), 2u);
  for (int replay = 0; replay < 3; ++replay) {
    const std::vector<GuardedTensors> next = group_gradients(cases, 960 + 10 * static_cast<std::uint64_t>(replay), stream);
    for (std::size_t g = 0; g < cases.size(); ++g) {
      const HostLists values = next[g].values(stream);
      for (std::size_t i = 0; i < values.size(); ++i) {
        gradients[g].tensors()[i].copy_from_host_async(std::span<const float>(values[i]), stream);
      }
      cases[g].params.lr = 0.1 / (static_cast<double>(g) + 1.0) / (replay + 1);
      rates[g].fill(static_cast<float>(cases[g].params.lr), stream);
    }
    for (const SgdGroup& group : host.groups(cases, gradients, MomentumBuffers::initialized)) {
      sgd_step(group.tensors, group.params, group.buffers, stream);
    }
    graph.replay(stream);
  }
  device.expect_equal(host, cases, stream);
}

// Each group reads its own found-inf flag: a set flag leaves that group's tensors exactly
// as they were, in the same launch that updates the others.
TEST(Sgd, FoundInfSkipsItsGroupInTheSharedLaunch) {
  const Stream stream;
  const StreamGuard on_stream(stream);
  const std::vector<SgdGroupCase> cases = {{{Shape{5}, Shape{4097}}, {.lr = 0.1, .momentum = 0.9}},
                                           {{Shape{6}}, {.lr = 0.2, .momentum = 0.8, .weight_decay = 0.1}}};
  SgdGroupTensors grouped(cases, 1100, stream);
  SgdGroupTensors per_group(cases, 1100, stream);
  const std::vector<GuardedTensors> gradients = group_gradients(cases, 1150, stream);
  Tensor flags = Tensor::zeros(Shape{2}, DType::f32, stream);
  const std::vector<float> set_first = {1.0f, 0.0f};
  flags.copy_from_host_async(std::span<const float>(set_first), stream);
  std::vector<SgdGroupCase> flagged = cases;
  flagged[0].params.found_inf = flags.data<float>();
  flagged[1].params.found_inf = flags.data<float>() + 1;
  const HostLists untouched = grouped.parameters[0].values(stream);
  sgd_step(grouped.groups(flagged, gradients, MomentumBuffers::uninitialized), stream);
  EXPECT_TRUE(testing::lists_equal("parameters", grouped.parameters[0].values(stream), untouched));
  const std::vector<SgdGroup> expected = per_group.groups(cases, gradients, MomentumBuffers::uninitialized);
  sgd_step(expected[1].tensors, expected[1].params, expected[1].buffers, stream);
  EXPECT_TRUE(testing::lists_equal("parameters", grouped.parameters[1].values(stream),
                                   per_group.parameters[1].values(stream)));
  EXPECT_TRUE(testing::lists_equal("momentum_buffers", grouped.buffers[1].values(stream),
                                   per_group.buffers[1].values(stream)));
}

// A tensor written by one group may not be any tensor of another group.
TEST(Sgd, GroupsSharingAWrittenTensorAreRefused) {
  const cudaStream_t stream = current_stream();
  std::vector<Tensor> parameters = {Tensor::zeros(Shape{4}, DType::f32, stream)};
  const std::vector<Tensor> gradients = {Tensor::zeros(Shape{4}, DType::f32, stream)};
  const SgdGroup groups[] = {{.tensors = {parameters, gradients, {}}, .params = {.lr = 0.1}},
                             {.tensors = {parameters, gradients, {}}, .params = {.lr = 0.2}}};
  EXPECT_THAT(testing::invalid_argument_message([&] { sgd_step(groups, stream); }),
              HasSubstr("sgd_step: parameters[0] (4) and parameters[1] (4) share memory"));
}

std::string sgd_error(const SgdParams& params) {
  return testing::invalid_argument_message([&] { check_sgd_params(params); });
}

TEST(Sgd, BadHyperparametersAreNamed) {
  EXPECT_THAT(sgd_error({}),
              HasSubstr("sgd_step: lr must be set to a finite value >= 0 (or lr_device given), got nan"));
  EXPECT_THAT(sgd_error({.lr = -0.1}), HasSubstr("sgd_step: lr must be set to a finite value >= 0"));
  EXPECT_THAT(sgd_error({.lr = 0.1, .momentum = -0.5}),
              HasSubstr("sgd_step: momentum must be finite and >= 0, got -0.5"));
  EXPECT_THAT(sgd_error({.lr = 0.1, .weight_decay = -1}),
              HasSubstr("sgd_step: weight_decay must be finite and >= 0, got -1"));
  EXPECT_THAT(sgd_error({.lr = 0.1, .dampening = NAN}), HasSubstr("sgd_step: dampening must be finite, got nan"));
  EXPECT_THAT(sgd_error({.lr = 0.1, .nesterov = true}),
              HasSubstr("sgd_step: Nesterov momentum requires a momentum > 0 and zero dampening, got momentum 0 and "
                        "dampening 0"));
  EXPECT_THAT(sgd_error({.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true}),
              HasSubstr("got momentum 0.9 and dampening 0.1"));
  float lr = 0.1f;
  EXPECT_EQ(sgd_error({.lr_device = &lr}), "(no exception)");  // the host lr is not needed then
  // The launcher checks them too.
  EXPECT_THAT(testing::invalid_argument_message(
                  [] { sgd_step({}, {.lr = -1}, MomentumBuffers::uninitialized, current_stream()); }),
              HasSubstr("sgd_step: lr must be"));
}

TEST(Sgd, BadListsNameTheListIndexAndShapes) {
  const cudaStream_t stream = current_stream();
  std::vector<Tensor> parameters = {Tensor::zeros(Shape{2, 3}, DType::f32, stream),
                                    Tensor::zeros(Shape{4}, DType::f32, stream)};
  const std::vector<Tensor> gradients = {Tensor::zeros(Shape{2, 3}, DType::f32, stream),
                                         Tensor::zeros(Shape{4}, DType::f32, stream)};
  std::vector<Tensor> buffers = {Tensor::zeros(Shape{2, 3}, DType::f32, stream),
                                 Tensor::zeros(Shape{4}, DType::f32, stream)};
  const SgdParams params{.lr = 0.1, .momentum = 0.9};
  const auto error = [&](const SgdTensors& tensors) {
    return testing::invalid_argument_message([&] { sgd_step(tensors, params, MomentumBuffers::initialized, stream); });
  };
  EXPECT_EQ(error({parameters, gradients, buffers}), "(no exception)");
  EXPECT_THAT(error({parameters, std::span(gradients).first(1), buffers}),
              HasSubstr("sgd_step: gradients has 1 tensors but parameters has 2"));
  EXPECT_THAT(error({parameters, gradients, {}}),
              HasSubstr("sgd_step: momentum_buffers has 0 tensors but parameters has 2"));
  const std::vector<Tensor> transposed = {gradients[0], Tensor::zeros(Shape{2, 2}, DType::f32, stream)};
  EXPECT_THAT(error({parameters, transposed, buffers}),
              HasSubstr("sgd_step: gradients[1] has shape (2, 2) but parameters[1] has shape (4)"));
  const std::vector<Tensor> integers = {gradients[0], Tensor::zeros(Shape{4}, DType::i32, stream)};
  EXPECT_THAT(error({parameters, integers, buffers}), HasSubstr("sgd_step: gradients[1] must have dtype f32"));
  const std::vector<Tensor> on_host = {gradients[0], Tensor::empty_host(Shape{4}, DType::f32)};
  EXPECT_THAT(error({parameters, on_host, buffers}), HasSubstr("sgd_step: gradients[1] must be a device tensor"));
  const std::span<Tensor> first_parameter = std::span(parameters).first(1);
  EXPECT_THAT(error({first_parameter, std::span(gradients).first(1), first_parameter}),
              HasSubstr("sgd_step: parameters[0] (2, 3) and momentum_buffers[0] (2, 3) share memory"));
  // Views of one storage that overlap.
  const Tensor storage = Tensor::zeros(Shape{10}, DType::f32, stream);
  std::vector<Tensor> overlapping = {storage.narrow(0, 0, 6).reshape(Shape{2, 3}), storage.narrow(0, 5, 4)};
  EXPECT_THAT(error({overlapping, gradients, buffers}),
              HasSubstr("sgd_step: parameters[0] (2, 3) and parameters[1] (4) share memory, but sgd_step writes "
                        "parameters"));
  // Adjacent views are fine, and the gradients, which the step only reads, may overlap.
  std::vector<Tensor> adjacent = {storage.narrow(0, 0, 6).reshape(Shape{2, 3}), storage.narrow(0, 6, 4)};
  EXPECT_EQ(error({adjacent, gradients, buffers}), "(no exception)");
  const Tensor gradient_storage = Tensor::zeros(Shape{8}, DType::f32, stream);
  const std::vector<Tensor> overlapping_gradients = {gradient_storage.narrow(0, 0, 6).reshape(Shape{2, 3}),
                                                     gradient_storage.narrow(0, 4, 4)};
  EXPECT_EQ(error({parameters, overlapping_gradients, buffers}), "(no exception)");
}

// Without momentum the buffers are not used and may be left out.
TEST(Sgd, WithoutMomentumTheBuffersMayBeEmpty) {
  const cudaStream_t stream = current_stream();
  std::vector<Tensor> parameters = {testing::device_tensor<float>({1, 2}, Shape{2}, stream)};
  const std::vector<Tensor> gradients = {testing::device_tensor<float>({2, 4}, Shape{2}, stream)};
  sgd_step({parameters, gradients, {}}, {.lr = 0.25}, MomentumBuffers::initialized, stream);
  EXPECT_TRUE(testing::all_equal(parameters[0].to_vector<float>(stream), std::vector<float>{0.5f, 1}));
}

}  // namespace
}  // namespace strata::kernels
