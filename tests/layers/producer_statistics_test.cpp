// Batch-norm statistics from the producer through the functional API (F::conv2d and
// F::max_pool2d's statistics out-parameter, F::batch_norm2d_activation and F::batch_norm2d's
// input; strata/kernels/channel_stats.h):
// - conv -> fused BN + GELU and max pool -> BN, with and without the producer's statistics:
//   y, the running statistics and every gradient within the kernel tests' bound (the
//   statistics are summed in another order, so not bit for bit);
// - the statistics object gets new partials from each producer; eval ignores them;
// - training steps recorded and replayed by the host graph over two streams with the memory
//   plan and the stream-safety checker on (the partials are written by the producer op and
//   read by the norm op) match eager steps bit for bit.
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "strata/core/autograd.h"
#include "strata/core/graph.h"
#include "strata/core/stream.h"
#include "strata/layers/functional.h"
#include "strata/layers/sgd.h"
#include "tests/kernels/device_values.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"
#include "tests/support/schedule_seed.h"


namespace strata {
namespace {

using kernels::BatchNormAffine;
using kernels::FusedActivation;
using ProducerStatisticsTest = testing::DeviceTest;
using testing::random_device;
using testing::random_leaf;

std::vector<float> values_of(const Tensor& tensor) { return tensor.to_vector<float>(current_stream()); }

// Within a float rounding or two of the pass over x: the kernel tests' 2^-20 relative on the
// statistics, carried through normalisation and the backward.
constexpr testing::Tolerance kTolerance{.abs_tol = 1e-5, .rel_tol = 1e-5};

::testing::AssertionResult close(const Tensor& with, const Tensor& without) {
  return testing::all_close(values_of(with), testing::to_doubles(values_of(without)), kTolerance);
}

// The leaves of one run, fresh copies of the same values: a conv's input and weight, the
// norm's weight, bias and running statistics.
struct Leaves {
  Tensor x, conv_weight, weight, bias;
  F::BatchNormRunningStats running;

  explicit Leaves(std::uint64_t seed)
      : x(random_leaf(seed, {3, 3, 7, 5}, -1.0f, 2.0f)),
        conv_weight(random_leaf(seed + 1, {5, 3, 3, 3}, -0.5f, 0.5f)),
        weight(random_leaf(seed + 2, {5}, 0.5f, 1.5f)),
        bias(random_leaf(seed + 3, {5})),
        running{random_device(seed + 4, {5}), random_device(seed + 5, {5}, 0.5f, 1.5f)} {}

  void expect_close_to(const Leaves& other) const {
    EXPECT_TRUE(close(running.mean, other.running.mean)) << "running mean";
    EXPECT_TRUE(close(running.var, other.running.var)) << "running var";
    EXPECT_TRUE(close(x.grad(), other.x.grad())) << "x grad";
    EXPECT_TRUE(close(conv_weight.grad(), other.conv_weight.grad())) << "conv weight grad";
    EXPECT_TRUE(close(weight.grad(), other.weight.grad())) << "weight grad";
    EXPECT_TRUE(close(bias.grad(), other.bias.grad())) << "bias grad";
  }
};

constexpr F::Conv2dParams kConv{.padding = {1, 1}};
constexpr F::BatchNormActivationParams kNormGelu{.norm = {.eps = 1e-5f, .momentum = 0.3f},
                                                 .activation = FusedActivation::gelu};

// conv -> fused BN + GELU, with the conv's statistics or without.
Tensor conv_norm_gelu(Leaves& leaves, bool with_statistics) {
  F::ChannelStatistics statistics;
  const Tensor z = F::conv2d(leaves.x, leaves.conv_weight, Tensor(), kConv, Engine::custom,
                             with_statistics ? &statistics : nullptr);
  return F::batch_norm2d_activation(z, leaves.weight, leaves.bias, leaves.running, /*training=*/true, kNormGelu,
                                    with_statistics ? &statistics : nullptr);
}

// conv -> max pool -> BN (unfused, custom engine), with the pool's statistics or without.
Tensor conv_pool_norm(Leaves& leaves, bool with_statistics) {
  F::ChannelStatistics statistics;
  const Tensor z = F::conv2d(leaves.x, leaves.conv_weight, Tensor(), kConv, Engine::custom);
  const Tensor pooled = F::max_pool2d(z, {.kernel = {2, 2}}, Engine::custom,
                                      with_statistics ? &statistics : nullptr);
  return F::batch_norm2d(pooled, leaves.weight, leaves.bias, leaves.running, /*training=*/true, kNormGelu.norm,
                         Engine::custom, with_statistics ? &statistics : nullptr);
}

TEST_F(ProducerStatisticsTest, ConvThenFusedNormAgreesWithAndWithoutStatistics) {
  Leaves with(10), without(10);
  const Tensor y_with = conv_norm_gelu(with, true);
  const Tensor y_without = conv_norm_gelu(without, false);
  EXPECT_TRUE(close(y_with, y_without)) << "y";
  const Tensor dL_dy = random_device(20, y_with.shape());
  y_with.backward(dL_dy);
  y_without.backward(dL_dy);
  with.expect_close_to(without);
}

TEST_F(ProducerStatisticsTest, MaxPoolThenNormAgreesWithAndWithoutStatistics) {
  Leaves with(30), without(30);
  const Tensor y_with = conv_pool_norm(with, true);
  const Tensor y_without = conv_pool_norm(without, false);
  EXPECT_TRUE(close(y_with, y_without)) << "y";
  const Tensor dL_dy = random_device(40, y_with.shape());
  y_with.backward(dL_dy);
  y_without.backward(dL_dy);
  with.expect_close_to(without);
}

// Given the statistics of another tensor, the training norm takes those, not x's own: the
// running statistics come out as that tensor's.
TEST_F(ProducerStatisticsTest, TrainingNormTakesTheStatisticsItIsGiven) {
  autograd::NoGradGuard no_grad;
  Leaves a(60), b(61), reference(60);
  F::ChannelStatistics of_a;
  const Tensor z_a = F::conv2d(a.x, a.conv_weight, Tensor(), kConv, Engine::custom, &of_a);
  const Tensor z_b = F::conv2d(b.x, a.conv_weight, Tensor(), kConv, Engine::custom);
  F::batch_norm2d_activation(z_b, a.weight, a.bias, a.running, /*training=*/true, kNormGelu, &of_a);
  F::batch_norm2d_activation(z_a, reference.weight, reference.bias, reference.running, /*training=*/true, kNormGelu);
  EXPECT_TRUE(close(a.running.mean, reference.running.mean));
  EXPECT_TRUE(close(a.running.var, reference.running.var));
}

TEST_F(ProducerStatisticsTest, EachProducerWritesNewPartialsAndEvalIgnoresThem) {
  Leaves leaves(50);
  F::ChannelStatistics statistics;
  const Tensor z = F::conv2d(leaves.x, leaves.conv_weight, Tensor(), kConv, Engine::custom, &statistics);
  ASSERT_TRUE(statistics.partials.defined());
  EXPECT_EQ(statistics.partials.dtype(), DType::f32);
  EXPECT_EQ(statistics.partials.size(0), kernels::kChannelStatisticsRows);
  EXPECT_EQ(statistics.partials.size(2), 5);
  const Tensor from_conv = statistics.partials;
  F::max_pool2d(z, {.kernel = {2, 2}}, Engine::custom, &statistics);
  ASSERT_TRUE(statistics.partials.defined());
  EXPECT_NE(statistics.partials.data<float>(), from_conv.data<float>());

  // Eval normalises with the running statistics whatever it is given.
  autograd::NoGradGuard no_grad;
  Leaves plain(50);
  const Tensor y_given = F::batch_norm2d_activation(z, leaves.weight, leaves.bias, leaves.running,
                                                    /*training=*/false, kNormGelu, &statistics);
  const Tensor y_plain =
      F::batch_norm2d_activation(z, plain.weight, plain.bias, plain.running, /*training=*/false, kNormGelu);
  EXPECT_TRUE(testing::all_equal(values_of(y_given), values_of(y_plain)));
}

// conv -> pool -> BN + GELU -> conv -> BN + GELU (airbench's conv group, with producer
// statistics for both norms), average pool and cross-entropy, trained by SGD: the leaves' bits
// after four steps, run eagerly or (steps 2 and 3) replayed over two streams with the memory
// plan and the stream-safety checker on.
std::vector<std::uint32_t> train_with_producer_statistics(bool replay) {
  std::vector<Tensor> parameters{random_leaf(70, {4, 3, 3, 3}, -0.5f, 0.5f),  // conv1
                                 random_leaf(71, {4}),                         // norm1 bias
                                 random_leaf(72, {4, 4, 3, 3}, -0.5f, 0.5f),  // conv2
                                 random_leaf(73, {4})};                        // norm2 bias
  std::vector<F::BatchNormRunningStats> running;
  for (int i = 0; i < 2; ++i) {
    running.push_back({Tensor::zeros({4}, DType::f32, current_stream()),
                       testing::device_tensor(std::vector<float>(4, 1.0f), {4}, current_stream())});
  }
  optim::SGD sgd(parameters, {.lr = 0.05, .momentum = 0.9, .nesterov = true});
  Tensor images = Tensor::empty({6, 3, 8, 6}, DType::f32, current_stream());
  const Tensor labels =
      testing::device_tensor(std::vector<std::int64_t>{0, 1, 2, 3, 1, 2}, Shape{6}, current_stream());
  const F::BatchNormActivationParams norm{.norm = {.momentum = 0.4f, .affine = BatchNormAffine::bias_only},
                                          .activation = FusedActivation::gelu};
  const auto step = [&] {
    sgd.zero_grad();
    F::ChannelStatistics pooled, convolved;
    Tensor y = F::conv2d(images, parameters[0], Tensor(), kConv, Engine::custom);
    y = F::max_pool2d(y, {.kernel = {2, 2}}, Engine::custom, &pooled);
    y = F::batch_norm2d_activation(y, Tensor(), parameters[1], running[0], true, norm, &pooled);
    y = F::conv2d(y, parameters[2], Tensor(), kConv, Engine::custom, &convolved);
    y = F::batch_norm2d_activation(y, Tensor(), parameters[3], running[1], true, norm, &convolved);
    Tensor loss = F::cross_entropy(F::flatten(F::adaptive_avg_pool2d(y, {1, 1})), labels);
    loss.backward();
    sgd.step();
    return loss;
  };
  std::optional<graph::Executor> executor;
  for (int index = 0; index < 4; ++index) {
    images.copy_from(random_device(80 + static_cast<std::uint64_t>(index), images.shape()), current_stream());
    if (!replay || index == 0) {
      step();
    } else if (index == 1) {
      graph::Recorder recorder;
      std::vector<Tensor> keep{step()};
      for (const Tensor& parameter : parameters) keep.push_back(parameter.grad());
      executor.emplace(recorder.finish(keep),
                       graph::ExecutorOptions{.streams = 2, .check_stream_safety = true, .plan_memory = true});
    } else {
      executor->run();
    }
  }
  std::vector<std::uint32_t> bits;
  std::vector<Tensor> state = parameters;
  for (const F::BatchNormRunningStats& stats : running) {
    state.push_back(stats.mean);
    state.push_back(stats.var);
  }
  for (const Tensor& tensor : state) {
    const std::vector<std::uint32_t> some = testing::bit_patterns(values_of(tensor));
    bits.insert(bits.end(), some.begin(), some.end());
  }
  return bits;
}

TEST_F(ProducerStatisticsTest, HostGraphReplayOverTwoStreamsMatchesEagerSteps) {
  const std::vector<std::uint32_t> eager = train_with_producer_statistics(/*replay=*/false);
  const testing::ScheduleSeedGuard another_order(17);
  EXPECT_EQ(train_with_producer_statistics(/*replay=*/true), eager);
}

}  // namespace
}  // namespace strata
