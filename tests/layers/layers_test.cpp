// Every layer of strata/layers/modules.h: output shapes, forward equal to the F:: call it
// wraps (bit for bit: the same kernels run), parameters and buffers with PyTorch's names
// and initial values, repr as PyTorch prints it, eval mode of BatchNorm2d and Dropout,
// gradients through Residual and Concat, a whole network's backward reaching every
// parameter, the error that names a misconfigured layer, and manual_seed reproducibility.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "strata/core/errors.h"
#include "strata/core/generator.h"
#include "strata/core/stream.h"
#include "strata/layers/functional.h"
#include "strata/layers/modules.h"
#include "tests/kernels/device_values.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"

namespace strata::nn {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using ::testing::ThrowsMessage;
using LayersTest = testing::DeviceTest;

Tensor random_device_tensor(std::uint64_t seed, const Shape& shape) {
  return testing::device_tensor(testing::random_uniform(seed, static_cast<std::size_t>(shape.numel())), shape,
                                current_stream());
}

std::vector<float> values_of(const Tensor& tensor) { return tensor.to_vector<float>(current_stream()); }

std::vector<std::string> names_of(const NamedTensors& entries) {
  std::vector<std::string> names;
  for (const auto& entry : entries) names.push_back(entry.first);
  return names;
}

TEST_F(LayersTest, Conv2dMatchesFunctionalWithPyTorchsParameters) {
  Conv2d conv(3, 4, 3, {.stride = {2, 1}, .padding = 1});
  EXPECT_THAT(names_of(conv.named_parameters()), ElementsAre("weight", "bias"));
  EXPECT_EQ(conv.weight().shape(), Shape({4, 3, 3, 3}));
  EXPECT_EQ(conv.bias().shape(), Shape({4}));
  EXPECT_TRUE(conv.weight().requires_grad());
  // PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 27.
  for (const float w : values_of(conv.weight())) EXPECT_LE(std::abs(w), 1.0f / std::sqrt(27.0f));

  const Tensor x = random_device_tensor(1, {2, 3, 7, 5});  // (N, C, H, W)
  const Tensor y = conv(x);
  EXPECT_EQ(y.shape(), Shape({2, 4, 4, 5}));
  EXPECT_EQ(values_of(y), values_of(F::conv2d(x, conv.weight(), conv.bias(), conv.params())));
  EXPECT_EQ(conv.repr(), "Conv2d(3, 4, kernel_size=(3, 3), stride=(2, 1), padding=(1, 1))");

  Conv2d plain(4, 8, {1, 3}, {.dilation = 2, .groups = 2, .bias = false});
  EXPECT_THAT(names_of(plain.named_parameters()), ElementsAre("weight"));
  EXPECT_FALSE(plain.bias().defined());
  EXPECT_EQ(plain.repr(), "Conv2d(4, 8, kernel_size=(1, 3), stride=(1, 1), dilation=(2, 2), groups=2, bias=False)");
  EXPECT_THAT([] { Conv2d(3, 4, 3, {.groups = 2}); },
              ThrowsMessage<InvalidArgument>(HasSubstr("groups (2) must divide in_channels (3)")));
}

// A model whose fourth feature layer expects other channels than it gets.
class Misconfigured : public Module {
 public:
  Misconfigured()
      : features_(register_module("features", std::make_shared<Sequential>(Conv2d(3, 8, 3, {.padding = 1}), ReLU(),
                                                                           MaxPool2d(2), Conv2d(4, 16, 3)))) {}
  Tensor forward(const Tensor& x) { return run_forward([&] { return features_->forward(x); }); }
  std::string type_name() const override { return "Misconfigured"; }

 private:
  std::shared_ptr<Sequential> features_;
};

TEST_F(LayersTest, ABadChannelCountNamesTheLayerOnce) {
  Misconfigured model;
  const Tensor x = random_device_tensor(2, {2, 3, 8, 8});
  const std::string message = testing::invalid_argument_message([&] { model.forward(x); });
  EXPECT_THAT(message, StartsWith("features.3 (Conv2d 4->16, 3x3): expected 4 input channels, got input (2, 8, 4, 4)"));
  EXPECT_EQ(message.find("Conv2d", 20), std::string::npos) << message;
  EXPECT_EQ(message.find("features", 5), std::string::npos) << message;
}

TEST_F(LayersTest, LinearMatchesFunctional) {
  Linear linear(5, 3);
  EXPECT_THAT(names_of(linear.named_parameters()), ElementsAre("weight", "bias"));
  EXPECT_EQ(linear.weight().shape(), Shape({3, 5}));
  const Tensor x = random_device_tensor(3, {2, 5});
  const Tensor y = linear(x);
  EXPECT_EQ(y.shape(), Shape({2, 3}));
  EXPECT_EQ(values_of(y), values_of(F::linear(x, linear.weight(), linear.bias())));
  EXPECT_EQ(linear.repr(), "Linear(in_features=5, out_features=3, bias=True)");
  EXPECT_EQ(Linear(5, 3, {.bias = false}).repr(), "Linear(in_features=5, out_features=3, bias=False)");
  EXPECT_THAT(testing::invalid_argument_message([&] { linear(random_device_tensor(3, {2, 4})); }),
              StartsWith("Linear 5->3: expected 5 input features (the last dimension), got input (2, 4)"));
}

TEST_F(LayersTest, PoolingShapesValuesAndRepr) {
  const Tensor x = random_device_tensor(4, {2, 3, 8, 7});  // (N, C, H, W)
  MaxPool2d max_pool(2);
  EXPECT_EQ(max_pool(x).shape(), Shape({2, 3, 4, 3}));
  EXPECT_EQ(values_of(max_pool(x)), values_of(F::max_pool2d(x, max_pool.params())));
  EXPECT_EQ(max_pool.repr(), "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)");
  EXPECT_EQ(MaxPool2d({3, 3}, {.stride = {2, 1}, .padding = 1, .ceil_mode = true}).repr(),
            "MaxPool2d(kernel_size=(3, 3), stride=(2, 1), padding=1, dilation=1, ceil_mode=True)");

  AvgPool2d avg_pool(3, {.stride = 2, .padding = 1, .count_include_pad = false});
  EXPECT_EQ(avg_pool(x).shape(), Shape({2, 3, 4, 4}));
  EXPECT_EQ(values_of(avg_pool(x)), values_of(F::avg_pool2d(x, avg_pool.params())));
  EXPECT_EQ(avg_pool.repr(), "AvgPool2d(kernel_size=3, stride=2, padding=1)");

  AdaptiveAvgPool2d adaptive_avg(7);
  for (const Shape& shape : {Shape{2, 3, 9, 8}, Shape{1, 2, 5, 3}, Shape{2, 1, 7, 7}}) {
    EXPECT_EQ(adaptive_avg(random_device_tensor(5, shape)).shape(), Shape({shape[0], shape[1], 7, 7}));
  }
  EXPECT_EQ(values_of(adaptive_avg(x)), values_of(F::adaptive_avg_pool2d(x, {7, 7})));
  EXPECT_EQ(adaptive_avg.repr(), "AdaptiveAvgPool2d(output_size=7)");

  AdaptiveMaxPool2d adaptive_max({1, 2});
  EXPECT_EQ(adaptive_max(x).shape(), Shape({2, 3, 1, 2}));
  EXPECT_EQ(values_of(adaptive_max(x)), values_of(F::adaptive_max_pool2d(x, {1, 2})));
  EXPECT_EQ(adaptive_max.repr(), "AdaptiveMaxPool2d(output_size=(1, 2))");

  EXPECT_THAT(testing::invalid_argument_message([&] { max_pool(random_device_tensor(3, {2, 4})); }),
              StartsWith("MaxPool2d 2x2: expected a 4-D input (N, C, H, W), got input (2, 4)"));
}

TEST_F(LayersTest, ElementWiseLayersMatchFunctional) {
  const Tensor x = random_device_tensor(6, {2, 3, 4, 5});
  EXPECT_EQ(values_of(ReLU()(x)), values_of(F::relu(x)));
  EXPECT_EQ(values_of(GELU()(x)), values_of(F::gelu(x)));
  EXPECT_EQ(values_of(GELU({.approximate = GeluApproximation::tanh})(x)),
            values_of(F::gelu(x, GeluApproximation::tanh)));
  EXPECT_EQ(values_of(Scale(1.0f / 9)(x)), values_of(F::mul(x, 1.0f / 9)));
  EXPECT_EQ(Flatten()(x).shape(), Shape({2, 60}));
  EXPECT_EQ(Flatten(2)(x).shape(), Shape({2, 3, 20}));
  EXPECT_EQ(values_of(Flatten()(x)), values_of(x));

  EXPECT_EQ(ReLU().repr(), "ReLU()");
  EXPECT_EQ(GELU().repr(), "GELU(approximate='none')");
  EXPECT_EQ(GELU({.approximate = GeluApproximation::tanh}).repr(), "GELU(approximate='tanh')");
  EXPECT_EQ(Scale(1.0f / 9).repr(), "Scale(factor=0.11111111)");
  EXPECT_EQ(Scale(2).repr(), "Scale(factor=2.0)");
  EXPECT_EQ(Flatten().repr(), "Flatten(start_dim=1, end_dim=-1)");
  EXPECT_EQ(Dropout().repr(), "Dropout(p=0.5, inplace=False)");
  EXPECT_THAT([] { Dropout(1.5f); }, ThrowsMessage<InvalidArgument>(HasSubstr("p must be between 0 and 1")));
}

TEST_F(LayersTest, DropoutDropsInTrainingOnly) {
  const Tensor x = testing::device_tensor(std::vector<float>(64, 1.0f), {2, 32}, current_stream());
  Dropout dropout(0.5f);
  const std::vector<float> trained = values_of(dropout(x));
  int dropped = 0;
  for (const float value : trained) {
    EXPECT_TRUE(value == 0.0f || value == 2.0f) << value;
    dropped += value == 0.0f ? 1 : 0;
  }
  EXPECT_GT(dropped, 10);
  EXPECT_LT(dropped, 54);
  dropout.eval();
  EXPECT_THAT(values_of(dropout(x)), Each(1.0f));
}

TEST_F(LayersTest, BatchNorm2dStateTrainingAndEval) {
  BatchNorm2d bn(3);
  EXPECT_THAT(names_of(bn.named_parameters()), ElementsAre("weight", "bias"));
  EXPECT_THAT(names_of(bn.named_buffers()), ElementsAre("running_mean", "running_var", "num_batches_tracked"));
  EXPECT_THAT(values_of(bn.weight()), Each(1.0f));
  EXPECT_THAT(values_of(bn.bias()), Each(0.0f));
  EXPECT_THAT(values_of(bn.running_mean()), Each(0.0f));
  EXPECT_THAT(values_of(bn.running_var()), Each(1.0f));
  EXPECT_EQ(bn.num_batches_tracked().dtype(), DType::i64);
  EXPECT_EQ(bn.num_batches_tracked().shape(), Shape());
  EXPECT_EQ(bn.repr(), "BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");

  const Tensor x = random_device_tensor(7, {2, 3, 3, 2});
  const Tensor y = bn(x);
  bn(x);
  EXPECT_EQ(bn.num_batches_tracked().to_vector<std::int64_t>(current_stream()), std::vector<std::int64_t>{2});
  EXPECT_NE(values_of(bn.running_mean()), std::vector<float>(3, 0.0f));
  // Training normalises with the batch statistics: what F:: gives without running stats.
  kernels::BatchNormRunningStats untracked;
  EXPECT_EQ(values_of(y), values_of(F::batch_norm2d(x, bn.weight(), bn.bias(), untracked, true)));

  bn.eval();
  const std::vector<float> running_mean = values_of(bn.running_mean());
  kernels::BatchNormRunningStats running{bn.running_mean(), bn.running_var()};
  EXPECT_EQ(values_of(bn(x)), values_of(F::batch_norm2d(x, bn.weight(), bn.bias(), running, false)));
  EXPECT_EQ(values_of(bn.running_mean()), running_mean);
  EXPECT_EQ(bn.num_batches_tracked().to_vector<std::int64_t>(current_stream()), std::vector<std::int64_t>{2});

  BatchNorm2d bias_only(3, {.affine = BatchNormAffine::bias_only, .track_running_stats = false});
  EXPECT_THAT(names_of(bias_only.state_dict()), ElementsAre("bias"));
  EXPECT_EQ(bias_only.repr(),
            "BatchNorm2d(3, eps=1e-05, momentum=0.1, affine='bias_only', track_running_stats=False)");
  bias_only.eval();  // without running statistics, eval still normalises with the batch's
  EXPECT_EQ(values_of(bias_only(x)), values_of(F::batch_norm2d(x, Tensor(), bias_only.bias(), untracked, true,
                                                               {.affine = BatchNormAffine::bias_only})));
  EXPECT_THAT(testing::invalid_argument_message([&] { bn(random_device_tensor(3, {2, 4, 3, 3})); }),
              StartsWith("BatchNorm2d 3: expected 3 channels, got input (2, 4, 3, 3)"));
}

TEST_F(LayersTest, ResidualAddsTheShortcutAndItsGradient) {
  const Tensor x = random_device_tensor(8, {2, 3, 2, 2}).set_requires_grad();
  Residual identity_shortcut(Scale(2));
  const Tensor y = identity_shortcut(x);  // 3x
  std::vector<float> expected = values_of(x);
  for (float& value : expected) value *= 3;
  EXPECT_EQ(values_of(y), expected);
  y.backward(testing::device_tensor(std::vector<float>(24, 1.0f), y.shape(), current_stream()));
  EXPECT_THAT(values_of(x.grad()), Each(3.0f));

  Residual projected(Sequential(Conv2d(3, 4, 1), ReLU()), Conv2d(3, 4, 1, {.bias = false}));
  EXPECT_EQ(projected.repr(),
            "Residual(\n"
            "  (body): Sequential(\n"
            "    (0): Conv2d(3, 4, kernel_size=(1, 1), stride=(1, 1))\n"
            "    (1): ReLU()\n"
            "  )\n"
            "  (shortcut): Conv2d(3, 4, kernel_size=(1, 1), stride=(1, 1), bias=False)\n"
            ")");
  const Tensor z = projected(x);
  EXPECT_EQ(z.shape(), Shape({2, 4, 2, 2}));
  z.backward(testing::device_tensor(std::vector<float>(32, 1.0f), z.shape(), current_stream()));
  EXPECT_THAT(names_of(projected.named_parameters()), ElementsAre("body.0.weight", "body.0.bias", "shortcut.weight"));
  for (const auto& [name, parameter] : projected.named_parameters()) EXPECT_TRUE(parameter.grad().defined()) << name;
}

TEST_F(LayersTest, ConcatJoinsBranchesAndSplitsTheGradient) {
  const Tensor x = random_device_tensor(9, {2, 3, 2, 2}).set_requires_grad();
  Concat concat({Scale(2), Scale(3)});
  const Tensor y = concat(x);
  EXPECT_EQ(y.shape(), Shape({2, 6, 2, 2}));
  const std::vector<Tensor> parts{F::mul(x, 2), F::mul(x, 3)};
  EXPECT_EQ(values_of(y), values_of(F::cat(parts, 1)));
  y.backward(testing::device_tensor(std::vector<float>(48, 1.0f), y.shape(), current_stream()));
  EXPECT_THAT(values_of(x.grad()), Each(5.0f));
  EXPECT_EQ(concat.repr(),
            "Concat(\n"
            "  dim=1\n"
            "  (0): Scale(factor=2.0)\n"
            "  (1): Scale(factor=3.0)\n"
            ")");
  EXPECT_EQ(concat.named_children()[1].second->path(), "1");
  EXPECT_THAT([] { Concat({}); }, ThrowsMessage<InvalidArgument>(HasSubstr("at least one branch")));
}

TEST_F(LayersTest, CrossEntropyLossMatchesFunctionalAndReportsBadTargets) {
  CrossEntropyLoss loss_fn({.label_smoothing = 0.1f});
  const Tensor logits = random_device_tensor(10, {3, 4});
  const Tensor targets = testing::device_tensor(std::vector<std::int64_t>{0, 3, 1}, {3}, current_stream());
  EXPECT_EQ(values_of(loss_fn(logits, targets)),
            values_of(F::cross_entropy(logits, targets, {.label_smoothing = 0.1f})));
  loss_fn.check_targets();
  EXPECT_EQ(loss_fn.repr(), "CrossEntropyLoss()");

  const Tensor bad = testing::device_tensor(std::vector<std::int64_t>{0, 4, 1}, {3}, current_stream());
  loss_fn(logits, bad);
  EXPECT_THAT([&] { loss_fn.check_targets(); }, ThrowsMessage<InvalidArgument>(HasSubstr("CrossEntropyLoss: ")));
  loss_fn.check_targets();  // reported once
  EXPECT_THAT(testing::invalid_argument_message([&] { loss_fn(logits, random_device_tensor(1, {3})); }),
              StartsWith("CrossEntropyLoss: "));
}

TEST_F(LayersTest, ANetworkTrainsEveryParameterAndPrintsAsPyTorch) {
  Sequential model(Conv2d(3, 4, 3, {.padding = 1}), BatchNorm2d(4), ReLU(), MaxPool2d(2),
                   Residual(Sequential(Conv2d(4, 4, 3, {.padding = 1, .bias = false}), GELU())),
                   AdaptiveAvgPool2d(1), Flatten(), Linear(4, 3), Scale(1.0f / 9));
  EXPECT_EQ(model.repr(),
            "Sequential(\n"
            "  (0): Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))\n"
            "  (1): BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
            "  (2): ReLU()\n"
            "  (3): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)\n"
            "  (4): Residual(\n"
            "    (body): Sequential(\n"
            "      (0): Conv2d(4, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)\n"
            "      (1): GELU(approximate='none')\n"
            "    )\n"
            "  )\n"
            "  (5): AdaptiveAvgPool2d(output_size=1)\n"
            "  (6): Flatten(start_dim=1, end_dim=-1)\n"
            "  (7): Linear(in_features=4, out_features=3, bias=True)\n"
            "  (8): Scale(factor=0.11111111)\n"
            ")");
  EXPECT_THAT(names_of(model.state_dict()),
              ElementsAre("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                          "1.num_batches_tracked", "4.body.0.weight", "7.weight", "7.bias"));

  CrossEntropyLoss loss_fn;
  const Tensor x = random_device_tensor(11, {2, 3, 6, 5});
  const Tensor targets = testing::device_tensor(std::vector<std::int64_t>{2, 0}, {2}, current_stream());
  const Tensor loss = loss_fn(model(x), targets);
  EXPECT_EQ(loss.shape(), Shape());
  loss.backward();
  for (const auto& [name, parameter] : model.named_parameters()) {
    ASSERT_TRUE(parameter.grad().defined()) << name;
    bool nonzero = false;
    for (const float value : values_of(parameter.grad())) nonzero = nonzero || value != 0.0f;
    EXPECT_TRUE(nonzero) << name;
  }
}

TEST_F(LayersTest, ManualSeedMakesModelsReproducible) {
  const auto build = [] { return Sequential(Conv2d(3, 4, 3), Linear(4, 2)); };
  manual_seed(42);
  Sequential first = build();
  manual_seed(42);
  Sequential second = build();
  Sequential third = build();
  for (std::size_t i = 0; i < first.parameters().size(); ++i) {
    EXPECT_EQ(values_of(first.parameters()[i]), values_of(second.parameters()[i])) << i;
    EXPECT_NE(values_of(first.parameters()[i]), values_of(third.parameters()[i])) << i;
  }
  // Two layers of one shape in one model differ.
  manual_seed(42);
  Sequential twins(Linear(4, 2), Linear(4, 2));
  EXPECT_NE(values_of(twins.at<Linear>(0).weight()), values_of(twins.at<Linear>(1).weight()));
}

}  // namespace
}  // namespace strata::nn
