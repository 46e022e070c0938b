// Initialisers: fans, gains and scales against PyTorch (golden/init.txt, exact in double),
// the distributions they draw (bounds, mean and standard deviation on large tensors; the
// values themselves come from Strata's Philox stream, not PyTorch's generator), PyTorch's
// default Conv2d/Linear initialisation against a host recomputation of the stream, Dirac
// weights exactly (and as an identity convolution), device against host, determinism and
// the errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "strata/core/errors.h"
#include "strata/core/philox.h"
#include "strata/core/stream.h"
#include "strata/kernels/conv2d.h"
#include "strata/layers/init.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"
#include "tests/support/golden.h"

namespace strata::init {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
using InitTest = testing::DeviceTest;

Shape shape_of(const std::vector<std::int64_t>& dims) { return Shape(std::span<const std::int64_t>(dims)); }

// "kaiming_uniform/relu/fan_in/0" -> {"kaiming_uniform", "relu", "fan_in", "0"}.
std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts(1);
  for (char c : text) {
    if (c == separator) {
      parts.emplace_back();
    } else {
      parts.back() += c;
    }
  }
  return parts;
}

Nonlinearity nonlinearity_named(const std::string& name) {
  for (int i = 0; i <= static_cast<int>(Nonlinearity::selu); ++i) {
    const auto nonlinearity = static_cast<Nonlinearity>(i);
    if (nonlinearity_name(nonlinearity) == name) return nonlinearity;
  }
  ADD_FAILURE() << "no nonlinearity named " << name;
  return Nonlinearity::linear;
}

std::vector<testing::GoldenCase> golden_cases(const std::string& prefix) {
  static const std::vector<testing::GoldenCase> all = testing::read_golden("init.txt");
  std::vector<testing::GoldenCase> selected;
  for (const testing::GoldenCase& golden : all) {
    if (golden.name.rfind(prefix, 0) == 0) selected.push_back(golden);
  }
  EXPECT_FALSE(selected.empty()) << "no golden case starts with " << prefix;
  return selected;
}

Tensor poisoned_host(const Shape& shape) {
  return Tensor::from_vector(std::vector<float>(static_cast<std::size_t>(shape.numel()), testing::poison_value()),
                             shape);
}

Tensor poisoned_device(const Shape& shape, cudaStream_t stream) { return poisoned_host(shape).to_device(stream); }

struct Moments {
  double mean;
  double stddev;
  double max_abs;  // infinity when a value is not finite (an unwritten poisoned element)
};

Moments moments(const std::vector<float>& values) {
  double sum = 0.0, sum_squares = 0.0, max_abs = 0.0;
  for (float v : values) sum += v;
  const double mean = sum / static_cast<double>(values.size());
  for (float v : values) {
    sum_squares += (v - mean) * (v - mean);
    max_abs = std::isfinite(v) ? std::max(max_abs, std::abs(static_cast<double>(v))) : INFINITY;
  }
  return {mean, std::sqrt(sum_squares / static_cast<double>(values.size() - 1)), max_abs};
}

TEST(InitFans, MatchPyTorch) {
  for (const testing::GoldenCase& golden : golden_cases("fans/")) {
    const Shape shape = shape_of(golden.ints_of("shape"));
    SCOPED_TRACE(shape.to_string());
    const Fans fans = calculate_fans(shape);
    EXPECT_EQ(fans.fan_in, golden.int_of("fan_in"));
    EXPECT_EQ(fans.fan_out, golden.int_of("fan_out"));
  }
  const Fans conv = calculate_fans({16, 8, 3, 5});  // (K, C, R, S)
  EXPECT_EQ(conv.fan_in, 8 * 15);
  EXPECT_EQ(conv.fan_out, 16 * 15);
}

TEST(InitGains, MatchPyTorch) {
  const testing::GoldenCase gains = golden_cases("gains").at(0);
  EXPECT_EQ(gains.floats.size(), 15u);
  for (const auto& [key, expected] : gains.floats) {
    SCOPED_TRACE(key);
    const std::vector<std::string> parts = split(key, '/');
    const Nonlinearity nonlinearity = nonlinearity_named(parts[0]);
    const double gain =
        parts.size() == 1 ? calculate_gain(nonlinearity) : calculate_gain(nonlinearity, std::stod(parts[1]));
    EXPECT_EQ(gain, expected);
  }
  EXPECT_EQ(calculate_gain(Nonlinearity::relu), std::sqrt(2.0));
  EXPECT_EQ(calculate_gain(Nonlinearity::leaky_relu, 0.0), std::sqrt(2.0));
  EXPECT_EQ(calculate_gain(Nonlinearity::tanh, 123.0), 5.0 / 3);  // the slope matters to leaky_relu only
}

// The bounds and standard deviations PyTorch passed to uniform_/normal_, to the last bit;
// every drawn value lies within the bound.
TEST(InitScales, KaimingAndXavierMatchPyTorch) {
  std::vector<testing::GoldenCase> cases = golden_cases("kaiming_");
  const std::vector<testing::GoldenCase> xavier = golden_cases("xavier_");
  cases.insert(cases.end(), xavier.begin(), xavier.end());
  std::uint64_t seed = 100;
  for (const testing::GoldenCase& golden : cases) {
    SCOPED_TRACE(golden.name);
    const Shape shape = shape_of(golden.ints_of("shape"));
    const std::vector<std::string> parts = split(golden.name, '/');
    Tensor tensor = poisoned_host(shape);
    double bound = 0.0;
    if (parts[0].rfind("kaiming_", 0) == 0) {
      const KaimingParams params{.a = golden.float_of("a"),
                                 .mode = parts[2] == "fan_out" ? FanMode::fan_out : FanMode::fan_in,
                                 .nonlinearity = nonlinearity_named(parts[1]),
                                 .seed = seed++};
      if (parts[0] == "kaiming_uniform") {
        bound = kaiming_uniform_bound(shape, params);
        EXPECT_EQ(bound, golden.float_of("bound"));
        kaiming_uniform_(tensor, params, nullptr);
      } else {
        EXPECT_EQ(kaiming_std(shape, params), golden.float_of("std"));
        kaiming_normal_(tensor, params, nullptr);
        bound = 6.0 * kaiming_std(shape, params);  // six sigma: a bound on the few values drawn here
      }
    } else {
      const XavierParams params{.gain = golden.float_of("gain"), .seed = seed++};
      if (parts[0] == "xavier_uniform") {
        bound = xavier_uniform_bound(shape, params);
        EXPECT_EQ(bound, golden.float_of("bound"));
        xavier_uniform_(tensor, params, nullptr);
      } else {
        EXPECT_EQ(xavier_std(shape, params), golden.float_of("std"));
        xavier_normal_(tensor, params, nullptr);
        bound = 6.0 * xavier_std(shape, params);
      }
    }
    EXPECT_LE(moments(tensor.to_vector<float>()).max_abs, static_cast<float>(bound));
  }
}

TEST(InitScales, DefaultConvAndLinearBoundsMatchPyTorch) {
  std::vector<testing::GoldenCase> cases = golden_cases("default_conv2d/");
  const std::vector<testing::GoldenCase> linear = golden_cases("default_linear/");
  cases.insert(cases.end(), linear.begin(), linear.end());
  for (const testing::GoldenCase& golden : cases) {
    SCOPED_TRACE(golden.name);
    const Shape shape = shape_of(golden.ints_of("shape"));
    EXPECT_EQ(kaiming_uniform_bound(shape, {.a = std::sqrt(5.0)}), golden.float_of("weight_bound"));
    EXPECT_EQ(1.0 / std::sqrt(static_cast<double>(calculate_fans(shape).fan_in)), golden.float_of("bias_bound"));
  }
}

// Large tensors: the bounds are reached but never passed, and the moments are those of
// U(-b, b) (std b / sqrt(3)) and N(0, s^2). Standard errors for n = 147456: std / 384 for the
// mean, about std * 0.0012 (uniform) and std * 0.0018 (normal) for the standard deviation.
TEST(InitStatistics, KaimingAndXavierDrawTheRightDistributions) {
  const Shape shape{256, 64, 3, 3};  // (K, C, R, S)
  const double n = static_cast<double>(shape.numel());
  const KaimingParams kaiming{.mode = FanMode::fan_out, .nonlinearity = Nonlinearity::relu, .seed = 11};
  const XavierParams xavier{.gain = 0.8, .seed = 12};
  struct Case {
    std::string name;
    std::function<void(Tensor&)> initialise;
    double stddev;
    double bound;  // 0 for normal distributions
  };
  const double kaiming_bound = kaiming_uniform_bound(shape, kaiming);
  const double xavier_bound = xavier_uniform_bound(shape, xavier);
  const std::vector<Case> cases = {
      {"kaiming_uniform_", [&](Tensor& t) { kaiming_uniform_(t, kaiming, nullptr); }, kaiming_bound / std::sqrt(3.0),
       kaiming_bound},
      {"kaiming_normal_", [&](Tensor& t) { kaiming_normal_(t, kaiming, nullptr); }, kaiming_std(shape, kaiming), 0.0},
      {"xavier_uniform_", [&](Tensor& t) { xavier_uniform_(t, xavier, nullptr); }, xavier_bound / std::sqrt(3.0),
       xavier_bound},
      {"xavier_normal_", [&](Tensor& t) { xavier_normal_(t, xavier, nullptr); }, xavier_std(shape, xavier), 0.0},
  };
  EXPECT_DOUBLE_EQ(kaiming_std(shape, kaiming), std::sqrt(2.0 / (256 * 9)));
  EXPECT_DOUBLE_EQ(xavier_std(shape, xavier), 0.8 * std::sqrt(2.0 / (320 * 9)));
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Tensor tensor = poisoned_host(shape);
    c.initialise(tensor);
    const Moments m = moments(tensor.to_vector<float>());
    EXPECT_NEAR(m.mean, 0.0, 5.0 * c.stddev / std::sqrt(n));
    EXPECT_NEAR(m.stddev, c.stddev, 0.01 * c.stddev);
    if (c.bound > 0.0) {
      EXPECT_LE(m.max_abs, static_cast<float>(c.bound));
      EXPECT_GT(m.max_abs, 0.999 * c.bound);
    } else {
      EXPECT_GT(m.max_abs, 3.5 * c.stddev);  // normal tails, not a clipped distribution
    }
  }
}

TEST_F(InitTest, DeviceMatchesHost) {
  Stream stream;
  const Shape shape{6, 4, 3, 5};
  const std::vector<std::pair<std::string, std::function<void(Tensor&, cudaStream_t)>>> initialisers = {
      {"uniform_", [](Tensor& t, cudaStream_t s) { uniform_(t, {.low = -2.0f, .high = 0.5f, .seed = 3}, s); }},
      {"kaiming_uniform_", [](Tensor& t, cudaStream_t s) { kaiming_uniform_(t, {.seed = 4, .offset = 5}, s); }},
      {"xavier_uniform_", [](Tensor& t, cudaStream_t s) { xavier_uniform_(t, {.gain = 2.0, .seed = 5}, s); }},
      {"constant_", [](Tensor& t, cudaStream_t s) { constant_(t, -0.375, s); }},
      {"zeros_", [](Tensor& t, cudaStream_t s) { zeros_(t, s); }},
      {"ones_", [](Tensor& t, cudaStream_t s) { ones_(t, s); }},
      {"dirac_", [](Tensor& t, cudaStream_t s) { dirac_(t, 2, s); }},
      {"default_conv2d_init", [](Tensor& t, cudaStream_t s) { default_conv2d_init(t, 6, s); }},
  };
  for (const auto& [name, initialise] : initialisers) {
    SCOPED_TRACE(name);
    Tensor device = poisoned_device(shape, stream);
    initialise(device, stream);
    Tensor host = poisoned_host(shape);
    initialise(host, nullptr);
    EXPECT_TRUE(testing::all_equal(device.to_vector<float>(stream), host.to_vector<float>()));
  }
  // Box-Muller runs in double; a GPU's libm differs from the host's far below float precision.
  const std::vector<std::pair<std::string, std::function<void(Tensor&, cudaStream_t)>>> normals = {
      {"normal_", [](Tensor& t, cudaStream_t s) { normal_(t, {.mean = 1.0f, .stddev = 0.5f, .seed = 7}, s); }},
      {"kaiming_normal_", [](Tensor& t, cudaStream_t s) { kaiming_normal_(t, {.a = 0.2, .seed = 8}, s); }},
      {"xavier_normal_", [](Tensor& t, cudaStream_t s) { xavier_normal_(t, {.seed = 9, .offset = 3}, s); }},
  };
  for (const auto& [name, initialise] : normals) {
    SCOPED_TRACE(name);
    Tensor device = poisoned_device(shape, stream);
    initialise(device, stream);
    Tensor host = poisoned_host(shape);
    initialise(host, nullptr);
    const std::vector<float> expected = host.to_vector<float>();
    EXPECT_TRUE(testing::all_close(device.to_vector<float>(stream),
                                   std::vector<double>(expected.begin(), expected.end()),
                                   {.abs_tol = 1e-6, .rel_tol = 1e-6}));
  }
}

TEST_F(InitTest, ReducedPrecisionTensorsRoundTheFloatValues) {
  Stream stream;
  const Shape shape{8, 3, 3, 3};
  const KaimingParams params{.nonlinearity = Nonlinearity::relu, .seed = 21};
  Tensor reference = poisoned_host(shape);
  kaiming_uniform_(reference, params, nullptr);
  for (DType dtype : {DType::f16, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    Tensor tensor = Tensor::empty(shape, dtype, stream);
    kaiming_uniform_(tensor, params, stream);
    // The same draws, rounded once: converting the f32 values gives the same bits.
    const Tensor expected = reference.to_device(stream).to_dtype(dtype, stream).to_dtype(DType::f32, stream);
    EXPECT_TRUE(testing::all_equal(tensor.to_dtype(DType::f32, stream).to_vector<float>(stream),
                                   expected.to_vector<float>(stream)));
  }
}

TEST_F(InitTest, SameSeedSameValuesOtherSeedsDiffer) {
  Stream stream;
  const Shape shape{10, 30};
  const auto draw = [&](std::uint64_t seed, std::uint64_t offset) {
    Tensor tensor = poisoned_device(shape, stream);
    kaiming_uniform_(tensor, {.seed = seed, .offset = offset}, stream);
    return tensor.to_vector<float>(stream);
  };
  const std::vector<float> first = draw(42, 0);
  EXPECT_EQ(draw(42, 0), first);
  const std::vector<float> other = draw(43, 0);
  std::size_t same = 0;
  for (std::size_t i = 0; i < first.size(); ++i) same += first[i] == other[i] ? 1 : 0;
  EXPECT_LE(same, 2u) << "seeds 42 and 43 drew " << same << " equal values out of " << first.size();
  // An offset continues the stream: the same bound, elements 30.. of the first draw.
  const std::vector<float> continued = draw(42, 30);
  EXPECT_TRUE(
      testing::all_equal(std::span<const float>(continued).first(270), std::span<const float>(first).subspan(30)));
}

// Weight from stream elements 0 .. numel - 1, bias from the next ones, each with its bound.
TEST_F(InitTest, DefaultInitDrawsWeightThenBiasFromTheSeed) {
  Stream stream;
  struct Case {
    Shape weight;
    bool conv;
  };
  const std::uint64_t seed = 1234;
  for (const Case& c : {Case{{64, 3, 3, 3}, true}, Case{{10, 8, 1, 5}, true}, Case{{10, 512}, false},
                        Case{{1, 1}, false}}) {
    SCOPED_TRACE(c.weight.to_string());
    const Shape bias_shape{c.weight[0]};
    Tensor weight = poisoned_device(c.weight, stream);
    Tensor bias = poisoned_device(bias_shape, stream);
    if (c.conv) {
      default_conv2d_init(weight, bias, seed, stream);
    } else {
      default_linear_init(weight, bias, seed, stream);
    }
    const auto fan_in = static_cast<double>(calculate_fans(c.weight).fan_in);
    const auto weight_bound = static_cast<float>(kaiming_uniform_bound(c.weight, {.a = std::sqrt(5.0)}));
    const auto bias_bound = static_cast<float>(1.0 / std::sqrt(fan_in));
    EXPECT_NEAR(weight_bound, bias_bound, 1e-7 * bias_bound);  // both 1 / sqrt(fan_in)
    std::vector<float> expected_weight, expected_bias;
    for (std::int64_t i = 0; i < c.weight.numel(); ++i) {
      expected_weight.push_back(philox_uniform(seed, static_cast<std::uint64_t>(i), -weight_bound, weight_bound));
    }
    for (std::int64_t j = 0; j < bias_shape.numel(); ++j) {
      const auto index = static_cast<std::uint64_t>(c.weight.numel() + j);
      expected_bias.push_back(philox_uniform(seed, index, -bias_bound, bias_bound));
    }
    EXPECT_TRUE(testing::all_equal(weight.to_vector<float>(stream), expected_weight));
    EXPECT_TRUE(testing::all_equal(bias.to_vector<float>(stream), expected_bias));
  }
  // Without a bias the weight is the same; a weight without inputs gets a zero bias.
  Tensor weight = poisoned_device({5, 7}, stream);
  default_linear_init(weight, seed, stream);
  Tensor with_bias = poisoned_device({5, 7}, stream);
  Tensor bias = poisoned_device({5}, stream);
  default_linear_init(with_bias, bias, seed, stream);
  EXPECT_TRUE(testing::all_equal(weight.to_vector<float>(stream), with_bias.to_vector<float>(stream)));
  Tensor no_inputs = Tensor::empty({4, 0, 3, 3}, DType::f32, stream);
  Tensor no_inputs_bias = poisoned_device({4}, stream);
  default_conv2d_init(no_inputs, no_inputs_bias, seed, stream);
  EXPECT_EQ(no_inputs_bias.to_vector<float>(stream), std::vector<float>(4, 0.0f));
}

TEST_F(InitTest, DiracMatchesPyTorch) {
  Stream stream;
  for (const testing::GoldenCase& golden : golden_cases("dirac/")) {
    SCOPED_TRACE(golden.name);
    const testing::GoldenTensor& expected = golden.tensor_of("weight");
    const Shape shape = shape_of(expected.shape);
    const auto groups = static_cast<int>(golden.int_of("groups"));
    Tensor device = poisoned_device(shape, stream);
    dirac_(device, groups, stream);
    EXPECT_TRUE(testing::all_equal(device.to_vector<float>(stream), expected.values));
    Tensor host = poisoned_host(shape);
    dirac_(host, groups, nullptr);
    EXPECT_TRUE(testing::all_equal(host.to_vector<float>(), expected.values));
  }
}

TEST_F(InitTest, DiracOnOtherDtypesAndByHand) {
  Stream stream;
  // K = 4 > C = 2, groups 1: output channels 0 and 1 copy inputs 0 and 1; 2 and 3 are zero.
  Tensor ints = Tensor::empty({4, 2, 1, 1}, DType::i32, stream);
  ints.fill(9, stream);
  dirac_(ints, stream);
  EXPECT_EQ(ints.to_vector<std::int32_t>(stream), (std::vector<std::int32_t>{1, 0, 0, 1, 0, 0, 0, 0}));
  for (DType dtype : {DType::f16, DType::bf16}) {
    Tensor weight = Tensor::empty({2, 2, 3, 3}, dtype, stream);
    weight.fill(5, stream);
    dirac_(weight, stream);
    std::vector<float> expected(36, 0.0f);
    expected[4] = expected[18 + 9 + 4] = 1.0f;  // centres of (0, 0) and (1, 1)
    EXPECT_EQ(weight.to_dtype(DType::f32, stream).to_vector<float>(stream), expected) << dtype_name(dtype);
  }
}

// With "same" padding a Dirac weight makes the convolution copy its input: per group, the
// first min(K, C) / groups channels.
TEST_F(InitTest, DiracConvolutionIsTheIdentity) {
  Stream stream;
  for (int groups : {1, 2}) {
    SCOPED_TRACE(groups);
    const Shape x_shape{2, 4, 5, 7};  // (N, C, H, W)
    const std::vector<float> x_values = testing::random_uniform(77 + groups, static_cast<std::size_t>(x_shape.numel()));
    Tensor x = Tensor::from_vector(x_values, x_shape).to_device(stream);
    Tensor weight = poisoned_device({4, 4 / groups, 3, 5}, stream);  // (K, C/groups, R, S)
    dirac_(weight, groups, stream);
    const Tensor y = kernels::conv2d_forward(x, weight, Tensor(),
                                             kernels::Conv2dParams{.padding = {1, 2}, .groups = groups}, stream);
    EXPECT_TRUE(testing::all_equal(y.to_vector<float>(stream), x_values));
  }
}

TEST(InitErrors, NameTheInitialiserAndTheShape) {
  const auto refused = [](const std::function<void()>& call, const std::string& message) {
    EXPECT_THAT(call, ThrowsMessage<InvalidArgument>(HasSubstr(message)));
  };
  Tensor vector = Tensor::empty_host({5}, DType::f32);
  refused([&] { kaiming_uniform_(vector, {}, nullptr); },
          "kaiming_uniform_: fan in and fan out cannot be computed for a tensor with fewer than 2 dimensions, got "
          "shape (5)");
  refused([&] { kaiming_normal_(vector, {}, nullptr); }, "kaiming_normal_: fan in and fan out cannot be computed");
  refused([&] { xavier_uniform_(vector, {}, nullptr); }, "xavier_uniform_: fan in and fan out cannot be computed");
  refused([&] { xavier_normal_(vector, {}, nullptr); }, "xavier_normal_: fan in and fan out cannot be computed");
  refused([] { calculate_fans(Shape{}); }, "calculate_fans: fan in and fan out cannot be computed for a tensor with "
                                           "fewer than 2 dimensions, got shape ()");
  Tensor empty_vector = Tensor::empty_host({0}, DType::f32);
  refused([&] { kaiming_uniform_(empty_vector, {}, nullptr); }, "got shape (0)");  // the rank is checked first
  refused([] { kaiming_std({3, 0}, {}); }, "kaiming_std: fan_in of shape (3, 0) is 0");
  refused([] { calculate_gain(Nonlinearity::leaky_relu, NAN); },
          "calculate_gain: leaky_relu needs a finite negative slope, got nan");

  Tensor matrix = Tensor::empty_host({4, 6}, DType::f32);
  refused([&] { dirac_(matrix, nullptr); },
          "dirac_: needs a convolution weight (K, C/groups, *kernel) with 3, 4 or 5 dimensions, got shape (4, 6)");
  refused([&] { dirac_(vector, nullptr); }, "with 3, 4 or 5 dimensions, got shape (5)");
  Tensor conv = Tensor::empty_host({6, 2, 3, 3}, DType::f32);
  refused([&] { dirac_(conv, 4, nullptr); },
          "dirac_: the 6 output channels of weight (6, 2, 3, 3) are not divisible by groups 4");
  refused([&] { dirac_(conv, 0, nullptr); }, "dirac_: groups must be at least 1, got 0 (weight shape (6, 2, 3, 3))");

  Tensor ints = Tensor::empty_host({4, 6}, DType::i32);
  refused([&] { kaiming_uniform_(ints, {}, nullptr); },
          "kaiming_uniform_: needs a floating-point tensor (f32, f16, bf16), got dtype i32 (shape (4, 6))");
  refused([&] { xavier_normal_(conv, {.gain = INFINITY}, nullptr); }, "xavier_normal_: gain must be finite, got inf");
  Tensor undefined;
  refused([&] { zeros_(undefined, nullptr); }, "constant_: the tensor is undefined");
  refused([&] { normal_(undefined, {}, nullptr); }, "normal_: the tensor is undefined");

  Tensor bias = Tensor::empty_host({6}, DType::f32);
  refused([&] { default_conv2d_init(matrix, 1, nullptr); },
          "default_conv2d_init: the weight must be (K, C/groups, R, S), got shape (4, 6)");
  refused([&] { default_linear_init(conv, bias, 1, nullptr); },
          "default_linear_init: the weight must be (out_features, in_features), got shape (6, 2, 3, 3)");
  refused([&] { default_linear_init(matrix, bias, 1, nullptr); },
          "default_linear_init: the bias must be (4) for a weight of shape (4, 6), got shape (6)");
}

TEST_F(InitTest, RefusesTheDefaultStreamForDeviceTensors) {
  Stream stream;
  Tensor weight = Tensor::empty({4, 4, 3, 3}, DType::f32, stream);
  EXPECT_THAT([&] { dirac_(weight, nullptr); },
              ThrowsMessage<InvalidArgument>(
                  HasSubstr("dirac_: no stream given for a device weight of shape (4, 4, 3, 3)")));
  EXPECT_THAT([&] { kaiming_uniform_(weight, {}, nullptr); },
              ThrowsMessage<InvalidArgument>(HasSubstr("no stream given")));
}

// As in PyTorch, initialising a tensor without elements does nothing (and does not fail).
TEST(InitEmpty, ZeroElementTensorsAreLeftAlone) {
  Tensor empty = Tensor::empty_host({0, 3, 3, 3}, DType::f32);
  EXPECT_NO_THROW(kaiming_uniform_(empty, {}, nullptr));
  EXPECT_NO_THROW(kaiming_normal_(empty, {.mode = FanMode::fan_out}, nullptr));
  EXPECT_NO_THROW(xavier_uniform_(empty, {}, nullptr));
  EXPECT_NO_THROW(dirac_(empty, nullptr));
}

}  // namespace
}  // namespace strata::init
