// The CIFAR-10 sample's networks and recipes (samples/cifar10/nets.h, whitening.h,
// recipe_common.h): shapes and parameter counts against PyTorch's, airbench94's Dirac start,
// its whitening against a PyTorch golden (golden/whitening.txt from make_whitening.py), its
// learning rates, schedule, lookahead and parameter groups, the whitening bias frozen after
// epoch 3, the six-view evaluation against the explicit views, the correct count, a
// checkpoint that resumes bit for bit, and the seed recipe learning a synthetic set. The
// simulator is slow, so the recipes run with small widths and batches.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <strata/core/autograd.h>
#include <strata/core/generator.h>
#include <strata/core/safetensors.h>
#include <strata/core/stream.h>
#include <strata/core/tensor.h>

#include "samples/cifar10/device_images.h"
#include "samples/cifar10/nets.h"
#include "samples/cifar10/recipe_common.h"
#include "samples/cifar10/synthetic_images.h"
#include "samples/cifar10/whitening.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"
#include "tests/support/golden.h"

namespace cifar10 {
namespace {

namespace fs = std::filesystem;
namespace nn = strata::nn;
using strata::DType;
using strata::Tensor;

using RecipeTest = strata::testing::DeviceTest;

cudaStream_t stream() { return strata::current_stream(); }

Tensor random_device(const strata::Shape& shape, std::uint64_t seed) {
  const std::vector<float> values = strata::testing::random_uniform(seed, static_cast<std::size_t>(shape.numel()));
  return Tensor::from_vector(values, shape).to_device(stream());
}

// Airbench94 small enough for the simulator: the same layers, narrower groups.
constexpr Airbench94NetOptions kTinyAirbench{.widths = {8, 8, 16}};

// The synthetic set (samples/cifar10/synthetic_images.h) on the device.
struct TinySet {
  DeviceImages images;
  explicit TinySet(std::int64_t count)
      : images(make_synthetic_images(count, /*seed=*/3), Placement::device, strata::current_stream()) {}

  // Batch index of batch_size images, in order, unaugmented.
  Batch batch(std::int64_t index, int batch_size) const {
    return {images.normalised(index * batch_size, batch_size, Normalisation{}, stream()),
            images.labels().narrow(0, index * batch_size, batch_size)};
  }
};

// ---- networks --------------------------------------------------------------------------

TEST_F(RecipeTest, NetworksGiveTenLogitsAndPyTorchsParameterCounts) {
  // PyTorch's counts (sum of numel over parameters()) of the same modules: airbench94 has
  // 1,972,792 with its 1,152 batch-norm weights, which are not tensors here; ResNet-18 as
  // the common CIFAR version; the seed net 3*32*9+32 + 32*64*9+64 + 64*10+10.
  nn::Sequential airbench = airbench94_net();
  EXPECT_EQ(count_parameters(airbench), 1972792 - 1152);
  EXPECT_EQ(count_parameters(resnet18_net()), 11173962);
  nn::Sequential seed = seed_net();
  EXPECT_EQ(count_parameters(seed), 20042);

  strata::autograd::NoGradGuard no_grad;
  EXPECT_EQ(seed(random_device({2, 3, 32, 32}, 1)).shape(), (strata::Shape{2, 10}));
  airbench.eval();
  EXPECT_EQ(airbench(random_device({2, 3, 32, 32}, 2)).shape(), (strata::Shape{2, 10}));
  // ResNet-18 takes any size down to 8x8 (three stride-2 stages), here the cheapest.
  nn::Sequential resnet = resnet18_net();
  resnet.eval();
  EXPECT_EQ(resnet(random_device({1, 3, 8, 8}, 3)).shape(), (strata::Shape{1, 10}));
}

TEST_F(RecipeTest, Airbench94KeysAreAirbenchs) {
  const nn::Sequential net = airbench94_net(kTinyAirbench);
  std::vector<std::string> names;
  for (const auto& [name, tensor] : net.named_parameters()) names.push_back(name);
  const std::vector<std::string> expected = {
      "0.weight",        "0.bias",       "2.conv1.weight", "2.norm1.bias", "2.conv2.weight", "2.norm2.bias",
      "3.conv1.weight",  "3.norm1.bias", "3.conv2.weight", "3.norm2.bias", "4.conv1.weight", "4.norm1.bias",
      "4.conv2.weight",  "4.norm2.bias", "7.weight"};
  EXPECT_EQ(names, expected);
  const auto buffers = net.named_buffers();
  ASSERT_FALSE(buffers.empty());
  EXPECT_EQ(buffers.front().first, "2.norm1.running_mean");
}

// The fused batch norm + GELU (the default) against the separate modules (what a cuDNN run
// uses): the same keys, and the same logits and gradients bit for bit from the same start
// (the norms computing their own statistics: the producer's are summed in another order).
TEST_F(RecipeTest, Airbench94FusedNormActivationMatchesTheSeparateModules) {
  Airbench94NetOptions fused_options = kTinyAirbench;
  fused_options.statistics_from_producer = false;
  Airbench94NetOptions separate_options = kTinyAirbench;
  separate_options.fuse_norm_activation = false;
  strata::manual_seed(11);
  nn::Sequential fused = airbench94_net(fused_options);
  strata::manual_seed(11);
  nn::Sequential separate = airbench94_net(separate_options);
  const auto fused_state = fused.state_dict();
  const auto separate_state = separate.state_dict();
  ASSERT_EQ(fused_state.size(), separate_state.size());
  for (std::size_t i = 0; i < fused_state.size(); ++i) EXPECT_EQ(fused_state[i].first, separate_state[i].first);

  const Tensor x = random_device({4, 3, 32, 32}, 5);  // (N, 3, 32, 32)
  std::vector<std::vector<float>> logits, gradients;
  for (nn::Sequential* net : {&fused, &separate}) {
    const Tensor y = (*net)(x);  // (N, 10)
    y.backward(random_device(y.shape(), 6));
    logits.push_back(y.to_vector<float>());
    for (const Tensor& parameter : net->parameters()) {
      if (parameter.grad().defined()) gradients.push_back(parameter.grad().to_vector<float>());
    }
  }
  EXPECT_EQ(logits[0], logits[1]);
  ASSERT_EQ(gradients.size() % 2, 0u);
  const std::size_t half = gradients.size() / 2;
  for (std::size_t i = 0; i < half; ++i) EXPECT_EQ(gradients[i], gradients[half + i]) << "parameter " << i;
}

// Each conv group's conv1 + pool as one fused op (the default where the conv math allows it)
// against the separate conv and pool: the same logits and gradients bit for bit, in training
// (the norms computing their own statistics, as above) and in eval.
TEST_F(RecipeTest, Airbench94FusedConvPoolMatchesTheSeparateConvAndPool) {
  Airbench94NetOptions fused_options = kTinyAirbench;
  fused_options.statistics_from_producer = false;
  Airbench94NetOptions separate_options = fused_options;
  separate_options.fuse_conv_pool = false;
  std::vector<std::vector<float>> logits[2], gradients[2];
  for (const bool eval : {false, true}) {
    for (int variant = 0; variant < 2; ++variant) {
      strata::manual_seed(12);
      nn::Sequential net = airbench94_net(variant == 0 ? fused_options : separate_options);
      const std::function<void(nn::Module&)> set_tf32 = [&](nn::Module& module) {
        for (const auto& [name, child] : module.named_children()) {
          if (auto* conv = dynamic_cast<nn::Conv2d*>(child.get())) conv->set_math(strata::kernels::ConvMath::tf32);
          set_tf32(*child);
        }
      };
      set_tf32(net);
      if (eval) net.eval();
      const Tensor y = net(random_device({4, 3, 32, 32}, 7));  // (N, 10)
      y.backward(random_device(y.shape(), 8));
      logits[variant].push_back(y.to_vector<float>());
      for (const Tensor& parameter : net.parameters()) {
        if (parameter.grad().defined()) gradients[variant].push_back(parameter.grad().to_vector<float>());
      }
    }
  }
  EXPECT_EQ(logits[0], logits[1]);
  ASSERT_EQ(gradients[0].size(), gradients[1].size());
  for (std::size_t i = 0; i < gradients[0].size(); ++i) EXPECT_EQ(gradients[0][i], gradients[1][i]) << "gradient " << i;
}

TEST_F(RecipeTest, Airbench94ConvsStartAsTheIdentityOnTheirInputChannels) {
  const nn::Sequential net = airbench94_net(kTinyAirbench);
  const auto& params = net.named_parameters();
  for (const auto& [name, weight] : params) {
    if (name.find("conv") == std::string::npos) continue;
    SCOPED_TRACE(name);
    const std::int64_t out = weight.size(0), in = weight.size(1);
    const std::vector<float> w = weight.to_vector<float>();  // (out, in, 3, 3)
    int random_nonzero = 0;
    for (std::int64_t k = 0; k < out; ++k) {
      for (std::int64_t c = 0; c < in; ++c) {
        for (int tap = 0; tap < 9; ++tap) {
          const float value = w[static_cast<std::size_t>((k * in + c) * 9 + tap)];
          if (k < in) {
            ASSERT_EQ(value, (k == c && tap == 4) ? 1.0f : 0.0f) << "at (" << k << ", " << c << ", " << tap << ")";
          } else {
            // PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
            ASSERT_LE(std::abs(value), 1.0f / std::sqrt(static_cast<float>(in * 9)));
            random_nonzero += value != 0.0f;
          }
        }
      }
    }
    if (out > in) {
      EXPECT_GT(random_nonzero, 0);
    }
  }
}

// ---- whitening -------------------------------------------------------------------------

TEST(Whitening, JacobiGivesOrthonormalEigenvectorsSortedAndSigned) {
  constexpr int n = 12;
  std::mt19937 rng(7);
  std::normal_distribution<double> normal;
  std::vector<double> b(n * n), a(n * n, 0.0);
  for (double& value : b) value = normal(rng);
  for (int i = 0; i < n; ++i) {  // a = b b^T: symmetric, positive semi-definite
    for (int j = 0; j < n; ++j) {
      for (int k = 0; k < n; ++k) a[i * n + j] += b[i * n + k] * b[j * n + k];
    }
  }
  const SymmetricEigen eigen = symmetric_eigen(a, n);
  for (int r = 0; r < n; ++r) {
    if (r > 0) {
      EXPECT_GE(eigen.values[r - 1], eigen.values[r]);
    }
    const double* v = &eigen.vectors[static_cast<std::size_t>(r) * n];
    int largest = 0;
    for (int k = 0; k < n; ++k) {
      double av = 0.0;
      for (int j = 0; j < n; ++j) av += a[k * n + j] * v[j];
      EXPECT_NEAR(av, eigen.values[r] * v[k], 1e-10 * eigen.values[0]) << "A v = lambda v, vector " << r;
      if (std::abs(v[k]) > std::abs(v[largest])) largest = k;
    }
    EXPECT_GT(v[largest], 0.0) << "vector " << r << ": its largest component is positive";
    for (int s = 0; s < n; ++s) {
      double dot = 0.0;
      for (int k = 0; k < n; ++k) dot += v[k] * eigen.vectors[static_cast<std::size_t>(s) * n + k];
      EXPECT_NEAR(dot, r == s ? 1.0 : 0.0, 1e-12);
    }
  }
  EXPECT_THROW(symmetric_eigen(std::vector<double>{1.0, 2.0, 3.0, 1.0}, 2), std::invalid_argument);
}

TEST(Whitening, MatchesPyTorchGolden) {
  for (const strata::testing::GoldenCase& golden : strata::testing::read_golden("whitening.txt")) {
    SCOPED_TRACE(golden.name);
    const std::vector<std::int64_t>& dims = golden.ints_of("images");
    const int patch = static_cast<int>(golden.int_of("patch"));
    const int channels = static_cast<int>(dims[1]);
    const std::vector<double> moments =
        patch_second_moments(golden.tensor_of("images").values, dims[0], channels, static_cast<int>(dims[2]),
                             static_cast<int>(dims[3]), patch);
    const std::vector<float>& expected_moments = golden.tensor_of("moments").values;
    std::vector<float> moments_f32(moments.begin(), moments.end());
    const std::vector<double> expected_moments_f64(expected_moments.begin(), expected_moments.end());
    EXPECT_TRUE(strata::testing::all_close(moments_f32, expected_moments_f64, {.abs_tol = 1e-7, .rel_tol = 1e-6}));

    const SymmetricEigen eigen = symmetric_eigen(moments, channels * patch * patch);
    const std::vector<float> values_f32(eigen.values.begin(), eigen.values.end());
    const std::vector<float>& expected_values = golden.tensor_of("eigenvalues").values;
    EXPECT_TRUE(strata::testing::all_close(
        values_f32, std::vector<double>(expected_values.begin(), expected_values.end()), {1e-7, 1e-5}));

    // Eigenvectors move by about (rounding of the moments) / (gap to the next value): the
    // fixture keeps gaps above 1%, and the moments agree to float32 rounding.
    const std::vector<float> weight = whitening_filters(moments, channels, patch, golden.float_of("eps"));
    const std::vector<float>& expected_weight = golden.tensor_of("weight").values;
    double largest = 0.0;
    for (const float value : expected_weight) largest = std::max(largest, std::abs(static_cast<double>(value)));
    EXPECT_TRUE(strata::testing::all_close(weight, std::vector<double>(expected_weight.begin(), expected_weight.end()),
                                           {.abs_tol = 1e-5 * largest, .rel_tol = 1e-4}));
  }
}

// ---- airbench94's recipe: rates, schedule, lookahead, groups ---------------------------

TEST(Airbench94Recipe, LearningRatesAndWeightDecayAreAirbenchs) {
  const Airbench94Rates rates = airbench94_rates({}, 1024, 1.0);
  const double k = 1024.0 * (1.0 + 1.0 / (1.0 - 0.85));  // 7850.67
  EXPECT_DOUBLE_EQ(rates.lr, 11.5 / k);
  EXPECT_DOUBLE_EQ(rates.bias_lr, 64 * 11.5 / k);
  // PyTorch's SGD adds weight_decay * w to the gradient, so lr * weight_decay is the decay per
  // step: 0.0153 * batch / k for both groups.
  EXPECT_NEAR(rates.lr * rates.weight_decay, 0.0153 * 1024 / k, 1e-18);
  EXPECT_NEAR(rates.bias_lr * rates.bias_weight_decay, 0.0153 * 1024 / k, 1e-18);
  const Airbench94Rates half = airbench94_rates({}, 512, 2.0);
  EXPECT_DOUBLE_EQ(half.lr, 2 * 11.5 / k);
  EXPECT_NEAR(half.lr * half.weight_decay, 0.0153 * 512 / k, 1e-18);
}

TEST(Airbench94Recipe, ScheduleRisesToPeakAt23PercentThenFallsTo007) {
  // 48 batches of 1024 an epoch, 9.9 epochs: ceil(475.2) = 476 steps, the peak at int(109.48).
  const std::unique_ptr<SgdRecipe> recipe = make_airbench94_recipe({}, kTinyAirbench);
  EXPECT_EQ(recipe->batch_size(), 1024);
  EXPECT_EQ(recipe->total_steps(48), 476);
  const strata::lr::SchedulePtr schedule = airbench94_schedule(476);
  EXPECT_DOUBLE_EQ(schedule->factor(0), 0.2);
  EXPECT_DOUBLE_EQ(schedule->factor(50), 0.2 + 0.8 * 50 / 109);
  EXPECT_DOUBLE_EQ(schedule->factor(109), 1.0);
  EXPECT_NEAR(schedule->factor(300), 1.0 - 0.93 * (300 - 109) / 367.0, 1e-15);
  EXPECT_NEAR(schedule->factor(475), 1.0 - 0.93 * 366 / 367.0, 1e-15);
  EXPECT_DOUBLE_EQ(schedule->factor(476), 0.07);
}

TEST(Airbench94Recipe, LookaheadDecayIsAirbenchs) {
  EXPECT_DOUBLE_EQ(airbench94_lookahead_decay(5, 476), std::pow(0.95, 5) * std::pow(5.0 / 476, 3));
  EXPECT_DOUBLE_EQ(airbench94_lookahead_decay(475, 476), std::pow(0.95, 5) * std::pow(475.0 / 476, 3));
  EXPECT_DOUBLE_EQ(airbench94_lookahead_decay(476, 476), std::pow(0.95, 5));
}

TEST_F(RecipeTest, Airbench94GroupsBatchNormBiasesAtSixtyFourTimesTheRate) {
  const std::unique_ptr<SgdRecipe> recipe = make_airbench94_recipe({}, kTinyAirbench);
  const strata::optim::SGD& sgd = recipe->optimizer();
  ASSERT_EQ(sgd.num_groups(), 2);
  const nn::Sequential& net = recipe->net();
  const auto& whiten = net.at<nn::Conv2d>(kAirbenchWhitenLayer);
  EXPECT_FALSE(whiten.weight().requires_grad());
  const auto in_group = [&](int group, const Tensor& tensor) {
    const auto& params = sgd.params(group);
    return std::any_of(params.begin(), params.end(), [&](const Tensor& p) { return p.shares_storage_with(tensor); });
  };
  int norm_biases = 0, others = 0;
  for (const auto& [name, parameter] : net.named_parameters()) {
    SCOPED_TRACE(name);
    if (name == "0.weight") {
      EXPECT_FALSE(in_group(0, parameter) || in_group(1, parameter));
    } else if (name.find("norm") != std::string::npos) {
      EXPECT_TRUE(in_group(0, parameter));
      ++norm_biases;
    } else {
      EXPECT_TRUE(in_group(1, parameter));
      ++others;
    }
  }
  EXPECT_EQ(norm_biases, 6);
  EXPECT_EQ(others, 8);  // the whitening bias, six conv weights, the head
  EXPECT_EQ(sgd.params(0).size(), 6u);
  EXPECT_EQ(sgd.params(1).size(), 8u);
  const Airbench94Rates rates = airbench94_rates({}, 1024, 1.0);
  EXPECT_DOUBLE_EQ(sgd.initial_lr(0), rates.bias_lr);
  EXPECT_DOUBLE_EQ(sgd.initial_lr(1), rates.lr);
  EXPECT_DOUBLE_EQ(sgd.options(0).weight_decay, rates.bias_weight_decay);
  EXPECT_DOUBLE_EQ(sgd.options(1).weight_decay, rates.weight_decay);
  EXPECT_DOUBLE_EQ(sgd.options(0).momentum, 0.85);
  EXPECT_TRUE(sgd.options(0).nesterov && sgd.options(1).nesterov);
}

TEST_F(RecipeTest, SeedAndResNet18SchedulesWarmUpThenAnneal) {
  const TinySet set(64);
  // ResNet-18: batch 8 here, 8 batches an epoch, 30 epochs: 240 steps, the warm-up over the
  // first 2 epochs (16 steps) from a tenth of the peak, then a cosine to 0.
  const std::unique_ptr<SgdRecipe> resnet = make_resnet18_recipe({.batch_size = 8});
  EXPECT_EQ(resnet->augment_options().translate, 4);
  EXPECT_TRUE(resnet->drop_last());
  resnet->initialise(set.images, stream());
  ASSERT_EQ(resnet->run_total_steps(), 240);
  const strata::lr::Schedule& warm_cosine = resnet->scheduler().schedule();
  EXPECT_DOUBLE_EQ(warm_cosine.factor(0), 0.1);
  EXPECT_DOUBLE_EQ(warm_cosine.factor(16), 1.0);
  EXPECT_NEAR(warm_cosine.factor(16 + 112), 0.5, 1e-12);
  EXPECT_NEAR(warm_cosine.factor(240), 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(resnet->optimizer().initial_lr(0), 0.1 * 8 / 128);  // 0.1 per 128 images
  EXPECT_DOUBLE_EQ(resnet->optimizer().options(0).weight_decay, 5e-4);

  // Seed: one cycle, from 1/25 of the peak up over the first quarter, down to nearly 0.
  const std::unique_ptr<SgdRecipe> seed = make_seed_recipe({.batch_size = 16}, {.width1 = 4, .width2 = 8});
  EXPECT_EQ(seed->batch_size(), 16);
  seed->initialise(set.images, stream());
  ASSERT_EQ(seed->run_total_steps(), 20);  // 4 batches, 5 epochs
  const strata::lr::Schedule& cycle = seed->scheduler().schedule();
  EXPECT_NEAR(cycle.factor(0), 1.0 / 25, 1e-12);
  EXPECT_NEAR(cycle.factor(4), 1.0, 1e-12);  // OneCycleLR's peak: step pct_start * total - 1
  EXPECT_LT(cycle.factor(19), 1e-3);
}

// ---- evaluation ------------------------------------------------------------------------

// images (N, C, H, W) on the host moved as TestViews does: out[y][x] = in[reflect(y - dy)][...], mirrored after.
std::vector<float> host_view(const std::vector<float>& images, const strata::Shape& shape, int dy, int dx,
                             bool mirror) {
  const std::int64_t planes = shape[0] * shape[1], height = shape[2], width = shape[3];
  const auto reflect = [](std::int64_t i, std::int64_t n) { return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i); };
  std::vector<float> out(images.size());
  for (std::int64_t p = 0; p < planes; ++p) {
    for (std::int64_t y = 0; y < height; ++y) {
      for (std::int64_t x = 0; x < width; ++x) {
        const std::int64_t moved_x = mirror ? width - 1 - x : x;  // mirror the moved image
        const std::int64_t source = reflect(y - dy, height) * width + reflect(moved_x - dx, width);
        out[static_cast<std::size_t>((p * height + y) * width + x)] =
            images[static_cast<std::size_t>(p * height * width + source)];
      }
    }
  }
  return out;
}

TEST_F(RecipeTest, TestViewsMirrorAndTranslateExactly) {
  const strata::Shape shape{2, 3, 5, 6};
  const Tensor images = random_device(shape, 11);
  const std::vector<float> host = images.to_vector<float>();
  TestViews views;
  strata::autograd::NoGradGuard no_grad;
  EXPECT_TRUE(strata::testing::all_equal(views.mirror(images).to_vector<float>(), host_view(host, shape, 0, 0, true)));
  for (const auto& [dy, dx] : std::vector<std::pair<int, int>>{{1, 1}, {-1, -1}, {2, -3}, {0, 1}}) {
    SCOPED_TRACE("move (" + std::to_string(dy) + ", " + std::to_string(dx) + ")");
    EXPECT_TRUE(strata::testing::all_equal(views.translate(images, dy, dx).to_vector<float>(),
                                           host_view(host, shape, dy, dx, false)));
  }
  EXPECT_THROW(views.translate(images, 5, 0), std::invalid_argument);
}

TEST_F(RecipeTest, SixViewLogitsAverageTheSixViewsAsAirbench) {
  nn::Sequential model = seed_net({.width1 = 4, .width2 = 8});
  model.eval();
  strata::autograd::NoGradGuard no_grad;
  const strata::Shape shape{3, 3, 8, 8};
  const Tensor images = random_device(shape, 12);
  const std::vector<float> host = images.to_vector<float>();
  // The views made on the host, each through the model; airbench's weights.
  const auto logits_of = [&](int dy, int dx, bool mirror) {
    return model(Tensor::from_vector(host_view(host, shape, dy, dx, mirror), shape).to_device(stream()))
        .to_vector<float>();
  };
  const std::vector<std::vector<float>> plain = {logits_of(0, 0, false), logits_of(0, 0, true)};
  const std::vector<std::vector<float>> down = {logits_of(1, 1, false), logits_of(1, 1, true)};
  const std::vector<std::vector<float>> up = {logits_of(-1, -1, false), logits_of(-1, -1, true)};
  std::vector<double> expected(plain[0].size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double mirror_plain = 0.5 * (plain[0][i] + plain[1][i]);
    const double mirror_moved = 0.5 * (0.5 * (down[0][i] + down[1][i]) + 0.5 * (up[0][i] + up[1][i]));
    expected[i] = 0.5 * mirror_plain + 0.5 * mirror_moved;
  }
  TestViews views;
  EXPECT_TRUE(strata::testing::all_close(six_view_logits(model, images, views).to_vector<float>(), expected,
                                         {.abs_tol = 1e-6, .rel_tol = 1e-5}));
}

TEST_F(RecipeTest, CountCorrectCountsRowsWhoseFirstMaximumIsTheLabel) {
  // Rows: right, wrong, a tie won by the label (first), a tie lost (label second), right.
  const std::vector<float> logits = {0.1f, 2.0f, -1.0f, 3.0f, 0.5f, 0.2f, 1.0f, 1.0f, 0.0f,
                                     4.0f, 4.0f, 1.0f,  0.0f, 0.0f, 5.0f};
  const std::vector<std::int64_t> labels = {1, 1, 0, 1, 2};
  const Tensor correct = count_correct(Tensor::from_vector(logits, {5, 3}).to_device(stream()),
                                       Tensor::from_vector(labels, {5}).to_device(stream()));
  EXPECT_EQ(correct.dim(), 0);
  EXPECT_EQ(correct.dtype(), DType::i64);
  EXPECT_EQ(correct.to_vector<std::int64_t>(), std::vector<std::int64_t>{3});
}

// ---- training, freezing, checkpoints ---------------------------------------------------

std::vector<std::vector<float>> state_values(SgdRecipe& recipe) {
  std::vector<std::vector<float>> values;
  for (const auto& [name, tensor] : recipe.net().state_dict()) {
    if (tensor.dtype() == DType::f32) values.push_back(tensor.to_vector<float>());
  }
  return values;
}

// A fresh file name under the temporary folder, removed at the end of the test.
struct TemporaryFile {
  fs::path path;
  explicit TemporaryFile(const std::string& name)
      : path(fs::temp_directory_path() / ("strata_recipe_" + name + "_" + std::to_string(::getpid()))) {}
  ~TemporaryFile() {
    std::error_code ignored;
    fs::remove(path, ignored);
  }
};

TEST_F(RecipeTest, Airbench94WhiteningBiasTrainsOnlyInTheFirstThreeEpochs) {
  constexpr int kBatch = 4;
  const TinySet set(2 * kBatch);  // two batches an epoch
  const std::unique_ptr<SgdRecipe> recipe = make_airbench94_recipe({.batch_size = kBatch}, kTinyAirbench);
  recipe->initialise(set.images, stream());
  ASSERT_EQ(recipe->run_batches_per_epoch(), 2);
  const Tensor bias = recipe->net().at<nn::Conv2d>(kAirbenchWhitenLayer).bias();
  // Steps 0..5 are epochs 0..2; step 4 ends with a lookahead (5 steps), step 6 does not.
  for (std::int64_t step = 0; step < 7; ++step) {
    const std::vector<float> before = bias.to_vector<float>();
    recipe->train_step(set.batch(step % 2, kBatch), step, stream());
    const std::vector<float> after = bias.to_vector<float>();
    if (step < 6) {
      EXPECT_TRUE(bias.requires_grad()) << "step " << step;
      EXPECT_NE(before, after) << "step " << step << " (epoch " << step / 2 << ") should train the bias";
    } else {
      EXPECT_FALSE(bias.requires_grad()) << "step " << step;
      EXPECT_EQ(before, after) << "step " << step << " (epoch 3) should leave the bias alone";
    }
  }
}

TEST_F(RecipeTest, DeviceSecondMomentsMatchTheHostsInDouble) {
  const strata::Shape shape{5, 3, 9, 8};
  const Tensor images = random_device(shape, 21);
  const std::vector<float> host = images.to_vector<float>();
  const std::vector<double> expected = patch_second_moments(host, 5, 3, 9, 8, 2);
  // Chunks of 2 images: three partial sums, the last of one image.
  const std::vector<double> moments = device_patch_second_moments(images, 2, stream(), 2);
  EXPECT_TRUE(strata::testing::all_close(std::vector<float>(moments.begin(), moments.end()), expected,
                                         {.abs_tol = 1e-7, .rel_tol = 1e-6}));
}

TEST_F(RecipeTest, Airbench94WhiteningWeightComesFromTheData) {
  const TinySet set(6);
  const std::unique_ptr<SgdRecipe> recipe = make_airbench94_recipe({.batch_size = 2}, kTinyAirbench);
  recipe->initialise(set.images, stream());
  const std::vector<float> host = set.images.normalised(0, 6, Normalisation{}, stream()).to_vector<float>();
  const std::vector<float> expected = whitening_filters(patch_second_moments(host, 6, 3, 32, 32, 2), 3, 2, 5e-4);
  const Tensor weight = recipe->net().at<nn::Conv2d>(kAirbenchWhitenLayer).weight();
  EXPECT_EQ(weight.shape(), (strata::Shape{24, 3, 2, 2}));
  // The device sums in fp32 (to about 1e-6), which the eigenvectors amplify by up to
  // 1 / (the gap between neighbouring eigenvalues): this checks where the weight came from;
  // the arithmetic is checked above and against PyTorch.
  double largest = 0.0;
  for (const float value : expected) largest = std::max(largest, std::abs(static_cast<double>(value)));
  EXPECT_TRUE(strata::testing::all_close(weight.to_vector<float>(),
                                         std::vector<double>(expected.begin(), expected.end()),
                                         {.abs_tol = 1e-3 * largest, .rel_tol = 1e-3}));
}

// Runs steps [first, last) of recipe over set's batches in order.
void run_steps(SgdRecipe& recipe, const TinySet& set, int batch_size, std::int64_t first, std::int64_t last) {
  const std::int64_t batches = set.images.count() / batch_size;
  for (std::int64_t step = first; step < last; ++step) {
    recipe.train_step(set.batch(step % batches, batch_size), step, stream());
  }
}

// Trains `total` steps straight, and again with a save after `saved` steps and a resume in a
// recipe built afresh: the weights, buffers and (for airbench) lookahead end bit-identical.
void expect_exact_resume(const std::function<std::unique_ptr<SgdRecipe>()>& make, const TinySet& set,
                         int batch_size, std::int64_t saved, std::int64_t total) {
  const TemporaryFile file("resume");
  const std::unique_ptr<SgdRecipe> straight = make();
  straight->initialise(set.images, stream());
  run_steps(*straight, set, batch_size, 0, saved);
  straight->save_state(file.path, saved, stream());
  run_steps(*straight, set, batch_size, saved, total);
  straight->finish(stream());

  const std::unique_ptr<SgdRecipe> resumed = make();
  resumed->initialise(set.images, stream());
  ASSERT_EQ(resumed->load_state(file.path, stream()), saved);
  run_steps(*resumed, set, batch_size, saved, total);
  resumed->finish(stream());
  const auto expected = state_values(*straight), actual = state_values(*resumed);
  ASSERT_EQ(expected.size(), actual.size());
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(expected[i], actual[i]) << "state tensor " << i;
}

TEST_F(RecipeTest, SeedRecipeResumesBitIdentically) {
  const TinySet set(16);
  expect_exact_resume([] { return make_seed_recipe({.batch_size = 8, .seed = 5}, {.width1 = 4, .width2 = 8}); }, set,
                      8, 3, 6);
}

TEST_F(RecipeTest, Airbench94ResumesBitIdenticallyThroughLookaheadAndFreezing) {
  const TinySet set(8);
  // Saved after 3 steps; steps 3..7 cross the lookahead after step 5 and the freeze at epoch 3.
  expect_exact_resume([] { return make_airbench94_recipe({.batch_size = 4, .seed = 5}, kTinyAirbench); }, set, 4, 3,
                      8);
}

TEST_F(RecipeTest, Airbench94FinishLeavesTheLookaheadAverages) {
  const TinySet set(8);
  const std::unique_ptr<SgdRecipe> recipe = make_airbench94_recipe({.batch_size = 4}, kTinyAirbench);
  recipe->initialise(set.images, stream());
  run_steps(*recipe, set, 4, 0, 7);  // the last lookahead after step 5; then two plain steps
  recipe->finish(stream());
  const TemporaryFile file("finish");
  recipe->save_state(file.path, 7, stream());
  const strata::SafetensorsFile saved = strata::load_safetensors(file.path);
  std::size_t i = 0;
  for (const auto& [name, tensor] : recipe->net().state_dict()) {
    if (tensor.dtype() != DType::f32 || name == "0.weight") continue;  // the frozen weight is not averaged
    SCOPED_TRACE(name);
    EXPECT_EQ(saved.at("tensors.lookahead." + std::to_string(i++)).to_vector<float>(), tensor.to_vector<float>());
  }
  EXPECT_THROW(saved.at("tensors.lookahead." + std::to_string(i)), std::exception);
}

// Strata's state against the golden's, each tensor compared by its change since the
// start (what the steps did), within 1e-4 of the largest change plus 1e-3 of its own, plus
// 1e-6 of the largest value (a change far below a value is known only to the value's
// rounding): the two float32 runs differ by rounding, which the five steps amplify.
void expect_state_matches(SgdRecipe& recipe, const strata::testing::GoldenCase& golden, const std::string& prefix) {
  for (const auto& [name, tensor] : recipe.net().state_dict()) {
    if (tensor.dtype() != DType::f32) continue;
    SCOPED_TRACE(prefix + name);
    const strata::testing::GoldenTensor& initial = golden.tensor_of("initial/" + name);
    const strata::testing::GoldenTensor& expected = golden.tensor_of(prefix + name);
    const std::vector<float> actual = tensor.to_vector<float>();
    ASSERT_EQ(actual.size(), expected.values.size());
    std::vector<float> change(actual.size());
    std::vector<double> expected_change(actual.size());
    double largest_change = 0.0, largest_value = 0.0;
    for (std::size_t i = 0; i < actual.size(); ++i) {
      change[i] = actual[i] - initial.values[i];
      expected_change[i] = static_cast<double>(expected.values[i]) - initial.values[i];
      largest_change = std::max(largest_change, std::abs(expected_change[i]));
      largest_value = std::max(largest_value, std::abs(static_cast<double>(expected.values[i])));
    }
    EXPECT_TRUE(strata::testing::all_close(
        change, expected_change, {.abs_tol = 1e-4 * largest_change + 1e-6 * largest_value, .rel_tol = 1e-3}));
  }
}

TEST_F(RecipeTest, Airbench94StepsMatchPyTorchFromTheSameStart) {
  const std::vector<strata::testing::GoldenCase> cases = strata::testing::read_golden("airbench94.txt");
  ASSERT_EQ(cases.size(), 1u);
  const strata::testing::GoldenCase& golden = cases.front();
  const std::vector<std::int64_t>& widths = golden.ints_of("widths");
  const int batch = static_cast<int>(golden.int_of("batch"));
  HostImages host;
  for (const std::int64_t value : golden.ints_of("pixels")) host.pixels.push_back(static_cast<std::uint8_t>(value));
  for (const std::int64_t label : golden.ints_of("labels")) host.labels.push_back(static_cast<std::uint8_t>(label));
  const DeviceImages images(host, Placement::device, stream());
  const std::unique_ptr<SgdRecipe> recipe =
      make_airbench94_recipe({.batch_size = batch}, {.widths = {widths[0], widths[1], widths[2]}});
  recipe->initialise(images, stream());
  ASSERT_EQ(recipe->run_total_steps(), 20);
  {
    // The whitening from the same images (its eigenvectors agree to the fp32 sums' rounding
    // over the eigenvalue gaps); then PyTorch's initial state, its weight included.
    const strata::testing::GoldenTensor& whitening = golden.tensor_of("whitening");
    const std::vector<double> expected(whitening.values.begin(), whitening.values.end());
    EXPECT_TRUE(strata::testing::all_close(
        recipe->net().at<nn::Conv2d>(kAirbenchWhitenLayer).weight().to_vector<float>(), expected,
        {.abs_tol = 1e-3, .rel_tol = 1e-3}));
  }
  strata::NamedTensors initial;
  for (const auto& [name, tensor] : recipe->net().state_dict()) {
    if (tensor.dtype() != DType::f32) continue;
    const strata::testing::GoldenTensor& values = golden.tensor_of("initial/" + name);
    initial.emplace_back(name, Tensor::from_vector(values.values, tensor.shape()));
  }
  recipe->net().load_state_dict(initial, /*strict=*/false);  // all but num_batches_tracked

  const std::int64_t batches = images.count() / batch;
  for (std::int64_t step = 0; step < golden.int_of("steps"); ++step) {
    SCOPED_TRACE("step " + std::to_string(step + 1));
    const Batch data = {images.normalised(step % batches * batch, batch, Normalisation{}, stream()),
                        images.labels().narrow(0, step % batches * batch, batch)};
    const StepResult result = recipe->train_step(data, step, stream());
    const double expected_loss = golden.tensor_of("loss_step" + std::to_string(step + 1)).values.at(0);
    EXPECT_NEAR(result.loss.to_vector<float>()[0] * batch, expected_loss, 1e-5 * expected_loss);
    const std::string prefix = "step" + std::to_string(step + 1) + "/";
    if (golden.has_tensor(prefix + "0.bias")) expect_state_matches(*recipe, golden, prefix);
  }
}

TEST_F(RecipeTest, CheckpointOfAnotherRecipeIsAClearError) {
  const TinySet set(8);
  const TemporaryFile file("other");
  const std::unique_ptr<SgdRecipe> seed = make_seed_recipe({.batch_size = 4}, {.width1 = 4, .width2 = 8});
  seed->initialise(set.images, stream());
  seed->save_state(file.path, 0, stream());
  const std::unique_ptr<SgdRecipe> airbench = make_airbench94_recipe({.batch_size = 4}, kTinyAirbench);
  try {
    airbench->load_state(file.path, stream());
    FAIL() << "loaded a seed checkpoint into airbench94";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("checkpoint of the recipe seed, not airbench94"), std::string::npos)
        << error.what();
  }
  EXPECT_THROW(seed->train_step(set.batch(0, 4), 1, stream()), std::logic_error);  // step 0 comes next
  EXPECT_THROW(make_recipe("vgg", {}), std::invalid_argument);
}

// --conv-math reaches every convolution of the net, nested ones included.
TEST_F(RecipeTest, ConvMathReachesEveryConvolution) {
  const std::unique_ptr<SgdRecipe> recipe =
      make_airbench94_recipe({.batch_size = 4, .conv_math = strata::kernels::ConvMath::tf32}, kTinyAirbench);
  int convs = 0;
  std::function<void(const nn::Module&)> visit = [&](const nn::Module& module) {
    for (const auto& [name, child] : module.named_children()) {
      if (const auto* conv = dynamic_cast<const nn::Conv2d*>(child.get())) {
        EXPECT_EQ(conv->math(), strata::kernels::ConvMath::tf32) << conv->path();
        ++convs;
      }
      visit(*child);
    }
  };
  visit(recipe->model());
  EXPECT_EQ(convs, 7);  // the whitening conv and two in each of the three groups
}

// The seed recipe learns the synthetic set in f32, and under autocast in bf16 and f16 (with
// loss scaling): the parameters stay f32 either way. The convolutions run on the CUDA-core
// kernels here: the simulated tensor cores would take the test from seconds to a minute, and
// the tensor-core kernels' reduced storage has tests of its own (conv2d_tensor_core_test.cpp).
class SeedRecipePrecisionTest : public RecipeTest, public ::testing::WithParamInterface<std::optional<DType>> {};

TEST_P(SeedRecipePrecisionTest, LearnsTheSyntheticSet) {
  constexpr int kBatch = 32, kImages = 192;
  const TinySet set(kImages);
  const std::optional<DType> precision = GetParam();
  const std::unique_ptr<SgdRecipe> recipe = make_seed_recipe(
      {.batch_size = kBatch,
       .epochs = 3,
       .seed = 1,
       .precision = precision},
      {.width1 = 8, .width2 = 16});
  EXPECT_EQ(recipe->grad_scaler() != nullptr, precision == DType::f16);
  recipe->initialise(set.images, stream());
  const std::int64_t total = recipe->total_steps(kImages / kBatch);
  run_steps(*recipe, set, kBatch, 0, total);
  recipe->finish(stream());
  const Tensor logits = recipe->evaluate_logits(set.images.normalised(0, kImages, Normalisation{}, stream()), false,
                                                stream());
  EXPECT_EQ(logits.dtype(), DType::f32) << "the driver reads them on the host as floats";
  const auto correct = static_cast<double>(count_correct(logits, set.images.labels()).to_vector<std::int64_t>()[0]);
  std::printf("seed recipe (%s): %.1f%% of the training images right after %lld steps\n",
              precision ? std::string(strata::dtype_name(*precision)).c_str() : "f32", 100.0 * correct / kImages,
              static_cast<long long>(total));
  EXPECT_GT(correct / kImages, 0.6) << "chance is 0.1";
  for (const Tensor& parameter : recipe->net().parameters()) EXPECT_EQ(parameter.dtype(), DType::f32);
}

INSTANTIATE_TEST_SUITE_P(Precisions, SeedRecipePrecisionTest,
                         ::testing::Values(std::nullopt, std::optional<DType>(DType::bf16),
                                           std::optional<DType>(DType::f16)),
                         [](const ::testing::TestParamInfo<std::optional<DType>>& param_info) {
                           return std::string(param_info.param ? strata::dtype_name(*param_info.param) : "f32");
                         });

// An f16 run's checkpoint holds the loss scaler's state: the resume continues bit-identically.
TEST_F(RecipeTest, SeedRecipeInF16ResumesBitIdenticallyWithItsLossScale) {
  const TinySet set(16);
  expect_exact_resume(
      [] {
        return make_seed_recipe({.batch_size = 8, .seed = 5, .precision = DType::f16}, {.width1 = 4, .width2 = 8});
      },
      set, 8, 3, 6);
}

TEST(SeedRecipe, PrecisionOtherThanBf16OrF16IsAClearError) {
  try {
    make_seed_recipe({.precision = DType::i32});
    FAIL() << "accepted i32";
  } catch (const std::invalid_argument& error) {
    EXPECT_NE(std::string(error.what()).find("bf16 or f16"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace cifar10
