// adamw_step against the double reference over several steps (weight decay, amsgrad,
// maximize, beta1 = 0), on odd sizes and more tensors than one launch takes, with guard
// elements around every tensor; against PyTorch; the device learning rate and step count;
// a step skipped by the found-inf flag with the step count on the device; and argument
// errors.
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kernels/multi_tensor_host.h"
#include "strata/core/stream.h"
#include "strata/kernels/grad_scaler.h"
#include "strata/kernels/optimizer_adamw.h"
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

// Parameters of order 1 move by about lr per step; the moments carry a few roundings of
// terms of order 1, which may cancel (m): absolute errors of a few float ulps of 0.1.
constexpr Tolerance kParameterTolerance{.abs_tol = 1e-6, .rel_tol = 1e-6};
constexpr Tolerance kMomentTolerance{.abs_tol = 5e-8, .rel_tol = 2e-6};

struct AdamWCase {
  const char* name;
  AdamWParams params;
};

const AdamWCase kAdamWCases[] = {
    {"defaults", {}},
    {"large_lr_weight_decay", {.lr = 0.05, .weight_decay = 0.1}},
    {"amsgrad", {.lr = 0.01, .beta2 = 0.99, .amsgrad = true}},
    {"maximize_no_weight_decay", {.lr = 0.02, .weight_decay = 0.0, .maximize = true}},
    {"beta1_zero_eps_large", {.lr = 0.01, .beta1 = 0.0, .eps = 1e-3}},
};

// Device lists of one AdamW state, all in guarded views; the moments start at zero.
struct DeviceAdamW {
  GuardedTensors parameters;
  GuardedTensors exp_avgs;
  GuardedTensors exp_avg_sqs;
  GuardedTensors max_exp_avg_sqs;

  DeviceAdamW(const HostLists& initial, const std::vector<Shape>& shapes, cudaStream_t stream)
      : parameters(initial, shapes, stream),
        exp_avgs(zeros(shapes), shapes, stream, 1),
        exp_avg_sqs(zeros(shapes), shapes, stream, 2),
        max_exp_avg_sqs(zeros(shapes), shapes, stream, 0) {}

  static HostLists zeros(const std::vector<Shape>& shapes) {
    HostLists values;
    for (const Shape& shape : shapes) values.emplace_back(static_cast<std::size_t>(shape.numel()), 0.0f);
    return values;
  }

  void step(const GuardedTensors& gradients, const AdamWParams& params, const AdamWStep& count, cudaStream_t stream) {
    adamw_step({.parameters = parameters.tensors(),
                .gradients = gradients.tensors(),
                .exp_avgs = exp_avgs.tensors(),
                .exp_avg_sqs = exp_avg_sqs.tensors(),
                .max_exp_avg_sqs = max_exp_avg_sqs.tensors()},
               params, count, stream);
  }
};

void expect_steps_match_reference(const AdamWParams& params, const std::vector<Shape>& shapes, int steps,
                                  std::uint64_t seed) {
  const cudaStream_t stream = current_stream();
  const HostLists initial = testing::random_lists(seed, shapes);
  DeviceAdamW device(initial, shapes, stream);
  ReferenceLists expected = testing::to_reference(initial);
  std::vector<reference::AdamWState> states;
  for (const Shape& shape : shapes) {
    const auto n = static_cast<std::size_t>(shape.numel());
    states.push_back({std::vector<double>(n), std::vector<double>(n), std::vector<double>(n)});
  }
  for (int step = 1; step <= steps; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const HostLists gradient_values = testing::random_lists(seed + 1000 * static_cast<std::uint64_t>(step), shapes);
    const GuardedTensors gradients(gradient_values, shapes, stream, 1);
    device.step(gradients, params, {.step = step}, stream);
    ReferenceLists expected_m;
    ReferenceLists expected_v;
    ReferenceLists expected_v_max;
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      const std::vector<double> gradient(gradient_values[i].begin(), gradient_values[i].end());
      reference::adamw_step(expected[i], gradient, states[i], params, step);
      expected_m.push_back(states[i].exp_avg);
      expected_v.push_back(states[i].exp_avg_sq);
      expected_v_max.push_back(states[i].max_exp_avg_sq);
    }
    EXPECT_TRUE(testing::lists_close("parameters", device.parameters.values(stream), expected, kParameterTolerance));
    EXPECT_TRUE(testing::lists_close("exp_avgs", device.exp_avgs.values(stream), expected_m, kMomentTolerance));
    EXPECT_TRUE(testing::lists_close("exp_avg_sqs", device.exp_avg_sqs.values(stream), expected_v, kMomentTolerance));
    if (params.amsgrad) {
      EXPECT_TRUE(testing::lists_close("max_exp_avg_sqs", device.max_exp_avg_sqs.values(stream), expected_v_max,
                                       kMomentTolerance));
    }
    EXPECT_TRUE(device.parameters.guards_intact(stream));
    EXPECT_TRUE(device.exp_avgs.guards_intact(stream));
    EXPECT_TRUE(device.exp_avg_sqs.guards_intact(stream));
    EXPECT_TRUE(device.max_exp_avg_sqs.guards_intact(stream));
  }
}

class AdamWCases : public ::testing::TestWithParam<AdamWCase> {};

TEST_P(AdamWCases, MatchesReferenceOverSeveralStepsOnOddSizes) {
  expect_steps_match_reference(GetParam().params, testing::kOddOptimizerShapes, 4, 500);
}

INSTANTIATE_TEST_SUITE_P(AdamW, AdamWCases, ::testing::ValuesIn(kAdamWCases),
                         [](const ::testing::TestParamInfo<AdamWCase>& case_info) {
                           return std::string(case_info.param.name);
                         });

// With amsgrad (five lists, the fewest tensors per launch) and without.
TEST(AdamW, ManyTensorsSpanSeveralLaunches) {
  std::vector<Shape> shapes;
  const std::int64_t sizes[] = {1, 3, 4, 7, 4097};
  for (int i = 0; i < 2 * multi_tensor_max_tensors(4) + 3; ++i) shapes.push_back(Shape{sizes[i % 5]});
  expect_steps_match_reference({.lr = 0.01, .amsgrad = true}, shapes, 2, 600);
  expect_steps_match_reference({.lr = 0.01}, shapes, 1, 700);
}

// A later step applies the bias corrections of its count, not of the first step.
TEST(AdamW, LateStepCountMatchesReference) {
  const cudaStream_t stream = current_stream();
  const std::vector<Shape> shapes = {Shape{9}};
  const HostLists initial = testing::random_lists(800, shapes);
  const HostLists gradient = testing::random_lists(801, shapes);
  DeviceAdamW device(initial, shapes, stream);
  device.step(GuardedTensors(gradient, shapes, stream), {.lr = 0.01}, {.step = 1000}, stream);
  ReferenceLists expected = testing::to_reference(initial);
  reference::AdamWState state{std::vector<double>(9), std::vector<double>(9), {}};
  reference::adamw_step(expected[0], testing::to_reference(gradient)[0], state, {.lr = 0.01}, 1000);
  EXPECT_TRUE(testing::lists_close("parameters", device.parameters.values(stream), expected, kParameterTolerance));
}

TEST(AdamW, MatchesPyTorch) {
  const cudaStream_t stream = current_stream();
  int cases = 0;
  for (const testing::GoldenCase& golden : testing::read_golden("optimizers.txt")) {
    if (golden.name.rfind("adamw", 0) != 0) continue;
    SCOPED_TRACE("case " + golden.name);
    ++cases;
    const AdamWParams params{.lr = golden.float_of("lr"),
                             .beta1 = golden.float_of("beta1"),
                             .beta2 = golden.float_of("beta2"),
                             .eps = golden.float_of("eps"),
                             .weight_decay = golden.float_of("weight_decay"),
                             .amsgrad = golden.int_of("amsgrad") != 0,
                             .maximize = golden.int_of("maximize") != 0};
    const auto tensors = static_cast<std::size_t>(golden.int_of("tensors"));
    std::vector<Tensor> parameters;
    std::vector<Tensor> exp_avgs;
    std::vector<Tensor> exp_avg_sqs;
    std::vector<Tensor> max_exp_avg_sqs;
    for (std::size_t k = 0; k < tensors; ++k) {
      const testing::GoldenTensor& initial = golden.tensor_of("param" + std::to_string(k));
      const Shape shape(std::span<const std::int64_t>(initial.shape));
      parameters.push_back(testing::device_tensor(initial.values, shape, stream));
      exp_avgs.push_back(Tensor::zeros(shape, DType::f32, stream));
      exp_avg_sqs.push_back(Tensor::zeros(shape, DType::f32, stream));
      max_exp_avg_sqs.push_back(Tensor::zeros(shape, DType::f32, stream));
    }
    for (std::int64_t step = 1; step <= golden.int_of("steps"); ++step) {
      std::vector<Tensor> gradients;
      for (std::size_t k = 0; k < tensors; ++k) {
        const std::string key = "grad" + std::to_string(k) + "_step" + std::to_string(step);
        gradients.push_back(testing::device_tensor(golden.tensor_of(key).values, parameters[k].shape(), stream));
      }
      adamw_step({parameters, gradients, exp_avgs, exp_avg_sqs, max_exp_avg_sqs}, params, {.step = step}, stream);
      for (std::size_t k = 0; k < tensors; ++k) {
        const std::string key = "param" + std::to_string(k) + "_step" + std::to_string(step);
        EXPECT_TRUE(testing::all_close(parameters[k].to_vector<float>(stream),
                                       testing::to_doubles(golden.tensor_of(key).values), kParameterTolerance))
            << key;
      }
    }
    for (std::size_t k = 0; k < tensors; ++k) {
      const auto expect_state = [&](const char* key, const Tensor& tensor) {
        EXPECT_TRUE(testing::all_close(tensor.to_vector<float>(stream),
                                       testing::to_doubles(golden.tensor_of(key + std::to_string(k)).values),
                                       kMomentTolerance))
            << key << k;
      };
      expect_state("exp_avg", exp_avgs[k]);
      expect_state("exp_avg_sq", exp_avg_sqs[k]);
      if (params.amsgrad) expect_state("max_exp_avg_sq", max_exp_avg_sqs[k]);
    }
  }
  EXPECT_EQ(cases, 2);
}

// The learning rate and the step count read from device memory give the same bits as the
// host values, and new values written between steps take effect with the same call.
TEST(AdamW, DeviceLearningRateAndStepMatchHostBitForBit) {
  const cudaStream_t stream = current_stream();
  const std::vector<Shape> shapes = {Shape{5}, Shape{4097}, Shape{3, 3}};
  const HostLists initial = testing::random_lists(900, shapes);
  DeviceAdamW host(initial, shapes, stream);
  DeviceAdamW device(initial, shapes, stream);
  Tensor lr = Tensor::empty(Shape{}, DType::f32, stream);
  Tensor step_count = Tensor::empty(Shape{}, DType::f32, stream);
  const AdamWParams device_params{.weight_decay = 0.05, .amsgrad = true, .lr_device = lr.data<float>()};
  const float learning_rates[] = {0.01f, 0.0037f, 0.02f};
  for (int step = 1; step <= 3; ++step) {
    const GuardedTensors gradients(testing::random_lists(910 + static_cast<std::uint64_t>(step) * 10, shapes), shapes,
                                   stream);
    AdamWParams host_params = device_params;
    host_params.lr_device = nullptr;
    host_params.lr = learning_rates[step - 1];
    host.step(gradients, host_params, {.step = step}, stream);
    lr.fill(learning_rates[step - 1], stream);
    step_count.fill(step, stream);
    device.step(gradients, device_params, {.step_device = step_count.data<float>()}, stream);
  }
  EXPECT_TRUE(testing::lists_equal("parameters", device.parameters.values(stream), host.parameters.values(stream)));
  EXPECT_TRUE(testing::lists_equal("exp_avgs", device.exp_avgs.values(stream), host.exp_avgs.values(stream)));
  EXPECT_TRUE(testing::lists_equal("exp_avg_sqs", device.exp_avg_sqs.values(stream), host.exp_avg_sqs.values(stream)));
}

// PyTorch's fused AdamW under a GradScaler: t from the device count of the updates before
// (steps_before_device), advanced after the step unless found_inf was set. A skipped step
// leaves parameters, moments and the count as they were (NaN gradients included), so the
// steps around it match a host AdamW that never saw it, bit for bit.
TEST(AdamW, FoundInfSkipsTheStepAndItsCountOnTheDevice) {
  const cudaStream_t stream = current_stream();
  const std::vector<Shape> shapes = {Shape{5}, Shape{4097}, Shape{3, 3}};
  const HostLists initial = testing::random_lists(960, shapes);
  DeviceAdamW host(initial, shapes, stream);
  DeviceAdamW device(initial, shapes, stream);
  std::vector<Tensor> count{Tensor::zeros(Shape{}, DType::f32, stream)};
  Tensor found_inf = Tensor::empty(Shape{}, DType::f32, stream);
  AdamWParams device_params{.lr = 0.01, .weight_decay = 0.05, .amsgrad = true};
  device_params.found_inf = found_inf.data<float>();
  const auto device_step = [&](const GuardedTensors& gradients, float flag) {
    found_inf.fill(flag, stream);
    device.step(gradients, device_params, {.steps_before_device = count[0].data<float>()}, stream);
    advance_step_counts(count, found_inf.data<float>(), stream);
  };
  HostLists skipped_values = testing::random_lists(970, shapes);
  skipped_values[1][7] = std::nanf("");
  const GuardedTensors skipped(skipped_values, shapes, stream);
  for (int step = 1; step <= 3; ++step) {
    const GuardedTensors gradients(testing::random_lists(980 + static_cast<std::uint64_t>(step) * 10, shapes), shapes,
                                   stream);
    host.step(gradients, {.lr = 0.01, .weight_decay = 0.05, .amsgrad = true}, {.step = step}, stream);
    device_step(gradients, 0.0f);
    device_step(skipped, 1.0f);  // no step: t stays, so the next one is step + 1
    EXPECT_EQ(count[0].to_vector<float>(stream).front(), static_cast<float>(step));
    EXPECT_TRUE(testing::lists_equal("parameters", device.parameters.values(stream), host.parameters.values(stream)))
        << "step " << step;
  }
  EXPECT_TRUE(testing::lists_equal("exp_avgs", device.exp_avgs.values(stream), host.exp_avgs.values(stream)));
  EXPECT_TRUE(testing::lists_equal("exp_avg_sqs", device.exp_avg_sqs.values(stream), host.exp_avg_sqs.values(stream)));
  EXPECT_TRUE(testing::lists_equal("max_exp_avg_sqs", device.max_exp_avg_sqs.values(stream),
                                   host.max_exp_avg_sqs.values(stream)));
}

std::string adamw_error(const AdamWParams& params) {
  return testing::invalid_argument_message([&] { check_adamw_params(params); });
}

// A group of the grouped tests: its shapes, hyperparameters and the step count its first
// update has (groups of one optimizer step may be at different counts).
struct AdamWGroupCase {
  std::vector<Shape> shapes;
  AdamWParams params;
  std::int64_t first_step = 1;
};

std::vector<AdamWGroup> adamw_groups(const std::vector<AdamWGroupCase>& cases, std::vector<DeviceAdamW>& states,
                                     const std::vector<GuardedTensors>& gradients, int step) {
  std::vector<AdamWGroup> groups;
  for (std::size_t g = 0; g < cases.size(); ++g) {
    groups.push_back({.tensors = {.parameters = states[g].parameters.tensors(),
                                  .gradients = gradients[g].tensors(),
                                  .exp_avgs = states[g].exp_avgs.tensors(),
                                  .exp_avg_sqs = states[g].exp_avg_sqs.tensors(),
                                  .max_exp_avg_sqs = states[g].max_exp_avg_sqs.tensors()},
                      .params = cases[g].params,
                      .step = {.step = cases[g].first_step + step - 1}});
  }
  return groups;
}

// Groups with their own hyperparameters (amsgrad or not), step counts (one from a device
// count), device learning rates and found-inf flags (one set): one launch per kind of group,
// and the bits of one call per group.
TEST(AdamW, GroupsInOneCallMatchPerGroupCallsBitForBit) {
  const Stream stream;
  const StreamGuard on_stream(stream);
  std::vector<AdamWGroupCase> cases = {
      {{Shape{4097}, Shape{3}}, {.lr = 0.01, .weight_decay = 0.1}, 1},
      {{}, {.lr = 0.5}, 1},
      {{Shape{5}, Shape{0, 2}}, {.lr = 0.02, .beta2 = 0.99, .amsgrad = true}, 7},
      {{Shape{17, 3}}, {.lr = 0.003, .beta1 = 0.0, .eps = 1e-3, .maximize = true}, 3},
      {{Shape{9}}, {.lr = 0.05, .weight_decay = 0.0, .amsgrad = true}, 2},
      {{Shape{6}}, {.lr = 0.05}, 1},
  };
  std::vector<AdamWGroupCase> device_cases = cases;
  // Group 3 reads its lr and the step count before the update from the device; group 5's
  // flag is set, so it is skipped (its per-group reference runs no step).
  Tensor lr = Tensor::zeros(Shape{}, DType::f32, stream);
  lr.fill(static_cast<float>(cases[3].params.lr), stream);
  Tensor steps_before = Tensor::zeros(Shape{}, DType::f32, stream);
  Tensor flags = Tensor::zeros(Shape{2}, DType::f32, stream);
  const std::vector<float> flag_values = {0.0f, 1.0f};
  flags.copy_from_host_async(std::span<const float>(flag_values), stream);
  device_cases[3].params.lr_device = lr.data<float>();
  device_cases[3].params.found_inf = flags.data<float>();
  device_cases[5].params.found_inf = flags.data<float>() + 1;
  std::vector<DeviceAdamW> per_group;
  std::vector<DeviceAdamW> grouped;
  for (std::size_t g = 0; g < cases.size(); ++g) {
    const HostLists initial = testing::random_lists(1200 + 100 * g, cases[g].shapes);
    per_group.emplace_back(initial, cases[g].shapes, stream);
    grouped.emplace_back(initial, cases[g].shapes, stream);
  }
  for (int step = 1; step <= 3; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    steps_before.fill(static_cast<double>(cases[3].first_step + step - 2), stream);
    std::vector<GuardedTensors> gradients;
    for (std::size_t g = 0; g < cases.size(); ++g) {
      gradients.emplace_back(testing::random_lists(1300 + 100 * g + 10 * static_cast<std::uint64_t>(step), cases[g].shapes),
                             cases[g].shapes, stream, 1);
    }
    const std::vector<AdamWGroup> expected = adamw_groups(cases, per_group, gradients, step);
    for (std::size_t g = 0; g + 1 < expected.size(); ++g) {  // not group 5: its step is skipped
      adamw_step(expected[g].tensors, expected[g].params, expected[g].step, stream);
    }
    std::vector<AdamWGroup> groups = adamw_groups(device_cases, grouped, gradients, step);
    groups[3].step = {.step = 1000, .steps_before_device = steps_before.data<float>()};  // the device count wins
    EXPECT_EQ(testing::launches_of(stream, [&] { adamw_step(groups, stream); }), 2u);
    for (std::size_t g = 0; g < cases.size(); ++g) {
      SCOPED_TRACE("group " + std::to_string(g));
      EXPECT_TRUE(testing::lists_equal("parameters", grouped[g].parameters.values(stream),
                                       per_group[g].parameters.values(stream)));
      EXPECT_TRUE(testing::lists_equal("exp_avgs", grouped[g].exp_avgs.values(stream),
                                       per_group[g].exp_avgs.values(stream)));
      EXPECT_TRUE(testing::lists_equal("exp_avg_sqs", grouped[g].exp_avg_sqs.values(stream),
                                       per_group[g].exp_avg_sqs.values(stream)));
      EXPECT_TRUE(testing::lists_equal("max_exp_avg_sqs", grouped[g].max_exp_avg_sqs.values(stream),
                                       per_group[g].max_exp_avg_sqs.values(stream)));
      EXPECT_TRUE(grouped[g].parameters.guards_intact(stream));
    }
  }
}

// More groups than one launch's parameters hold: a few launches, the same bits.
TEST(AdamW, ManyGroupsSpanAFewLaunches) {
  const Stream stream;
  const StreamGuard on_stream(stream);
  std::vector<AdamWGroupCase> cases;
  for (int g = 0; g < 20; ++g) {
    cases.push_back({{Shape{g % 4 + 1}, Shape{5}}, {.lr = 0.001 * (g + 1), .weight_decay = 0.01 * g}, g % 3 + 1});
  }
  std::vector<DeviceAdamW> per_group;
  std::vector<DeviceAdamW> grouped;
  for (std::size_t g = 0; g < cases.size(); ++g) {
    const HostLists initial = testing::random_lists(1500 + 100 * g, cases[g].shapes);
    per_group.emplace_back(initial, cases[g].shapes, stream);
    grouped.emplace_back(initial, cases[g].shapes, stream);
  }
  std::vector<GuardedTensors> gradients;
  for (std::size_t g = 0; g < cases.size(); ++g) {
    gradients.emplace_back(testing::random_lists(1600 + 100 * g, cases[g].shapes), cases[g].shapes, stream, 1);
  }
  for (const AdamWGroup& group : adamw_groups(cases, per_group, gradients, 1)) {
    adamw_step(group.tensors, group.params, group.step, stream);
  }
  const std::vector<AdamWGroup> groups = adamw_groups(cases, grouped, gradients, 1);
  const std::size_t launches = testing::launches_of(stream, [&] { adamw_step(groups, stream); });
  EXPECT_GE(launches, 2u);
  EXPECT_LE(launches, 5u);
  for (std::size_t g = 0; g < cases.size(); ++g) {
    EXPECT_TRUE(testing::lists_equal("parameters", grouped[g].parameters.values(stream),
                                     per_group[g].parameters.values(stream)))
        << "group " << g;
  }
}

TEST(AdamW, BadHyperparametersAreNamed) {
  EXPECT_EQ(adamw_error({}), "(no exception)");
  EXPECT_THAT(adamw_error({.lr = -1e-3}), HasSubstr("adamw_step: lr must be finite and >= 0, got -0.001"));
  EXPECT_THAT(adamw_error({.eps = -1}), HasSubstr("adamw_step: eps must be finite and >= 0, got -1"));
  EXPECT_THAT(adamw_error({.beta1 = 1.0}), HasSubstr("adamw_step: beta1 must be in [0, 1), got 1"));
  EXPECT_THAT(adamw_error({.beta2 = -0.1}), HasSubstr("adamw_step: beta2 must be in [0, 1), got -0.1"));
  EXPECT_THAT(adamw_error({.beta2 = NAN}), HasSubstr("adamw_step: beta2 must be in [0, 1), got nan"));
  EXPECT_THAT(adamw_error({.weight_decay = -0.01}), HasSubstr("adamw_step: weight_decay must be finite and >= 0"));
  float lr = 0.1f;
  EXPECT_EQ(adamw_error({.lr = NAN, .lr_device = &lr}), "(no exception)");
  EXPECT_THAT(testing::invalid_argument_message([] { adamw_step({}, {}, {.step = 0}, current_stream()); }),
              HasSubstr("adamw_step: the step count must be >= 1 (PyTorch's state step after its increment), got 0"));
}

TEST(AdamW, BadListsNameTheListIndexAndShapes) {
  const cudaStream_t stream = current_stream();
  const auto make = [&](std::vector<Shape> shapes) {
    std::vector<Tensor> tensors;
    for (const Shape& shape : shapes) tensors.push_back(Tensor::zeros(shape, DType::f32, stream));
    return tensors;
  };
  std::vector<Tensor> parameters = make({Shape{2, 3}, Shape{4}});
  const std::vector<Tensor> gradients = make({Shape{2, 3}, Shape{4}});
  std::vector<Tensor> m = make({Shape{2, 3}, Shape{4}});
  std::vector<Tensor> v = make({Shape{2, 3}, Shape{4}});
  std::vector<Tensor> v_wrong = make({Shape{2, 3}, Shape{5}});
  const auto error = [&](const AdamWTensors& tensors, const AdamWParams& params) {
    return testing::invalid_argument_message([&] { adamw_step(tensors, params, {.step = 1}, stream); });
  };
  EXPECT_EQ(error({parameters, gradients, m, v, {}}, {}), "(no exception)");
  EXPECT_THAT(error({parameters, gradients, m, v, {}}, {.amsgrad = true}),
              HasSubstr("adamw_step: max_exp_avg_sqs has 0 tensors but parameters has 2"));
  EXPECT_THAT(error({parameters, gradients, m, v_wrong, {}}, {}),
              HasSubstr("adamw_step: exp_avg_sqs[1] has shape (5) but parameters[1] has shape (4)"));
  const std::span<Tensor> first_m = std::span(m).first(1);
  EXPECT_THAT(error({std::span(parameters).first(1), std::span(gradients).first(1), first_m, first_m, {}}, {}),
              HasSubstr("adamw_step: exp_avgs[0] (2, 3) and exp_avg_sqs[0] (2, 3) share memory"));
  std::vector<Tensor> halves = {Tensor::zeros(Shape{2, 3}, DType::f16, stream), m[1]};
  EXPECT_THAT(error({parameters, gradients, halves, v, {}}, {}),
              HasSubstr("adamw_step: exp_avgs[0] must have dtype f32"));
}

}  // namespace
}  // namespace strata::kernels
