// F::argmax and F::count_equal: the kernels' results (tests/kernels/argmax_test.cpp checks
// them against the CPU reference) without an autograd node, whatever the inputs require,
// the classifier's count of right predictions, and the errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/layers/functional.h"
#include "tests/kernels/device_values.h"
#include "tests/support/device_test.h"

namespace strata::F {
namespace {

using ::testing::HasSubstr;
using testing::device_tensor;
using FunctionalReduceTest = testing::DeviceTest;

TEST_F(FunctionalReduceTest, CountsTheRightPredictionsWithoutGradients) {
  // Rows: right, wrong, a tie won by the label (first), a tie lost (label second), a NaN at
  // the label (NaN counts as largest).
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor logits = device_tensor(
      {0.1f, 2.0f, -1.0f, 3.0f, 0.5f, 0.2f, 1.0f, 1.0f, 0.0f, 4.0f, 4.0f, 1.0f, 0.0f, nan, 5.0f}, Shape{5, 3},
      current_stream());
  logits.set_requires_grad(true);
  const Tensor labels = device_tensor(std::vector<std::int64_t>{1, 1, 0, 1, 1}, Shape{5}, current_stream());
  const Tensor predicted = F::argmax(logits);
  EXPECT_EQ(predicted.shape(), Shape{5});
  EXPECT_FALSE(predicted.requires_grad());
  EXPECT_EQ(predicted.to_vector<std::int64_t>(current_stream()), (std::vector<std::int64_t>{1, 0, 0, 0, 1}));
  const Tensor correct = F::count_equal(predicted, labels);
  EXPECT_EQ(correct.shape(), Shape{});
  EXPECT_EQ(correct.dtype(), DType::i64);
  EXPECT_EQ(correct.to_vector<std::int64_t>(current_stream()), std::vector<std::int64_t>{3});
}

TEST_F(FunctionalReduceTest, ErrorsNameTheOpAndTheShapes) {
  const Tensor scalar = Tensor::zeros(Shape{}, DType::f32, current_stream());
  EXPECT_THAT([&] { F::argmax(scalar); }, ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("F::argmax: x ()")));
  const Tensor labels = Tensor::zeros(Shape{4}, DType::i64, current_stream());
  const Tensor predicted = Tensor::zeros(Shape{3}, DType::i64, current_stream());
  EXPECT_THAT([&] { F::count_equal(predicted, labels); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("a (3) and b (4)")));
}

}  // namespace
}  // namespace strata::F
