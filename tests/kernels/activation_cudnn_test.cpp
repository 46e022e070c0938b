// ReLU and GELU on cuDNN (kernels/cudnn/activation_cudnn.h) against the custom kernels,
// forward and backward, on a grid of shapes: airbench94's GELU inputs at batch 1024,
// ResNet-18's ReLU inputs at batch 128, odd sizes and ranks other than 4. Skipped where cuDNN
// is not available (the simulator build, a mismatched library) or there is no GPU; the
// simulator's checks of the refusal are below and in tests/layers/engine_pool_activation_test.cpp.
//
// Tolerances. ReLU selects: forward and backward must equal the custom kernels' values
// (compared as numbers: cuDNN may give +0 where the custom kernel keeps -0). GELU: cuDNN
// evaluates its own float formula for erf or tanh, so every element must satisfy
// |custom - cudnn| <= 1e-6 + 1e-5 |cudnn| (a few ulps of the result; inputs in [-6, 6)).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cudnn/activation_cudnn.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/kernels/activations.h"
#include "tests/kernels/device_values.h"
#include "tests/support/cudnn_test.h"

namespace strata::kernels {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::not_supported_message;
using testing::poisoned_tensor;
using testing::random_device;
using testing::to_doubles;

using ActivationCudnnUnavailableTest = testing::WithoutCudnnTest;
TEST_F(ActivationCudnnUnavailableTest, RefusalsAreTheReasonAndLaunchersThrowNotSupported) {
  const cudaStream_t stream = current_stream();
  const std::string reason(cudnn_unavailable_reason());
  EXPECT_EQ(relu_cudnn_refusal({2, 3}), reason);
  EXPECT_EQ(gelu_cudnn_refusal({2, 3}, {}, stream), reason);
  const Tensor x = random_device(1, {2, 3});
  Tensor y = poisoned_tensor({2, 3}, stream);
  EXPECT_THAT(not_supported_message([&] { relu_cudnn_forward(x, y, stream); }),
              StartsWith("relu_forward on cuDNN (x (2, 3)): cuDNN is not available in the simulator build"));
  EXPECT_THAT(not_supported_message([&] { relu_cudnn_backward(x, x, y, stream); }), HasSubstr("simulator build"));
  EXPECT_THAT(
      not_supported_message([&] { gelu_cudnn_forward(x, y, {.approximation = GeluApproximation::tanh}, stream); }),
      StartsWith("gelu_forward on cuDNN (x (2, 3), approximate tanh): "));
  EXPECT_THAT(not_supported_message([&] { gelu_cudnn_backward(x, x, y, {}, stream); }),
              StartsWith("gelu_backward on cuDNN (x (2, 3), approximate none): "));
  // Argument errors come first, as in the custom launchers.
  Tensor wrong = poisoned_tensor({3, 2}, stream);
  EXPECT_THROW(relu_cudnn_forward(x, wrong, stream), InvalidArgument);
  EXPECT_THROW(gelu_cudnn_forward(x, const_cast<Tensor&>(x), {}, stream), InvalidArgument);
}

using ActivationCudnnParityTest = testing::CudnnTest;

const std::vector<Shape>& parity_shapes() {
  static const std::vector<Shape> shapes = {
      // airbench94's GELU inputs at batch 1024.
      {1024, 24, 31, 31}, {1024, 64, 15, 15}, {1024, 256, 7, 7}, {1024, 256, 3, 3},
      // ResNet-18's ReLU inputs on CIFAR at batch 128.
      {128, 64, 32, 32}, {128, 128, 16, 16}, {128, 256, 8, 8}, {128, 512, 4, 4},
      // Odd sizes and other ranks: merged into packed 4-D tensors.
      {1000003}, {7, 13}, {3, 5, 7}, {2, 3, 5, 7, 11}, {1, 1, 1, 1},
  };
  return shapes;
}

TEST_F(ActivationCudnnParityTest, ReluMatchesTheCustomKernelsForwardAndBackward) {
  const cudaStream_t stream = current_stream();
  std::uint64_t seed = 100;
  for (const Shape& shape : parity_shapes()) {
    SCOPED_TRACE(shape.to_string());
    ASSERT_EQ(relu_cudnn_refusal(shape), "");
    const Tensor x = random_device(seed += 10, shape);
    const Tensor dL_dy = random_device(seed + 1, shape);
    Tensor y_custom = poisoned_tensor(shape, stream);
    Tensor y_cudnn = poisoned_tensor(shape, stream);
    relu_forward(x, y_custom, {}, stream);
    relu_cudnn_forward(x, y_cudnn, stream);
    EXPECT_TRUE(testing::all_close(y_cudnn.to_vector<float>(stream), to_doubles(y_custom.to_vector<float>(stream)), {}))
        << "forward";
    Tensor dL_dx_custom = poisoned_tensor(shape, stream);
    Tensor dL_dx_cudnn = poisoned_tensor(shape, stream);
    relu_backward(dL_dy, y_custom, dL_dx_custom, {}, stream);
    relu_cudnn_backward(dL_dy, y_cudnn, dL_dx_cudnn, stream);
    EXPECT_TRUE(
        testing::all_close(dL_dx_cudnn.to_vector<float>(stream), to_doubles(dL_dx_custom.to_vector<float>(stream)), {}))
        << "backward";
  }
}

TEST_F(ActivationCudnnParityTest, ReluRunsInPlace) {
  const cudaStream_t stream = current_stream();
  const Tensor x = random_device(7, {3, 5, 7});
  Tensor expected = poisoned_tensor(x.shape(), stream);
  relu_forward(x, expected, {}, stream);
  Tensor in_place = random_device(7, {3, 5, 7});  // x's values
  relu_cudnn_forward(in_place, in_place, stream);
  EXPECT_TRUE(testing::all_close(in_place.to_vector<float>(stream), to_doubles(expected.to_vector<float>(stream)), {}));
}

TEST_F(ActivationCudnnParityTest, GeluMatchesTheCustomKernelsForwardAndBackwardInBothForms) {
  const cudaStream_t stream = current_stream();
  const testing::Tolerance tolerance{.abs_tol = 1e-6, .rel_tol = 1e-5};
  std::uint64_t seed = 300;
  for (const GeluApproximation approximation : {GeluApproximation::none, GeluApproximation::tanh}) {
    const GeluParams params{.approximation = approximation};
    for (const Shape& shape : parity_shapes()) {
      SCOPED_TRACE(shape.to_string() + (approximation == GeluApproximation::tanh ? ", tanh" : ", erf"));
      ASSERT_EQ(gelu_cudnn_refusal(shape, params, stream), "");
      const Tensor x = random_device(seed += 10, shape, -6.0f, 6.0f);
      const Tensor dL_dy = random_device(seed + 1, shape);
      Tensor y_custom = poisoned_tensor(shape, stream);
      Tensor y_cudnn = poisoned_tensor(shape, stream);
      gelu_forward(x, y_custom, params, stream);
      gelu_cudnn_forward(x, y_cudnn, params, stream);
      EXPECT_TRUE(testing::all_close(y_custom.to_vector<float>(stream), to_doubles(y_cudnn.to_vector<float>(stream)),
                                     tolerance))
          << "forward";
      Tensor dL_dx_custom = poisoned_tensor(shape, stream);
      Tensor dL_dx_cudnn = poisoned_tensor(shape, stream);
      gelu_backward(dL_dy, x, dL_dx_custom, params, stream);
      gelu_cudnn_backward(dL_dy, x, dL_dx_cudnn, params, stream);
      EXPECT_TRUE(testing::all_close(dL_dx_custom.to_vector<float>(stream),
                                     to_doubles(dL_dx_cudnn.to_vector<float>(stream)), tolerance))
          << "backward";
    }
  }
}

}  // namespace
}  // namespace strata::kernels
