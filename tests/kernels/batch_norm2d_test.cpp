// batch_norm2d against the double reference and PyTorch's golden values: training forward
// (saved statistics, running-statistics update), eval forward, backward, for every affine
// variant; odd shapes (1x1 spatial, batch 1, 33 channels, more values per channel than a
// block has threads), a mean far from zero, exact small-integer cases, finite differences,
// argument errors and bit-identical reruns. In f16 and bf16 storage (x, y, dL_dy, dL_dx; the
// per-channel tensors f32): the double reference of the rounded inputs within the f32 bound
// plus one rounding, the f32 run on the same inputs rounded once (bit for bit), odd shapes,
// poisoned outputs and the dtype errors.
#include <array>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "strata/core/config.h"  // STRATA_BACKEND_SIM
#include "strata/core/stream.h"
#include "strata/kernels/batch_norm2d.h"
#include "strata/kernels/conv2d.h"
#include "tests/kernels/batch_norm2d_test_support.h"
#include "tests/kernels/device_values.h"
#include "tests/reference/batch_norm_reference.h"
#include "tests/support/compare.h"
#include "tests/support/golden.h"
#include "tests/support/gradcheck.h"
#include "tests/support/storage_dtypes.h"

#if STRATA_BACKEND_SIM
#include "core/sim/runtime.h"
#endif

namespace strata::kernels {
namespace {

using ::testing::HasSubstr;
using testing::Tolerance;

constexpr Tolerance kTolerance{.abs_tol = 1e-5, .rel_tol = 1e-5};

using batch_norm_test::BatchNormInputs;
using batch_norm_test::BatchNormOutputs;
using batch_norm_test::optional_tensor;
using batch_norm_test::poisoned_gradients;
using batch_norm_test::optional_values;
using batch_norm_test::sizes_of;
using testing::storage_values;

// Training forward, backward and (when running statistics are tracked) eval forward and
// backward, all into poisoned outputs; x, y, dL_dy and dL_dx stored in dtype.
BatchNormOutputs run_batch_norm(const BatchNormInputs& in, const BatchNormParams& params, cudaStream_t stream,
                                DType dtype = DType::f32) {
  const Shape channels{in.shape[1]};
  const Tensor x = testing::storage_tensor(in.x, in.shape, dtype, stream);
  const Tensor dL_dy = testing::storage_tensor(in.dL_dy, in.shape, dtype, stream);
  const Tensor weight = optional_tensor(in.weight, channels, stream);
  const Tensor bias = optional_tensor(in.bias, channels, stream);
  BatchNormRunningStats running{.mean = optional_tensor(in.running_mean, channels, stream),
                                .var = optional_tensor(in.running_var, channels, stream)};
  Tensor y = testing::poisoned_storage(in.shape, dtype, stream);
  BatchNormSaved saved{.mean = testing::poisoned_tensor(channels, stream),
                       .invstd = testing::poisoned_tensor(channels, stream)};
  batch_norm2d_forward_training(x, weight, bias, running, y, saved, params, stream);
  BatchNormGradients gradients = poisoned_gradients(in.shape, params, dtype, stream);
  batch_norm2d_backward(dL_dy, x, weight, saved, gradients, params, stream);
  BatchNormOutputs out{.y = storage_values(y, stream),
                       .saved_mean = saved.mean.to_vector<float>(stream),
                       .saved_invstd = saved.invstd.to_vector<float>(stream),
                       .running_mean = optional_values(running.mean, stream),
                       .running_var = optional_values(running.var, stream),
                       .dL_dx = storage_values(gradients.dL_dx, stream),
                       .dL_dweight = optional_values(gradients.dL_dweight, stream),
                       .dL_dbias = optional_values(gradients.dL_dbias, stream)};
  if (running.mean.defined()) {
    Tensor y_eval = testing::poisoned_storage(in.shape, dtype, stream);
    batch_norm2d_forward_eval(x, weight, bias, running, y_eval, params, stream);
    out.y_eval = storage_values(y_eval, stream);
    BatchNormGradients eval_gradients = poisoned_gradients(in.shape, params, dtype, stream);
    batch_norm2d_backward_eval(dL_dy, x, weight, running, eval_gradients, params, stream);
    out.dL_dx_eval = storage_values(eval_gradients.dL_dx, stream);
    out.dL_dweight_eval = optional_values(eval_gradients.dL_dweight, stream);
    out.dL_dbias_eval = optional_values(eval_gradients.dL_dbias, stream);
  }
  return out;
}

BatchNormInputs random_inputs(std::uint64_t seed, const Shape& shape, BatchNormAffine affine, bool track_running,
                              float offset = 0.0f) {
  return batch_norm_test::random_inputs(seed, shape, affine, track_running, offset - 2.0f, offset + 2.0f);
}

// tolerance bounds the f32 results; y and dL_dx, stored in dtype, get one rounding more.
void expect_matches_reference(const BatchNormInputs& in, const BatchNormOutputs& out, const BatchNormParams& params,
                              Tolerance tolerance, DType dtype = DType::f32) {
  const Tolerance stored = batch_norm_test::storage_tolerance(tolerance, dtype);
  const reference::BatchNormSizes sizes = sizes_of(in.shape);
  const std::vector<double> x = testing::to_doubles(in.x), weight = testing::to_doubles(in.weight),
                            bias = testing::to_doubles(in.bias);
  const reference::BatchNormTrainingResult expected =
      reference::batch_norm2d_training(x, weight, bias, testing::to_doubles(in.running_mean),
                                       testing::to_doubles(in.running_var), sizes, params.eps, params.momentum);
  EXPECT_TRUE(testing::all_close(out.y, expected.y, stored)) << "y";
  EXPECT_TRUE(testing::all_close(out.saved_mean, expected.mean, tolerance)) << "saved mean";
  EXPECT_TRUE(testing::all_close(out.saved_invstd, expected.invstd, tolerance)) << "saved invstd";
  EXPECT_TRUE(testing::all_close(out.running_mean, expected.running_mean, tolerance)) << "running mean";
  EXPECT_TRUE(testing::all_close(out.running_var, expected.running_var, tolerance)) << "running var";
  const reference::BatchNormGradientsResult gradients =
      reference::batch_norm2d_backward(testing::to_doubles(in.dL_dy), x, weight, sizes, params.eps);
  EXPECT_TRUE(testing::all_close(out.dL_dx, gradients.dL_dx, stored)) << "dL_dx";
  if (!in.weight.empty()) {
    EXPECT_TRUE(testing::all_close(out.dL_dweight, gradients.dL_dweight, tolerance)) << "dL_dweight";
  }
  if (!in.bias.empty()) {
    EXPECT_TRUE(testing::all_close(out.dL_dbias, gradients.dL_dbias, tolerance)) << "dL_dbias";
  }
  if (!in.running_mean.empty()) {
    const std::vector<double> y_eval = reference::batch_norm2d_eval(
        x, weight, bias, expected.running_mean, expected.running_var, sizes, params.eps);
    EXPECT_TRUE(testing::all_close(out.y_eval, y_eval, stored)) << "y_eval";
  }
}

class BatchNorm2dAffine : public ::testing::TestWithParam<BatchNormAffine> {};

INSTANTIATE_TEST_SUITE_P(BatchNorm2d, BatchNorm2dAffine,
                         ::testing::Values(BatchNormAffine::weight_and_bias, BatchNormAffine::bias_only,
                                           BatchNormAffine::none),
                         [](const auto& test_info) { return std::string(batch_norm_affine_name(test_info.param)); });

TEST_P(BatchNorm2dAffine, TrainingEvalAndBackwardMatchTheReference) {
  const BatchNormParams params{.eps = 1e-5f, .momentum = 0.1f, .affine = GetParam()};
  Stream stream;
  std::uint64_t seed = 700;
  // (2, 2, 16, 17): 544 values per channel, more than a block's threads.
  for (const Shape& shape : {Shape{2, 3, 4, 5}, Shape{3, 6, 1, 1}, Shape{1, 2, 3, 7}, Shape{4, 33, 2, 3},
                             Shape{2, 2, 16, 17}, Shape{2, 1, 1, 1}}) {
    for (const bool track_running : {true, false}) {
      SCOPED_TRACE(::testing::Message() << "x " << shape.to_string() << ", running statistics " << track_running
                                        << ", seed " << seed);
      const BatchNormInputs in = random_inputs(seed, shape, params.affine, track_running);
      seed += 10;
      expect_matches_reference(in, run_batch_norm(in, params, stream), params, kTolerance);
    }
  }
}

TEST_P(BatchNorm2dAffine, BackwardMatchesFiniteDifferences) {
  const BatchNormParams params{.eps = 1e-3f, .affine = GetParam()};
  Stream stream;
  const Shape shape{2, 2, 3, 2};
  const BatchNormInputs in = random_inputs(801, shape, params.affine, false);
  const BatchNormOutputs out = run_batch_norm(in, params, stream);
  const reference::BatchNormSizes sizes = sizes_of(shape);
  const std::vector<double> weights = testing::to_doubles(in.dL_dy);
  const std::vector<double> x = testing::to_doubles(in.x), weight = testing::to_doubles(in.weight),
                            bias = testing::to_doubles(in.bias);
  const auto loss = [&](std::span<const double> x_in, std::span<const double> weight_in,
                        std::span<const double> bias_in) {
    return testing::weighted_sum(
        reference::batch_norm2d_training(x_in, weight_in, bias_in, {}, {}, sizes, params.eps, 0.0).y, weights);
  };
  const Tolerance tolerance{.abs_tol = 1e-5, .rel_tol = 1e-4};
  EXPECT_TRUE(testing::all_close(
      out.dL_dx, testing::numerical_gradient([&](std::span<const double> v) { return loss(v, weight, bias); }, x),
      tolerance));
  if (!weight.empty()) {
    EXPECT_TRUE(testing::all_close(
        out.dL_dweight,
        testing::numerical_gradient([&](std::span<const double> v) { return loss(x, v, bias); }, weight), tolerance));
  }
  if (!bias.empty()) {
    EXPECT_TRUE(testing::all_close(
        out.dL_dbias, testing::numerical_gradient([&](std::span<const double> v) { return loss(x, weight, v); }, bias),
        tolerance));
  }
}

// The eval backward (running statistics as constants) against finite differences of the
// reference eval forward, for every affine form; outputs poisoned first.
TEST_P(BatchNorm2dAffine, EvalBackwardMatchesFiniteDifferences) {
  const BatchNormParams params{.eps = 1e-3f, .affine = GetParam()};
  Stream stream;
  const Shape shape{2, 3, 3, 2};
  const BatchNormInputs in = random_inputs(811, shape, params.affine, true);
  const auto device = [&](const std::vector<float>& values, const Shape& of) {
    return values.empty() ? Tensor() : testing::device_tensor(values, of, stream);
  };
  const Shape channels{shape[1]};
  const Tensor x = device(in.x, shape);
  const Tensor weight = device(in.weight, channels);
  const BatchNormRunningStats running{device(in.running_mean, channels), device(in.running_var, channels)};
  BatchNormGradients gradients{.dL_dx = testing::poisoned_tensor(shape, stream)};
  if (!in.weight.empty()) gradients.dL_dweight = testing::poisoned_tensor(channels, stream);
  if (!in.bias.empty()) gradients.dL_dbias = testing::poisoned_tensor(channels, stream);
  batch_norm2d_backward_eval(device(in.dL_dy, shape), x, weight, running, gradients, params, stream);

  const reference::BatchNormSizes sizes = sizes_of(shape);
  const std::vector<double> weights = testing::to_doubles(in.dL_dy);
  const std::vector<double> x_values = testing::to_doubles(in.x), weight_values = testing::to_doubles(in.weight),
                            bias_values = testing::to_doubles(in.bias);
  const std::vector<double> mean = testing::to_doubles(in.running_mean), var = testing::to_doubles(in.running_var);
  const auto loss = [&](std::span<const double> x_in, std::span<const double> weight_in,
                        std::span<const double> bias_in) {
    return testing::weighted_sum(reference::batch_norm2d_eval(x_in, weight_in, bias_in, mean, var, sizes, params.eps),
                                 weights);
  };
  const Tolerance tolerance{.abs_tol = 1e-5, .rel_tol = 1e-4};
  EXPECT_TRUE(testing::all_close(
      gradients.dL_dx.to_vector<float>(stream),
      testing::numerical_gradient([&](std::span<const double> v) { return loss(v, weight_values, bias_values); },
                                  x_values),
      tolerance));
  if (gradients.dL_dweight.defined()) {
    EXPECT_TRUE(testing::all_close(
        gradients.dL_dweight.to_vector<float>(stream),
        testing::numerical_gradient([&](std::span<const double> v) { return loss(x_values, v, bias_values); },
                                    weight_values),
        tolerance));
  }
  if (gradients.dL_dbias.defined()) {
    EXPECT_TRUE(testing::all_close(
        gradients.dL_dbias.to_vector<float>(stream),
        testing::numerical_gradient([&](std::span<const double> v) { return loss(x_values, weight_values, v); },
                                    bias_values),
        tolerance));
  }
}

TEST(BatchNorm2d, MeanFarFromZeroKeepsTheVariance) {
  // Values 1000 +- 0.05: a sum of squares in float would lose the variance entirely. The
  // statistics must stay accurate; y and the gradients inherit, as PyTorch's do, the
  // rounding of the float mean (1000 has a spacing of 6e-5, against a deviation of 0.03).
  Stream stream;
  const BatchNormParams params{};
  BatchNormInputs in = random_inputs(811, {4, 3, 5, 5}, BatchNormAffine::weight_and_bias, true);
  in.x = testing::random_uniform(812, in.x.size(), 999.95f, 1000.05f);
  const BatchNormOutputs out = run_batch_norm(in, params, stream);
  const reference::BatchNormTrainingResult expected = reference::batch_norm2d_training(
      testing::to_doubles(in.x), testing::to_doubles(in.weight), testing::to_doubles(in.bias),
      testing::to_doubles(in.running_mean), testing::to_doubles(in.running_var), sizes_of(in.shape), params.eps,
      params.momentum);
  const Tolerance statistics{.abs_tol = 0.0, .rel_tol = 1e-6};
  EXPECT_TRUE(testing::all_close(out.saved_mean, expected.mean, statistics));
  EXPECT_TRUE(testing::all_close(out.saved_invstd, expected.invstd, statistics));
  EXPECT_TRUE(testing::all_close(out.running_mean, expected.running_mean, statistics));
  EXPECT_TRUE(testing::all_close(out.running_var, expected.running_var, statistics));
  expect_matches_reference(in, out, params, Tolerance{.abs_tol = 1e-2, .rel_tol = 1e-2});
}

TEST(BatchNorm2d, SmallIntegersGiveExactResults) {
  Stream stream;
  // x (1, 2, 1, 2): channel 0 holds {1, 3} (mean 2, variance 1), channel 1 {-2, 6} (mean 2,
  // variance 16); eps 0 and momentum 1 make every statistic exact.
  const BatchNormParams params{.eps = 0.0f, .momentum = 1.0f};
  const BatchNormInputs in{.shape = {1, 2, 1, 2},
                           .x = {1, 3, -2, 6},
                           .weight = {2, 3},
                           .bias = {1, -1},
                           .running_mean = {7, 7},
                           .running_var = {7, 7},
                           .dL_dy = {1, 1, 2, -2}};
  const BatchNormOutputs out = run_batch_norm(in, params, stream);
  EXPECT_TRUE(testing::all_equal(out.y, std::vector<float>{-1, 3, -4, 2}));
  EXPECT_TRUE(testing::all_equal(out.saved_mean, std::vector<float>{2, 2}));
  EXPECT_TRUE(testing::all_equal(out.saved_invstd, std::vector<float>{1, 0.25f}));
  EXPECT_TRUE(testing::all_equal(out.running_mean, std::vector<float>{2, 2}));
  EXPECT_TRUE(testing::all_equal(out.running_var, std::vector<float>{2, 32}));  // unbiased: n / (n - 1) = 2
  // Channel 0: dL/dy constant, so only the mean moves: dL/dx 0. Channel 1: dL/dy = -2 x_hat,
  // all of it along x_hat: dL/dx 0 too; dL/dweight = sum dL/dy x_hat, dL/dbias = sum dL/dy.
  EXPECT_TRUE(testing::all_equal(out.dL_dx, std::vector<float>{0, 0, 0, 0}));
  EXPECT_TRUE(testing::all_equal(out.dL_dweight, std::vector<float>{0, -4}));
  EXPECT_TRUE(testing::all_equal(out.dL_dbias, std::vector<float>{2, 0}));
  // Eval with the updated running statistics: (x - 2) / sqrt(var) * weight + bias.
  const double root2 = std::sqrt(2.0), root32 = std::sqrt(32.0);
  EXPECT_TRUE(testing::all_close(out.y_eval, std::vector<double>{-2 / root2 + 1, 2 / root2 + 1, -12 / root32 - 1,
                                                                 12 / root32 - 1},
                                 Tolerance{.abs_tol = 1e-6, .rel_tol = 1e-6}));
}

TEST(BatchNorm2d, MatchesPyTorchGoldenValues) {
  Stream stream;
  const std::vector<testing::GoldenCase> cases = testing::read_golden("batch_norm.txt");
  ASSERT_GE(cases.size(), 7u);
  const std::array affines{BatchNormAffine::none, BatchNormAffine::bias_only, BatchNormAffine::weight_and_bias};
  for (const testing::GoldenCase& golden : cases) {
    SCOPED_TRACE("golden case " + golden.name);
    const BatchNormParams params{.eps = static_cast<float>(golden.float_of("eps")),
                                 .momentum = static_cast<float>(golden.float_of("momentum")),
                                 .affine = affines.at(static_cast<std::size_t>(golden.int_of("affine")))};
    const testing::GoldenTensor& x = golden.tensor_of("x");
    const auto values_or_empty = [&](const char* key) {
      return golden.has_tensor(key) ? golden.tensor_of(key).values : std::vector<float>{};
    };
    const BatchNormInputs in{.shape = Shape(std::span<const std::int64_t>(x.shape)),
                             .x = x.values,
                             .weight = values_or_empty("weight"),
                             .bias = values_or_empty("bias"),
                             .running_mean = golden.tensor_of("running_mean_in").values,
                             .running_var = golden.tensor_of("running_var_in").values,
                             .dL_dy = golden.tensor_of("dL_dy").values};
    const BatchNormOutputs out = run_batch_norm(in, params, stream);
    const auto expect_close = [&](const std::vector<float>& actual, const char* key) {
      EXPECT_TRUE(testing::all_close(actual, testing::to_doubles(golden.tensor_of(key).values), kTolerance)) << key;
    };
    expect_close(out.y, "y");
    expect_close(out.saved_mean, "mean");
    expect_close(out.saved_invstd, "invstd");
    expect_close(out.running_mean, "running_mean");
    expect_close(out.running_var, "running_var");
    expect_close(out.dL_dx, "dL_dx");
    if (golden.has_tensor("dL_dweight")) expect_close(out.dL_dweight, "dL_dweight");
    if (golden.has_tensor("dL_dbias")) expect_close(out.dL_dbias, "dL_dbias");
    expect_close(out.y_eval, "y_eval");
  }
}

TEST(BatchNorm2d, RerunsAreBitIdentical) {
  Stream stream;
  const BatchNormParams params{};
  const BatchNormInputs in = random_inputs(821, {3, 5, 13, 11}, BatchNormAffine::weight_and_bias, true);
  const auto results = testing::run_with_schedule_seeds<std::vector<std::uint32_t>>([&] {
    const BatchNormOutputs out = run_batch_norm(in, params, stream);
    std::vector<float> values;
    for (const std::vector<float>* part : {&out.y, &out.saved_mean, &out.saved_invstd, &out.running_mean,
                                           &out.running_var, &out.dL_dx, &out.dL_dweight, &out.dL_dbias}) {
      values.insert(values.end(), part->begin(), part->end());
    }
    return testing::bit_patterns(values);
  });
  for (std::size_t i = 1; i < results.size(); ++i) EXPECT_EQ(results[i], results[0]) << "rerun " << i;
}

// The names of the kernels run launches, as the simulator reports them (empty on a GPU).
template <typename Run>
std::vector<std::string> launched_by(Run run) {
  std::vector<std::string> names;
#if STRATA_BACKEND_SIM
  sim::set_launch_observer([&](const sim::KernelLaunch& launch) { names.emplace_back(launch.name); });
#endif
  run();
#if STRATA_BACKEND_SIM
  sim::set_launch_observer({});
#endif
  return names;
}

// num_batches_tracked: + 1 per training forward, counted by the kernel that finalises the
// statistics (no launch of its own), whether they come from a pass over x, in either layout,
// or from the partials of x's producer; the eval forward and the backward leave it.
TEST(BatchNorm2d, TrainingForwardCountsTheBatchWithoutALaunchOfItsOwn) {
  Stream stream;
  const BatchNormParams params{};
  const BatchNormInputs in = random_inputs(851, {2, 6, 5, 3}, BatchNormAffine::weight_and_bias, true);
  const Shape channels{6};
  const Tensor weight = optional_tensor(in.weight, channels, stream);
  const Tensor bias = optional_tensor(in.bias, channels, stream);
  BatchNormRunningStats running{.mean = optional_tensor(in.running_mean, channels, stream),
                                .var = optional_tensor(in.running_var, channels, stream),
                                .num_batches_tracked = Tensor::zeros(Shape(), DType::i64, stream)};
  running.num_batches_tracked.fill(41.0, stream);
  const auto count = [&] { return running.num_batches_tracked.to_vector<std::int64_t>(stream).at(0); };
  BatchNormSaved saved{.mean = testing::poisoned_tensor(channels, stream),
                       .invstd = testing::poisoned_tensor(channels, stream)};

  const Tensor contiguous = testing::device_tensor(in.x, in.shape, stream);
  const Tensor conv_weight = testing::device_tensor(testing::random_uniform(852, 6 * 6), {6, 6, 1, 1}, stream);
  ChannelStatistics statistics;
  const Tensor produced = conv2d_forward(contiguous, conv_weight, Tensor(), Conv2dParams{}, stream, &statistics);
  std::int64_t expected = 41;
  struct Case {
    const char* name;
    Tensor x;
    const ChannelStatistics* given;
  };
  const Tensor channels_last = contiguous.to_memory_format(MemoryFormat::channels_last, stream);
  for (const auto& [name, x, given] : {Case{"contiguous", contiguous, nullptr},
                                       Case{"channels-last", channels_last, nullptr},
                                       Case{"producer's partials", produced, &statistics}}) {
    SCOPED_TRACE(name);
    Tensor y = testing::poisoned_tensor(in.shape, stream).to_memory_format(x.memory_format(), stream);
    BatchNormRunningStats untracked_count{.mean = running.mean, .var = running.var};
    const std::vector<std::string> without = launched_by(
        [&] { batch_norm2d_forward_training(x, weight, bias, untracked_count, y, saved, params, stream, given); });
    const std::vector<std::string> with = launched_by(
        [&] { batch_norm2d_forward_training(x, weight, bias, running, y, saved, params, stream, given); });
    EXPECT_EQ(with, without);
    expected += 1;
    EXPECT_EQ(count(), expected);
  }
  Tensor y = testing::poisoned_tensor(in.shape, stream);
  batch_norm2d_forward_eval(contiguous, weight, bias, running, y, params, stream);
  BatchNormGradients gradients = poisoned_gradients(in.shape, params, DType::f32, stream);
  batch_norm2d_backward(y, contiguous, weight, saved, gradients, params, stream);
  EXPECT_EQ(count(), expected);

  BatchNormRunningStats wrong = running;
  wrong.num_batches_tracked = Tensor::zeros({1}, DType::i64, stream);
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { batch_norm2d_forward_training(contiguous, weight, bias, wrong, y, saved, params, stream); }),
              HasSubstr("batch_norm2d: num_batches_tracked must have shape (), got (1)"));
  wrong.num_batches_tracked = Tensor::zeros(Shape(), DType::f32, stream);
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { batch_norm2d_forward_training(contiguous, weight, bias, wrong, y, saved, params, stream); }),
              HasSubstr("batch_norm2d: num_batches_tracked"));
}

TEST(BatchNorm2d, AffineNames) {
  EXPECT_STREQ(batch_norm_affine_name(BatchNormAffine::none), "none");
  EXPECT_STREQ(batch_norm_affine_name(BatchNormAffine::bias_only), "bias_only");
  EXPECT_STREQ(batch_norm_affine_name(BatchNormAffine::weight_and_bias), "weight_and_bias");
}

TEST(BatchNorm2d, ChannelShape) {
  EXPECT_EQ(batch_norm2d_channel_shape({8, 16, 32, 32}, BatchNormMode::training), Shape{16});
  EXPECT_EQ(batch_norm2d_channel_shape({1, 3, 1, 1}, BatchNormMode::eval), Shape{3});
  EXPECT_EQ(batch_norm2d_channel_shape({1, 3, 2, 1}, BatchNormMode::training), Shape{3});
  EXPECT_THAT(testing::invalid_argument_message(
                  [] { batch_norm2d_channel_shape({1, 3, 1, 1}, BatchNormMode::training); }),
              HasSubstr("batch_norm2d: expected more than 1 value per channel when training, got x (1, 3, 1, 1)"));
  EXPECT_THAT(testing::invalid_argument_message([] { batch_norm2d_channel_shape({4, 3, 5}, BatchNormMode::eval); }),
              HasSubstr("batch_norm2d: x must be (N, C, H, W), got (4, 3, 5)"));
  EXPECT_THAT(
      testing::invalid_argument_message([] { batch_norm2d_channel_shape({4, 0, 5, 5}, BatchNormMode::eval); }),
      HasSubstr("batch_norm2d: sizes must be at least 1, got x (4, 0, 5, 5)"));
}

TEST(BatchNorm2d, ArgumentErrorsNameTheOpAndShapes) {
  Stream stream;
  const Tensor x = Tensor::zeros({2, 3, 2, 2}, DType::f32, stream);
  const Tensor channels = Tensor::zeros({3}, DType::f32, stream);
  const Tensor four = Tensor::zeros({4}, DType::f32, stream);
  Tensor y = Tensor::zeros({2, 3, 2, 2}, DType::f32, stream);
  BatchNormSaved saved{.mean = Tensor::zeros({3}, DType::f32, stream),
                       .invstd = Tensor::zeros({3}, DType::f32, stream)};
  BatchNormRunningStats none;
  const BatchNormParams bias_only{.affine = BatchNormAffine::bias_only};
  EXPECT_THAT(testing::invalid_argument_message([&] {
                batch_norm2d_forward_training(x, channels, channels, none, y, saved, bias_only, stream);
              }),
              HasSubstr("batch_norm2d: affine bias_only takes no weight (it is fixed at 1), got Tensor(shape=(3)"));
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { batch_norm2d_forward_training(x, channels, Tensor(), none, y, saved, {}, stream); }),
              HasSubstr("batch_norm2d: affine weight_and_bias needs a bias, got none"));
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { batch_norm2d_forward_training(x, four, channels, none, y, saved, {}, stream); }),
              HasSubstr("batch_norm2d: weight must have shape (3), got (4)"));
  BatchNormRunningStats half{.mean = Tensor::zeros({3}, DType::f32, stream)};
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { batch_norm2d_forward_training(x, channels, channels, half, y, saved, {}, stream); }),
              HasSubstr("running mean and variance must both be given or both be omitted (x (2, 3, 2, 2))"));
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { batch_norm2d_forward_eval(x, channels, channels, none, y, {}, stream); }),
              HasSubstr("batch_norm2d: eval needs the running mean and variance (x (2, 3, 2, 2))"));
  EXPECT_THAT(testing::invalid_argument_message([&] {
                batch_norm2d_forward_training(x, channels, channels, none, y, saved, {.eps = -1.0f}, stream);
              }),
              HasSubstr("batch_norm2d: eps must be finite and >= 0, got -1 (x (2, 3, 2, 2))"));
  Tensor aliased = x;
  EXPECT_THAT(testing::invalid_argument_message([&] {
                batch_norm2d_forward_training(x, channels, channels, none, aliased, saved, {}, stream);
              }),
              HasSubstr("batch_norm2d: y (2, 3, 2, 2) overlaps x (2, 3, 2, 2)"));
  const Tensor single = Tensor::zeros({1, 3, 1, 1}, DType::f32, stream);
  Tensor single_y = Tensor::zeros({1, 3, 1, 1}, DType::f32, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] {
                batch_norm2d_forward_training(single, channels, channels, none, single_y, saved, {}, stream);
              }),
              HasSubstr("expected more than 1 value per channel when training, got x (1, 3, 1, 1)"));
  BatchNormGradients gradients{.dL_dweight = Tensor::zeros({3}, DType::f32, stream)};
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { batch_norm2d_backward(y, x, Tensor(), saved, gradients, bias_only, stream); }),
              HasSubstr("batch_norm2d: affine bias_only has no weight, so no dL_dweight (got Tensor(shape=(3)"));
  // The backward checks params as the forwards do (the cuDNN engine passes eps to cuDNN).
  BatchNormGradients dL_dx_only{.dL_dx = Tensor::zeros({2, 3, 2, 2}, DType::f32, stream)};
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { batch_norm2d_backward(y, x, channels, saved, dL_dx_only, {.eps = -1.0f}, stream); }),
              HasSubstr("batch_norm2d: eps must be finite and >= 0, got -1 (x (2, 3, 2, 2))"));
}

// ---- f16 and bf16 storage --------------------------------------------------------------------

class BatchNorm2dStorage : public ::testing::TestWithParam<DType> {};

INSTANTIATE_TEST_SUITE_P(BatchNorm2d, BatchNorm2dStorage, ::testing::ValuesIn(testing::kReducedDtypes),
                         testing::dtype_param_name);

// Odd shapes (a 1x1 plane, batch 1, 33 channels, more values per channel than a block has
// threads), every affine variant, running statistics tracked or not; inputs rounded to the
// dtype first, so the reference and the f32 run read the values the kernels read.
const std::vector<Shape> kStorageShapes{Shape{2, 3, 4, 5}, Shape{3, 6, 1, 1}, Shape{1, 2, 3, 7}, Shape{4, 33, 2, 3},
                                        Shape{2, 2, 16, 17}};

TEST_P(BatchNorm2dStorage, MatchesTheDoubleReferenceOfTheRoundedInputs) {
  const DType dtype = GetParam();
  Stream stream;
  std::uint64_t seed = 900;
  for (const BatchNormAffine affine :
       {BatchNormAffine::weight_and_bias, BatchNormAffine::bias_only, BatchNormAffine::none}) {
    const BatchNormParams params{.eps = 1e-5f, .momentum = 0.1f, .affine = affine};
    for (const Shape& shape : kStorageShapes) {
      const bool track_running = seed % 20 == 0;  // alternately
      SCOPED_TRACE(::testing::Message() << "x " << shape.to_string() << ", affine " << batch_norm_affine_name(affine)
                                        << ", running statistics " << track_running << ", seed " << seed);
      const BatchNormInputs in =
          batch_norm_test::rounded_inputs(random_inputs(seed, shape, affine, track_running), dtype, stream);
      seed += 10;
      expect_matches_reference(in, run_batch_norm(in, params, stream, dtype), params, kTolerance, dtype);
    }
  }
}

TEST_P(BatchNorm2dStorage, IsTheF32ResultOfTheRoundedInputsRoundedOnce) {
  const DType dtype = GetParam();
  Stream stream;
  std::uint64_t seed = 950;
  for (const BatchNormAffine affine :
       {BatchNormAffine::weight_and_bias, BatchNormAffine::bias_only, BatchNormAffine::none}) {
    const BatchNormParams params{.eps = 1e-5f, .momentum = 0.1f, .affine = affine};
    for (const Shape& shape : kStorageShapes) {
      SCOPED_TRACE(::testing::Message() << "x " << shape.to_string() << ", affine " << batch_norm_affine_name(affine)
                                        << ", seed " << seed);
      // A mean away from zero, so that y and dL_dx have values of every magnitude to round.
      const BatchNormInputs in = batch_norm_test::rounded_inputs(
          random_inputs(seed, shape, affine, /*track_running=*/true, /*offset=*/3.0f), dtype, stream);
      seed += 10;
      batch_norm_test::expect_f32_results_rounded_once(run_batch_norm(in, params, stream, dtype),
                                                       run_batch_norm(in, params, stream), dtype, stream);
    }
  }
}

TEST_P(BatchNorm2dStorage, DTypeErrorsNameTheOperands) {
  const DType dtype = GetParam();
  Stream stream;
  const Shape shape{2, 3, 2, 2};
  const Tensor x = Tensor::zeros(shape, dtype, stream);
  const Tensor channels = Tensor::zeros({3}, DType::f32, stream);
  Tensor y = Tensor::zeros(shape, dtype, stream);
  Tensor y_f32 = Tensor::zeros(shape, DType::f32, stream);
  BatchNormSaved saved{.mean = Tensor::zeros({3}, DType::f32, stream),
                       .invstd = Tensor::zeros({3}, DType::f32, stream)};
  BatchNormRunningStats none;
  const std::string name(dtype_name(dtype));
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { batch_norm2d_forward_training(x, channels, channels, none, y_f32, saved, {}, stream); }),
              HasSubstr("batch_norm2d: y has dtype f32 but x has dtype " + name +
                        "; the operands must share one dtype (cast one with F::to_dtype, or run the model "
                        "under strata::AutocastGuard)"));
  const Tensor reduced_channels = Tensor::zeros({3}, dtype, stream);
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { batch_norm2d_forward_training(x, reduced_channels, channels, none, y, saved, {}, stream); }),
              HasSubstr("batch_norm2d: weight must have dtype f32 (batch norm's weight, bias and statistics stay "
                        "f32 whatever x's dtype), got Tensor("));
  BatchNormRunningStats reduced_running{.mean = reduced_channels, .var = Tensor::zeros({3}, dtype, stream)};
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { batch_norm2d_forward_eval(x, channels, channels, reduced_running, y, {}, stream); }),
              HasSubstr("batch_norm2d: running mean must have dtype f32"));
  BatchNormSaved reduced_saved{.mean = reduced_channels, .invstd = Tensor::zeros({3}, dtype, stream)};
  EXPECT_THAT(testing::invalid_argument_message([&] {
                batch_norm2d_forward_training(x, channels, channels, none, y, reduced_saved, {}, stream);
              }),
              HasSubstr("batch_norm2d: saved mean must have dtype f32"));
  const Tensor dL_dy_f32 = Tensor::zeros(shape, DType::f32, stream);
  BatchNormGradients dL_dx_only{.dL_dx = Tensor::zeros(shape, dtype, stream)};
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { batch_norm2d_backward(dL_dy_f32, x, channels, saved, dL_dx_only, {}, stream); }),
              HasSubstr("batch_norm2d: dL_dy has dtype f32 but x has dtype " + name));
  BatchNormGradients dL_dx_f32{.dL_dx = Tensor::zeros(shape, DType::f32, stream)};
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { batch_norm2d_backward_eval(y, x, channels, reduced_running, dL_dx_f32, {}, stream); }),
              HasSubstr("batch_norm2d: dL_dx has dtype f32 but x has dtype " + name));
  BatchNormGradients reduced_parameter_gradient{.dL_dbias = Tensor::zeros({3}, dtype, stream)};
  EXPECT_THAT(testing::invalid_argument_message([&] {
                batch_norm2d_backward(y, x, channels, saved, reduced_parameter_gradient, {}, stream);
              }),
              HasSubstr("batch_norm2d: dL_dbias must have dtype f32"));
}

TEST(BatchNorm2d, IntegerInputIsRefused) {
  Stream stream;
  const Tensor x = Tensor::zeros({2, 3, 2, 2}, DType::i32, stream);
  const Tensor channels = Tensor::zeros({3}, DType::f32, stream);
  Tensor y = Tensor::zeros({2, 3, 2, 2}, DType::i32, stream);
  BatchNormSaved saved{.mean = Tensor::zeros({3}, DType::f32, stream),
                       .invstd = Tensor::zeros({3}, DType::f32, stream)};
  BatchNormRunningStats none;
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { batch_norm2d_forward_training(x, channels, channels, none, y, saved, {}, stream); }),
              HasSubstr("batch_norm2d: x must have dtype f32, f16 or bf16, got Tensor("));
}

}  // namespace
}  // namespace strata::kernels
