// Channels-last tensors through the functional API: F::to_memory_format and F::contiguous
// with their gradients, every element-wise op on a channels-last input against the same op
// on the same values contiguous (bit for bit, outputs and gradients in the input's format,
// f32, f16 and bf16), the kernels' out-param forms (poisoned outputs, mixed formats refused),
// dropout's mask per memory position, the ops that convert a channels-last input to NCHW
// order first (cat, flatten, linear, softmax, argmax), add with operands of two formats, and
// a small network end to end.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "strata/core/autograd.h"
#include "strata/core/errors.h"
#include "strata/core/generator.h"
#include "strata/core/stream.h"
#include "strata/kernels/activations.h"
#include "strata/kernels/cast.h"
#include "strata/kernels/dropout.h"
#include "strata/kernels/elementwise.h"
#include "strata/layers/functional.h"
#include "tests/kernels/device_values.h"
#include "tests/reference/elementwise_reference.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"

namespace strata {
namespace {

using ::testing::HasSubstr;
using testing::bit_patterns;
using testing::random_device;
using ChannelsLastTest = testing::DeviceTest;

constexpr MemoryFormat kChannelsLast = MemoryFormat::channels_last;
constexpr MemoryFormat kContiguous = MemoryFormat::contiguous;

// Odd sizes: 210 elements (no whole 16-byte tail), 3 channels, a 5 x 7 plane.
const Shape kShape{2, 3, 5, 7};

Tensor channels_last(const Tensor& x) { return x.to_memory_format(kChannelsLast, current_stream()); }

// The logical values (NCHW order whatever the format) as f32 bit patterns: exact for f16 and
// bf16, whose values f32 holds.
std::vector<std::uint32_t> logical_bits(const Tensor& x) {
  const Tensor as_f32 = x.dtype() == DType::f32 ? x : x.to_dtype(DType::f32, current_stream());
  return bit_patterns(as_f32.to_vector<float>());
}

// A leaf of seeded random values in dtype and format.
Tensor leaf(std::uint64_t seed, const Shape& shape, DType dtype, MemoryFormat format) {
  Tensor values = random_device(seed, shape, -2.0f, 2.0f).to_dtype(dtype, current_stream());
  Tensor x = values.to_memory_format(format, current_stream());
  x.set_requires_grad();
  return x;
}

// ---- F::to_memory_format and F::contiguous ---------------------------------------------

TEST_F(ChannelsLastTest, ToMemoryFormatConvertsAndItsGradientComesBackInTheInputsFormat) {
  for (const MemoryFormat from : {kContiguous, kChannelsLast}) {
    const MemoryFormat to = from == kContiguous ? kChannelsLast : kContiguous;
    SCOPED_TRACE(std::string(memory_format_name(from)));
    const Tensor x = leaf(1, kShape, DType::f32, from);
    const Tensor y = F::to_memory_format(x, to);
    EXPECT_EQ(y.memory_format(), to);
    EXPECT_EQ(logical_bits(y), logical_bits(x));
    ASSERT_NE(y.grad_fn(), nullptr);
    EXPECT_EQ(y.grad_fn()->name(), "ToMemoryFormatBackward");
    const Tensor dL_dy = random_device(2, kShape).to_memory_format(to, current_stream());
    y.backward(dL_dy);
    EXPECT_EQ(x.grad().memory_format(), from);
    EXPECT_EQ(logical_bits(x.grad()), logical_bits(dL_dy));
  }
}

TEST_F(ChannelsLastTest, ToMemoryFormatReturnsXItselfWhenAlreadyInTheFormat) {
  const Tensor x = leaf(3, kShape, DType::f32, kChannelsLast);
  const Tensor same = F::to_memory_format(x, kChannelsLast);
  EXPECT_TRUE(same.shares_storage_with(x));
  EXPECT_EQ(same.grad_fn(), nullptr);
  EXPECT_TRUE(F::contiguous(leaf(4, kShape, DType::f32, kContiguous)).is_leaf());
  // A channels-last tensor whose layouts coincide reads in NCHW order already: no copy.
  const Tensor pooled = leaf(5, Shape{4, 6, 1, 1}, DType::f32, kChannelsLast);
  EXPECT_TRUE(F::contiguous(pooled).shares_storage_with(pooled));
  EXPECT_FALSE(F::contiguous(x).shares_storage_with(x));
  EXPECT_THAT(testing::invalid_argument_message([] {
                F::to_memory_format(random_device(6, Shape{4, 5}), kChannelsLast);
              }),
              HasSubstr("4-D"));
}

// ---- element-wise ops: channels-last == contiguous -------------------------------------

struct ElementwiseCase {
  const char* name;
  std::function<Tensor(const Tensor&)> op;
};

std::vector<ElementwiseCase> elementwise_cases() {
  return {
      {"relu", [](const Tensor& x) { return F::relu(x, Engine::custom); }},
      {"gelu", [](const Tensor& x) { return F::gelu(x, F::GeluApproximation::none, Engine::custom); }},
      {"gelu_tanh", [](const Tensor& x) { return F::gelu(x, F::GeluApproximation::tanh, Engine::custom); }},
      {"mul", [](const Tensor& x) { return F::mul(x, -1.75f); }},
      {"add_itself", [](const Tensor& x) { return F::add(x, F::mul(x, 0.5f), 0.25f); }},
      {"to_dtype", [](const Tensor& x) {
         return F::to_dtype(x, x.dtype() == DType::f32 ? DType::bf16 : DType::f32);
       }},
  };
}

class ChannelsLastElementwiseTest : public ChannelsLastTest, public ::testing::WithParamInterface<DType> {};

TEST_P(ChannelsLastElementwiseTest, OutputsAndGradientsEqualTheContiguousRunsInTheInputsFormat) {
  const DType dtype = GetParam();
  for (const ElementwiseCase& test_case : elementwise_cases()) {
    SCOPED_TRACE(test_case.name);
    const Tensor x = leaf(10, kShape, dtype, kContiguous);
    const Tensor x_last = leaf(10, kShape, dtype, kChannelsLast);
    const Tensor y = test_case.op(x);
    const Tensor y_last = test_case.op(x_last);
    EXPECT_EQ(y_last.memory_format(), kChannelsLast);
    EXPECT_EQ(logical_bits(y_last), logical_bits(y));
    const Tensor dL_dy = random_device(11, kShape).to_dtype(y.dtype(), current_stream());
    y.backward(dL_dy);
    y_last.backward(channels_last(dL_dy));
    EXPECT_EQ(x_last.grad().memory_format(), kChannelsLast);
    EXPECT_EQ(logical_bits(x_last.grad()), logical_bits(x.grad()));
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, ChannelsLastElementwiseTest, ::testing::Values(DType::f32, DType::f16, DType::bf16),
                         [](const ::testing::TestParamInfo<DType>& param) {
                           return std::string(dtype_name(param.param));
                         });

// The kernels' out-param forms write every element of a poisoned channels-last output, and
// their allocating forms give the input's format.
TEST_F(ChannelsLastTest, KernelsWriteEveryElementOfAChannelsLastOutput) {
  const cudaStream_t stream = current_stream();
  const Tensor x = random_device(20, kShape);
  const Tensor b = random_device(21, kShape);
  const Tensor x_last = channels_last(x);
  const Tensor b_last = channels_last(b);
  const auto poisoned = [&](DType dtype) {
    Tensor out = Tensor::empty(kShape, dtype, stream, kChannelsLast);
    out.fill(testing::poison_value(), stream);
    return out;
  };
  const std::vector<std::pair<const char*, std::function<void(const Tensor&, const Tensor&, Tensor&)>>> kernels = {
      {"relu", [&](const Tensor& in, const Tensor&, Tensor& out) { kernels::relu_forward(in, out, {}, stream); }},
      {"gelu", [&](const Tensor& in, const Tensor&, Tensor& out) { kernels::gelu_forward(in, out, {}, stream); }},
      {"add", [&](const Tensor& in, const Tensor& other,
                  Tensor& out) { kernels::add_forward(in, other, out, {.alpha = 0.5f}, stream); }},
      {"scale",
       [&](const Tensor& in, const Tensor&, Tensor& out) { kernels::scale(in, out, {.factor = 3.0f}, stream); }},
      {"gelu_backward",
       [&](const Tensor& in, const Tensor& other, Tensor& out) { kernels::gelu_backward(other, in, out, {}, stream); }},
  };
  for (const auto& [name, kernel] : kernels) {
    SCOPED_TRACE(name);
    Tensor out = Tensor::empty(kShape, DType::f32, stream);
    kernel(x, b, out);
    Tensor out_last = poisoned(DType::f32);
    kernel(x_last, b_last, out_last);
    EXPECT_EQ(logical_bits(out_last), logical_bits(out));
  }
  Tensor cast_last = poisoned(DType::bf16);
  kernels::cast(x_last, cast_last, stream);
  EXPECT_EQ(logical_bits(cast_last), logical_bits(kernels::cast(x, DType::bf16, stream)));
  EXPECT_EQ(kernels::cast(x_last, DType::f16, stream).memory_format(), kChannelsLast);
  EXPECT_EQ(kernels::relu_forward(x_last, {}, stream).memory_format(), kChannelsLast);
  EXPECT_EQ(kernels::add_forward(x_last, b_last, {}, stream).memory_format(), kChannelsLast);
  // accumulate, the kernel behind autograd's sums: y += alpha x in memory order.
  Tensor sum = channels_last(b);
  kernels::accumulate(x_last, sum, {.alpha = 2.0f}, stream);
  Tensor sum_contiguous = b.to_dtype(DType::f32, stream);
  kernels::accumulate(x, sum_contiguous, {.alpha = 2.0f}, stream);
  EXPECT_EQ(logical_bits(sum), logical_bits(sum_contiguous));
}

TEST_F(ChannelsLastTest, KernelsRefuseOperandsOfTwoFormats) {
  const cudaStream_t stream = current_stream();
  const Tensor x = random_device(30, kShape);
  const Tensor x_last = channels_last(x);
  Tensor y = Tensor::empty(kShape, DType::f32, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] { kernels::relu_forward(x_last, y, {}, stream); }),
              HasSubstr("relu_forward: y (2, 3, 5, 7) is contiguous but x is channels_last"));
  EXPECT_THAT(testing::invalid_argument_message([&] { kernels::add_forward(x, x_last, y, {}, stream); }),
              HasSubstr("add_forward: b (2, 3, 5, 7) is channels_last but a is contiguous"));
  // cast is the exception: it converts the format as it casts (cast_memory_format_test.cpp).
  kernels::cast(x_last, y, stream);
  EXPECT_EQ(logical_bits(y), logical_bits(x));
  // Where the layouts coincide the formats do not matter.
  const Tensor column = random_device(31, Shape{2, 4, 1, 1});
  Tensor column_y = Tensor::empty(column.shape(), DType::f32, stream, kChannelsLast);
  kernels::relu_forward(column, column_y, {}, stream);
  EXPECT_EQ(logical_bits(column_y), logical_bits(kernels::relu_forward(column, {}, stream)));
}

// Dropout draws element i's word in memory order: a channels-last x's mask is that of the
// contiguous (N, H, W, C) tensor holding its memory, the same for the same generator state.
TEST_F(ChannelsLastTest, DropoutDrawsItsMaskPerMemoryPosition) {
  const float p = 0.4f;
  const std::int64_t N = kShape[0], C = kShape[1], H = kShape[2], W = kShape[3];
  const std::vector<float> x_values = testing::random_uniform(40, static_cast<std::size_t>(kShape.numel()));
  Tensor x_last = channels_last(testing::device_tensor(x_values, kShape, current_stream()));
  x_last.set_requires_grad();
  manual_seed(77);
  const GeneratorState state = default_generator().state();
  const Tensor y = F::dropout(x_last, p, /*training=*/true);
  EXPECT_EQ(y.memory_format(), kChannelsLast);
  const std::vector<std::uint8_t> memory_mask =
      reference::dropout_mask(state.seed, state.offset, static_cast<std::size_t>(kShape.numel()), p);
  const float kept_scale = kernels::dropout_scale(p);
  const std::vector<float> y_values = y.to_vector<float>();
  const std::vector<float> dL_dy_values = testing::random_uniform(41, y_values.size());
  const std::vector<float> dL_dx_values = [&] {
    y.backward(channels_last(testing::device_tensor(dL_dy_values, kShape, current_stream())));
    EXPECT_EQ(x_last.grad().memory_format(), kChannelsLast);
    return x_last.grad().to_vector<float>();
  }();
  int mismatches = 0;
  for (std::int64_t n = 0; n < N; ++n) {
    for (std::int64_t c = 0; c < C; ++c) {
      for (std::int64_t h = 0; h < H; ++h) {
        for (std::int64_t w = 0; w < W; ++w) {
          const std::size_t logical = static_cast<std::size_t>(((n * C + c) * H + h) * W + w);
          const std::size_t memory = static_cast<std::size_t>(((n * H + h) * W + w) * C + c);
          const float scale = memory_mask[memory] != 0 ? kept_scale : 0.0f;
          const float expected_y = x_values[logical] * scale;
          const float expected_dL_dx = dL_dy_values[logical] * scale;
          if ((y_values[logical] != expected_y || dL_dx_values[logical] != expected_dL_dx) && ++mismatches <= 5) {
            ADD_FAILURE() << "(" << n << ", " << c << ", " << h << ", " << w << "): y " << y_values[logical]
                          << " dL_dx " << dL_dx_values[logical] << ", expected " << expected_y << " and "
                          << expected_dL_dx;
          }
        }
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
  manual_seed(77);
  EXPECT_EQ(logical_bits(F::dropout(x_last, p, /*training=*/true)), logical_bits(y)) << "deterministic";
}

// ---- ops that read NCHW order convert a channels-last input ----------------------------

TEST_F(ChannelsLastTest, OpsReadingNchwOrderConvertAChannelsLastInput) {
  const std::vector<std::pair<const char*, std::function<Tensor(const Tensor&)>>> ops = {
      {"cat", [](const Tensor& x) {
         const std::vector<Tensor> xs{x, F::mul(x, 2.0f)};
         return F::cat(xs, 1);
       }},
      {"flatten", [](const Tensor& x) { return F::flatten(x, 1); }},
      {"linear", [](const Tensor& x) {
         const Tensor weight = random_device(50, Shape{4, kShape[3]});
         return F::linear(x, weight, Tensor());
       }},
      {"softmax", [](const Tensor& x) { return F::softmax(x, Engine::custom); }},
      {"log_softmax", [](const Tensor& x) { return F::log_softmax(x, Engine::custom); }},
  };
  for (const auto& [name, op] : ops) {
    SCOPED_TRACE(name);
    const Tensor x = leaf(51, kShape, DType::f32, kContiguous);
    const Tensor x_last = leaf(51, kShape, DType::f32, kChannelsLast);
    const Tensor y = op(x);
    const Tensor y_last = op(x_last);
    EXPECT_EQ(logical_bits(y_last), logical_bits(y));
    const Tensor dL_dy = random_device(52, y.shape());
    y.backward(dL_dy);
    y_last.backward(dL_dy);
    EXPECT_EQ(x_last.grad().memory_format(), kChannelsLast);
    EXPECT_EQ(logical_bits(x_last.grad()), logical_bits(x.grad()));
  }
  const Tensor x = random_device(53, kShape);
  EXPECT_EQ(F::argmax(channels_last(x)).to_vector<std::int64_t>(), F::argmax(x).to_vector<std::int64_t>());
}

// add with operands of two formats: b follows a; each gradient comes back in its operand's format.
TEST_F(ChannelsLastTest, AddOfTwoFormatsGivesAsFormatAndEachGradientInItsOperands) {
  for (const MemoryFormat a_format : {kContiguous, kChannelsLast}) {
    const MemoryFormat b_format = a_format == kContiguous ? kChannelsLast : kContiguous;
    SCOPED_TRACE(std::string(memory_format_name(a_format)));
    const Tensor a = leaf(60, kShape, DType::f32, a_format);
    const Tensor b = leaf(61, kShape, DType::bf16, b_format);  // promoted to f32 as well
    const Tensor a_ref = leaf(60, kShape, DType::f32, kContiguous);
    const Tensor b_ref = leaf(61, kShape, DType::bf16, kContiguous);
    const Tensor y = F::add(a, b, -0.5f);
    const Tensor y_ref = F::add(a_ref, b_ref, -0.5f);
    EXPECT_EQ(y.memory_format(), a_format);
    EXPECT_EQ(logical_bits(y), logical_bits(y_ref));
    const Tensor dL_dy = random_device(62, kShape);
    y.backward(dL_dy.to_memory_format(a_format, current_stream()));
    y_ref.backward(dL_dy);
    // a's gradient is dL_dy itself, which the test still holds: AccumulateGrad copies a shared
    // gradient into a new contiguous tensor (core/autograd.cpp), so only b's format is checked.
    EXPECT_EQ(b.grad().memory_format(), b_format);
    EXPECT_EQ(b.grad().dtype(), DType::bf16);
    EXPECT_EQ(logical_bits(a.grad()), logical_bits(a_ref.grad()));
    EXPECT_EQ(logical_bits(b.grad()), logical_bits(b_ref.grad()));
  }
}

// ---- end to end ------------------------------------------------------------------------

struct SmallNetwork {
  Tensor conv1_weight, conv1_bias, bn_weight, bn_bias, conv2_weight, linear_weight, linear_bias;
  F::BatchNormRunningStats running;

  static SmallNetwork make(std::uint64_t seed) {
    SmallNetwork net;
    net.conv1_weight = testing::random_leaf(seed, Shape{8, 3, 3, 3}, -0.3f, 0.3f);
    net.conv1_bias = testing::random_leaf(seed + 1, Shape{8}, -0.1f, 0.1f);
    net.bn_weight = testing::random_leaf(seed + 2, Shape{8}, 0.5f, 1.5f);
    net.bn_bias = testing::random_leaf(seed + 3, Shape{8}, -0.2f, 0.2f);
    net.conv2_weight = testing::random_leaf(seed + 4, Shape{6, 8, 3, 3}, -0.2f, 0.2f);
    net.linear_weight = testing::random_leaf(seed + 5, Shape{5, 6}, -0.5f, 0.5f);
    net.linear_bias = testing::random_leaf(seed + 6, Shape{5}, -0.1f, 0.1f);
    net.running.mean = Tensor::zeros(Shape{8}, DType::f32, current_stream());
    net.running.var = Tensor::zeros(Shape{8}, DType::f32, current_stream());
    net.running.var.fill(1.0, current_stream());
    return net;
  }
  std::vector<Tensor> parameters() const {
    return {conv1_weight, conv1_bias, bn_weight, bn_bias, conv2_weight, linear_weight, linear_bias};
  }

  // conv -> batch norm + GELU -> 2x2 max pool -> conv -> adaptive avg pool -> flatten ->
  // linear -> cross-entropy, on the custom kernels.
  Tensor loss(const Tensor& images, const Tensor& labels) {
    Tensor x = F::conv2d(images, conv1_weight, conv1_bias, {.padding = {1, 1}}, Engine::custom);  // (N, 8, 9, 11)
    x = F::batch_norm2d_activation(x, bn_weight, bn_bias, running, /*training=*/true);
    x = F::max_pool2d(x, {.kernel = {2, 2}}, Engine::custom);                                        // (N, 8, 4, 5)
    x = F::conv2d(x, conv2_weight, Tensor(), {.padding = {1, 1}}, Engine::custom);                  // (N, 6, 4, 5)
    x = F::adaptive_avg_pool2d(x, {1, 1}, Engine::custom);                                          // (N, 6, 1, 1)
    return F::cross_entropy(F::linear(F::flatten(x, 1), linear_weight, linear_bias), labels);
  }
};

TEST_F(ChannelsLastTest, SmallNetworkTrainsChannelsLastAsContiguousBitForBit) {
  const Tensor images = random_device(70, Shape{3, 3, 9, 11});
  const Tensor labels =
      testing::device_tensor(std::vector<std::int64_t>{4, 0, 2}, Shape{3}, current_stream());
  SmallNetwork contiguous_net = SmallNetwork::make(71);
  SmallNetwork channels_last_net = SmallNetwork::make(71);
  const Tensor loss = contiguous_net.loss(images, labels);
  loss.backward();
  const Tensor loss_last = channels_last_net.loss(F::to_memory_format(images, kChannelsLast), labels);
  loss_last.backward();
  EXPECT_EQ(logical_bits(loss_last), logical_bits(loss));
  const std::vector<Tensor> expected = contiguous_net.parameters();
  const std::vector<Tensor> actual = channels_last_net.parameters();
  for (std::size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE("parameter " + std::to_string(i));
    EXPECT_EQ(actual[i].grad().memory_format(), kContiguous) << "weights stay contiguous";
    EXPECT_EQ(logical_bits(actual[i].grad()), logical_bits(expected[i].grad()));
  }
  EXPECT_EQ(logical_bits(channels_last_net.running.mean), logical_bits(contiguous_net.running.mean));
  EXPECT_EQ(logical_bits(channels_last_net.running.var), logical_bits(contiguous_net.running.var));
}

// cuDNN's pooling and batch norm take NCHW descriptions only so far: Engine::cudnn refuses a
// channels-last x naming the way out, and Engine::automatic runs the custom kernels.
// cuDNN's pooling and batch norm describe a channels-last x as NHWC: where cuDNN runs, their
// outputs keep x's format (max pooling picks the custom kernel's elements); where it does not
// (the simulator), its absence is the only refusal: Engine::cudnn names it, automatic falls back.
TEST_F(ChannelsLastTest, CudnnPoolingAndBatchNormTakeChannelsLastOrAutoFallsBack) {
  const Tensor x = channels_last(random_device(80, kShape));
  const F::Pool2dParams pool{.kernel = {2, 2}};
  kernels::BatchNormRunningStats untracked;
  const Tensor y_custom = F::max_pool2d(x, pool, Engine::custom);
  EXPECT_EQ(logical_bits(F::max_pool2d(x, pool, Engine::automatic)), logical_bits(y_custom));
  if (!cudnn_available()) {
    const std::string reason(cudnn_unavailable_reason());
    EXPECT_THAT([&] { (void)F::max_pool2d(x, pool, Engine::cudnn); },
                ::testing::ThrowsMessage<NotSupported>(HasSubstr(reason)));
    EXPECT_THAT([&] { (void)F::batch_norm2d(x, Tensor(), Tensor(), untracked, true, {}, Engine::cudnn); },
                ::testing::ThrowsMessage<NotSupported>(HasSubstr(reason)));
    return;
  }
  const Tensor y = F::max_pool2d(x, pool, Engine::cudnn);
  EXPECT_EQ(y.memory_format(), kChannelsLast);
  EXPECT_EQ(logical_bits(y), logical_bits(y_custom));
  const Tensor normalised = F::batch_norm2d(x, Tensor(), Tensor(), untracked, true, {}, Engine::cudnn);
  EXPECT_EQ(normalised.memory_format(), kChannelsLast);
}

}  // namespace
}  // namespace strata
