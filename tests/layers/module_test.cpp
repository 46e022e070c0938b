// Module and Sequential with layers made for these tests: registration order and PyTorch's
// key names, paths of nested modules, the printed tree, train/eval, zero_grad, parameter
// handles, state dicts saved and loaded (and a failed load leaving the model untouched),
// and errors named once by the innermost module.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "strata/core/autograd.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/layers/functional.h"
#include "strata/layers/module.h"
#include "tests/kernels/device_values.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"

namespace strata::nn {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using ::testing::ThrowsMessage;
using ModuleTest = testing::DeviceTest;

Tensor random_device_tensor(std::uint64_t seed, const Shape& shape) {
  return testing::device_tensor(testing::random_uniform(seed, static_cast<std::size_t>(shape.numel())), shape,
                                current_stream());
}

// y (N, out) = x (N, in) weight^T + bias, with a buffer "calls" (), i64, as a stand-in for
// batch norm's counter; parameters from a given seed.
class TinyLinear : public UnaryModule {
 public:
  TinyLinear(std::int64_t in, std::int64_t out, std::uint64_t seed) : in_(in), out_(out) {
    weight_ = register_parameter("weight", random_device_tensor(seed, {out, in}));
    bias_ = register_parameter("bias", random_device_tensor(seed + 1, {out}));
    register_buffer("calls", Tensor::zeros(Shape(), DType::i64, current_stream()));
  }
  const Tensor& weight() const { return weight_; }
  std::string type_name() const override { return "TinyLinear"; }
  std::string extra_repr() const override {
    return "in_features=" + std::to_string(in_) + ", out_features=" + std::to_string(out_);
  }
  std::string summary() const override { return "TinyLinear " + std::to_string(in_) + "->" + std::to_string(out_); }

 protected:
  void check_input(const Tensor& x) const override {
    if (x.dim() != 2 || x.size(1) != in_) {
      throw InvalidArgument("expected " + std::to_string(in_) + " input features, got input " + x.shape().to_string());
    }
  }
  Tensor forward_impl(const Tensor& x) override { return F::linear(x, weight_, bias_); }

 private:
  std::int64_t in_;
  std::int64_t out_;
  Tensor weight_;
  Tensor bias_;
};

// No parameters; its forward hands the functional API mismatched shapes.
class Mismatch : public UnaryModule {
 public:
  std::string type_name() const override { return "Mismatch"; }

 protected:
  Tensor forward_impl(const Tensor& x) override { return F::add(x, F::flatten(x, 0)); }
};

class Identity : public UnaryModule {
 public:
  std::string type_name() const override { return "Identity"; }

 protected:
  Tensor forward_impl(const Tensor& x) override { return x; }
};

// A model with its own parameter (registered after a child: it still comes first, as in
// PyTorch), a Sequential holding a nested Sequential, and a head.
class Net : public Module {
 public:
  explicit Net(std::uint64_t seed, std::int64_t hidden = 4) {
    features_ = register_module(
        "features", std::make_shared<Sequential>(TinyLinear(3, hidden, seed), Identity(),
                                                 Sequential(TinyLinear(hidden, hidden, seed + 10), Identity())));
    temperature_ = register_parameter("temperature", random_device_tensor(seed + 20, {1}));
    head_ = register_module("head", std::make_shared<TinyLinear>(hidden, 2, seed + 30));
  }
  Tensor forward(const Tensor& x) {
    return run_forward([&] { return (*head_)(F::relu(features_->forward(x))); });
  }
  Sequential& features() { return *features_; }
  TinyLinear& head() { return *head_; }
  std::string type_name() const override { return "Net"; }

 private:
  std::shared_ptr<Sequential> features_;
  std::shared_ptr<TinyLinear> head_;
  Tensor temperature_;
};

std::vector<std::string> names_of(const NamedTensors& entries) {
  std::vector<std::string> names;
  for (const auto& entry : entries) names.push_back(entry.first);
  return names;
}

std::vector<float> values_of(const Tensor& tensor) { return tensor.to_vector<float>(current_stream()); }

TEST_F(ModuleTest, NamesFollowRegistrationOrderWithPyTorchKeys) {
  Net net(1);
  EXPECT_THAT(names_of(net.named_parameters()),
              ElementsAre("temperature", "features.0.weight", "features.0.bias", "features.2.0.weight",
                          "features.2.0.bias", "head.weight", "head.bias"));
  EXPECT_THAT(names_of(net.named_buffers()), ElementsAre("features.0.calls", "features.2.0.calls", "head.calls"));
  EXPECT_THAT(names_of(net.state_dict()),
              ElementsAre("temperature", "features.0.weight", "features.0.bias", "features.0.calls",
                          "features.2.0.weight", "features.2.0.bias", "features.2.0.calls", "head.weight",
                          "head.bias", "head.calls"));
  EXPECT_EQ(net.parameters().size(), 7u);
  EXPECT_EQ(net.state_dict()[3].second.dtype(), DType::i64);
}

TEST_F(ModuleTest, PathsFollowTheTreeIncludingModulesBuiltBeforeRegistration) {
  auto inner = Sequential(Identity(), Identity());
  EXPECT_EQ(inner[1].path(), "1");
  Net net(1);
  EXPECT_EQ(net.path(), "");
  EXPECT_EQ(net.features().path(), "features");
  EXPECT_EQ(net.features()[0].path(), "features.0");
  EXPECT_EQ(net.features().at<Sequential>(2)[0].path(), "features.2.0");
  EXPECT_EQ(net.head().path(), "head");
  EXPECT_EQ(net.features()[0].describe(), "features.0 (TinyLinear 3->4)");
  EXPECT_EQ(net.head().describe(), "head (TinyLinear 4->2)");
  EXPECT_EQ(TinyLinear(3, 4, 0).describe(), "TinyLinear 3->4");
}

TEST_F(ModuleTest, ReprIsPyTorchsTree) {
  Net net(1);
  const std::string expected =
      "Net(\n"
      "  (features): Sequential(\n"
      "    (0): TinyLinear(in_features=3, out_features=4)\n"
      "    (1): Identity()\n"
      "    (2): Sequential(\n"
      "      (0): TinyLinear(in_features=4, out_features=4)\n"
      "      (1): Identity()\n"
      "    )\n"
      "  )\n"
      "  (head): TinyLinear(in_features=4, out_features=2)\n"
      ")";
  EXPECT_EQ(net.repr(), expected);
  std::ostringstream printed;
  printed << net;
  EXPECT_EQ(printed.str(), expected);
  EXPECT_EQ(Sequential().repr(), "Sequential()");
}

TEST_F(ModuleTest, TrainAndEvalReachEveryDescendant) {
  Net net(1);
  EXPECT_TRUE(net.is_training());
  net.eval();
  EXPECT_FALSE(net.is_training());
  EXPECT_FALSE(net.features().is_training());
  EXPECT_FALSE(net.features().at<Sequential>(2)[0].is_training());
  EXPECT_FALSE(net.head().is_training());
  net.features().train();
  EXPECT_FALSE(net.is_training());
  EXPECT_TRUE(net.features().at<Sequential>(2)[1].is_training());
  EXPECT_FALSE(net.head().is_training());
  net.train();
  EXPECT_TRUE(net.head().is_training());
}

TEST_F(ModuleTest, ParameterHandlesShareStorageAndAutogradState) {
  TinyLinear layer(3, 4, 7);
  std::vector<Tensor> parameters = layer.parameters();
  ASSERT_EQ(parameters.size(), 2u);
  EXPECT_TRUE(parameters[0].shares_storage_with(layer.weight()));
  EXPECT_TRUE(layer.weight().requires_grad());
  parameters[0].set_requires_grad(false);
  EXPECT_FALSE(layer.weight().requires_grad());
}

TEST_F(ModuleTest, BackwardFillsEveryParameterAndZeroGradClearsOrZeroes) {
  Net net(2);
  const Tensor x = random_device_tensor(3, {2, 3});  // (N, in)
  Tensor y = net.forward(x);                          // (N, 2)
  // temperature takes part in no op: it stays without a gradient, as in PyTorch.
  y.backward(testing::device_tensor(std::vector<float>{1, -2, 0.5f, 3}, {2, 2}, current_stream()));
  for (const auto& [name, parameter] : net.named_parameters()) {
    EXPECT_EQ(parameter.grad().defined(), name != "temperature") << name;
  }
  net.zero_grad(/*set_to_none=*/false);
  for (const auto& [name, parameter] : net.named_parameters()) {
    if (name == "temperature") continue;
    ASSERT_TRUE(parameter.grad().defined()) << name;
    for (const float value : values_of(parameter.grad())) EXPECT_EQ(value, 0.0f) << name;
  }
  net.zero_grad();
  for (const Tensor& parameter : net.parameters()) EXPECT_FALSE(parameter.grad().defined());
}

TEST_F(ModuleTest, BackwardNodesAreNamedByModulePath) {
  Net net(2);
  const Tensor y = net.forward(random_device_tensor(3, {2, 3}));
  ASSERT_NE(y.grad_fn(), nullptr);
  EXPECT_EQ(y.grad_fn()->scope(), "head");
  EXPECT_EQ(autograd::current_scope(), "");
}

TEST_F(ModuleTest, SaveAndLoadRoundTrip) {
  const std::filesystem::path file = std::filesystem::temp_directory_path() / "strata_module_round_trip.safetensors";
  Net saved(5);
  saved.save(file);
  Net loaded(6);
  ASSERT_NE(values_of(loaded.head().weight()), values_of(saved.head().weight()));
  const SafetensorsLoadReport report = loaded.load(file);
  EXPECT_TRUE(report.missing_keys.empty());
  const NamedTensors expected = saved.state_dict();
  const NamedTensors actual = loaded.state_dict();
  ASSERT_EQ(actual.size(), expected.size());
  for (std::size_t i = 0; i < actual.size(); ++i) {
    if (actual[i].second.dtype() != DType::f32) continue;
    EXPECT_EQ(values_of(actual[i].second), values_of(expected[i].second)) << actual[i].first;
  }
  // The loaded tensors are the module's own: its forward now gives the saved model's output.
  const Tensor x = random_device_tensor(9, {2, 3});
  EXPECT_EQ(values_of(loaded.forward(x)), values_of(saved.forward(x)));
  std::filesystem::remove(file);
}

TEST_F(ModuleTest, FailedLoadNamesTheMismatchAndLeavesTheModelUntouched) {
  const std::filesystem::path file = std::filesystem::temp_directory_path() / "strata_module_mismatch.safetensors";
  Net(5, /*hidden=*/4).save(file);
  Net other(6, /*hidden=*/5);
  std::vector<std::vector<float>> before;
  for (const Tensor& parameter : other.parameters()) before.push_back(values_of(parameter));
  EXPECT_THAT([&] { other.load(file); }, ThrowsMessage<IoError>(HasSubstr("features.0.weight")));
  std::vector<std::vector<float>> after;
  for (const Tensor& parameter : other.parameters()) after.push_back(values_of(parameter));
  EXPECT_EQ(after, before);
  std::filesystem::remove(file);
}

TEST_F(ModuleTest, NonStrictLoadReportsMissingKeys) {
  const std::filesystem::path file = std::filesystem::temp_directory_path() / "strata_module_partial.safetensors";
  TinyLinear(4, 2, 5).save(file);
  Net net(6);
  EXPECT_THAT([&] { net.load(file); }, ThrowsMessage<IoError>(HasSubstr("temperature")));
  // The file's keys have no prefix, so non-strict loading matches nothing of net.
  const SafetensorsLoadReport report = net.load(file, /*strict=*/false);
  EXPECT_EQ(report.missing_keys.size(), 10u);
  EXPECT_THAT(report.unexpected_keys, ElementsAre("bias", "calls", "weight"));
  std::filesystem::remove(file);
}

TEST_F(ModuleTest, LoadStateDictCopiesFromMemoryAllOrNothing) {
  Net source(5);
  Net target(6);
  target.load_state_dict(source.state_dict());
  const Tensor x = random_device_tensor(9, {2, 3});
  EXPECT_EQ(values_of(target.forward(x)), values_of(source.forward(x)));

  // One host tensor of the wrong shape, one missing key: both named, nothing copied.
  Net other(7);
  NamedTensors state = other.state_dict();
  const std::vector<float> before = values_of(target.head().weight());
  state.front().second = Tensor::empty_host({1, 1, 1}, DType::f32);
  state.pop_back();
  EXPECT_THAT([&] { target.load_state_dict(state); },
              ThrowsMessage<InvalidArgument>(AllOf(HasSubstr("does not match the"), HasSubstr("missing from them"),
                                                   HasSubstr("dtype or shape differs for"))));
  EXPECT_EQ(values_of(target.head().weight()), before);
}

std::string error_of(Net& net, const Tensor& x) {
  return testing::invalid_argument_message([&] { net.forward(x); });
}

TEST_F(ModuleTest, InputErrorsNameTheInnermostModuleOnce) {
  Net net(1);
  const std::string message = error_of(net, random_device_tensor(1, {2, 5}));
  EXPECT_THAT(message, StartsWith("features.0 (TinyLinear 3->4): expected 3 input features, got input (2, 5)"));
  EXPECT_THAT(message, Not(HasSubstr("Net")));
  EXPECT_THAT(message, Not(HasSubstr("(Sequential)")));
  const Tensor four_features = Tensor::zeros({2, 4}, DType::f32, current_stream());
  EXPECT_THAT(testing::invalid_argument_message([&] { TinyLinear(3, 4, 0)(four_features); }),
              StartsWith("TinyLinear 3->4: expected 3 input features, got input (2, 4)"));
  EXPECT_THAT(testing::invalid_argument_message([] { TinyLinear(3, 4, 0)(Tensor()); }),
              StartsWith("TinyLinear 3->4: the input is undefined"));
}

TEST_F(ModuleTest, FunctionalErrorsInsideAForwardArePrefixedOnce) {
  auto model = Sequential(Identity(), Sequential(Identity(), Mismatch()));
  const std::string message =
      testing::invalid_argument_message([&] { model(random_device_tensor(1, {2, 3})); });
  EXPECT_THAT(message, StartsWith("1.1 (Mismatch): "));
  EXPECT_THAT(message, HasSubstr("(2, 3)"));
  EXPECT_EQ(message.find("Mismatch", 10), std::string::npos) << message;
  EXPECT_THAT(message, Not(HasSubstr("Sequential")));
}

TEST_F(ModuleTest, SequentialChainsIndexesAndTypes) {
  Sequential model(TinyLinear(3, 4, 1), Identity());
  model.push_back(TinyLinear(4, 2, 2));
  ASSERT_EQ(model.size(), 3u);
  EXPECT_EQ(model[2].path(), "2");
  EXPECT_EQ(model.at<TinyLinear>(2).weight().shape(), Shape({2, 4}));
  EXPECT_THAT([&] { model.at<TinyLinear>(1); },
              ThrowsMessage<InvalidArgument>(HasSubstr("layer 1 (Identity) is not of the type asked for")));
  EXPECT_THAT([&] { (void)model[3]; },
              ThrowsMessage<InvalidArgument>(HasSubstr("no layer 3 in a Sequential of 3 layers")));

  const Tensor x = random_device_tensor(4, {2, 3});
  const Tensor by_hand = model.at<TinyLinear>(2)(model[1](model[0](x)));
  EXPECT_EQ(values_of(model(x)), values_of(by_hand));
  EXPECT_EQ(values_of(Sequential()(x)), values_of(x));
}

TEST_F(ModuleTest, ASharedModuleCountsOnce) {
  auto shared = std::make_shared<TinyLinear>(3, 3, 1);
  Sequential model(shared, Identity(), shared);
  EXPECT_THAT(names_of(model.named_parameters()), ElementsAre("0.weight", "0.bias"));
  EXPECT_EQ(model.parameters().size(), 2u);
  EXPECT_EQ(model.state_dict().size(), 6u);  // as PyTorch's state_dict: under both names
}

TEST_F(ModuleTest, RegistrationRejectsBadAndRepeatedNames) {
  class Bad : public UnaryModule {
   public:
    explicit Bad(const std::string& second_name) {
      register_parameter("weight", Tensor::zeros({1}, DType::f32, current_stream()));
      register_buffer(second_name, Tensor::zeros({1}, DType::f32, current_stream()));
    }
    std::string type_name() const override { return "Bad"; }

   protected:
    Tensor forward_impl(const Tensor& x) override { return x; }
  };
  EXPECT_THAT([] { Bad("weight"); }, ThrowsMessage<InvalidArgument>(HasSubstr("'weight': the name is already taken")));
  EXPECT_THAT([] { Bad("a.b"); }, ThrowsMessage<InvalidArgument>(HasSubstr("contain no '.'")));
  EXPECT_THAT([] { Bad(""); }, ThrowsMessage<InvalidArgument>(HasSubstr("must be non-empty")));
}

}  // namespace
}  // namespace strata::nn
