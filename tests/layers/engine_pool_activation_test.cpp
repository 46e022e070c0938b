// Engines for the pooling ops, relu and gelu (strata/core/engine.h): Engine::cudnn's
// NotSupported naming the op, the shapes and the reason where cuDNN cannot run (the simulator
// build), argument errors before the engine's refusal, Engine::auto falling back to the custom
// kernels bit-identically with one warning per op, and the modules' engines (their option,
// Module::set_engine). Where cuDNN is available (a CUDA build on a GPU) the fallback tests
// skip and EnginesAgreeThroughAutograd compares the engines; tests/kernels/pool2d_cudnn_test.cpp
// and activation_cudnn_test.cpp compare the launchers on a grid of shapes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
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

using kernels::GeluApproximation;
using ::testing::AllOf;
using testing::auto_fallback_warning;
using ::testing::HasSubstr;
using testing::random_device;
using testing::run_unary;
using ::testing::StartsWith;
using testing::stderr_of;
using ::testing::ThrowsMessage;
using testing::UnaryResult;

// One op of this file on an engine, and the input shape it is tested with.
struct EngineOp {
  std::string name;  // as in the messages: "max_pool2d"
  Shape x_shape;
  std::function<Tensor(const Tensor&, std::optional<Engine>)> run;
};

std::vector<EngineOp> engine_ops() {
  return {
      {"max_pool2d", {2, 3, 9, 8},
       [](const Tensor& x, std::optional<Engine> e) {
         return F::max_pool2d(x, {.kernel = {3, 3}, .stride = kernels::Size2d{2, 2}, .padding = {1, 1}}, e);
       }},
      {"avg_pool2d", {2, 3, 8, 7},
       [](const Tensor& x, std::optional<Engine> e) {
         return F::avg_pool2d(x, {.window = {.kernel = {2, 2}, .padding = {1, 1}}, .count_include_pad = false}, e);
       }},
      {"adaptive_avg_pool2d", {2, 3, 8, 6},
       [](const Tensor& x, std::optional<Engine> e) { return F::adaptive_avg_pool2d(x, {4, 3}, e); }},
      {"adaptive_max_pool2d", {2, 3, 8, 6},
       [](const Tensor& x, std::optional<Engine> e) { return F::adaptive_max_pool2d(x, {2, 2}, e); }},
      {"relu", {2, 3, 5, 4}, [](const Tensor& x, std::optional<Engine> e) { return F::relu(x, e); }},
      {"gelu", {2, 3, 5, 4},
       [](const Tensor& x, std::optional<Engine> e) { return F::gelu(x, GeluApproximation::tanh, e); }},
  };
}

// Tests of what happens where cuDNN cannot run: the simulator build.
using PoolActivationWithoutCudnnTest = testing::EngineWithoutCudnnTest;

TEST_F(PoolActivationWithoutCudnnTest, CudnnEngineIsNotSupportedNamingTheOpShapesAndReason) {
  const Tensor x = random_device(1, {2, 3, 9, 8});
  EXPECT_THAT(
      [&] {
        F::max_pool2d(x, {.kernel = {3, 3}, .stride = kernels::Size2d{2, 2}, .padding = {1, 1}}, Engine::cudnn);
      },
      ThrowsMessage<NotSupported>(AllOf(StartsWith("max_pool2d on Engine::cudnn (x (2, 3, 9, 8), kernel (3, 3), "
                                                   "stride (2, 2), padding (1, 1), dilation (1, 1), ceil_mode off)"),
                                        HasSubstr("cuDNN is not available in the simulator build"))));
  EXPECT_THAT([&] { F::avg_pool2d(x, {.window = {.kernel = {2, 2}}, .divisor_override = 3}, Engine::cudnn); },
              ThrowsMessage<NotSupported>(StartsWith("avg_pool2d on Engine::cudnn (x (2, 3, 9, 8), kernel (2, 2), "
                                                     "stride (2, 2), padding (0, 0), dilation (1, 1), ceil_mode off, "
                                                     "count_include_pad on, divisor_override 3)")));
  EXPECT_THAT([&] { F::adaptive_avg_pool2d(x, {3, 4}, Engine::cudnn); },
              ThrowsMessage<NotSupported>(
                  StartsWith("adaptive_avg_pool2d on Engine::cudnn (x (2, 3, 9, 8), output_size (3, 4))")));
  EXPECT_THAT([&] { F::relu(x, Engine::cudnn); },
              ThrowsMessage<NotSupported>(AllOf(StartsWith("relu on Engine::cudnn (x (2, 3, 9, 8))"),
                                                HasSubstr("simulator build"))));
  EXPECT_THAT([&] { F::gelu(x, GeluApproximation::none, Engine::cudnn); },
              ThrowsMessage<NotSupported>(StartsWith("gelu on Engine::cudnn (x (2, 3, 9, 8), approximate none)")));
  // Every op, and by the default engine when the call names none.
  const EngineGuard cudnn(Engine::cudnn);
  for (const EngineOp& op : engine_ops()) {
    SCOPED_TRACE(op.name);
    const Tensor input = random_device(2, op.x_shape);
    EXPECT_THAT([&] { op.run(input, std::nullopt); },
                ThrowsMessage<NotSupported>(StartsWith(op.name + " on Engine::cudnn (x " + op.x_shape.to_string())));
    EXPECT_NO_THROW(op.run(input, Engine::custom));
  }
}

TEST_F(PoolActivationWithoutCudnnTest, ArgumentErrorsComeBeforeTheEnginesRefusal) {
  const Tensor x = random_device(3, {2, 3, 4, 4});
  EXPECT_THROW(F::max_pool2d(x, {.kernel = {0, 0}}, Engine::cudnn), InvalidArgument);
  EXPECT_THROW(F::avg_pool2d(x, {.window = {.kernel = {2, 2}, .padding = {2, 2}}}, Engine::cudnn), InvalidArgument);
  EXPECT_THROW(F::adaptive_max_pool2d(random_device(4, {3, 4, 4}), {2, 2}, Engine::cudnn), InvalidArgument);
}

TEST_F(PoolActivationWithoutCudnnTest, AutoFallsBackToTheCustomKernelsBitIdenticallyAndWarnsOncePerOp) {
  for (const EngineOp& op : engine_ops()) {
    SCOPED_TRACE(op.name);
    const UnaryResult custom = run_unary(op.run, Engine::custom, op.x_shape, 5);
    UnaryResult automatic, again;
    EXPECT_EQ(stderr_of([&] {
                automatic = run_unary(op.run, Engine::automatic, op.x_shape, 5);
                again = run_unary(op.run, Engine::automatic, op.x_shape, 5);
              }),
              auto_fallback_warning(op.name));
    testing::expect_bit_identical(automatic, custom);
    testing::expect_bit_identical(again, custom);
  }
}

TEST_F(PoolActivationWithoutCudnnTest, ModulesTakeTheirEngineFromTheOptionOrSetEngine) {
  const Tensor x = random_device(7, {2, 4, 8, 8});
  EXPECT_THAT([&] { nn::MaxPool2d(2, {.engine = Engine::cudnn})(x); },
              ThrowsMessage<NotSupported>(StartsWith("MaxPool2d 2x2: max_pool2d on Engine::cudnn")));
  EXPECT_THAT([&] { nn::GELU({.engine = Engine::cudnn})(x); },
              ThrowsMessage<NotSupported>(StartsWith("GELU: gelu on Engine::cudnn")));

  nn::Sequential model(nn::MaxPool2d(2), nn::AvgPool2d(2), nn::ReLU(), nn::GELU(), nn::AdaptiveAvgPool2d(1),
                       nn::AdaptiveMaxPool2d(1));
  // Every layer has a cuDNN path: set_engine names none.
  EXPECT_EQ(stderr_of([&] { model.set_engine(Engine::cudnn); }), "");
  const auto children = model.named_children();
  EXPECT_EQ(dynamic_cast<nn::MaxPool2d&>(*children[0].second).engine(), Engine::cudnn);
  EXPECT_EQ(dynamic_cast<nn::AvgPool2d&>(*children[1].second).engine(), Engine::cudnn);
  EXPECT_EQ(dynamic_cast<nn::ReLU&>(*children[2].second).engine(), Engine::cudnn);
  EXPECT_EQ(dynamic_cast<nn::GELU&>(*children[3].second).engine(), Engine::cudnn);
  EXPECT_EQ(dynamic_cast<nn::AdaptiveAvgPool2d&>(*children[4].second).engine(), Engine::cudnn);
  EXPECT_EQ(dynamic_cast<nn::AdaptiveMaxPool2d&>(*children[5].second).engine(), Engine::cudnn);
  EXPECT_THAT([&] { model(x); }, ThrowsMessage<NotSupported>(StartsWith("0 (MaxPool2d 2x2): max_pool2d on")));

  // The layers' engine wins over the default.
  model.set_engine(Engine::custom);
  const EngineGuard cudnn(Engine::cudnn);
  EXPECT_NO_THROW(model(x));
  EXPECT_THROW(nn::ReLU()(x), NotSupported);
}

// Where cuDNN runs (a CUDA build on a GPU): every op through autograd on both engines, within
// the launchers' documented tolerances (tests/kernels/pool2d_cudnn_test.cpp and
// activation_cudnn_test.cpp), inputs in general position (no ties in a max window).
using PoolActivationWithCudnnTest = testing::CudnnTest;

TEST_F(PoolActivationWithCudnnTest, EnginesAgreeThroughAutograd) {
  for (const EngineOp& op : engine_ops()) {
    SCOPED_TRACE(op.name);
    const UnaryResult custom = run_unary(op.run, Engine::custom, op.x_shape, 8);
    const UnaryResult cudnn = run_unary(op.run, Engine::cudnn, op.x_shape, 8);
    const testing::Tolerance tolerance{.abs_tol = 1e-5, .rel_tol = 1e-5};
    EXPECT_TRUE(testing::all_close(cudnn.y, testing::to_doubles(custom.y), tolerance));
    EXPECT_TRUE(testing::all_close(cudnn.dL_dx, testing::to_doubles(custom.dL_dx), tolerance));
  }
}

// Channels-last x (F::to_memory_format, so the gradient flows back to the contiguous leaf):
// cuDNN's NHWC path against the custom kernels, y in x's format on both engines.
TEST_F(PoolActivationWithCudnnTest, EnginesAgreeOnChannelsLastThroughAutograd) {
  for (const EngineOp& op : engine_ops()) {
    SCOPED_TRACE(op.name);
    const auto on_channels_last = [&op](const Tensor& x, std::optional<Engine> engine) {
      Tensor y = op.run(F::to_memory_format(x, MemoryFormat::channels_last), engine);
      EXPECT_EQ(y.memory_format(), MemoryFormat::channels_last);
      return y;
    };
    const UnaryResult custom = run_unary(on_channels_last, Engine::custom, op.x_shape, 9);
    const UnaryResult cudnn = run_unary(on_channels_last, Engine::cudnn, op.x_shape, 9);
    const testing::Tolerance tolerance{.abs_tol = 1e-5, .rel_tol = 1e-5};
    EXPECT_TRUE(testing::all_close(cudnn.y, testing::to_doubles(custom.y), tolerance));
    EXPECT_TRUE(testing::all_close(cudnn.dL_dx, testing::to_doubles(custom.dL_dx), tolerance));
  }
}

}  // namespace
}  // namespace strata
