// F::batch_norm2d_activation and nn::BatchNorm2dActivation through autograd:
// - against F::batch_norm2d then F::relu / F::gelu on the custom engine: outputs, every
//   gradient backward() leaves and the running statistics bit-identical, training and eval
//   (the same kernel code runs, see tests/kernels/batch_norm2d_activation_test.cpp);
// - gradients against the double reference (batch norm's backward of dL/dy * act'(z));
// - one node, named, saving no pre-activation; custom kernels under Engine::cudnn;
// - the module: BatchNorm2d's state_dict keys, values and counter, a checkpoint of
//   `BatchNorm2d, GELU` loaded into the fused module (and back) giving the same outputs,
//   training steps identical to the pair's, repr, errors, and set_engine;
// - training steps recorded and replayed by the host graph over three streams, with the
//   stream-safety checker and the memory plan on (the ops declare what they read and
//   write), match eager steps bit for bit.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/engine_internal.h"
#include "strata/core/autograd.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"
#include "strata/core/generator.h"
#include "strata/core/graph.h"
#include "strata/core/stream.h"
#include "strata/layers/functional.h"
#include "strata/layers/module.h"
#include "strata/layers/modules.h"
#include "strata/layers/sgd.h"
#include "tests/kernels/device_values.h"
#include "tests/reference/batch_norm_reference.h"
#include "tests/reference/elementwise_reference.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"
#include "tests/support/schedule_seed.h"

namespace strata {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::bit_patterns;
using kernels::BatchNormAffine;
using kernels::FusedActivation;
using BatchNormActivationTest = testing::DeviceTest;
using testing::random_device;
using testing::random_leaf;

std::vector<float> values_of(const Tensor& tensor) { return tensor.to_vector<float>(current_stream()); }
std::vector<std::uint32_t> bits_of(const Tensor& tensor) { return bit_patterns(values_of(tensor)); }

std::vector<std::string> names_of(const NamedTensors& entries) {
  std::vector<std::string> names;
  for (const auto& entry : entries) names.push_back(entry.first);
  return names;
}

constexpr FusedActivation kActivations[] = {FusedActivation::none, FusedActivation::relu, FusedActivation::gelu,
                                            FusedActivation::gelu_tanh};
constexpr BatchNormAffine kAffines[] = {BatchNormAffine::weight_and_bias, BatchNormAffine::bias_only,
                                        BatchNormAffine::none};

// The unfused pair: F::relu / F::gelu of z on the custom engine.
Tensor activation_of(const Tensor& z, FusedActivation activation) {
  switch (activation) {
    case FusedActivation::none: return z;
    case FusedActivation::relu: return F::relu(z, Engine::custom);
    case FusedActivation::gelu: return F::gelu(z, F::GeluApproximation::none, Engine::custom);
    case FusedActivation::gelu_tanh: return F::gelu(z, F::GeluApproximation::tanh, Engine::custom);
  }
  return Tensor();
}

// The leaves of one run, fresh copies of the same values.
struct Leaves {
  Tensor x, weight, bias;
  F::BatchNormRunningStats running;

  Leaves(const Shape& shape, BatchNormAffine affine, std::uint64_t seed)
      : x(random_leaf(seed, shape, -1.5f, 2.5f)),
        weight(affine == BatchNormAffine::weight_and_bias ? random_leaf(seed + 1, {shape[1]}, 0.5f, 1.5f)
                                                          : Tensor()),
        bias(affine != BatchNormAffine::none ? random_leaf(seed + 2, {shape[1]}) : Tensor()),
        running{random_device(seed + 3, {shape[1]}), random_device(seed + 4, {shape[1]}, 0.5f, 1.5f)} {}
};

void expect_same_bits(const Tensor& fused, const Tensor& unfused, const char* what) {
  ASSERT_EQ(fused.defined(), unfused.defined()) << what;
  if (fused.defined()) {
    EXPECT_EQ(bits_of(fused), bits_of(unfused)) << what;
  }
}

TEST_F(BatchNormActivationTest, FusedEqualsBatchNormThenActivationBitForBit) {
  const Shape shape{3, 4, 5, 3};
  std::uint64_t seed = 100;
  for (const FusedActivation activation : kActivations) {
    for (const BatchNormAffine affine : kAffines) {
      for (const bool training : {true, false}) {
        SCOPED_TRACE(::testing::Message() << "activation " << kernels::fused_activation_name(activation)
                                          << ", affine " << static_cast<int>(affine) << ", training " << training);
        const F::BatchNormActivationParams params{.norm = {.eps = 1e-5f, .momentum = 0.2f, .affine = affine},
                                                  .activation = activation};
        Leaves fused(shape, affine, seed);
        Leaves unfused(shape, affine, seed);
        seed += 10;
        const Tensor dL_dy = random_device(seed++, shape);
        Tensor y = F::batch_norm2d_activation(fused.x, fused.weight, fused.bias, fused.running, training, params);
        Tensor y_unfused = activation_of(F::batch_norm2d(unfused.x, unfused.weight, unfused.bias, unfused.running,
                                                         training, params.norm, Engine::custom),
                                         activation);
        expect_same_bits(y, y_unfused, "y");
        expect_same_bits(fused.running.mean, unfused.running.mean, "running mean");
        expect_same_bits(fused.running.var, unfused.running.var, "running var");
        y.backward(dL_dy);
        y_unfused.backward(dL_dy);
        expect_same_bits(fused.x.grad(), unfused.x.grad(), "x grad");
        if (fused.weight.defined()) {
          expect_same_bits(fused.weight.grad(), unfused.weight.grad(), "weight grad");
        }
        if (fused.bias.defined()) {
          expect_same_bits(fused.bias.grad(), unfused.bias.grad(), "bias grad");
        }
      }
    }
  }
}

TEST_F(BatchNormActivationTest, TrainingGradientsMatchTheDoubleReference) {
  const reference::BatchNormSizes sizes{.batch = 3, .channels = 2, .height = 3, .width = 2};
  const Shape shape{3, 2, 3, 2};
  Tensor x = random_leaf(200, shape, -1.5f, 2.5f);
  Tensor weight = random_leaf(201, {2}, 0.5f, 1.5f);
  Tensor bias = random_leaf(202, {2});
  F::BatchNormRunningStats running{Tensor::zeros({2}, DType::f32, current_stream()),
                                   testing::device_tensor(std::vector<float>{1, 1}, {2}, current_stream())};
  Tensor y = F::batch_norm2d_activation(x, weight, bias, running, /*training=*/true,
                                        {.norm = {.momentum = 0.4f}, .activation = FusedActivation::gelu});
  const std::vector<double> x_values = testing::to_doubles(values_of(x));
  const std::vector<double> weight_values = testing::to_doubles(values_of(weight));
  const std::vector<double> bias_values = testing::to_doubles(values_of(bias));
  const reference::BatchNormTrainingResult expected = reference::batch_norm2d_training(
      x_values, weight_values, bias_values, std::vector<double>{0, 0}, std::vector<double>{1, 1}, sizes, 1e-5, 0.4);
  const testing::Tolerance tolerance{.abs_tol = 2e-5, .rel_tol = 1e-4};
  EXPECT_TRUE(testing::all_close(values_of(y), reference::gelu_forward(expected.y, false), tolerance));
  EXPECT_TRUE(testing::all_close(values_of(running.mean), expected.running_mean, tolerance));
  EXPECT_TRUE(testing::all_close(values_of(running.var), expected.running_var, tolerance));

  const Tensor dL_dy = random_device(203, shape);
  y.backward(dL_dy);
  const std::vector<double> dL_dz =
      reference::gelu_backward(testing::to_doubles(values_of(dL_dy)), expected.y, /*tanh_form=*/false);
  const reference::BatchNormGradientsResult gradients =
      reference::batch_norm2d_backward(dL_dz, x_values, weight_values, sizes, 1e-5);
  EXPECT_TRUE(testing::all_close(values_of(x.grad()), gradients.dL_dx, tolerance));
  EXPECT_TRUE(testing::all_close(values_of(weight.grad()), gradients.dL_dweight, tolerance));
  EXPECT_TRUE(testing::all_close(values_of(bias.grad()), gradients.dL_dbias, tolerance));
}

TEST_F(BatchNormActivationTest, RecordsOneNamedNodeAndOnlyWhenGradientsAreWanted) {
  Leaves leaves({2, 3, 2, 2}, BatchNormAffine::bias_only, 300);
  const F::BatchNormActivationParams params{.norm = {.affine = BatchNormAffine::bias_only}};
  const Tensor y = F::batch_norm2d_activation(leaves.x, Tensor(), leaves.bias, leaves.running, true, params);
  ASSERT_NE(y.grad_fn(), nullptr);
  EXPECT_EQ(y.grad_fn()->name(), "BatchNorm2dActivationBackward");
  // Its inputs are x, weight, bias: the node leads straight to the leaves, no activation node
  // (and so no saved pre-activation) in between.
  ASSERT_EQ(y.grad_fn()->next_edges().size(), 3u);
  const Tensor y_eval = F::batch_norm2d_activation(leaves.x, Tensor(), leaves.bias, leaves.running, false, params);
  ASSERT_NE(y_eval.grad_fn(), nullptr);
  EXPECT_EQ(y_eval.grad_fn()->name(), "BatchNorm2dActivationEvalBackward");
  const autograd::NoGradGuard no_grad;
  EXPECT_EQ(F::batch_norm2d_activation(leaves.x, Tensor(), leaves.bias, leaves.running, true, params).grad_fn(),
            nullptr);
}

// cuDNN's legacy API has no fused batch norm + activation: the op takes no engine and runs
// Strata's kernels whatever the default, as cross_entropy does; no NotSupported in the
// simulator build, where every cuDNN op refuses.
TEST_F(BatchNormActivationTest, RunsTheCustomKernelsUnderEveryEngine) {
  Leaves leaves({2, 3, 2, 2}, BatchNormAffine::weight_and_bias, 400);
  std::vector<std::uint32_t> reference;
  for (const Engine engine : {Engine::custom, Engine::cudnn, Engine::automatic}) {
    const EngineGuard guard(engine);
    F::BatchNormRunningStats untracked;
    const Tensor y = F::batch_norm2d_activation(leaves.x, leaves.weight, leaves.bias, untracked, true);
    if (reference.empty()) reference = bits_of(y);
    EXPECT_EQ(bits_of(y), reference) << "engine " << static_cast<int>(engine);
  }
}

TEST_F(BatchNormActivationTest, ArgumentErrorsNameTheOp) {
  F::BatchNormRunningStats untracked;
  EXPECT_THAT(testing::invalid_argument_message([&] {
                F::batch_norm2d_activation(random_device(1, {2, 3}), Tensor(), Tensor(), untracked, true,
                                           {.norm = {.affine = BatchNormAffine::none}});
              }),
              HasSubstr("batch_norm2d_activation: x must be (N, C, H, W), got (2, 3)"));
  EXPECT_THAT(testing::invalid_argument_message([&] {
                F::batch_norm2d_activation(random_device(1, {1, 3, 1, 1}), Tensor(), Tensor(), untracked, true,
                                           {.norm = {.affine = BatchNormAffine::none}});
              }),
              HasSubstr("batch_norm2d_activation: expected more than 1 value per channel when training"));
  EXPECT_THAT(testing::invalid_argument_message([&] {
                F::batch_norm2d_activation(random_device(1, {2, 3, 2, 2}), Tensor(), Tensor(), untracked, false,
                                           {.norm = {.affine = BatchNormAffine::none}});
              }),
              HasSubstr("batch_norm2d_activation: eval needs the running mean and variance"));
}

// ---- the module --------------------------------------------------------------------------

TEST_F(BatchNormActivationTest, ModuleHasBatchNorm2dsStateDictForEveryVariant) {
  for (const BatchNormAffine affine : kAffines) {
    for (const bool track : {true, false}) {
      nn::BatchNorm2d plain(5, {.affine = affine, .track_running_stats = track});
      nn::BatchNorm2dActivation fused(5, {.affine = affine, .track_running_stats = track});
      const NamedTensors plain_state = plain.state_dict();
      const NamedTensors fused_state = fused.state_dict();
      EXPECT_THAT(names_of(fused_state), ElementsAreArray(names_of(plain_state)));
      EXPECT_THAT(names_of(fused.named_parameters()), ElementsAreArray(names_of(plain.named_parameters())));
      for (std::size_t i = 0; i < plain_state.size() && i < fused_state.size(); ++i) {
        EXPECT_EQ(fused_state[i].second.shape(), plain_state[i].second.shape()) << plain_state[i].first;
        EXPECT_EQ(fused_state[i].second.dtype(), plain_state[i].second.dtype()) << plain_state[i].first;
        if (fused_state[i].second.dtype() == DType::f32) {
          EXPECT_EQ(values_of(fused_state[i].second), values_of(plain_state[i].second)) << plain_state[i].first;
        }
      }
    }
  }
}

// Two training steps of `BatchNorm2d, GELU` and of the fused module from the same state:
// the same outputs and gradients, bit for bit, and the same buffers; then a checkpoint of
// each loads into the other and eval gives the same outputs.
TEST_F(BatchNormActivationTest, ModuleTrainsAsTheUnfusedPairAndSharesItsCheckpoints) {
  const Shape shape{4, 3, 5, 5};
  const nn::BatchNorm2dOptions plain_options{.eps = 1e-12f, .momentum = 0.6f, .affine = BatchNormAffine::bias_only};
  nn::Sequential pair(nn::BatchNorm2d(3, plain_options), nn::GELU({.engine = Engine::custom}));
  nn::BatchNorm2dActivation fused(
      3, {.eps = 1e-12f, .momentum = 0.6f, .affine = BatchNormAffine::bias_only, .activation = FusedActivation::gelu});
  auto& plain = pair.at<nn::BatchNorm2d>(0);
  // A bias away from its initial zeros, the same in both.
  NamedTensors start = plain.state_dict();
  start[0].second = random_device(500, {3});
  plain.load_state_dict(start);
  fused.load_state_dict(start);

  for (int step = 0; step < 2; ++step) {
    SCOPED_TRACE(::testing::Message() << "step " << step);
    const Tensor x_plain = random_leaf(510 + static_cast<std::uint64_t>(step), shape, -1.0f, 3.0f);
    const Tensor x_fused = random_leaf(510 + static_cast<std::uint64_t>(step), shape, -1.0f, 3.0f);
    const Tensor dL_dy = random_device(520 + static_cast<std::uint64_t>(step), shape);
    Tensor y_plain = pair(x_plain);
    Tensor y_fused = fused(x_fused);
    EXPECT_EQ(bits_of(y_fused), bits_of(y_plain));
    y_plain.backward(dL_dy);
    y_fused.backward(dL_dy);
    EXPECT_EQ(bits_of(x_fused.grad()), bits_of(x_plain.grad()));
    EXPECT_EQ(bits_of(fused.bias().grad()), bits_of(plain.bias().grad()));
    EXPECT_EQ(bits_of(fused.running_mean()), bits_of(plain.running_mean()));
    EXPECT_EQ(bits_of(fused.running_var()), bits_of(plain.running_var()));
    EXPECT_EQ(fused.num_batches_tracked().to_vector<std::int64_t>(current_stream()),
              plain.num_batches_tracked().to_vector<std::int64_t>(current_stream()));
  }

  // The pair's checkpoint into a fresh fused module, and the fused one's into a fresh pair.
  nn::BatchNorm2dActivation loaded(3, {.eps = 1e-12f, .affine = BatchNormAffine::bias_only});
  loaded.load_state_dict(plain.state_dict());
  nn::Sequential reloaded(nn::BatchNorm2d(3, plain_options), nn::GELU({.engine = Engine::custom}));
  reloaded.at<nn::BatchNorm2d>(0).load_state_dict(fused.state_dict());
  pair.eval();
  loaded.eval();
  reloaded.eval();
  const Tensor x = random_device(530, shape, -1.0f, 3.0f);
  const std::vector<std::uint32_t> expected = bits_of(pair(x));
  EXPECT_EQ(bits_of(loaded(x)), expected);
  EXPECT_EQ(bits_of(reloaded(x)), expected);
}

TEST_F(BatchNormActivationTest, ModuleReprSummaryAndErrors) {
  nn::BatchNorm2dActivation fused(64, {.activation = FusedActivation::relu});
  EXPECT_EQ(fused.repr(),
            "BatchNorm2dActivation(64, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True, "
            "activation='relu')");
  EXPECT_EQ(fused.summary(), "BatchNorm2dActivation 64, relu");
  EXPECT_EQ(fused.activation(), FusedActivation::relu);
  EXPECT_THAT(testing::invalid_argument_message([&] { fused(random_device(1, {2, 4, 3, 3})); }),
              StartsWith("BatchNorm2dActivation 64, relu: expected 64 channels, got input (2, 4, 3, 3)"));
  EXPECT_THAT(testing::invalid_argument_message([] { nn::BatchNorm2dActivation(0); }),
              HasSubstr("BatchNorm2dActivation: num_features must be at least 1, got 0"));
  // Without running statistics, eval normalises with the batch's, as BatchNorm2d.
  nn::BatchNorm2dActivation untracked(3, {.track_running_stats = false});
  EXPECT_THAT(names_of(untracked.state_dict()), ElementsAreArray({"weight", "bias"}));
  untracked.eval();
  const Tensor x = random_device(2, {2, 3, 3, 3});
  F::BatchNormRunningStats none;
  EXPECT_EQ(bits_of(untracked(x)),
            bits_of(F::batch_norm2d_activation(x, untracked.weight(), untracked.bias(), none, true)));
}

// The module has no engine to choose: Module::set_engine lists it with the layers that keep
// the custom kernels, and it runs them afterwards.
TEST_F(BatchNormActivationTest, SetEngineListsTheModuleAndItKeepsRunning) {
  nn::Sequential model(nn::BatchNorm2dActivation(3), nn::Scale(2.0f));
  detail::forget_warnings_for_testing();
  ::testing::internal::CaptureStderr();
  model.set_engine(Engine::cudnn);
  const std::string output = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(output, HasSubstr("set_engine(cudnn): BatchNorm2dActivation, Scale run Strata's custom kernels (no "
                                "cuDNN path)"));
  EXPECT_NO_THROW(model(random_device(3, {2, 3, 4, 4})));
}


// A small net with fused layers on a residual branch, trained by SGD: returns its weights'
// bits after four steps, run eagerly or (steps 2 and 3) replayed by the host graph over three
// streams with the stream-safety checker and the memory plan on.
std::vector<std::uint32_t> train_fused_network(bool replay) {
  manual_seed(7);
  nn::Sequential model(
      nn::Conv2d(3, 4, 3, {.padding = 1, .bias = false}), nn::BatchNorm2dActivation(4),
      nn::Residual(nn::Sequential(nn::Conv2d(4, 4, 3, {.padding = 1, .bias = false}),
                                  nn::BatchNorm2dActivation(4, {.affine = BatchNormAffine::bias_only,
                                                                .activation = FusedActivation::relu}))),
      nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(4, 3));
  optim::SGD sgd(model.parameters(), {.lr = 0.05, .momentum = 0.9, .nesterov = true});
  nn::CrossEntropyLoss cross_entropy;
  Tensor images = Tensor::empty({6, 3, 5, 5}, DType::f32, current_stream());
  const Tensor labels =
      testing::device_tensor(std::vector<std::int64_t>{0, 1, 2, 0, 1, 2}, Shape{6}, current_stream());
  const auto load_batch = [&](int step) {
    images.copy_from(random_device(600 + static_cast<std::uint64_t>(step), images.shape()), current_stream());
  };
  const auto step = [&] {
    sgd.zero_grad();
    Tensor loss = cross_entropy(model(images), labels);
    loss.backward();
    sgd.step();
    return loss;
  };
  std::optional<graph::Executor> executor;
  for (int index = 0; index < 4; ++index) {
    load_batch(index);
    if (!replay || index == 0) {
      step();
    } else if (index == 1) {
      graph::Recorder recorder;
      const Tensor loss = step();
      std::vector<Tensor> keep{loss};
      for (const Tensor& parameter : model.parameters()) keep.push_back(parameter.grad());
      // The memory plan too: a tensor an op reads without declaring it would be reused early.
      executor.emplace(recorder.finish(keep),
                       graph::ExecutorOptions{.streams = 3, .check_stream_safety = true, .plan_memory = true});
    } else {
      executor->run();
    }
  }
  std::vector<std::uint32_t> bits;
  for (const auto& [name, tensor] : model.state_dict()) {
    if (tensor.dtype() != DType::f32) continue;
    const std::vector<std::uint32_t> some = bits_of(tensor);
    bits.insert(bits.end(), some.begin(), some.end());
  }
  return bits;
}

TEST_F(BatchNormActivationTest, HostGraphReplayOverThreeStreamsMatchesEagerSteps) {
  const std::vector<std::uint32_t> eager = train_fused_network(/*replay=*/false);
  const testing::ScheduleSeedGuard another_order(13);
  EXPECT_EQ(train_fused_network(/*replay=*/true), eager);
}

}  // namespace
}  // namespace strata
