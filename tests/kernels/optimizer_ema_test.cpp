// ema_update against the double reference over several steps on odd sizes and more
// tensors than one launch takes, the device decay, copy_tensors and swap_tensors (exact,
// guard elements intact), and argument errors.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kernels/multi_tensor_host.h"
#include "strata/core/stream.h"
#include "strata/kernels/optimizer_ema.h"
#include "tests/kernels/device_values.h"
#include "tests/kernels/optimizer_test_support.h"
#include "tests/reference/optimizer_reference.h"
#include "tests/support/compare.h"

namespace strata::kernels {
namespace {

using testing::GuardedTensors;
using ::testing::HasSubstr;
using testing::HostLists;
using testing::ReferenceLists;
using testing::Tolerance;

constexpr Tolerance kEmaTolerance{.abs_tol = 1e-7, .rel_tol = 1e-6};

TEST(Ema, MatchesReferenceOverSeveralSteps) {
  const cudaStream_t stream = current_stream();
  std::vector<Shape> many;
  for (int i = 0; i < multi_tensor_max_tensors(2) + 9; ++i) many.push_back(Shape{i % 2 == 0 ? 5 : 4097});
  std::uint64_t seed = 2000;
  for (const std::vector<Shape>& shapes : {testing::kOddOptimizerShapes, many}) {
    SCOPED_TRACE(std::to_string(shapes.size()) + " tensors");
    const HostLists initial = testing::random_lists(seed++, shapes);
    GuardedTensors averages(initial, shapes, stream);
    ReferenceLists expected = testing::to_reference(initial);
    for (const double decay : {0.9, 0.999, 0.5}) {
      const HostLists parameter_values = testing::random_lists(seed++ * 100, shapes);
      const GuardedTensors parameters(parameter_values, shapes, stream, 1);
      ema_update(averages.tensors(), parameters.tensors(), {.decay = decay}, stream);
      for (std::size_t i = 0; i < shapes.size(); ++i) {
        const std::vector<double> parameter(parameter_values[i].begin(), parameter_values[i].end());
        reference::ema_update(expected[i], parameter, static_cast<double>(static_cast<float>(decay)));
      }
      EXPECT_TRUE(testing::lists_close("averages", averages.values(stream), expected, kEmaTolerance)) << decay;
    }
    EXPECT_TRUE(averages.guards_intact(stream));
  }
}

TEST(Ema, ExactWithSmallIntegersAndTheEnds) {
  const cudaStream_t stream = current_stream();
  std::vector<Tensor> averages = {testing::device_tensor<float>({2, 4, -8}, Shape{3}, stream)};
  const std::vector<Tensor> parameters = {testing::device_tensor<float>({4, 0, 8}, Shape{3}, stream)};
  ema_update(averages, parameters, {.decay = 0.5}, stream);
  EXPECT_TRUE(testing::all_equal(averages[0].to_vector<float>(stream), std::vector<float>{3, 2, 0}));
  ema_update(averages, parameters, {.decay = 1.0}, stream);  // frozen
  EXPECT_TRUE(testing::all_equal(averages[0].to_vector<float>(stream), std::vector<float>{3, 2, 0}));
  ema_update(averages, parameters, {.decay = 0.0}, stream);  // a copy
  EXPECT_TRUE(testing::all_equal(averages[0].to_vector<float>(stream), std::vector<float>{4, 0, 8}));
}

TEST(Ema, DeviceDecayMatchesHostBitForBit) {
  const cudaStream_t stream = current_stream();
  const std::vector<Shape> shapes = {Shape{5}, Shape{4097}};
  const HostLists initial = testing::random_lists(2100, shapes);
  GuardedTensors host(initial, shapes, stream);
  GuardedTensors device(initial, shapes, stream);
  Tensor decay = Tensor::empty(Shape{}, DType::f32, stream);
  for (const float value : {0.9f, 0.99f}) {
    const GuardedTensors parameters(testing::random_lists(2200, shapes), shapes, stream);
    ema_update(host.tensors(), parameters.tensors(), {.decay = value}, stream);
    decay.fill(value, stream);
    ema_update(device.tensors(), parameters.tensors(), {.decay = 7.0, .decay_device = decay.data<float>()}, stream);
  }
  EXPECT_TRUE(testing::lists_equal("averages", device.values(stream), host.values(stream)));
}

TEST(CopyAndSwapTensors, MoveValuesExactly) {
  const cudaStream_t stream = current_stream();
  const std::vector<Shape> shapes = testing::kOddOptimizerShapes;
  const HostLists a_values = testing::random_lists(2300, shapes);
  const HostLists b_values = testing::random_lists(2400, shapes);
  GuardedTensors a(a_values, shapes, stream);
  GuardedTensors b(b_values, shapes, stream, 1);
  swap_tensors(a.tensors(), b.tensors(), stream);
  EXPECT_TRUE(testing::lists_equal("a", a.values(stream), b_values));
  EXPECT_TRUE(testing::lists_equal("b", b.values(stream), a_values));
  swap_tensors(a.tensors(), b.tensors(), stream);
  EXPECT_TRUE(testing::lists_equal("a", a.values(stream), a_values));

  GuardedTensors copies = GuardedTensors::poisoned(shapes, stream, 2);
  copy_tensors(a.tensors(), copies.tensors(), stream);
  EXPECT_TRUE(testing::lists_equal("copies", copies.values(stream), a_values));
  EXPECT_TRUE(a.guards_intact(stream));
  EXPECT_TRUE(b.guards_intact(stream));
  EXPECT_TRUE(copies.guards_intact(stream));
}

TEST(Ema, BadArgumentsAreNamed) {
  const cudaStream_t stream = current_stream();
  std::vector<Tensor> averages = {Tensor::zeros(Shape{2, 3}, DType::f32, stream)};
  const std::vector<Tensor> parameters = {Tensor::zeros(Shape{3, 2}, DType::f32, stream)};
  EXPECT_THAT(testing::invalid_argument_message([&] { ema_update(averages, averages, {.decay = 1.5}, stream); }),
              HasSubstr("ema_update: decay must be in [0, 1], got 1.5"));
  EXPECT_THAT(testing::invalid_argument_message([&] { ema_update(averages, parameters, {}, stream); }),
              HasSubstr("ema_update: parameters[0] has shape (3, 2) but averages[0] has shape (2, 3)"));
  EXPECT_THAT(testing::invalid_argument_message([&] { ema_update(averages, averages, {}, stream); }),
              HasSubstr("ema_update: averages[0] (2, 3) and parameters[0] (2, 3) share memory"));
  EXPECT_THAT(testing::invalid_argument_message([&] { swap_tensors(averages, averages, stream); }),
              HasSubstr("swap_tensors: a[0] (2, 3) and b[0] (2, 3) share memory"));
  EXPECT_THAT(testing::invalid_argument_message([&] { copy_tensors(parameters, averages, stream); }),
              HasSubstr("copy_tensors: sources[0] has shape (3, 2) but destinations[0] has shape (2, 3)"));
}

}  // namespace
}  // namespace strata::kernels
