// softmax_cross_entropy against the double reference and PyTorch's golden values: label
// smoothing, the three reductions, ignored rows, one class, rows longer than a block,
// extreme logits, finite-difference gradients, bad targets reported through TargetCheck,
// argument errors and bit-identical reruns; f16 and bf16 logits (f32 loss, gradient in the
// logits' dtype) against the reference of the rounded logits, and mixed dtypes refused.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "strata/core/stream.h"
#include "strata/kernels/softmax_cross_entropy.h"
#include "tests/kernels/device_values.h"
#include "tests/reference/softmax_reference.h"
#include "tests/support/compare.h"
#include "tests/support/golden.h"
#include "tests/support/gradcheck.h"
#include "tests/support/storage_dtypes.h"

namespace strata::kernels {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::Tolerance;

constexpr Tolerance kLossTolerance{.abs_tol = 1e-5, .rel_tol = 1e-5};
constexpr Tolerance kGradientTolerance{.abs_tol = 1e-6, .rel_tol = 1e-5};

const char* reduction_name(Reduction reduction) {
  switch (reduction) {
    case Reduction::none: return "none";
    case Reduction::mean: return "mean";
    case Reduction::sum: return "sum";
  }
  return "invalid";
}

// What one forward and backward produced, copied to the host.
struct CrossEntropyRun {
  std::vector<float> loss;
  std::vector<float> log_sum_exp;  // (N, 2): row maximum, log sum exp(x - maximum)
  std::int64_t target_count = -1;
  std::vector<float> dL_dlogits;
};

Tensor target_tensor(const std::vector<std::int64_t>& targets, DType dtype, cudaStream_t stream) {
  const Shape shape{static_cast<std::int64_t>(targets.size())};
  if (dtype == DType::i64) return testing::device_tensor(targets, shape, stream);
  return testing::device_tensor(std::vector<std::int32_t>(targets.begin(), targets.end()), shape, stream);
}

// Forward into poisoned outputs, then backward with dL_dloss, on stream; the logits (rounded
// to logit_dtype) and their gradient stored in logit_dtype.
CrossEntropyRun run_cross_entropy(const std::vector<float>& logits, const std::vector<std::int64_t>& targets,
                                  std::int64_t classes, const std::vector<float>& dL_dloss,
                                  const CrossEntropyParams& params, TargetCheck& target_check, cudaStream_t stream,
                                  DType target_dtype = DType::i64, DType logit_dtype = DType::f32) {
  const auto rows = static_cast<std::int64_t>(targets.size());
  const Tensor logits_device = testing::storage_tensor(logits, {rows, classes}, logit_dtype, stream);
  const Tensor targets_device = target_tensor(targets, target_dtype, stream);
  const Shape loss_shape = softmax_cross_entropy_loss_shape({rows, classes}, {rows}, params);
  CrossEntropyForward forward{.loss = testing::poisoned_tensor(loss_shape, stream),
                              .log_sum_exp = testing::poisoned_tensor({rows, 2}, stream),
                              .target_count = testing::device_tensor(std::vector<std::int64_t>{-7}, {}, stream)};
  softmax_cross_entropy_forward(logits_device, targets_device, forward, target_check, params, stream);
  Tensor dL_dlogits = testing::poisoned_storage({rows, classes}, logit_dtype, stream);
  softmax_cross_entropy_backward(testing::device_tensor(dL_dloss, loss_shape, stream), logits_device, targets_device,
                                 forward, dL_dlogits, params, stream);
  return CrossEntropyRun{.loss = forward.loss.to_vector<float>(stream),
                         .log_sum_exp = forward.log_sum_exp.to_vector<float>(stream),
                         .target_count = forward.target_count.to_vector<std::int64_t>(stream).at(0),
                         .dL_dlogits = testing::storage_values(dL_dlogits, stream)};
}

// Targets in [0, classes), with every third row (from row 1) set to ignore_index when asked.
std::vector<std::int64_t> random_targets(std::uint64_t seed, std::int64_t rows, std::int64_t classes,
                                         bool with_ignored, std::int64_t ignore_index = -100) {
  std::mt19937_64 generator(seed);
  std::uniform_int_distribution<std::int64_t> distribution(0, classes - 1);
  std::vector<std::int64_t> targets(static_cast<std::size_t>(rows));
  for (std::int64_t i = 0; i < rows; ++i) {
    targets[static_cast<std::size_t>(i)] = with_ignored && i % 3 == 1 ? ignore_index : distribution(generator);
  }
  return targets;
}

std::size_t loss_count(Reduction reduction, std::int64_t rows) {
  return reduction == Reduction::none ? static_cast<std::size_t>(rows) : 1;
}

std::vector<double> reference_log_sum_exp(const std::vector<float>& logits, std::int64_t classes) {
  const std::vector<double> x = testing::to_doubles(logits);
  const std::vector<double> log_p = reference::log_softmax(x, classes);
  std::vector<double> lse;
  for (std::size_t row = 0; row < x.size() / static_cast<std::size_t>(classes); ++row) {
    lse.push_back(x[row * static_cast<std::size_t>(classes)] - log_p[row * static_cast<std::size_t>(classes)]);
  }
  return lse;
}

// The fixture's reduction code: 0 none, 1 mean, 2 sum.
Reduction reduction_of_code(std::int64_t code) {
  if (code == 0) return Reduction::none;
  return code == 1 ? Reduction::mean : Reduction::sum;
}

struct ReferenceCase {
  Reduction reduction;
  float label_smoothing;
};

class SoftmaxCrossEntropyCases : public ::testing::TestWithParam<ReferenceCase> {};

INSTANTIATE_TEST_SUITE_P(SoftmaxCrossEntropy, SoftmaxCrossEntropyCases,
                         ::testing::Values(ReferenceCase{Reduction::mean, 0.0f}, ReferenceCase{Reduction::mean, 0.1f},
                                           ReferenceCase{Reduction::sum, 0.0f}, ReferenceCase{Reduction::sum, 0.2f},
                                           ReferenceCase{Reduction::none, 0.0f}, ReferenceCase{Reduction::none, 0.1f}),
                         [](const auto& test_info) {
                           return std::string(reduction_name(test_info.param.reduction)) + "_smoothing" +
                                  std::to_string(static_cast<int>(test_info.param.label_smoothing * 10));
                         });

TEST_P(SoftmaxCrossEntropyCases, ForwardAndBackwardMatchTheReference) {
  const CrossEntropyParams params{.label_smoothing = GetParam().label_smoothing, .reduction = GetParam().reduction};
  Stream stream;
  TargetCheck target_check(stream);
  struct Size {
    std::int64_t rows, classes;
  };
  std::uint64_t seed = 300;
  for (const Size size : {Size{1, 1}, Size{4, 1}, Size{7, 10}, Size{5, 7}, Size{3, 33}, Size{2, 1030}, Size{70, 10},
                          Size{300, 3}}) {
    for (const bool with_ignored : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "logits (" << size.rows << ", " << size.classes << "), ignored rows "
                                        << with_ignored << ", seed " << seed);
      const std::vector<float> logits =
          testing::random_uniform(seed++, static_cast<std::size_t>(size.rows * size.classes), -4.0f, 4.0f);
      const std::vector<std::int64_t> targets = random_targets(seed++, size.rows, size.classes, with_ignored);
      const std::vector<float> dL_dloss = testing::random_uniform(seed++, loss_count(params.reduction, size.rows));
      const CrossEntropyRun run =
          run_cross_entropy(logits, targets, size.classes, dL_dloss, params, target_check, stream);
      const std::vector<double> x = testing::to_doubles(logits);
      EXPECT_TRUE(testing::all_close(run.loss, reference::cross_entropy(x, targets, size.classes, params),
                                     kLossTolerance));
      std::vector<float> log_sum_exp;
      for (std::size_t row = 0; row < run.log_sum_exp.size() / 2; ++row) {
        const auto row_begin = logits.begin() + static_cast<std::ptrdiff_t>(row) * size.classes;
        EXPECT_EQ(run.log_sum_exp[2 * row], *std::max_element(row_begin, row_begin + size.classes)) << "row " << row;
        log_sum_exp.push_back(run.log_sum_exp[2 * row] + run.log_sum_exp[2 * row + 1]);
      }
      EXPECT_TRUE(testing::all_close(log_sum_exp, reference_log_sum_exp(logits, size.classes), kLossTolerance));
      EXPECT_EQ(run.target_count, std::ranges::count_if(targets, [](std::int64_t t) { return t != -100; }));
      EXPECT_TRUE(testing::all_close(
          run.dL_dlogits,
          reference::cross_entropy_backward(testing::to_doubles(dL_dloss), x, targets, size.classes, params),
          kGradientTolerance));
    }
  }
  EXPECT_NO_THROW(target_check.check(stream));
}

TEST_P(SoftmaxCrossEntropyCases, ReducedLogitsGiveAnF32LossAndGradientsInTheirDtype) {
  const CrossEntropyParams params{.label_smoothing = GetParam().label_smoothing, .reduction = GetParam().reduction};
  Stream stream;
  TargetCheck target_check(stream);
  std::uint64_t seed = 350;
  for (const DType dtype : testing::kReducedDtypes) {
    for (const auto& [rows, classes] : {std::pair<std::int64_t, std::int64_t>{7, 10}, {3, 33}, {40, 5}}) {
      SCOPED_TRACE(::testing::Message() << dtype << " logits (" << rows << ", " << classes << "), seed " << seed);
      // The loss reads the rounded logits exactly and computes in f32: the f32 bound holds.
      const std::vector<float> logits = testing::rounded_to(
          testing::random_uniform(seed++, static_cast<std::size_t>(rows * classes), -4.0f, 4.0f), dtype, stream);
      const std::vector<std::int64_t> targets = random_targets(seed++, rows, classes, true);
      const std::vector<float> dL_dloss = testing::random_uniform(seed++, loss_count(params.reduction, rows));
      const CrossEntropyRun run =
          run_cross_entropy(logits, targets, classes, dL_dloss, params, target_check, stream, DType::i64, dtype);
      const std::vector<double> x = testing::to_doubles(logits);
      EXPECT_TRUE(
          testing::all_close(run.loss, reference::cross_entropy(x, targets, classes, params), kLossTolerance));
      std::vector<float> log_sum_exp;
      for (std::size_t row = 0; row < run.log_sum_exp.size() / 2; ++row) {
        log_sum_exp.push_back(run.log_sum_exp[2 * row] + run.log_sum_exp[2 * row + 1]);
      }
      EXPECT_TRUE(testing::all_close(log_sum_exp, reference_log_sum_exp(logits, classes), kLossTolerance));
      // The gradient: the f32 bound plus its one rounding to dtype.
      EXPECT_TRUE(testing::all_close(
          run.dL_dlogits, reference::cross_entropy_backward(testing::to_doubles(dL_dloss), x, targets, classes, params),
          Tolerance{.abs_tol = kGradientTolerance.abs_tol,
                    .rel_tol = kGradientTolerance.rel_tol + testing::storage_rel_tol(dtype)}));
    }
  }
  EXPECT_NO_THROW(target_check.check(stream));
}

TEST_P(SoftmaxCrossEntropyCases, BackwardMatchesFiniteDifferences) {
  const CrossEntropyParams params{.label_smoothing = GetParam().label_smoothing, .reduction = GetParam().reduction};
  Stream stream;
  TargetCheck target_check(stream);
  const std::int64_t rows = 4, classes = 5;
  const std::vector<std::int64_t> targets = {3, -100, 0, 4};
  const std::vector<float> logits = testing::random_uniform(41, rows * classes, -2.0f, 2.0f);
  const std::vector<float> dL_dloss = testing::random_uniform(42, loss_count(params.reduction, rows));
  const CrossEntropyRun run = run_cross_entropy(logits, targets, classes, dL_dloss, params, target_check, stream);
  const std::vector<double> weights = testing::to_doubles(dL_dloss);
  const std::vector<double> numerical = testing::numerical_gradient(
      [&](std::span<const double> x) {
        return testing::weighted_sum(reference::cross_entropy(x, targets, classes, params), weights);
      },
      testing::to_doubles(logits));
  EXPECT_TRUE(testing::all_close(run.dL_dlogits, numerical, Tolerance{.abs_tol = 2e-6, .rel_tol = 1e-5}));
}

TEST(SoftmaxCrossEntropy, Int32TargetsGiveTheSameBits) {
  Stream stream;
  TargetCheck target_check(stream);
  const CrossEntropyParams params{.label_smoothing = 0.1f};
  const std::vector<float> logits = testing::random_uniform(51, 9 * 12, -3.0f, 3.0f);
  const std::vector<std::int64_t> targets = random_targets(52, 9, 12, true);
  const std::vector<float> dL_dloss = {0.75f};
  const CrossEntropyRun wide = run_cross_entropy(logits, targets, 12, dL_dloss, params, target_check, stream);
  const CrossEntropyRun narrow =
      run_cross_entropy(logits, targets, 12, dL_dloss, params, target_check, stream, DType::i32);
  EXPECT_EQ(testing::bit_patterns(narrow.loss), testing::bit_patterns(wide.loss));
  EXPECT_EQ(testing::bit_patterns(narrow.dL_dlogits), testing::bit_patterns(wide.dL_dlogits));
}

TEST(SoftmaxCrossEntropy, ExtremeLogitsStayFinite) {
  Stream stream;
  TargetCheck target_check(stream);
  // exp(1e4) overflows float; the max-subtracted sums do not. Targets hit both the largest
  // and the smallest logit.
  const std::vector<float> logits = {1e4f, -1e4f, 0.0f, -1e4f, 1e4f, 1e4f, 5e3f, -1e4f, -1e4f};
  const std::vector<std::int64_t> targets = {1, 0, 2};
  for (const float smoothing : {0.0f, 0.2f}) {
    const CrossEntropyParams params{.label_smoothing = smoothing, .reduction = Reduction::none};
    const std::vector<float> dL_dloss = {1.0f, -0.5f, 0.25f};
    const CrossEntropyRun run = run_cross_entropy(logits, targets, 3, dL_dloss, params, target_check, stream);
    const std::vector<double> x = testing::to_doubles(logits);
    EXPECT_TRUE(testing::all_close(run.loss, reference::cross_entropy(x, targets, 3, params), kLossTolerance))
        << "smoothing " << smoothing;
    EXPECT_TRUE(testing::all_close(run.dL_dlogits,
                                   reference::cross_entropy_backward(testing::to_doubles(dL_dloss), x, targets, 3,
                                                                     params),
                                   kGradientTolerance))
        << "smoothing " << smoothing;
  }
}

TEST(SoftmaxCrossEntropy, MatchesPyTorchGoldenValues) {
  Stream stream;
  TargetCheck target_check(stream);
  const std::vector<testing::GoldenCase> cases = testing::read_golden("cross_entropy.txt");
  ASSERT_GE(cases.size(), 10u);
  for (const testing::GoldenCase& golden : cases) {
    SCOPED_TRACE("golden case " + golden.name);
    const CrossEntropyParams params{.label_smoothing = static_cast<float>(golden.float_of("label_smoothing")),
                                    .reduction = reduction_of_code(golden.int_of("reduction")),
                                    .ignore_index = golden.int_of("ignore_index")};
    const std::int64_t classes = golden.int_of("classes");
    const std::vector<std::int64_t>& targets = golden.ints_of("targets");
    const CrossEntropyRun run = run_cross_entropy(golden.tensor_of("logits").values, targets, classes,
                                                  golden.tensor_of("dL_dloss").values, params, target_check, stream);
    EXPECT_TRUE(testing::all_close(run.loss, testing::to_doubles(golden.tensor_of("loss").values), kLossTolerance));
    EXPECT_TRUE(testing::all_close(run.dL_dlogits, testing::to_doubles(golden.tensor_of("dL_dlogits").values),
                                   kGradientTolerance));
  }
  EXPECT_NO_THROW(target_check.check(stream));
}

TEST(SoftmaxCrossEntropy, OneClassGivesExactlyZeroLossAndGradient) {
  // With one class the softmax is exactly 1 and the target's log-probability exactly 0.
  Stream stream;
  TargetCheck target_check(stream);
  const CrossEntropyParams params{.reduction = Reduction::none};
  const CrossEntropyRun run = run_cross_entropy({-3.5f, 0.0f, 1e4f}, {0, 0, 0}, 1, {1.0f, -2.0f, 0.5f}, params,
                                                target_check, stream);
  EXPECT_TRUE(testing::all_equal(run.loss, std::vector<float>(3, 0.0f)));
  EXPECT_TRUE(testing::all_equal(run.dL_dlogits, std::vector<float>(3, 0.0f)));
}

TEST(SoftmaxCrossEntropy, AllRowsIgnoredGiveNanMeanAndZeroGradient) {
  Stream stream;
  TargetCheck target_check(stream);
  const CrossEntropyParams params{.label_smoothing = 0.1f, .reduction = Reduction::mean};
  const CrossEntropyRun run = run_cross_entropy(testing::random_uniform(61, 12), {-100, -100, -100}, 4, {1.0f},
                                                params, target_check, stream);
  EXPECT_TRUE(std::isnan(run.loss.at(0)));
  EXPECT_EQ(run.target_count, 0);
  EXPECT_TRUE(testing::all_equal(run.dL_dlogits, std::vector<float>(12, 0.0f)));
}

TEST(SoftmaxCrossEntropy, OutOfRangeTargetIsReportedWithItsValueAndRow) {
  Stream stream;
  TargetCheck target_check(stream);
  const std::vector<float> logits = testing::random_uniform(71, 5 * 10);
  for (const DType dtype : {DType::i64, DType::i32}) {
    target_check.reset(stream);
    const CrossEntropyRun run = run_cross_entropy(logits, {1, -100, 9, 12, 0}, 10, {1.0f}, {}, target_check, stream,
                                                  dtype);
    // Until the check, the bad row shows as NaN; the other rows are untouched.
    EXPECT_TRUE(std::isnan(run.loss.at(0)));
    for (std::size_t j = 0; j < 50; ++j) {
      EXPECT_EQ(std::isnan(run.dL_dlogits[j]), j / 10 == 3) << "element " << j;
    }
    EXPECT_THAT(testing::invalid_argument_message([&] { target_check.check(stream); }),
                AllOf(HasSubstr("softmax_cross_entropy: target 12 in row 3 is outside [0, 10) and is not "
                                "ignore_index (-100)"),
                      HasSubstr("logits (5, 10), targets (5)")))
        << dtype;
  }
}

TEST(SoftmaxCrossEntropy, TargetCheckKeepsTheFirstBadRowUntilReset) {
  Stream stream;
  TargetCheck target_check(stream);
  const std::vector<float> logits = testing::random_uniform(81, 300 * 3);
  // Bad rows far apart, so that different threads of the checking block see them.
  std::vector<std::int64_t> targets = random_targets(82, 300, 3, true);
  targets[17] = -1;
  targets[290] = 3;
  const CrossEntropyParams params{.reduction = Reduction::sum};
  run_cross_entropy(logits, targets, 3, {1.0f}, params, target_check, stream);
  const std::string first_message = testing::invalid_argument_message([&] { target_check.check(stream); });
  EXPECT_THAT(first_message, HasSubstr("target -1 in row 17 is outside [0, 3)"));
  // A later forward with another bad row does not overwrite the first report...
  run_cross_entropy(std::vector<float>(logits.begin(), logits.begin() + 6), {5, 0}, 3, {1.0f}, params, target_check,
                    stream);
  EXPECT_EQ(testing::invalid_argument_message([&] { target_check.check(stream); }), first_message);
  // ... and good targets leave a reset check clean.
  target_check.reset(stream);
  run_cross_entropy(logits, random_targets(83, 300, 3, true), 3, {1.0f}, params, target_check, stream);
  EXPECT_NO_THROW(target_check.check(stream));
}

TEST(SoftmaxCrossEntropy, IgnoreIndexMayBeAClass) {
  Stream stream;
  TargetCheck target_check(stream);
  const CrossEntropyParams params{.reduction = Reduction::mean, .ignore_index = 2};
  const std::vector<float> logits = testing::random_uniform(91, 4 * 3);
  const std::vector<std::int64_t> targets = {2, 0, 2, 1};
  const CrossEntropyRun run = run_cross_entropy(logits, targets, 3, {1.0f}, params, target_check, stream);
  EXPECT_EQ(run.target_count, 2);
  EXPECT_TRUE(testing::all_close(run.loss, reference::cross_entropy(testing::to_doubles(logits), targets, 3, params),
                                 kLossTolerance));
  EXPECT_NO_THROW(target_check.check(stream));
}

TEST(SoftmaxCrossEntropy, RerunsAreBitIdentical) {
  Stream stream;
  TargetCheck target_check(stream);
  const std::int64_t rows = 300, classes = 37;
  const std::vector<float> logits = testing::random_uniform(95, rows * classes, -5.0f, 5.0f);
  const std::vector<std::int64_t> targets = random_targets(96, rows, classes, true);
  const CrossEntropyParams params{.label_smoothing = 0.1f, .reduction = Reduction::mean};
  const auto results = testing::run_with_schedule_seeds<std::vector<std::uint32_t>>([&] {
    const CrossEntropyRun run = run_cross_entropy(logits, targets, classes, {0.5f}, params, target_check, stream);
    std::vector<float> values = run.loss;
    values.insert(values.end(), run.dL_dlogits.begin(), run.dL_dlogits.end());
    return testing::bit_patterns(values);
  });
  for (std::size_t i = 1; i < results.size(); ++i) EXPECT_EQ(results[i], results[0]) << "rerun " << i;
}

TEST(SoftmaxCrossEntropy, LossShapeFollowsTheReduction) {
  EXPECT_EQ(softmax_cross_entropy_loss_shape({8, 10}, {8}, {.reduction = Reduction::mean}), Shape{});
  EXPECT_EQ(softmax_cross_entropy_loss_shape({8, 10}, {8}, {.reduction = Reduction::sum}), Shape{});
  EXPECT_EQ(softmax_cross_entropy_loss_shape({8, 10}, {8}, {.reduction = Reduction::none}), Shape{8});
  EXPECT_EQ(softmax_cross_entropy_loss_shape({1, 1}, {1}, {}), Shape{});
  EXPECT_THAT(testing::invalid_argument_message([] { softmax_cross_entropy_loss_shape({8, 10}, {7}, {}); }),
              HasSubstr("softmax_cross_entropy: needs logits (N, classes) and targets (N), got logits (8, 10) and "
                        "targets (7)"));
  EXPECT_THAT(testing::invalid_argument_message([] { softmax_cross_entropy_loss_shape({10}, {10}, {}); }),
              HasSubstr("got logits (10) and targets (10)"));
  EXPECT_THAT(testing::invalid_argument_message([] { softmax_cross_entropy_loss_shape({4, 0}, {4}, {}); }),
              HasSubstr("needs at least one row and one class, got logits (4, 0)"));
  EXPECT_THAT(testing::invalid_argument_message(
                  [] { softmax_cross_entropy_loss_shape({4, 3}, {4}, {.label_smoothing = 1.5f}); }),
              HasSubstr("label_smoothing must be in [0, 1], got 1.5 (logits (4, 3))"));
}

TEST(SoftmaxCrossEntropy, ArgumentErrorsNameTheOpAndShapes) {
  Stream stream;
  TargetCheck target_check(stream);
  const Tensor logits = testing::device_tensor(testing::random_uniform(99, 12), {4, 3}, stream);
  const Tensor targets = testing::device_tensor(std::vector<std::int64_t>{0, 1, 2, 0}, {4}, stream);
  const Tensor float_targets = Tensor::zeros({4}, DType::f32, stream);
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { softmax_cross_entropy_forward(logits, float_targets, target_check, {}, stream); }),
              HasSubstr("softmax_cross_entropy: targets must have dtype i64"));
  const CrossEntropyParams none{.reduction = Reduction::none};
  CrossEntropyForward forward = softmax_cross_entropy_forward(logits, targets, target_check, none, stream);
  EXPECT_EQ(forward.loss.shape(), Shape{4});
  const Tensor scalar_gradient = Tensor::zeros({}, DType::f32, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] {
                softmax_cross_entropy_backward(scalar_gradient, logits, targets, forward, none, stream);
              }),
              HasSubstr("softmax_cross_entropy: dL_dloss must have shape (4), got ()"));
  forward.log_sum_exp = Tensor::zeros({4}, DType::f32, stream);
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { softmax_cross_entropy_forward(logits, targets, forward, target_check, none, stream); }),
              HasSubstr("softmax_cross_entropy: log_sum_exp must have shape (4, 2), got (4)"));
  CrossEntropyForward overlapping{.loss = logits.flatten().narrow(0, 0, 4),
                                  .log_sum_exp = Tensor::zeros({4, 2}, DType::f32, stream),
                                  .target_count = Tensor::zeros({}, DType::i64, stream)};
  EXPECT_THAT(testing::invalid_argument_message([&] {
                softmax_cross_entropy_forward(logits, targets, overlapping, target_check, none, stream);
              }),
              HasSubstr("softmax_cross_entropy: loss (4) overlaps logits (4, 3)"));
  // The loss and log-sum-exp are f32 whatever the logits; dL_dlogits has the logits' dtype.
  const Tensor bf16_logits = logits.to_dtype(DType::bf16, stream);
  forward = softmax_cross_entropy_forward(bf16_logits, targets, target_check, none, stream);
  EXPECT_EQ(forward.loss.dtype(), DType::f32);
  EXPECT_EQ(forward.log_sum_exp.dtype(), DType::f32);
  const Tensor dL_dloss = Tensor::zeros({4}, DType::f32, stream);
  EXPECT_EQ(softmax_cross_entropy_backward(dL_dloss, bf16_logits, targets, forward, none, stream).dtype(), DType::bf16);
  Tensor f32_gradient = Tensor::zeros({4, 3}, DType::f32, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] {
                softmax_cross_entropy_backward(dL_dloss, bf16_logits, targets, forward, f32_gradient, none, stream);
              }),
              HasSubstr("softmax_cross_entropy: dL_dlogits has dtype f32 but logits has dtype bf16; the operands "
                        "must share one dtype"));
  const Tensor bf16_loss = Tensor::zeros({4}, DType::bf16, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] {
                softmax_cross_entropy_backward(bf16_loss, bf16_logits, targets, forward, none, stream);
              }),
              HasSubstr("softmax_cross_entropy: dL_dloss must have dtype f32"));
}

}  // namespace
}  // namespace strata::kernels
