// The engine parity report (strata/layers/engine_parity.h), tested where cuDNN is absent by
// its mechanics: custom against auto (which falls back to the same kernels) must give exact
// zeros for every layer and leave the model as it was; a layer whose result depends on its
// engine shows its difference in its own row only (each layer runs from the reference's input
// and upstream gradient); a candidate that throws is reported for its layer.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "strata/core/engine.h"
#include "strata/core/errors.h"
#include "strata/core/generator.h"
#include "strata/core/stream.h"
#include "strata/layers/engine_parity.h"
#include "strata/layers/functional.h"
#include "strata/layers/module.h"
#include "strata/layers/modules.h"
#include "tests/kernels/device_values.h"
#include "tests/support/device_test.h"

namespace strata {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::bit_patterns;
using testing::device_tensor;
using testing::random_uniform;

Tensor random_device(std::uint64_t seed, const Shape& shape) {
  return device_tensor(random_uniform(seed, static_cast<std::size_t>(shape.numel())), shape, current_stream());
}

std::vector<std::string> names_of(const nn::LayerParity& layer) {
  std::vector<std::string> names;
  for (const nn::TensorDifference& tensor : layer.tensors) names.push_back(tensor.name);
  return names;
}

// y = conv1x1(x, weight), scaled by 1 + kPerturbation when the layer's own engine is auto:
// an engine that differs from the reference by a known relative amount.
class EngineScaled : public nn::UnaryModule {
 public:
  static constexpr float kPerturbation = 1e-2f;

  explicit EngineScaled(std::int64_t channels) {
    weight_ = register_parameter("weight", random_device(77, {channels, channels, 1, 1}));
  }
  std::string type_name() const override { return "EngineScaled"; }

 protected:
  Tensor forward_impl(const Tensor& x) override {
    const Tensor y = F::conv2d(x, weight_, Tensor(), {}, Engine::custom);
    return engine_ == Engine::automatic ? F::mul(y, 1.0f + kPerturbation) : y;
  }
  bool take_engine(Engine engine) override {
    engine_ = engine;
    return true;
  }

 private:
  Tensor weight_;  // (C, C, 1, 1)
  std::optional<Engine> engine_;
};

class EngineParityTest : public testing::DeviceTest {
 protected:
  void SetUp() override {
    DeviceTest::SetUp();
    if (IsSkipped()) return;
    manual_seed(5);
  }

  // CrossEntropyLoss on fixed targets, as a training step would take it.
  std::function<Tensor(const Tensor&)> loss() {
    targets_ = Tensor::from_vector(std::vector<std::int64_t>{0, 3}, {2}).to_device(current_stream());
    return [this](const Tensor& logits) { return loss_fn_(logits, targets_); };
  }

  nn::CrossEntropyLoss loss_fn_;
  Tensor targets_;
};

TEST_F(EngineParityTest, IdenticalEnginesGiveZerosInEveryLayerAndLeaveTheModelAsItWas) {
  auto model = nn::Sequential(nn::Conv2d(3, 4, 3, {.padding = 1}), nn::BatchNorm2d(4), nn::ReLU(), nn::Dropout(0.5f),
                              nn::MaxPool2d(2), nn::Sequential(nn::Flatten(), nn::Linear(4 * 4 * 4, 5)));
  const Tensor x = random_device(1, {2, 3, 8, 8});  // (N, C, H, W)
  auto& batch_norm = model.at<nn::BatchNorm2d>(1);
  const auto running_mean = bit_patterns(batch_norm.running_mean().to_vector<float>(current_stream()));
  const GeneratorState generator = default_generator().state();
  // A gradient from before the report must survive it.
  Tensor conv_weight = model.at<nn::Conv2d>(0).weight();
  conv_weight.set_grad(Tensor::zeros(conv_weight.shape(), DType::f32, current_stream()));

  const nn::EngineParityReport report =
      nn::engine_parity(model, x, loss(), {.reference = Engine::custom, .candidate = Engine::automatic});

  ASSERT_EQ(report.layers.size(), 7u);
  std::vector<std::string> paths;
  for (const nn::LayerParity& layer : report.layers) {
    paths.push_back(layer.path);
    EXPECT_EQ(layer.error, "") << layer.path;
    for (const nn::TensorDifference& tensor : layer.tensors) {
      EXPECT_EQ(tensor.max_abs, 0.0) << layer.path << " " << tensor.name;
      EXPECT_EQ(tensor.problem, "") << layer.path << " " << tensor.name;
      // Every tensor compared is a real one: a report of zeros between empty tensors proves nothing.
      EXPECT_GT(tensor.reference_max_abs, 0.0) << layer.path << " " << tensor.name;
    }
  }
  EXPECT_THAT(paths, ElementsAre("0", "1", "2", "3", "4", "5.0", "5.1"));
  EXPECT_EQ(report.layers[0].type, "Conv2d");
  EXPECT_THAT(names_of(report.layers[0]), ElementsAre("output", "dL_dx", "weight.grad", "bias.grad"));
  EXPECT_THAT(names_of(report.layers[2]), ElementsAre("output", "dL_dx"));
  EXPECT_EQ(report.worst_rel(), 0.0);
  EXPECT_THAT(report.table(), HasSubstr("worst: max rel 0.00e+00"));

  EXPECT_EQ(bit_patterns(batch_norm.running_mean().to_vector<float>(current_stream())), running_mean);
  EXPECT_EQ(default_generator().state(), generator);
  ASSERT_TRUE(conv_weight.grad().defined());
  EXPECT_EQ(conv_weight.grad().to_vector<float>(current_stream()), std::vector<float>(conv_weight.numel(), 0.0f));
  EXPECT_FALSE(model.at<nn::Sequential>(5).at<nn::Linear>(1).weight().grad().defined());
  EXPECT_EQ(model.at<nn::Conv2d>(0).engine(), Engine::custom);  // set to the reference at the end
}

TEST_F(EngineParityTest, APerturbedLayerShowsItsDifferenceInItsOwnRowOnly) {
  auto model = nn::Sequential(nn::Conv2d(3, 4, 3, {.padding = 1}), EngineScaled(4), nn::ReLU(), nn::Flatten(),
                              nn::Linear(4 * 5 * 5, 5));
  const Tensor x = random_device(2, {2, 3, 5, 5});
  const nn::EngineParityOptions options{
      .reference = Engine::custom, .candidate = Engine::automatic, .engine_after = Engine::automatic};
  const nn::EngineParityReport report = nn::engine_parity(model, x, loss(), options);
  ASSERT_EQ(report.layers.size(), 5u);
  for (const std::size_t i : {0u, 2u, 3u, 4u}) EXPECT_EQ(report.layers[i].worst_rel(), 0.0) << report;
  const nn::LayerParity& scaled = report.layers[1];
  EXPECT_THAT(names_of(scaled), ElementsAre("output", "dL_dx", "weight.grad"));
  for (const nn::TensorDifference& tensor : scaled.tensors) {
    // candidate = (1 + p) * reference, so max |difference| / max |reference| = p, to fp32 rounding.
    EXPECT_NEAR(tensor.max_rel, EngineScaled::kPerturbation, 1e-5) << tensor.name;
    const double expected = EngineScaled::kPerturbation * tensor.reference_max_abs;
    EXPECT_NEAR(tensor.max_abs, expected, 1e-5 * tensor.reference_max_abs) << tensor.name;
  }
  EXPECT_NEAR(report.worst_rel(), EngineScaled::kPerturbation, 1e-5);
  EXPECT_THAT(report.table(), HasSubstr("worst: max rel 1.00e-02 at 1 (EngineScaled)"));
  EXPECT_EQ(model.at<nn::Conv2d>(0).engine(), Engine::automatic);  // engine_after
}

TEST_F(EngineParityTest, AnUpstreamGradientOfAModelThatIsOneLayer) {
  nn::Conv2d model(3, 2, 3);
  const Tensor x = random_device(3, {2, 3, 5, 5});
  const Tensor dL_dy = random_device(4, {2, 2, 3, 3});
  const nn::EngineParityReport report =
      nn::engine_parity(model, x, dL_dy, {.reference = Engine::custom, .candidate = Engine::automatic});
  ASSERT_EQ(report.layers.size(), 1u);
  EXPECT_EQ(report.layers[0].path, "(model)");
  EXPECT_EQ(report.layers[0].summary, "Conv2d 3->2, 3x3");
  EXPECT_EQ(report.worst_rel(), 0.0);
  EXPECT_THROW(nn::engine_parity(model, x, random_device(5, {2, 2, 4, 4})), InvalidArgument);
}

// Where cuDNN is absent, Engine::cudnn throws for the layers that have a cuDNN path: the
// report names them and goes on with the others.
TEST_F(EngineParityTest, ACandidateThatThrowsIsReportedForItsLayer) {
  if (cudnn_available()) GTEST_SKIP() << "cuDNN is available here";
  auto model = nn::Sequential(nn::Conv2d(3, 4, 3, {.padding = 1}), nn::Flatten(), nn::Linear(4 * 5 * 5, 5));
  const Tensor x = random_device(6, {2, 3, 5, 5});
  const nn::EngineParityReport report = nn::engine_parity(model, x, loss());
  ASSERT_EQ(report.layers.size(), 3u);
  EXPECT_THAT(report.layers[0].error, HasSubstr("cuDNN"));
  EXPECT_TRUE(report.layers[0].tensors.empty());
  EXPECT_TRUE(std::isinf(report.worst_rel()));
  EXPECT_EQ(report.layers[2].error, "");  // Linear has no cuDNN path: the custom kernels on both
  EXPECT_EQ(report.layers[2].worst_rel(), 0.0);
  EXPECT_THAT(report.table(), HasSubstr("worst: cudnn failed at 0 (Conv2d)"));
}

}  // namespace
}  // namespace strata
