// The optimizer classes (SGD, AdamW) against the double references of the kernels and
// PyTorch's golden values: momentum's first step, Nesterov, dampening, weight decay, groups
// with their own options, parameters without a gradient, state that starts later; the
// learning-rate factor of a schedule; gradient clipping; the moving average and lookahead;
// the state dict read back for an exact resume, and its errors, which change nothing.
#include <bit>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/layers/adamw.h"
#include "strata/layers/clip_grad.h"
#include "strata/layers/ema.h"
#include "strata/layers/lr_schedule.h"
#include "strata/layers/sgd.h"
#include "tests/kernels/device_values.h"
#include "tests/reference/optimizer_reference.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"
#include "tests/support/golden.h"

namespace strata::optim {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
using testing::Tolerance;

using OptimizerTest = testing::DeviceTest;

// A few float roundings per step on values of order 1 (as the kernels' own tests).
constexpr Tolerance kStepTolerance{.abs_tol = 1e-6, .rel_tol = 1e-6};

// A leaf that requires gradients, with random values in [-1, 1).
Tensor make_parameter(std::uint64_t seed, const Shape& shape) {
  Tensor parameter = testing::device_tensor(testing::random_uniform(seed, static_cast<std::size_t>(shape.numel())),
                                            shape, current_stream());
  parameter.set_requires_grad();
  return parameter;
}

// Sets a random gradient and returns its values.
std::vector<double> give_gradient(Tensor& parameter, std::uint64_t seed) {
  const std::vector<float> values = testing::random_uniform(seed, static_cast<std::size_t>(parameter.numel()));
  parameter.set_grad(testing::device_tensor(values, parameter.shape(), current_stream()));
  return testing::to_doubles(values);
}

std::vector<double> values_of(const Tensor& tensor) { return testing::to_doubles(tensor.to_vector<float>()); }

std::vector<std::uint32_t> bits_of(const Tensor& tensor) { return testing::bit_patterns(tensor.to_vector<float>()); }

// A parameter as the reference sees it.
struct ReferenceParameter {
  std::vector<double> values;
  std::vector<double> buffer;
  bool first_step = true;
};

ReferenceParameter reference_of(const Tensor& parameter) {
  const std::vector<double> values = values_of(parameter);
  return {.values = values, .buffer = std::vector<double>(values.size()), .first_step = true};
}

void reference_sgd_step(ReferenceParameter& parameter, const std::vector<double>& gradient,
                        const kernels::SgdParams& params) {
  reference::sgd_step(parameter.values, gradient, parameter.buffer, params, parameter.first_step);
  parameter.first_step = false;
}

kernels::SgdParams kernel_params(const SgdOptions& options) {
  return {.lr = options.lr,
          .momentum = options.momentum,
          .dampening = options.dampening,
          .weight_decay = options.weight_decay,
          .nesterov = options.nesterov,
          .maximize = options.maximize};
}

struct SgdCase {
  const char* name;
  SgdOptions options;
};

const SgdCase kSgdCases[] = {
    {"plain_weight_decay", {.lr = 0.1, .weight_decay = 0.05}},
    {"momentum", {.lr = 0.05, .momentum = 0.9}},
    {"dampening_weight_decay", {.lr = 0.05, .momentum = 0.8, .dampening = 0.3, .weight_decay = 0.01}},
    {"nesterov", {.lr = 0.1, .momentum = 0.85, .weight_decay = 0.02, .nesterov = true}},
    {"maximize", {.lr = 0.1, .momentum = 0.5, .maximize = true}},
};

class SgdCases : public ::testing::TestWithParam<SgdCase> {
 protected:
  void SetUp() override {
    if (device_count() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(SgdCases, MatchesReferenceOverSeveralSteps) {
  const SgdOptions& options = GetParam().options;
  std::vector<Tensor> parameters = {make_parameter(1, Shape{3, 4}), make_parameter(2, Shape{5}),
                                    make_parameter(3, Shape{2, 3, 1, 3})};
  std::vector<ReferenceParameter> expected;
  for (const Tensor& parameter : parameters) expected.push_back(reference_of(parameter));
  SGD sgd(parameters, options);
  for (int step = 0; step < 3; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    for (std::size_t i = 0; i < parameters.size(); ++i) {
      const std::vector<double> gradient =
          give_gradient(parameters[i], 100 + 10 * static_cast<std::uint64_t>(step) + i);
      reference_sgd_step(expected[i], gradient, kernel_params(options));
    }
    sgd.step();
    for (std::size_t i = 0; i < parameters.size(); ++i) {
      EXPECT_TRUE(testing::all_close(parameters[i].to_vector<float>(), expected[i].values, kStepTolerance)) << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Sgd, SgdCases, ::testing::ValuesIn(kSgdCases),
                         [](const ::testing::TestParamInfo<SgdCase>& case_info) {
                           return std::string(case_info.param.name);
                         });

// The golden cases of the kernels' tests, through the classes: 3 steps of 2 parameters.
TEST_F(OptimizerTest, SgdAndAdamWMatchPyTorch) {
  int cases = 0;
  for (const testing::GoldenCase& golden : testing::read_golden("optimizers.txt")) {
    const bool is_sgd = golden.name.starts_with("sgd");
    if (!is_sgd && !golden.name.starts_with("adamw")) continue;
    SCOPED_TRACE("case " + golden.name);
    ++cases;
    std::vector<Tensor> parameters;
    for (std::size_t k = 0; k < 2; ++k) {
      const testing::GoldenTensor& initial = golden.tensor_of("param" + std::to_string(k));
      parameters.push_back(testing::device_tensor(initial.values, Shape(std::span<const std::int64_t>(initial.shape)),
                                                  current_stream()));
      parameters.back().set_requires_grad();
    }
    std::unique_ptr<Optimizer> optimizer;
    if (is_sgd) {
      optimizer = std::make_unique<SGD>(parameters, SgdOptions{.lr = golden.float_of("lr"),
                                                               .momentum = golden.float_of("momentum"),
                                                               .dampening = golden.float_of("dampening"),
                                                               .weight_decay = golden.float_of("weight_decay"),
                                                               .nesterov = golden.int_of("nesterov") != 0,
                                                               .maximize = golden.int_of("maximize") != 0});
    } else {
      optimizer = std::make_unique<AdamW>(parameters, AdamWOptions{.lr = golden.float_of("lr"),
                                                                   .beta1 = golden.float_of("beta1"),
                                                                   .beta2 = golden.float_of("beta2"),
                                                                   .eps = golden.float_of("eps"),
                                                                   .weight_decay = golden.float_of("weight_decay"),
                                                                   .amsgrad = golden.int_of("amsgrad") != 0,
                                                                   .maximize = golden.int_of("maximize") != 0});
    }
    for (int step = 1; step <= golden.int_of("steps"); ++step) {
      for (std::size_t k = 0; k < 2; ++k) {
        const std::string key = "grad" + std::to_string(k) + "_step" + std::to_string(step);
        parameters[k].set_grad(
            testing::device_tensor(golden.tensor_of(key).values, parameters[k].shape(), current_stream()));
      }
      optimizer->step();
      for (std::size_t k = 0; k < 2; ++k) {
        const std::string key = "param" + std::to_string(k) + "_step" + std::to_string(step);
        EXPECT_TRUE(testing::all_close(parameters[k].to_vector<float>(),
                                       testing::to_doubles(golden.tensor_of(key).values), kStepTolerance))
            << key;
      }
    }
    EXPECT_EQ(optimizer->step_count(0, 1), 3);
  }
  EXPECT_EQ(cases, 5);
}

// Biases in a group of their own with another lr and no weight decay; the rest take the
// defaults, as PyTorch's param_groups.
TEST_F(OptimizerTest, GroupsHaveTheirOwnLearningRateAndWeightDecay) {
  std::vector<Tensor> parameters = {make_parameter(10, Shape{4, 3}), make_parameter(11, Shape{4}),
                                    make_parameter(12, Shape{2, 2})};
  const SgdOptions defaults{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.05, .nesterov = true};
  SGD sgd({{.params = {parameters[0], parameters[2]}}, {.params = {parameters[1]}, .lr = 0.4, .weight_decay = 0.0}},
          defaults);
  ASSERT_EQ(sgd.num_groups(), 2);
  EXPECT_EQ(sgd.options(0).lr, 0.1);
  EXPECT_EQ(sgd.options(0).weight_decay, 0.05);
  EXPECT_EQ(sgd.options(1).lr, 0.4);
  EXPECT_EQ(sgd.options(1).weight_decay, 0.0);
  EXPECT_EQ(sgd.options(1).momentum, 0.9);
  EXPECT_TRUE(sgd.options(1).nesterov);

  SgdOptions bias_options = defaults;
  bias_options.lr = 0.4;
  bias_options.weight_decay = 0.0;
  const SgdOptions options_of[] = {defaults, bias_options, defaults};
  std::vector<ReferenceParameter> expected;
  for (const Tensor& parameter : parameters) expected.push_back(reference_of(parameter));
  for (int step = 0; step < 2; ++step) {
    for (std::size_t i = 0; i < parameters.size(); ++i) {
      const std::vector<double> gradient =
          give_gradient(parameters[i], 200 + 10 * static_cast<std::uint64_t>(step) + i);
      reference_sgd_step(expected[i], gradient, kernel_params(options_of[i]));
    }
    sgd.step();
  }
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    EXPECT_TRUE(testing::all_close(parameters[i].to_vector<float>(), expected[i].values, kStepTolerance)) << i;
  }
}

// PyTorch skips a parameter whose grad is None; its momentum buffer starts (from the
// gradient, "buffer is None") at its first step with a gradient, in a launch of its own.
TEST_F(OptimizerTest, SgdSkipsParametersWithoutGradientAndStartsTheirBuffersLater) {
  std::vector<Tensor> parameters = {make_parameter(20, Shape{6}), make_parameter(21, Shape{2, 3})};
  const SgdOptions options{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01};
  SGD sgd(parameters, options);
  std::vector<ReferenceParameter> expected = {reference_of(parameters[0]), reference_of(parameters[1])};
  const std::vector<std::uint32_t> untouched = bits_of(parameters[1]);

  reference_sgd_step(expected[0], give_gradient(parameters[0], 22), kernel_params(options));
  sgd.step();
  EXPECT_EQ(bits_of(parameters[1]), untouched);
  EXPECT_EQ(sgd.step_count(0, 0), 1);
  EXPECT_EQ(sgd.step_count(0, 1), 0);
  const OptimizerState after_one = sgd.state_dict();
  EXPECT_EQ(after_one.tensors.size(), 1u);
  EXPECT_EQ(after_one.tensors.at(0).first, "state.0.0.momentum_buffer");

  for (int step = 0; step < 2; ++step) {
    for (std::size_t i = 0; i < 2; ++i) {
      reference_sgd_step(expected[i], give_gradient(parameters[i], 30 + 10 * static_cast<std::uint64_t>(step) + i),
                         kernel_params(options));
    }
    sgd.step();
  }
  EXPECT_EQ(sgd.step_count(0, 0), 3);
  EXPECT_EQ(sgd.step_count(0, 1), 2);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_TRUE(testing::all_close(parameters[i].to_vector<float>(), expected[i].values, kStepTolerance)) << i;
  }
}

// AdamW's bias correction needs each parameter's own step count.
TEST_F(OptimizerTest, AdamWKeepsAStepCountPerParameter) {
  std::vector<Tensor> parameters = {make_parameter(40, Shape{5}), make_parameter(41, Shape{3, 2})};
  const AdamWOptions options{.lr = 0.01, .beta2 = 0.99, .weight_decay = 0.1, .amsgrad = true};
  const kernels::AdamWParams params{.lr = options.lr,
                                    .beta1 = options.beta1,
                                    .beta2 = options.beta2,
                                    .eps = options.eps,
                                    .weight_decay = options.weight_decay,
                                    .amsgrad = options.amsgrad};
  AdamW adamw(parameters, options);
  std::vector<std::vector<double>> expected = {values_of(parameters[0]), values_of(parameters[1])};
  std::vector<reference::AdamWState> states;
  for (const std::vector<double>& values : expected) {
    const std::vector<double> zeros(values.size());
    states.push_back({zeros, zeros, zeros});
  }
  std::int64_t steps_of[2] = {0, 0};
  for (int step = 0; step < 3; ++step) {
    for (std::size_t i = 0; i < 2; ++i) {
      if (i == 1 && step == 0) continue;  // the second parameter starts one step later
      const std::vector<double> gradient = give_gradient(parameters[i], 50 + 10 * static_cast<std::uint64_t>(step) + i);
      reference::adamw_step(expected[i], gradient, states[i], params, ++steps_of[i]);
    }
    adamw.step();
  }
  EXPECT_EQ(adamw.step_count(0, 0), 3);
  EXPECT_EQ(adamw.step_count(0, 1), 2);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_TRUE(testing::all_close(parameters[i].to_vector<float>(), expected[i], kStepTolerance)) << i;
  }
}

// The batching of the base class, seen from a subclass that records its batches: one per
// group and state, never one per parameter, all of a step in one update() (one op).
class LaunchRecorder final : public Optimizer {
 public:
  struct Launch {
    int group;
    std::int64_t steps_before;
    std::size_t parameters;
  };

  LaunchRecorder(const std::vector<std::vector<Tensor>>& groups, bool exact)
      : Optimizer("LaunchRecorder"), exact_(exact) {
    for (const std::vector<Tensor>& group : groups) add_param_group(group, 0.1);
  }
  std::vector<Launch> launches;
  int updates = 0;

 protected:
  std::vector<std::string> state_names(int) const override { return {"buffer"}; }
  bool batches_by_exact_step() const override { return exact_; }
  void update(std::span<StepBatch> batches, cudaStream_t) override {
    ++updates;
    for (const StepBatch& batch : batches) {
      EXPECT_EQ(batch.state.size(), 1u);
      EXPECT_EQ(batch.state.at(0).size(), batch.parameters.size());
      EXPECT_EQ(batch.gradients.size(), batch.parameters.size());
      launches.push_back({batch.group, batch.steps_before, batch.parameters.size()});
    }
  }
  void write_options(detail::StateWriter&) const override {}
  std::vector<std::optional<std::vector<std::string>>> read_options(detail::StateReader&) const override { return {}; }
  void install_options(detail::StateReader&) override {}

 private:
  bool exact_;
};

bool operator==(const LaunchRecorder::Launch& a, const LaunchRecorder::Launch& b) {
  return a.group == b.group && a.steps_before == b.steps_before && a.parameters == b.parameters;
}

TEST_F(OptimizerTest, StepsLaunchOncePerGroupAndState) {
  for (const bool exact : {false, true}) {
    SCOPED_TRACE(exact ? "by exact step" : "new or not");
    std::vector<Tensor> parameters;
    for (std::uint64_t i = 0; i < 5; ++i) parameters.push_back(make_parameter(300 + i, Shape{2}));
    LaunchRecorder recorder({{parameters[0], parameters[1], parameters[2]}, {parameters[3], parameters[4]}}, exact);
    using Launch = LaunchRecorder::Launch;
    // Step 1: the first parameter of each group has a gradient.
    give_gradient(parameters[0], 1);
    give_gradient(parameters[3], 2);
    recorder.step();
    EXPECT_EQ(recorder.launches, (std::vector<Launch>{{0, 0, 1}, {1, 0, 1}}));
    // Steps 2 and 3: all of them.
    for (std::size_t i = 0; i < 5; ++i) give_gradient(parameters[i], 10 + i);
    recorder.launches.clear();
    recorder.step();
    EXPECT_EQ(recorder.launches, (std::vector<Launch>{{0, 0, 2}, {0, 1, 1}, {1, 0, 1}, {1, 1, 1}}));
    recorder.launches.clear();
    recorder.step();
    if (exact) {
      EXPECT_EQ(recorder.launches, (std::vector<Launch>{{0, 1, 2}, {0, 2, 1}, {1, 1, 1}, {1, 2, 1}}));
    } else {
      EXPECT_EQ(recorder.launches, (std::vector<Launch>{{0, 1, 3}, {1, 1, 2}}));
    }
    EXPECT_EQ(recorder.updates, 3);  // one per step, for every group
  }
}

// set_lr_factor is LambdaLR: every group's lr = its initial lr * the schedule's factor.
TEST_F(OptimizerTest, LearningRatesFollowTheScheduleFactor) {
  std::vector<Tensor> parameters = {make_parameter(60, Shape{4}), make_parameter(61, Shape{3})};
  SGD sgd({{.params = {parameters[0]}}, {.params = {parameters[1]}, .lr = 0.5}}, {.lr = 0.2});
  lr::Scheduler scheduler(lr::linear_lr({.start_factor = 0.25, .end_factor = 1.0, .total_iters = 3}));
  std::vector<ReferenceParameter> expected = {reference_of(parameters[0]), reference_of(parameters[1])};
  for (int step = 0; step < 4; ++step) {
    sgd.set_lr_factor(scheduler.factor());
    EXPECT_EQ(sgd.lr(0), 0.2 * scheduler.factor());
    EXPECT_EQ(sgd.lr(1), 0.5 * scheduler.factor());
    EXPECT_EQ(sgd.initial_lr(1), 0.5);
    for (std::size_t i = 0; i < 2; ++i) {
      reference_sgd_step(expected[i], give_gradient(parameters[i], 70 + 10 * static_cast<std::uint64_t>(step) + i),
                         {.lr = sgd.lr(static_cast<int>(i))});
    }
    sgd.step();
    scheduler.step();
  }
  EXPECT_EQ(sgd.lr(0), 0.2);  // the warm-up is over
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_TRUE(testing::all_close(parameters[i].to_vector<float>(), expected[i].values, kStepTolerance)) << i;
  }
  sgd.set_lr(1, 0.01);
  EXPECT_EQ(sgd.lr(1), 0.01);
  EXPECT_EQ(sgd.initial_lr(1), 0.5);
  EXPECT_THAT([&] { sgd.set_lr_factor(-1.0); }, ThrowsMessage<InvalidArgument>(HasSubstr("factor must be finite")));
}

TEST_F(OptimizerTest, ZeroGradClearsOrZeroesGradients) {
  std::vector<Tensor> parameters = {make_parameter(80, Shape{3}), make_parameter(81, Shape{2})};
  SGD sgd(parameters, {.lr = 0.1});
  give_gradient(parameters[0], 82);
  const Tensor gradient = parameters[0].grad();
  sgd.zero_grad(/*set_to_none=*/false);
  EXPECT_TRUE(parameters[0].grad().shares_storage_with(gradient));
  EXPECT_EQ(parameters[0].grad().to_vector<float>(), std::vector<float>(3, 0.0f));
  EXPECT_FALSE(parameters[1].grad().defined());
  sgd.zero_grad();
  EXPECT_FALSE(parameters[0].grad().defined());
}

TEST_F(OptimizerTest, ConstructorErrorsNameTheGroupAndParameter) {
  const Tensor weight = make_parameter(90, Shape{3});
  const Tensor bias = make_parameter(91, Shape{2});
  EXPECT_THAT([&] { SGD({weight}, {}); }, ThrowsMessage<InvalidArgument>(HasSubstr("lr must be set")));
  EXPECT_THAT(
      [&] {
        SGD({{.params = {weight}}, {.params = {bias}, .dampening = 0.5}},
            {.lr = 0.1, .momentum = 0.9, .nesterov = true});
      },
      ThrowsMessage<InvalidArgument>(AllOf(HasSubstr("parameter group 1"), HasSubstr("Nesterov"))));
  EXPECT_THAT(
      [&] {
        SGD({{.params = {weight}}, {.params = {bias, weight}}}, {.lr = 0.1});
      },
      ThrowsMessage<InvalidArgument>(AllOf(HasSubstr("parameter 1 of group 1"), HasSubstr("appears more than once"))));
  EXPECT_THAT([&] { SGD(std::vector<Tensor>{}, {.lr = 0.1}); },
              ThrowsMessage<InvalidArgument>(HasSubstr("empty parameter list")));
  EXPECT_THAT([&] { SGD({Tensor::from_vector<float>({1.0f}, Shape{1})}, {.lr = 0.1}); },
              ThrowsMessage<InvalidArgument>(HasSubstr("must be an f32 device tensor")));
  EXPECT_THAT([&] { AdamW({weight}, {.beta1 = 1.0}); },
              ThrowsMessage<InvalidArgument>(AllOf(HasSubstr("AdamW: parameter group 0"), HasSubstr("beta1"))));
}

// The norm of the defined gradients together; parameters without one are left out.
TEST_F(OptimizerTest, ClipGradNormScalesTheDefinedGradients) {
  std::vector<Tensor> parameters = {make_parameter(100, Shape{4, 3}), make_parameter(101, Shape{5}),
                                    make_parameter(102, Shape{2})};
  std::vector<std::vector<double>> gradients = {give_gradient(parameters[0], 103), give_gradient(parameters[2], 104)};
  const double expected_norm = reference::clip_grad_norm(gradients, 0.5, /*infinity_norm_type=*/false);
  const Tensor norm = clip_grad_norm_(parameters, 0.5);
  EXPECT_TRUE(norm.is_device());
  EXPECT_EQ(norm.shape(), Shape{});
  EXPECT_TRUE(testing::all_close(norm.to_vector<float>(), std::vector<double>{expected_norm}, {.rel_tol = 1e-6}));
  EXPECT_TRUE(
      testing::all_close(parameters[0].grad().to_vector<float>(), gradients[0], {.abs_tol = 1e-7, .rel_tol = 1e-6}));
  EXPECT_TRUE(
      testing::all_close(parameters[2].grad().to_vector<float>(), gradients[1], {.abs_tol = 1e-7, .rel_tol = 1e-6}));
  EXPECT_FALSE(parameters[1].grad().defined());

  give_gradient(parameters[1], 105);
  std::vector<std::vector<double>> all = {values_of(parameters[0].grad()), values_of(parameters[1].grad()),
                                          values_of(parameters[2].grad())};
  const double expected_max = reference::clip_grad_norm(all, 0.25, /*infinity_norm_type=*/true);
  const Tensor max_norm = clip_grad_norm_(parameters, 0.25, GradNormType::infinity);
  EXPECT_TRUE(testing::all_close(max_norm.to_vector<float>(), std::vector<double>{expected_max}, {}));
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(
        testing::all_close(parameters[i].grad().to_vector<float>(), all[i], {.abs_tol = 1e-7, .rel_tol = 1e-6}));
  }
}

TEST_F(OptimizerTest, MovingAverageUpdatesSwapsAndCopies) {
  std::vector<Tensor> parameters = {make_parameter(110, Shape{3, 3}), make_parameter(111, Shape{7})};
  ExponentialMovingAverage ema(parameters);
  std::vector<std::vector<double>> expected = {values_of(parameters[0]), values_of(parameters[1])};
  for (int step = 0; step < 2; ++step) {
    for (std::size_t i = 0; i < 2; ++i) {
      const std::vector<float> moved = testing::random_uniform(120 + 10 * static_cast<std::uint64_t>(step) + i,
                                                               static_cast<std::size_t>(parameters[i].numel()));
      parameters[i].copy_from_host_async(std::span<const float>(moved), current_stream());
      reference::ema_update(expected[i], testing::to_doubles(moved), 0.9);
    }
    ema.update(0.9);
  }
  constexpr Tolerance kEmaTolerance{.abs_tol = 1e-7, .rel_tol = 1e-6};
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_TRUE(testing::all_close(ema.averages()[i].to_vector<float>(), expected[i], kEmaTolerance)) << i;
  }

  const std::vector<std::uint32_t> weights = bits_of(parameters[0]);
  const std::vector<std::uint32_t> averages = bits_of(ema.averages()[0]);
  ema.swap();
  EXPECT_EQ(bits_of(parameters[0]), averages);
  EXPECT_EQ(bits_of(ema.averages()[0]), weights);
  ema.swap();
  EXPECT_EQ(bits_of(parameters[0]), weights);

  std::vector<Tensor> evaluation = {Tensor::zeros(Shape{3, 3}, DType::f32, current_stream()),
                                    Tensor::zeros(Shape{7}, DType::f32, current_stream())};
  ema.copy_to(evaluation);
  EXPECT_EQ(bits_of(evaluation[1]), bits_of(ema.averages()[1]));
  EXPECT_EQ(ema.state_dict().at(1).first, "ema.1");
}

// airbench: ema = lerp(ema, w, 1 - decay), then w = ema.
TEST_F(OptimizerTest, LookaheadMovesTheWeightsToTheAverage) {
  std::vector<Tensor> parameters = {make_parameter(130, Shape{5}), make_parameter(131, Shape{2, 2})};
  ExponentialMovingAverage ema(parameters);
  std::vector<std::vector<double>> expected = {values_of(parameters[0]), values_of(parameters[1])};
  for (std::size_t i = 0; i < 2; ++i) {
    const std::vector<float> trained =
        testing::random_uniform(132 + i, static_cast<std::size_t>(parameters[i].numel()));
    parameters[i].copy_from_host_async(std::span<const float>(trained), current_stream());
    reference::ema_update(expected[i], testing::to_doubles(trained), 0.8);
  }
  ema.lookahead(0.8);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_TRUE(testing::all_close(parameters[i].to_vector<float>(), expected[i], {.abs_tol = 1e-7, .rel_tol = 1e-6}));
    EXPECT_EQ(bits_of(parameters[i]), bits_of(ema.averages()[i]));
  }
}

// The bits of a state: metadata and every tensor's values.
struct StateBits {
  std::map<std::string, std::string> metadata;
  std::map<std::string, std::vector<std::uint32_t>> tensors;
  friend bool operator==(const StateBits&, const StateBits&) = default;
};

StateBits bits_of(const OptimizerState& state) {
  StateBits bits{.metadata = state.metadata, .tensors = {}};
  for (const auto& [name, tensor] : state.tensors) bits.tensors[name] = bits_of(tensor);
  return bits;
}

// Host copies of a state's tensors, as a file would give them.
OptimizerState host_copy(const OptimizerState& state) {
  OptimizerState copy{.tensors = {}, .metadata = state.metadata};
  for (const auto& [name, tensor] : state.tensors) copy.tensors.emplace_back(name, tensor.to_host());
  return copy;
}

std::vector<Tensor> copies_of(const std::vector<Tensor>& parameters) {
  std::vector<Tensor> copies;
  for (const Tensor& parameter : parameters) {
    copies.push_back(parameter.detach().to_device(current_stream()));
    copies.back().set_requires_grad();
  }
  return copies;
}

// Two steps, then the state into a new optimizer over copies of the weights: the next steps
// give the same bits on both.
template <typename MakeOptimizer>
void expect_resume_is_bit_identical(MakeOptimizer make_optimizer) {
  std::vector<Tensor> parameters = {make_parameter(140, Shape{4, 2}), make_parameter(141, Shape{3}),
                                    make_parameter(142, Shape{2})};
  auto original = make_optimizer(parameters);
  for (int step = 0; step < 2; ++step) {
    for (std::size_t i = 0; i < 2; ++i) give_gradient(parameters[i], 150 + 10 * static_cast<std::uint64_t>(step) + i);
    original->step();
  }
  std::vector<Tensor> resumed_parameters = copies_of(parameters);
  auto resumed = make_optimizer(resumed_parameters);
  resumed->set_lr_factor(0.5);  // replaced by the load
  resumed->load_state_dict(host_copy(original->state_dict()));
  EXPECT_EQ(bits_of(resumed->state_dict()), bits_of(original->state_dict()));
  for (int step = 0; step < 2; ++step) {
    for (std::size_t i = 0; i < 3; ++i) {
      const std::uint64_t seed = 170 + 10 * static_cast<std::uint64_t>(step) + i;
      give_gradient(parameters[i], seed);
      give_gradient(resumed_parameters[i], seed);
    }
    original->step();
    resumed->step();
  }
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(bits_of(resumed_parameters[i]), bits_of(parameters[i])) << i;
}

TEST_F(OptimizerTest, StateDictResumesSgdBitIdentically) {
  expect_resume_is_bit_identical([](const std::vector<Tensor>& parameters) {
    return std::make_unique<SGD>(parameters,
                                 SgdOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = true});
  });
}

TEST_F(OptimizerTest, StateDictResumesAdamWBitIdentically) {
  expect_resume_is_bit_identical([](const std::vector<Tensor>& parameters) {
    return std::make_unique<AdamW>(parameters, AdamWOptions{.lr = 0.01, .amsgrad = true});
  });
}

TEST_F(OptimizerTest, StateDictNamesEverything) {
  std::vector<Tensor> parameters = {make_parameter(180, Shape{2, 3}), make_parameter(181, Shape{4})};
  SGD sgd({{.params = {parameters[0]}}, {.params = {parameters[1]}, .lr = 0.3}}, {.lr = 0.1, .momentum = 0.9});
  give_gradient(parameters[1], 182);
  sgd.set_lr_factor(0.5);
  sgd.step();
  const OptimizerState state = sgd.state_dict();
  const std::map<std::string, std::string> expected = {
      {"optimizer", "SGD"},          {"groups", "2"},
      {"group.0.params", "1"},       {"group.0.lr", "0.05"},
      {"group.0.initial_lr", "0.1"}, {"group.0.momentum", "0.9"},
      {"group.0.dampening", "0"},    {"group.0.weight_decay", "0"},
      {"group.0.nesterov", "false"}, {"group.0.maximize", "false"},
      {"group.1.params", "1"},       {"group.1.lr", "0.15"},
      {"group.1.initial_lr", "0.3"}, {"group.1.momentum", "0.9"},
      {"group.1.dampening", "0"},    {"group.1.weight_decay", "0"},
      {"group.1.nesterov", "false"}, {"group.1.maximize", "false"},
      {"state.0.0.shape", "(2, 3)"}, {"state.0.0.step", "0"},
      {"state.1.0.shape", "(4)"},    {"state.1.0.step", "1"},
  };
  EXPECT_EQ(state.metadata, expected);
  ASSERT_EQ(state.tensors.size(), 1u);
  EXPECT_EQ(state.tensors[0].first, "state.1.0.momentum_buffer");
}

// A state saved by an optimizer that momentum 0.9 stepped twice over three parameters.
class LoadStateErrors : public OptimizerTest {
 protected:
  void SetUp() override {
    OptimizerTest::SetUp();
    if (IsSkipped()) return;
    parameters_ = {make_parameter(190, Shape{3, 2}), make_parameter(191, Shape{4}), make_parameter(192, Shape{1})};
    sgd_ = std::make_unique<SGD>(parameters_, SgdOptions{.lr = 0.1, .momentum = 0.9});
    for (int step = 0; step < 2; ++step) {
      for (std::size_t i = 0; i < 3; ++i)
        give_gradient(parameters_[i], 193 + 10 * static_cast<std::uint64_t>(step) + i);
      sgd_->step();
    }
    saved_ = host_copy(sgd_->state_dict());
    // The target: a fresh optimizer that took one step of its own.
    target_parameters_ = copies_of(parameters_);
    target_ = std::make_unique<SGD>(target_parameters_, SgdOptions{.lr = 0.2, .momentum = 0.9});
    give_gradient(target_parameters_[0], 199);
    target_->step();
    before_ = bits_of(target_->state_dict());
  }

  // Loading state throws an InvalidArgument containing each of parts, and changes nothing.
  void expect_refused(const OptimizerState& state, const std::vector<std::string>& parts) {
    try {
      target_->load_state_dict(state);
      ADD_FAILURE() << "no exception";
    } catch (const InvalidArgument& error) {
      EXPECT_THAT(error.what(), HasSubstr("nothing was changed"));
      for (const std::string& part : parts) EXPECT_THAT(error.what(), HasSubstr(part));
    }
    EXPECT_EQ(bits_of(target_->state_dict()), before_);
  }

  std::vector<Tensor> parameters_;
  std::unique_ptr<SGD> sgd_;
  OptimizerState saved_;
  std::vector<Tensor> target_parameters_;
  std::unique_ptr<SGD> target_;
  StateBits before_;
};

TEST_F(LoadStateErrors, MissingAndExtraEntriesAreAllListed) {
  OptimizerState state = saved_;
  state.tensors.erase(state.tensors.begin() + 1);
  state.tensors.emplace_back("state.0.3.momentum_buffer", Tensor::from_vector<float>({1.0f}, Shape{1}));
  state.metadata.erase("state.0.2.step");
  state.metadata["group.0.colour"] = "blue";
  expect_refused(state, {"missing tensor 'state.0.1.momentum_buffer' (f32 (4), for parameter 1 of group 0)",
                         "unexpected tensor 'state.0.3.momentum_buffer' (f32 (1))", "missing metadata 'state.0.2.step'",
                         "unexpected metadata 'group.0.colour' = 'blue'"});

  // Without the group's options the names of its state are unknown: only that is reported.
  state = saved_;
  state.metadata.erase("group.0.momentum");
  try {
    target_->load_state_dict(state);
    ADD_FAILURE() << "no exception";
  } catch (const InvalidArgument& error) {
    EXPECT_THAT(error.what(), HasSubstr(":\n  missing metadata 'group.0.momentum'"));
    EXPECT_THAT(error.what(), ::testing::Not(HasSubstr("unexpected")));
  }
  EXPECT_EQ(bits_of(target_->state_dict()), before_);
}

TEST_F(LoadStateErrors, ShapesThatDifferAreNamed) {
  OptimizerState state = saved_;
  state.tensors[2].second = Tensor::from_vector<float>({1.0f, 2.0f}, Shape{2});
  expect_refused(state, {"tensor 'state.0.2.momentum_buffer' is f32 (2) but parameter 2 of group 0 needs f32 (1)"});

  SGD other({make_parameter(200, Shape{3, 2}), make_parameter(201, Shape{5}), make_parameter(202, Shape{1})},
            {.lr = 0.1, .momentum = 0.9});
  EXPECT_THAT(
      [&] { other.load_state_dict(saved_); },
      ThrowsMessage<InvalidArgument>(HasSubstr("'state.0.1.shape' is (4) but parameter 1 of group 0 has shape (5)")));
}

TEST_F(LoadStateErrors, CountsOptimizerAndValuesMustMatch) {
  OptimizerState state = saved_;
  state.metadata["optimizer"] = "AdamW";
  state.metadata["group.0.lr"] = "fast";
  state.metadata["group.0.dampening"] = "0.5";
  state.metadata["group.0.nesterov"] = "true";
  state.metadata["state.0.0.step"] = "-1";
  expect_refused(state, {"the state is of optimizer 'AdamW', not 'SGD'",
                         "metadata 'group.0.lr' is 'fast', not a number", "the options of group 0 are refused",
                         "Nesterov", "metadata 'state.0.0.step' is '-1', not an integer >= 0"});

  state = saved_;
  state.metadata["group.0.params"] = "2";
  expect_refused(state, {"group 0 has 2 parameters in the state but 3 in this optimizer"});

  state = saved_;
  state.metadata["groups"] = "2";
  expect_refused(state, {"the state has 2 parameter groups, this optimizer 1"});
}

}  // namespace
}  // namespace strata::optim
