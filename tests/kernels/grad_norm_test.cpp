// grad_norm and clip_grad_norm against the double reference (L2 and infinity norms, odd
// sizes, more tensors than one launch takes), bit-identical norms under shuffled
// schedules, exact small-integer norms, PyTorch's clipping and its non-finite behaviour,
// and argument errors.
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kernels/multi_tensor_host.h"
#include "strata/core/stream.h"
#include "strata/kernels/grad_norm.h"
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

// The L2 norm is summed in double and rounded once to float.
constexpr Tolerance kNormTolerance{.abs_tol = 0.0, .rel_tol = 1e-7};
// Clipped gradients: the coefficient's float roundings, then one product.
constexpr Tolerance kClipTolerance{.abs_tol = 1e-7, .rel_tol = 5e-7};

float norm_of(const std::vector<Tensor>& tensors, GradNormType type, cudaStream_t stream) {
  Tensor total = testing::poisoned_tensor(Shape{}, stream);
  grad_norm(tensors, total, {.norm_type = type}, stream);
  return total.to_vector<float>(stream)[0];
}

std::vector<Shape> many_shapes(int count) {
  std::vector<Shape> shapes;
  const std::int64_t sizes[] = {1, 3, 4, 6, 4097, 2};
  for (int i = 0; i < count; ++i) shapes.push_back(Shape{sizes[i % 6]});
  return shapes;
}

TEST(GradNorm, MatchesReferenceOnOddSizesAndManyTensors) {
  const cudaStream_t stream = current_stream();
  std::uint64_t seed = 1000;
  for (const std::vector<Shape>& shapes :
       {testing::kOddOptimizerShapes, many_shapes(multi_tensor_max_tensors(1) + 20), std::vector<Shape>{Shape{7}}}) {
    SCOPED_TRACE(std::to_string(shapes.size()) + " tensors");
    const HostLists values = testing::random_lists(seed, shapes, -3.0f, 3.0f);
    seed += shapes.size();
    const GuardedTensors gradients(values, shapes, stream);
    const ReferenceLists expected = testing::to_reference(values);
    EXPECT_TRUE(testing::all_close(std::vector<float>{norm_of(gradients.tensors(), GradNormType::l2, stream)},
                                   std::vector<double>{reference::l2_norm(expected)}, kNormTolerance));
    EXPECT_EQ(norm_of(gradients.tensors(), GradNormType::infinity, stream),
              static_cast<float>(reference::infinity_norm(expected)));
    EXPECT_TRUE(gradients.guards_intact(stream));
  }
}

TEST(GradNorm, ExactWithSmallIntegers) {
  const cudaStream_t stream = current_stream();
  const std::vector<Tensor> gradients = {testing::device_tensor<float>({3, 0}, Shape{2}, stream),
                                         testing::device_tensor<float>({-4, 12, 0, 0}, Shape{2, 2}, stream)};
  EXPECT_EQ(norm_of(gradients, GradNormType::l2, stream), 13.0f);  // sqrt(9 + 16 + 144)
  EXPECT_EQ(norm_of(gradients, GradNormType::infinity, stream), 12.0f);
  const Tensor returned = grad_norm(gradients, {}, stream);
  EXPECT_EQ(returned.shape(), Shape{});
  EXPECT_TRUE(returned.is_device());
  EXPECT_EQ(returned.to_vector<float>(stream)[0], 13.0f);
}

// Squares summed in double: no overflow where float squares would overflow.
TEST(GradNorm, LargeValuesDoNotOverflow) {
  const cudaStream_t stream = current_stream();
  const std::vector<Tensor> gradients = {testing::device_tensor<float>({3e30f, -4e30f}, Shape{2}, stream)};
  EXPECT_TRUE(testing::all_close(std::vector<float>{norm_of(gradients, GradNormType::l2, stream)},
                                 std::vector<double>{5e30}, kNormTolerance));
}

TEST(GradNorm, NoTensorsOrNoElementsGiveZero) {
  const cudaStream_t stream = current_stream();
  EXPECT_EQ(norm_of({}, GradNormType::l2, stream), 0.0f);
  EXPECT_EQ(norm_of({}, GradNormType::infinity, stream), 0.0f);
  const std::vector<Tensor> empty = {Tensor::empty(Shape{0}, DType::f32, stream)};
  EXPECT_EQ(norm_of(empty, GradNormType::l2, stream), 0.0f);
}

// Partials per chunk, reduced in a fixed order: the same bits under any block and thread
// order, for many chunks of different magnitudes.
TEST(GradNorm, BitIdenticalUnderShuffledSchedules) {
  const cudaStream_t stream = current_stream();
  const std::vector<Shape> shapes = {Shape{5 * kMultiTensorChunk + 17}, Shape{3}, Shape{2 * kMultiTensorChunk}};
  HostLists values = testing::random_lists(1100, shapes);
  for (std::size_t j = 0; j < values[0].size(); j += 97) values[0][j] *= 1e4f;
  const GuardedTensors gradients(values, shapes, stream);
  for (const GradNormType type : {GradNormType::l2, GradNormType::infinity}) {
    const std::vector<std::uint32_t> bits = testing::run_with_schedule_seeds<std::uint32_t>(
        [&] { return testing::bit_patterns({norm_of(gradients.tensors(), type, stream)})[0]; });
    EXPECT_EQ(bits[0], bits[1]);
    EXPECT_EQ(bits[0], bits[2]);
  }
}

TEST(GradNorm, NanWinsAndInfinityPropagates) {
  const cudaStream_t stream = current_stream();
  std::vector<float> values(9000, 0.5f);
  values[8500] = NAN;
  values[10] = INFINITY;  // an earlier chunk: NaN must still win over it
  const std::vector<Tensor> with_nan = {testing::device_tensor(values, Shape{9000}, stream)};
  EXPECT_TRUE(std::isnan(norm_of(with_nan, GradNormType::l2, stream)));
  EXPECT_TRUE(std::isnan(norm_of(with_nan, GradNormType::infinity, stream)));
  values[8500] = -INFINITY;
  const std::vector<Tensor> with_infinity = {testing::device_tensor(values, Shape{9000}, stream)};
  EXPECT_EQ(norm_of(with_infinity, GradNormType::l2, stream), INFINITY);
  EXPECT_EQ(norm_of(with_infinity, GradNormType::infinity, stream), INFINITY);
}

void expect_clip_matches_reference(const std::vector<Shape>& shapes, double max_norm, GradNormType type,
                                   std::uint64_t seed) {
  const cudaStream_t stream = current_stream();
  const HostLists values = testing::random_lists(seed, shapes, -2.0f, 2.0f);
  GuardedTensors gradients(values, shapes, stream);
  const Tensor total = clip_grad_norm(gradients.tensors(), {.max_norm = max_norm, .norm_type = type}, stream);
  ReferenceLists expected = testing::to_reference(values);
  const double expected_norm = reference::clip_grad_norm(expected, max_norm, type == GradNormType::infinity);
  EXPECT_TRUE(testing::all_close(total.to_vector<float>(stream), std::vector<double>{expected_norm}, kNormTolerance));
  EXPECT_TRUE(testing::lists_close("gradients", gradients.values(stream), expected, kClipTolerance));
  EXPECT_TRUE(gradients.guards_intact(stream));
}

TEST(ClipGradNorm, MatchesReference) {
  const std::vector<Shape> many = many_shapes(multi_tensor_max_tensors(1) + 5);
  for (const GradNormType type : {GradNormType::l2, GradNormType::infinity}) {
    SCOPED_TRACE(type == GradNormType::l2 ? "l2" : "infinity");
    expect_clip_matches_reference(testing::kOddOptimizerShapes, 1.0, type, 1200);
    expect_clip_matches_reference(many, 0.25, type, 1300);
  }
}

// A coefficient of 1 leaves the gradients exactly as they were.
TEST(ClipGradNorm, BelowTheLimitChangesNothing) {
  const cudaStream_t stream = current_stream();
  const HostLists values = testing::random_lists(1400, testing::kOddOptimizerShapes);
  GuardedTensors gradients(values, testing::kOddOptimizerShapes, stream);
  const Tensor total = clip_grad_norm(gradients.tensors(), {.max_norm = 1e6}, stream);
  EXPECT_TRUE(testing::lists_equal("gradients", gradients.values(stream), values));
  EXPECT_TRUE(std::isfinite(total.to_vector<float>(stream)[0]));
  // max_norm = infinity never clips a finite norm.
  clip_grad_norm(gradients.tensors(), {.max_norm = INFINITY}, stream);
  EXPECT_TRUE(testing::lists_equal("gradients", gradients.values(stream), values));
}

TEST(ClipGradNorm, ExactWithSmallIntegers) {
  const cudaStream_t stream = current_stream();
  std::vector<Tensor> gradients = {testing::device_tensor<float>({3, -4}, Shape{2}, stream),
                                   testing::device_tensor<float>({0}, Shape{1}, stream)};
  // max_norm 0 makes every gradient 0 (PyTorch: 0 * 1 / (5 + 1e-6)).
  const Tensor total = clip_grad_norm(gradients, {.max_norm = 0.0}, stream);
  EXPECT_EQ(total.to_vector<float>(stream)[0], 5.0f);
  EXPECT_TRUE(testing::all_equal(gradients[0].to_vector<float>(stream), std::vector<float>{0, -0.0f}));
}

// PyTorch with error_if_nonfinite=False: a NaN norm makes every gradient NaN; an infinite
// norm gives the coefficient 0, so finite gradients become 0 and infinite ones NaN.
TEST(ClipGradNorm, NonFiniteNormsBehaveAsPyTorch) {
  const cudaStream_t stream = current_stream();
  std::vector<Tensor> with_nan = {testing::device_tensor<float>({1, NAN}, Shape{2}, stream),
                                  testing::device_tensor<float>({2, -3, 4}, Shape{3}, stream)};
  EXPECT_TRUE(std::isnan(clip_grad_norm(with_nan, {.max_norm = 1.0}, stream).to_vector<float>(stream)[0]));
  for (const Tensor& gradient : with_nan) {
    for (const float value : gradient.to_vector<float>(stream)) EXPECT_TRUE(std::isnan(value));
  }
  std::vector<Tensor> with_infinity = {testing::device_tensor<float>({1, -INFINITY}, Shape{2}, stream),
                                       testing::device_tensor<float>({2, -3, 4}, Shape{3}, stream)};
  EXPECT_EQ(clip_grad_norm(with_infinity, {.max_norm = 1.0}, stream).to_vector<float>(stream)[0], INFINITY);
  const std::vector<float> first = with_infinity[0].to_vector<float>(stream);
  EXPECT_EQ(first[0], 0.0f);
  EXPECT_TRUE(std::isnan(first[1]));
  EXPECT_TRUE(testing::all_equal(with_infinity[1].to_vector<float>(stream), std::vector<float>{0, -0.0f, 0}));
}

TEST(ClipGradNorm, MatchesPyTorch) {
  const cudaStream_t stream = current_stream();
  int cases = 0;
  for (const testing::GoldenCase& golden : testing::read_golden("optimizers.txt")) {
    if (golden.name.rfind("clip", 0) != 0) continue;
    SCOPED_TRACE("case " + golden.name);
    ++cases;
    std::vector<Tensor> gradients;
    for (std::int64_t k = 0; k < golden.int_of("tensors"); ++k) {
      const testing::GoldenTensor& gradient = golden.tensor_of("grad" + std::to_string(k));
      gradients.push_back(
          testing::device_tensor(gradient.values, Shape(std::span<const std::int64_t>(gradient.shape)), stream));
    }
    const GradNormType type = golden.int_of("infinity") != 0 ? GradNormType::infinity : GradNormType::l2;
    const Tensor total =
        clip_grad_norm(gradients, {.max_norm = golden.float_of("max_norm"), .norm_type = type}, stream);
    // PyTorch sums per-tensor norms in float: a few roundings from the double sum.
    EXPECT_TRUE(testing::all_close(total.to_vector<float>(stream), testing::to_doubles(golden.tensor_of("norm").values),
                                   Tolerance{.abs_tol = 0.0, .rel_tol = 5e-7}));
    for (std::size_t k = 0; k < gradients.size(); ++k) {
      const std::string key = "clipped" + std::to_string(k);
      EXPECT_TRUE(testing::all_close(gradients[k].to_vector<float>(stream),
                                     testing::to_doubles(golden.tensor_of(key).values), kClipTolerance))
          << key;
    }
  }
  EXPECT_EQ(cases, 3);
}

TEST(ClipGradNorm, BadArgumentsAreNamed) {
  const cudaStream_t stream = current_stream();
  std::vector<Tensor> gradients = {Tensor::zeros(Shape{2, 3}, DType::f32, stream),
                                   Tensor::zeros(Shape{4}, DType::i32, stream)};
  EXPECT_THAT(testing::invalid_argument_message([&] { clip_grad_norm(gradients, {}, stream); }),
              HasSubstr("clip_grad_norm: gradients[1] must have dtype f32"));
  EXPECT_THAT(testing::invalid_argument_message([&] { grad_norm(gradients, {}, stream); }),
              HasSubstr("grad_norm: tensors[1] must have dtype f32"));
  gradients.pop_back();
  EXPECT_THAT(testing::invalid_argument_message([&] { clip_grad_norm(gradients, {.max_norm = -1}, stream); }),
              HasSubstr("clip_grad_norm: max_norm must be >= 0, got -1"));
  EXPECT_THAT(testing::invalid_argument_message([&] { clip_grad_norm(gradients, {.max_norm = NAN}, stream); }),
              HasSubstr("clip_grad_norm: max_norm must be >= 0, got nan"));
  Tensor wrong_shape = Tensor::empty(Shape{1}, DType::f32, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] { grad_norm(gradients, wrong_shape, {}, stream); }),
              HasSubstr("grad_norm: total_norm must have shape (), got (1)"));
  std::vector<Tensor> twice = {gradients[0], gradients[0]};
  EXPECT_THAT(testing::invalid_argument_message([&] { clip_grad_norm(twice, {}, stream); }),
              HasSubstr("clip_grad_norm: gradients[0] (2, 3) and gradients[1] (2, 3) share memory"));
  EXPECT_NO_THROW(grad_norm(twice, {}, stream));  // only read: the same tensor twice counts twice
  Tensor inside = gradients[0].flatten().narrow(0, 2, 1).reshape(Shape{});
  EXPECT_THAT(testing::invalid_argument_message([&] { clip_grad_norm(gradients, inside, {}, stream); }),
              HasSubstr("clip_grad_norm: total_norm () overlaps gradients[0] (2, 3)"));
}

}  // namespace
}  // namespace strata::kernels
