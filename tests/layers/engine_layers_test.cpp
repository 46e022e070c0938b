// Engines in the functional API and the modules (strata/core/engine.h): which engine a
// conv2d runs on (its own, the model's, the default), Engine::cudnn's NotSupported naming the
// layer where cuDNN is not available, and Engine::auto falling back to the custom kernels
// with bit-identical results and one warning. Where cuDNN is available (a CUDA build on a GPU)
// the fallback tests skip; tests/kernels/conv2d_cudnn_test.cpp compares the engines there.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "strata/core/engine.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/layers/functional.h"
#include "strata/layers/module.h"
#include "strata/layers/modules.h"
#include "tests/layers/engine_test_support.h"

namespace strata {
namespace {

using ::testing::AllOf;
using testing::auto_fallback_warning;
using testing::bit_patterns;
using ::testing::HasSubstr;
using testing::random_device;
using testing::random_leaf;
using ::testing::StartsWith;
using testing::stderr_of;
using ::testing::ThrowsMessage;

// Tests of what happens where cuDNN cannot run: the simulator build.
using EngineWithoutCudnnTest = testing::EngineWithoutCudnnTest;

TEST_F(EngineWithoutCudnnTest, CudnnEngineIsNotSupportedNamingTheOpAndReason) {
  const Tensor x = random_device(1, {2, 3, 6, 5});
  const Tensor weight = random_device(2, {4, 3, 3, 3});
  EXPECT_THAT(
      [&] {
        F::conv2d(x, weight, Tensor(), {.padding = {1, 1}}, Engine::cudnn);
      },
      ThrowsMessage<NotSupported>(AllOf(HasSubstr("conv2d on Engine::cudnn (input (2, 3, 6, 5), weight (4, 3, 3, 3)"),
                                        HasSubstr("cuDNN is not available in the simulator build"))));
  // The default engine, when the call names none.
  const EngineGuard cudnn(Engine::cudnn);
  EXPECT_THROW(F::conv2d(x, weight, Tensor()), NotSupported);
  EXPECT_NO_THROW(F::conv2d(x, weight, Tensor(), {}, Engine::custom));
}

TEST_F(EngineWithoutCudnnTest, LayerErrorNamesTheLayer) {
  nn::Sequential model(nn::Conv2d(3, 4, 3, {.padding = 1}), nn::ReLU(), nn::Conv2d(4, 2, 1, {.engine = Engine::cudnn}));
  const Tensor x = random_device(3, {2, 3, 5, 5});
  EXPECT_THAT([&] { model(x); },
              ThrowsMessage<NotSupported>(
                  AllOf(StartsWith("2 (Conv2d 4->2, 1x1): conv2d on Engine::cudnn"), HasSubstr("simulator build"))));
}

TEST_F(EngineWithoutCudnnTest, SetEngineSetsEveryConvOfTheModelAndNamesLayersWithoutCudnnPath) {
  nn::Sequential model(nn::Conv2d(3, 4, 3, {.padding = 1}), nn::Dropout(0.5f), nn::MaxPool2d(2),
                       nn::Sequential(nn::Conv2d(4, 2, 1), nn::Scale(2.0f)));
  const std::string output = stderr_of([&] {
    model.set_engine(Engine::cudnn);
    model.set_engine(Engine::cudnn);
  });
  EXPECT_EQ(output,
            "strata: warning: set_engine(cudnn): Dropout, Scale run Strata's custom kernels (no cuDNN path)\n");

  auto& first = dynamic_cast<nn::Conv2d&>(*model.named_children()[0].second);
  auto& inner = dynamic_cast<nn::Sequential&>(*model.named_children()[3].second);
  auto& nested = dynamic_cast<nn::Conv2d&>(*inner.named_children()[0].second);
  EXPECT_EQ(first.engine(), Engine::cudnn);
  EXPECT_EQ(nested.engine(), Engine::cudnn);
  const Tensor x = random_device(4, {2, 3, 6, 6});
  EXPECT_THAT([&] { model(x); },
              ThrowsMessage<NotSupported>(StartsWith("0 (Conv2d 3->4, 3x3): conv2d on Engine::cudnn")));

  // Per model: the layer's engine wins over the default, in both directions.
  model.set_engine(Engine::custom);
  const EngineGuard cudnn(Engine::cudnn);
  EXPECT_NO_THROW(model(x));
  nn::Sequential other(nn::Conv2d(3, 4, 3));
  EXPECT_THROW(other(x), NotSupported);
}

TEST_F(EngineWithoutCudnnTest, AutoFallsBackToTheCustomKernelsBitIdenticallyAndWarnsOnce) {
  const Shape x_shape{2, 4, 7, 6};
  const Shape weight_shape{6, 2, 3, 2};
  const F::Conv2dParams params{.stride = {2, 1}, .padding = {1, 1}, .dilation = {1, 2}, .groups = 2};
  struct Result {
    std::vector<float> y, dL_dx, dL_dweight, dL_dbias;
  };
  const auto run = [&](Engine engine) {
    Tensor x = random_leaf(5, x_shape);
    Tensor weight = random_leaf(6, weight_shape);
    Tensor bias = random_leaf(7, {6});
    Tensor y = F::conv2d(x, weight, bias, params, engine);
    y.backward(random_device(8, y.shape()));
    return Result{y.to_vector<float>(), x.grad().to_vector<float>(), weight.grad().to_vector<float>(),
                  bias.grad().to_vector<float>()};
  };
  const Result custom = run(Engine::custom);
  Result automatic, again;
  EXPECT_EQ(stderr_of([&] {
              automatic = run(Engine::automatic);
              again = run(Engine::automatic);
            }),
            auto_fallback_warning("conv2d"));
  for (const Result* result : {&automatic, &again}) {
    EXPECT_EQ(bit_patterns(result->y), bit_patterns(custom.y));
    EXPECT_EQ(bit_patterns(result->dL_dx), bit_patterns(custom.dL_dx));
    EXPECT_EQ(bit_patterns(result->dL_dweight), bit_patterns(custom.dL_dweight));
    EXPECT_EQ(bit_patterns(result->dL_dbias), bit_patterns(custom.dL_dbias));
  }
}

// Where cuDNN runs: F::conv2d and F::fused_conv2d on a channels-last x, through autograd, on
// both engines: cuDNN describes x, y and the gradients as NHWC (no contiguous copies), y and
// dL_dx keep x's format. The upstream gradient comes contiguous for conv2d (cuDNN reads it in
// x's format after a conversion) and channels-last for fused_conv2d. Tolerances as the
// launchers' parity tests (tests/kernels/conv2d_cudnn_test.cpp).
using EngineWithCudnnTest = testing::CudnnTest;
TEST_F(EngineWithCudnnTest, ConvOnChannelsLastAgreesWithTheCustomEngineThroughAutograd) {
  const Shape x_shape{2, 4, 7, 6};
  const Shape weight_shape{6, 2, 3, 2};
  const F::Conv2dParams params{.stride = {2, 1}, .padding = {1, 1}, .dilation = {1, 2}, .groups = 2};
  struct Result {
    std::vector<float> y, dL_dx, dL_dweight, dL_dbias;
  };
  for (const bool fused : {false, true}) {
    SCOPED_TRACE(fused ? "fused_conv2d (ReLU)" : "conv2d");
    const auto run = [&](Engine engine) {
      Tensor x = random_leaf(15, x_shape);
      Tensor weight = random_leaf(16, weight_shape);
      Tensor bias = random_leaf(17, {6});
      const Tensor x_channels_last = F::to_memory_format(x, MemoryFormat::channels_last);
      Tensor y = fused ? F::fused_conv2d(x_channels_last, weight, bias, params,
                                         {.activation = F::FusedActivation::relu}, engine)
                       : F::conv2d(x_channels_last, weight, bias, params, engine);
      EXPECT_EQ(y.memory_format(), MemoryFormat::channels_last);
      Tensor dL_dy = random_device(18, y.shape());
      if (fused) dL_dy = dL_dy.to_memory_format(MemoryFormat::channels_last, current_stream());
      y.backward(dL_dy);
      return Result{y.to_vector<float>(), x.grad().to_vector<float>(), weight.grad().to_vector<float>(),
                    bias.grad().to_vector<float>()};
    };
    const Result custom = run(Engine::custom);
    const Result cudnn = run(Engine::cudnn);
    const std::int64_t npq = 2 * 4 * 6;  // N * P * Q: the filter and bias reductions
    EXPECT_TRUE(testing::agree_to_rounding(custom.y, cudnn.y, 2 * 3 * 2 + 1)) << "y";
    EXPECT_TRUE(testing::agree_to_rounding(custom.dL_dx, cudnn.dL_dx, 3 * 3 * 2)) << "dL_dx";
    EXPECT_TRUE(testing::agree_to_rounding(custom.dL_dweight, cudnn.dL_dweight, npq)) << "dL_dweight";
    EXPECT_TRUE(testing::agree_to_rounding(custom.dL_dbias, cudnn.dL_dbias, npq)) << "dL_dbias";
  }
}

}  // namespace
}  // namespace strata
