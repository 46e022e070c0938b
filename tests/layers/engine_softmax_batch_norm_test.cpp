// Engines for softmax, log_softmax and batch norm (strata/core/engine.h): Engine::cudnn's
// NotSupported naming the op, the shapes and the reason where cuDNN cannot run (the simulator
// build), argument errors before the engine's refusal, refusals decided without cuDNN (tensors
// beyond cuDNN's 32-bit descriptors; no eps refusal, cuDNN 9 accepting airbench94's 1e-12),
// Engine::auto falling back to the custom kernels bit-identically with one warning, and
// BatchNorm2d's engine (its option, Module::set_engine). Where cuDNN is available (a CUDA
// build on a GPU) the fallback tests skip and SoftmaxBatchNormWithCudnnTest compares the engines through
// autograd; tests/kernels/softmax_cudnn_test.cpp and batch_norm2d_cudnn_test.cpp compare the
// launchers on a grid of shapes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cudnn/batch_norm2d_cudnn.h"
#include "kernels/cudnn/softmax_cudnn.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/layers/functional.h"
#include "strata/layers/module.h"
#include "strata/layers/modules.h"
#include "tests/layers/engine_test_support.h"

namespace strata {
namespace {

using kernels::BatchNormAffine;
using ::testing::AllOf;
using testing::agree_to_rounding;
using testing::auto_fallback_warning;
using testing::bit_patterns;
using testing::expect_bit_identical;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::not_supported_message;
using testing::random_device;
using testing::random_leaf;
using ::testing::StartsWith;
using testing::stderr_of;
using ::testing::ThrowsMessage;
using testing::UnaryResult;

// ---- refusals decided without cuDNN: both builds --------------------------------------

TEST(SoftmaxBatchNormRefusalTest, TensorsBeyondCudnnDescriptorsAreRefusedBeforeAskingForCudnn) {
  // 2^31 elements: only the shapes are looked at, nothing is allocated.
  EXPECT_EQ(kernels::softmax_cudnn_refusal(Shape{std::int64_t{1} << 16, std::int64_t{1} << 15}),
            "x (65536, 32768) has 2^31 elements or more, beyond cuDNN's 32-bit descriptors");
  EXPECT_EQ(kernels::batch_norm2d_cudnn_refusal(Shape{1024, 2048, 32, 32}, {}),
            "x (1024, 2048, 32, 32) has 2^31 elements or more, beyond cuDNN's 32-bit descriptors");
  // One element fewer is a question for cuDNN (the unavailability reason in the simulator).
  const Shape largest{1, std::int64_t{2147483647}};
  EXPECT_EQ(kernels::softmax_cudnn_refusal(largest), std::string(cudnn_unavailable_reason()));
}

TEST(SoftmaxBatchNormRefusalTest, CudnnNineTakesAnyEpsTheCustomKernelsTake) {
  // cuDNN 9's CUDNN_BN_MIN_EPSILON is 0, so airbench94's 1e-12 is no reason to refuse: the
  // refusal is cuDNN's availability alone (empty where it runs).
  for (const float eps : {1e-12f, 0.0f, 1e-5f}) {
    EXPECT_EQ(kernels::batch_norm2d_cudnn_refusal(Shape{1024, 64, 16, 16}, {.eps = eps}),
              std::string(cudnn_unavailable_reason()))
        << "eps " << eps;
  }
}

// ---- where cuDNN cannot run: the simulator build --------------------------------------

using SoftmaxBatchNormWithoutCudnnTest = testing::EngineWithoutCudnnTest;

TEST_F(SoftmaxBatchNormWithoutCudnnTest, SoftmaxOnCudnnIsNotSupportedNamingTheOpShapeAndReason) {
  const Tensor x = random_device(1, {4, 10});
  EXPECT_THAT([&] { F::softmax(x, Engine::cudnn); },
              ThrowsMessage<NotSupported>(AllOf(StartsWith("softmax on Engine::cudnn (x (4, 10)): "),
                                                HasSubstr("cuDNN is not available in the simulator build"))));
  EXPECT_THAT([&] { F::log_softmax(x, Engine::cudnn); },
              ThrowsMessage<NotSupported>(AllOf(StartsWith("log_softmax on Engine::cudnn (x (4, 10)): "),
                                                HasSubstr("cuDNN is not available in the simulator build"))));
  // The default engine, when the call names none; a call's own engine wins over it.
  const EngineGuard cudnn(Engine::cudnn);
  EXPECT_THROW(F::softmax(x), NotSupported);
  EXPECT_THROW(F::log_softmax(x), NotSupported);
  EXPECT_NO_THROW(F::log_softmax(x, Engine::custom));
}

TEST_F(SoftmaxBatchNormWithoutCudnnTest, BatchNormOnCudnnIsNotSupportedNamingTheOpShapeModeEpsAndReason) {
  const Tensor x = random_device(2, {2, 3, 4, 5});
  const Tensor weight = random_device(3, {3});
  const Tensor bias = random_device(4, {3});
  F::BatchNormRunningStats running{random_device(5, {3}), random_device(6, {3}, 0.5f, 1.5f)};
  EXPECT_THAT([&] { F::batch_norm2d(x, weight, bias, running, /*training=*/true, {}, Engine::cudnn); },
              ThrowsMessage<NotSupported>(
                  AllOf(StartsWith("batch_norm2d on Engine::cudnn (x (2, 3, 4, 5), training, eps 1e-05): "),
                        HasSubstr("cuDNN is not available in the simulator build"))));
  EXPECT_THAT(
      [&] { F::batch_norm2d(x, weight, bias, running, /*training=*/false, {}, Engine::cudnn); },
      ThrowsMessage<NotSupported>(StartsWith("batch_norm2d on Engine::cudnn (x (2, 3, 4, 5), eval, eps 1e-05): ")));
  // airbench94's eps: refused for the simulator, not for the eps.
  const F::BatchNormParams airbench{.eps = 1e-12f, .affine = BatchNormAffine::bias_only};
  EXPECT_THAT([&] { F::batch_norm2d(x, Tensor(), bias, running, true, airbench, Engine::cudnn); },
              ThrowsMessage<NotSupported>(AllOf(HasSubstr("eps 1e-12): cuDNN is not available in the simulator build"),
                                                Not(HasSubstr("minimum")))));
  const EngineGuard cudnn(Engine::cudnn);
  EXPECT_THROW(F::batch_norm2d(x, weight, bias, running, true), NotSupported);
  EXPECT_NO_THROW(F::batch_norm2d(x, weight, bias, running, true, {}, Engine::custom));
}

TEST_F(SoftmaxBatchNormWithoutCudnnTest, ArgumentErrorsComeBeforeTheEnginesRefusal) {
  const Tensor flat = random_device(7, {2, 3});
  F::BatchNormRunningStats running{random_device(8, {3}), random_device(9, {3}, 0.5f, 1.5f)};
  // Not (N, C, H, W); one value per channel in training: InvalidArgument on every engine.
  for (const Engine engine : {Engine::cudnn, Engine::automatic}) {
    EXPECT_THAT(
        [&] { F::batch_norm2d(flat, Tensor(), Tensor(), running, true, {.affine = BatchNormAffine::none}, engine); },
        ThrowsMessage<InvalidArgument>(HasSubstr("batch_norm2d: x must be (N, C, H, W), got (2, 3)")));
    const Tensor single = random_device(10, {1, 3, 1, 1});
    EXPECT_THAT(
        [&] { F::batch_norm2d(single, Tensor(), Tensor(), running, true, {.affine = BatchNormAffine::none}, engine); },
        ThrowsMessage<InvalidArgument>(HasSubstr("expected more than 1 value per channel when training")));
    const Tensor scalar = random_device(11, Shape{});
    EXPECT_THAT([&] { F::softmax(scalar, engine); },
                ThrowsMessage<InvalidArgument>(HasSubstr("softmax: x needs at least one dimension and one element")));
  }
}

TEST_F(SoftmaxBatchNormWithoutCudnnTest, LaunchersRefuseNamingTheOpShapeAndReason) {
  const cudaStream_t stream = current_stream();
  const Tensor x = random_device(12, {2, 3, 4, 4});
  Tensor y = testing::poisoned_tensor(x.shape(), stream);
  kernels::BatchNormSaved saved{testing::poisoned_tensor({3}, stream), testing::poisoned_tensor({3}, stream)};
  kernels::BatchNormRunningStats untracked;
  const kernels::BatchNormParams none{.affine = BatchNormAffine::none};
  EXPECT_EQ(
      not_supported_message([&] {
        kernels::batch_norm2d_cudnn_forward_training(x, Tensor(), Tensor(), untracked, y, saved, none, stream);
      }),
      "batch_norm2d_forward_training on cuDNN (x (2, 3, 4, 4), eps 1e-05): " + std::string(cudnn_unavailable_reason()));
  kernels::BatchNormGradients gradients{.dL_dx = testing::poisoned_tensor(x.shape(), stream)};
  EXPECT_THAT(not_supported_message(
                  [&] { kernels::batch_norm2d_cudnn_backward(y, x, Tensor(), saved, gradients, none, stream); }),
              StartsWith("batch_norm2d_backward on cuDNN (x (2, 3, 4, 4), eps 1e-05): "));
  const Tensor logits = random_device(13, {3, 7});
  Tensor probabilities = testing::poisoned_tensor(logits.shape(), stream);
  EXPECT_EQ(not_supported_message([&] { kernels::log_softmax_cudnn_forward(logits, probabilities, stream); }),
            "log_softmax on cuDNN (x (3, 7)): " + std::string(cudnn_unavailable_reason()));
  // Argument errors first, as the custom launchers'.
  Tensor wrong = testing::poisoned_tensor({3, 6}, stream);
  EXPECT_THROW(kernels::softmax_cudnn_forward(logits, wrong, stream), InvalidArgument);
}

// One softmax-like op's forward and gradient on engine, on a rank 3 x: over the last dimension.
template <typename Op>
UnaryResult run_unary(Op op, Engine engine) {
  return testing::run_unary(op, engine, {5, 3, 11}, 20, -4.0f, 4.0f);
}

// Batch norm's outputs, gradients and running statistics on engine.
struct BatchNormResult {
  std::vector<float> y, dL_dx, dL_dweight, dL_dbias, running_mean, running_var;
};

// x enters the op in format (F::to_memory_format, so its gradient reaches the contiguous leaf).
BatchNormResult run_batch_norm(bool training, Engine engine, MemoryFormat format = MemoryFormat::contiguous) {
  Tensor x = random_leaf(30, {3, 4, 5, 2}, -2.0f, 3.0f);
  Tensor weight = random_leaf(31, {4});
  Tensor bias = random_leaf(32, {4});
  F::BatchNormRunningStats running{random_device(33, {4}), random_device(34, {4}, 0.5f, 1.5f)};
  Tensor y = F::batch_norm2d(F::to_memory_format(x, format), weight, bias, running, training,
                             {.eps = 1e-3f, .momentum = 0.3f}, engine);
  EXPECT_EQ(y.memory_format(), format);
  y.backward(random_device(35, y.shape()));
  return {y.to_vector<float>(),           x.grad().to_vector<float>(),     weight.grad().to_vector<float>(),
          bias.grad().to_vector<float>(), running.mean.to_vector<float>(), running.var.to_vector<float>()};
}

TEST_F(SoftmaxBatchNormWithoutCudnnTest, AutoFallsBackToTheCustomKernelsBitIdenticallyAndWarnsOncePerOp) {
  const auto softmax = [](const Tensor& x, Engine engine) { return F::softmax(x, engine); };
  const auto log_softmax = [](const Tensor& x, Engine engine) { return F::log_softmax(x, engine); };
  const UnaryResult softmax_custom = run_unary(softmax, Engine::custom);
  const UnaryResult log_softmax_custom = run_unary(log_softmax, Engine::custom);
  const BatchNormResult training_custom = run_batch_norm(true, Engine::custom);
  const BatchNormResult eval_custom = run_batch_norm(false, Engine::custom);

  std::vector<UnaryResult> softmax_auto, log_softmax_auto;
  std::vector<BatchNormResult> training_auto, eval_auto;
  const std::string output = stderr_of([&] {
    for (int repeat = 0; repeat < 2; ++repeat) {
      softmax_auto.push_back(run_unary(softmax, Engine::automatic));
      log_softmax_auto.push_back(run_unary(log_softmax, Engine::automatic));
      training_auto.push_back(run_batch_norm(true, Engine::automatic));
      eval_auto.push_back(run_batch_norm(false, Engine::automatic));
    }
  });
  EXPECT_EQ(output, auto_fallback_warning("softmax") + auto_fallback_warning("log_softmax") +
                        auto_fallback_warning("batch_norm2d"));

  for (std::size_t run = 0; run < 2; ++run) {
    expect_bit_identical(softmax_auto[run], softmax_custom);
    expect_bit_identical(log_softmax_auto[run], log_softmax_custom);
    for (const auto& [automatic, custom] :
         {std::pair{&training_auto[run], &training_custom}, std::pair{&eval_auto[run], &eval_custom}}) {
      EXPECT_EQ(bit_patterns(automatic->y), bit_patterns(custom->y));
      EXPECT_EQ(bit_patterns(automatic->dL_dx), bit_patterns(custom->dL_dx));
      EXPECT_EQ(bit_patterns(automatic->dL_dweight), bit_patterns(custom->dL_dweight));
      EXPECT_EQ(bit_patterns(automatic->dL_dbias), bit_patterns(custom->dL_dbias));
      EXPECT_EQ(bit_patterns(automatic->running_mean), bit_patterns(custom->running_mean));
      EXPECT_EQ(bit_patterns(automatic->running_var), bit_patterns(custom->running_var));
    }
  }
}

TEST_F(SoftmaxBatchNormWithoutCudnnTest, BatchNorm2dTakesItsEngineFromItsOptionOrSetEngine) {
  const Tensor x = random_device(40, {2, 3, 4, 4});
  nn::BatchNorm2d own(3, {.engine = Engine::cudnn});
  EXPECT_EQ(own.engine(), Engine::cudnn);
  EXPECT_THAT([&] { own(x); }, ThrowsMessage<NotSupported>(HasSubstr("batch_norm2d on Engine::cudnn (x (2, 3, 4, 4)")));

  nn::Sequential model(nn::Conv2d(3, 4, 1), nn::BatchNorm2d(4, {.affine = BatchNormAffine::bias_only}));
  auto& batch_norm = dynamic_cast<nn::BatchNorm2d&>(*model.named_children()[1].second);
  EXPECT_FALSE(batch_norm.engine().has_value());
  // BatchNorm2d has a cuDNN path now: set_engine does not name it.
  EXPECT_THAT(stderr_of([&] { model.set_engine(Engine::cudnn); }), Not(HasSubstr("BatchNorm2d")));
  EXPECT_EQ(batch_norm.engine(), Engine::cudnn);
  // Past the conv on the custom kernels, the batch norm insists on cuDNN, in training and eval.
  dynamic_cast<nn::Conv2d&>(*model.named_children()[0].second).set_engine(Engine::custom);
  EXPECT_THAT([&] { model(x); }, ThrowsMessage<NotSupported>(
                                     StartsWith("1 (BatchNorm2d 4): batch_norm2d on Engine::cudnn (x (2, 4, 4, 4), "
                                                "training, eps 1e-05)")));
  model.eval();
  EXPECT_THAT([&] { model(x); }, ThrowsMessage<NotSupported>(HasSubstr("eval, eps 1e-05")));

  // The layer's engine wins over the default, in both directions.
  model.train();
  model.set_engine(Engine::custom);
  const EngineGuard cudnn(Engine::cudnn);
  EXPECT_NO_THROW(model(x));
  nn::BatchNorm2d follows_default(3);
  EXPECT_THROW(follows_default(x), NotSupported);
  // Engine::auto runs the custom kernels and still counts the batch.
  nn::BatchNorm2d automatic(3, {.engine = Engine::automatic});
  automatic(x);
  EXPECT_EQ(automatic.num_batches_tracked().to_vector<std::int64_t>(), std::vector<std::int64_t>{1});
}

// ---- where cuDNN runs: a CUDA build on a GPU ------------------------------------------
// Through autograd, against the custom engine: the node's backward follows the forward's
// engine, the eval-mode backward is the custom kernel's on both. Tolerances as the
// launchers' parity tests (tests/kernels/batch_norm2d_cudnn_test.cpp, softmax_cudnn_test.cpp):
// 1e-5 * sqrt(reduction length) * max |cuDNN|.

using SoftmaxBatchNormWithCudnnTest = testing::CudnnTest;

TEST_F(SoftmaxBatchNormWithCudnnTest, SoftmaxAndLogSoftmaxThroughAutogradMatchTheCustomEngine) {
  const auto softmax = [](const Tensor& x, Engine engine) { return F::softmax(x, engine); };
  const auto log_softmax = [](const Tensor& x, Engine engine) { return F::log_softmax(x, engine); };
  for (const auto& [custom, cudnn] :
       {std::pair{run_unary(softmax, Engine::custom), run_unary(softmax, Engine::cudnn)},
        std::pair{run_unary(log_softmax, Engine::custom), run_unary(log_softmax, Engine::cudnn)}}) {
    EXPECT_TRUE(agree_to_rounding(custom.y, cudnn.y, 11));
    EXPECT_TRUE(agree_to_rounding(custom.dL_dx, cudnn.dL_dx, 11));
  }
}

TEST_F(SoftmaxBatchNormWithCudnnTest, BatchNormThroughAutogradMatchesTheCustomEngineInTrainingAndEval) {
  // Channels-last: cuDNN's NHWC descriptors, y and dL_dx in x's format.
  for (const MemoryFormat format : {MemoryFormat::contiguous, MemoryFormat::channels_last}) {
    for (const bool training : {true, false}) {
      SCOPED_TRACE(std::string(training ? "training, " : "eval, ") + std::string(memory_format_name(format)));
      const BatchNormResult custom = run_batch_norm(training, Engine::custom, format);
      const BatchNormResult cudnn = run_batch_norm(training, Engine::cudnn, format);
      const std::int64_t length = 3 * 5 * 2;  // values per channel
      EXPECT_TRUE(agree_to_rounding(custom.y, cudnn.y, length));
      EXPECT_TRUE(agree_to_rounding(custom.dL_dx, cudnn.dL_dx, length));
      EXPECT_TRUE(agree_to_rounding(custom.dL_dweight, cudnn.dL_dweight, length));
      EXPECT_TRUE(agree_to_rounding(custom.dL_dbias, cudnn.dL_dbias, length));
      EXPECT_TRUE(agree_to_rounding(custom.running_mean, cudnn.running_mean, length));
      EXPECT_TRUE(agree_to_rounding(custom.running_var, cudnn.running_var, length));
    }
  }
}

}  // namespace
}  // namespace strata
