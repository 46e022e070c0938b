// F:: ops in f16 and bf16 storage and under autocast (strata/core/autocast.h): batch norm.
// F::batch_norm2d, the fused F::batch_norm2d_activation and their modules nn::BatchNorm2d and
// nn::BatchNorm2dActivation with x in f16 or bf16 and f32 parameters and running statistics
// ("BN statistics in fp32"), through autograd, training and eval: y and dL/dx come out in x's
// dtype, dL/dweight and dL/dbias in f32, and all of them, with the running statistics and the
// batch counter, are the f32 op's results on the same (rounded) input, y and dL/dx rounded
// once, bit for bit (the kernels compute in float from the values they load). Only f32
// tensors are leaves, so x is an f32 leaf cast by F::to_dtype, as under autocast: the engine
// checks that the op's dL/dx has x's dtype, and the cast's backward hands the leaf its exact
// f32 value. Autocast leaves batch norm in its input's dtype; dtype errors name the op and
// the operand.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "strata/core/autocast.h"
#include "strata/core/autograd.h"
#include "strata/core/engine.h"
#include "strata/core/stream.h"
#include "strata/layers/functional.h"
#include "strata/layers/modules.h"
#include "tests/kernels/device_values.h"
#include "tests/support/device_test.h"
#include "tests/support/storage_dtypes.h"

namespace strata {
namespace {

using ::testing::HasSubstr;
using kernels::BatchNormRunningStats;
using kernels::FusedActivation;
using MixedPrecisionBatchNormTest = testing::DeviceTest;

const Shape kShape{3, 5, 4, 3};  // (N, C, H, W): odd sizes, 36 values per channel
const Shape kChannels{5};

constexpr FusedActivation kActivations[] = {FusedActivation::none, FusedActivation::relu, FusedActivation::gelu,
                                            FusedActivation::gelu_tanh};

std::vector<std::uint32_t> bits_of(const Tensor& tensor) {
  return testing::bit_patterns(testing::storage_values(tensor, current_stream()));
}

// The bits of an f32 tensor's values rounded once to dtype.
std::vector<std::uint32_t> rounded_bits_of(const Tensor& f32, DType dtype) {
  return testing::bit_patterns(testing::rounded_to(f32.to_vector<float>(current_stream()), dtype, current_stream()));
}

// Seeded values of kShape's size, already representable in dtype.
std::vector<float> rounded_values(std::uint64_t seed, DType dtype, float low, float high) {
  return testing::rounded_to(testing::random_uniform(seed, static_cast<std::size_t>(kShape.numel()), low, high),
                             dtype, current_stream());
}

// (C) f32 ones.
Tensor ones(cudaStream_t stream) {
  Tensor tensor = Tensor::empty(kChannels, DType::f32, stream);
  tensor.fill(1.0, stream);
  return tensor;
}

Tensor f32_leaf(std::uint64_t seed, float low, float high) {
  Tensor leaf = testing::device_tensor(testing::random_uniform(seed, 5, low, high), kChannels, current_stream());
  leaf.set_requires_grad();
  return leaf;
}

// A batch norm op of x with f32 weight and bias and running statistics updated in place.
using BatchNormOp =
    std::function<Tensor(const Tensor& x, const Tensor& weight, const Tensor& bias, BatchNormRunningStats& running)>;

// What one forward and backward through autograd left.
struct Run {
  Tensor y, dL_dx, dL_dweight, dL_dbias, running_mean, running_var;
};

// An f32 leaf of values (representable in dtype) and the input an op in dtype reads: the leaf
// itself, or its cast by F::to_dtype.
struct Input {
  Tensor leaf;
  Tensor x;
};

Input input_of(const std::vector<float>& values, DType dtype) {
  Tensor leaf = testing::device_tensor(values, kShape, current_stream());
  leaf.set_requires_grad();
  return {leaf, dtype == DType::f32 ? leaf : F::to_dtype(leaf, dtype)};
}

// op on x in dtype, seeded f32 parameters and running statistics, then backward from dL_dy
// in dtype; dL_dx is the f32 leaf's gradient, the op's dL/dx converted exactly.
Run run(const BatchNormOp& op, const std::vector<float>& x, const std::vector<float>& dL_dy, DType dtype,
        std::uint64_t seed) {
  const cudaStream_t stream = current_stream();
  const Input input = input_of(x, dtype);
  const Tensor weight = f32_leaf(seed + 1, 0.5f, 1.5f);
  const Tensor bias = f32_leaf(seed + 2, -1.0f, 1.0f);
  BatchNormRunningStats running{
      .mean = testing::device_tensor(testing::random_uniform(seed + 3, 5), kChannels, stream),
      .var = testing::device_tensor(testing::random_uniform(seed + 4, 5, 0.5f, 1.5f), kChannels, stream)};
  const Tensor y = op(input.x, weight, bias, running);
  y.backward(testing::storage_tensor(dL_dy, kShape, dtype, stream));
  return {y, input.leaf.grad(), weight.grad(), bias.grad(), running.mean, running.var};
}

// op in dtype against op in f32 on the same rounded values.
void expect_the_f32_results_rounded_once(const BatchNormOp& op, DType dtype, std::uint64_t seed) {
  const std::vector<float> x = rounded_values(seed, dtype, -1.5f, 2.5f);
  const std::vector<float> dL_dy = rounded_values(seed + 5, dtype, -1.0f, 1.0f);
  const Run reduced = run(op, x, dL_dy, dtype, seed);
  const Run f32 = run(op, x, dL_dy, DType::f32, seed);
  EXPECT_EQ(reduced.y.dtype(), dtype);
  ASSERT_TRUE(reduced.dL_dx.defined());
  EXPECT_EQ(reduced.dL_dweight.dtype(), DType::f32);
  EXPECT_EQ(reduced.dL_dbias.dtype(), DType::f32);
  EXPECT_EQ(bits_of(reduced.y), rounded_bits_of(f32.y, dtype)) << "y";
  EXPECT_EQ(bits_of(reduced.dL_dx), rounded_bits_of(f32.dL_dx, dtype)) << "dL_dx";
  EXPECT_EQ(bits_of(reduced.dL_dweight), bits_of(f32.dL_dweight)) << "dL_dweight";
  EXPECT_EQ(bits_of(reduced.dL_dbias), bits_of(f32.dL_dbias)) << "dL_dbias";
  EXPECT_EQ(bits_of(reduced.running_mean), bits_of(f32.running_mean)) << "running mean";
  EXPECT_EQ(bits_of(reduced.running_var), bits_of(f32.running_var)) << "running var";
}

TEST_F(MixedPrecisionBatchNormTest, BatchNorm2dIsTheF32ResultRoundedOnce) {
  std::uint64_t seed = 100;
  for (const DType dtype : testing::kReducedDtypes) {
    for (const bool training : {true, false}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + (training ? ", training" : ", eval"));
      // The custom kernels on every machine: two runs of cuDNN in two dtypes need not agree
      // to the bit.
      expect_the_f32_results_rounded_once(
          [&](const Tensor& x, const Tensor& weight, const Tensor& bias, BatchNormRunningStats& running) {
            return F::batch_norm2d(x, weight, bias, running, training, {}, Engine::custom);
          },
          dtype, seed += 10);
    }
  }
}

TEST_F(MixedPrecisionBatchNormTest, BatchNorm2dActivationIsTheF32ResultRoundedOnce) {
  std::uint64_t seed = 200;
  for (const DType dtype : testing::kReducedDtypes) {
    for (const FusedActivation activation : kActivations) {
      for (const bool training : {true, false}) {
        SCOPED_TRACE(std::string(dtype_name(dtype)) + ", " + kernels::fused_activation_name(activation) +
                     (training ? ", training" : ", eval"));
        expect_the_f32_results_rounded_once(
            [&](const Tensor& x, const Tensor& weight, const Tensor& bias, BatchNormRunningStats& running) {
              return F::batch_norm2d_activation(x, weight, bias, running, training, {.activation = activation});
            },
            dtype, seed += 10);
      }
    }
  }
}

// A module's training step and eval forward with x in dtype against a twin module's in f32 on
// the same rounded values: the parameters stay f32 and get f32 gradients, the running
// statistics and the counter move alike.
template <typename Module, typename Options>
void expect_module_runs_the_f32_results_rounded_once(const Options& options, DType dtype, std::uint64_t seed) {
  const cudaStream_t stream = current_stream();
  const std::vector<float> x = rounded_values(seed, dtype, -1.5f, 2.5f);
  const std::vector<float> dL_dy = rounded_values(seed + 1, dtype, -1.0f, 1.0f);
  struct Step {
    Tensor y, dL_dx, y_eval;
  };
  const auto step = [&](Module& module, DType step_dtype) {
    const Input input = input_of(x, step_dtype);
    module.train();
    const Tensor y = module.forward(input.x);
    y.backward(testing::storage_tensor(dL_dy, kShape, step_dtype, stream));
    module.eval();
    return Step{y, input.leaf.grad(), module.forward(input.x)};
  };
  Module reduced(kChannels[0], options);
  Module f32(kChannels[0], options);
  const Step reduced_step = step(reduced, dtype);
  const Step f32_step = step(f32, DType::f32);
  EXPECT_EQ(reduced_step.y.dtype(), dtype);
  EXPECT_EQ(reduced_step.y_eval.dtype(), dtype);
  EXPECT_EQ(reduced.weight().dtype(), DType::f32);
  EXPECT_EQ(reduced.weight().grad().dtype(), DType::f32);
  EXPECT_EQ(reduced.bias().grad().dtype(), DType::f32);
  EXPECT_EQ(bits_of(reduced_step.y), rounded_bits_of(f32_step.y, dtype)) << "y";
  EXPECT_EQ(bits_of(reduced_step.dL_dx), rounded_bits_of(f32_step.dL_dx, dtype)) << "dL_dx";
  EXPECT_EQ(bits_of(reduced_step.y_eval), rounded_bits_of(f32_step.y_eval, dtype)) << "eval y";
  EXPECT_EQ(bits_of(reduced.weight().grad()), bits_of(f32.weight().grad())) << "dL_dweight";
  EXPECT_EQ(bits_of(reduced.bias().grad()), bits_of(f32.bias().grad())) << "dL_dbias";
  EXPECT_EQ(bits_of(reduced.running_mean()), bits_of(f32.running_mean())) << "running mean";
  EXPECT_EQ(bits_of(reduced.running_var()), bits_of(f32.running_var())) << "running var";
  EXPECT_EQ(reduced.num_batches_tracked().template to_vector<std::int64_t>(stream), std::vector<std::int64_t>{1});
}

TEST_F(MixedPrecisionBatchNormTest, ModulesTakeReducedInputsWithF32State) {
  std::uint64_t seed = 300;
  for (const DType dtype : testing::kReducedDtypes) {
    SCOPED_TRACE(std::string(dtype_name(dtype)));
    expect_module_runs_the_f32_results_rounded_once<nn::BatchNorm2d>(
        nn::BatchNorm2dOptions{.momentum = 0.3f, .engine = Engine::custom}, dtype, seed += 10);
    expect_module_runs_the_f32_results_rounded_once<nn::BatchNorm2dActivation>(
        nn::BatchNorm2dActivationOptions{.momentum = 0.3f, .activation = FusedActivation::gelu}, dtype, seed += 10);
  }
}

// Batch norm runs in its input's dtype under autocast too: an f32 input gives the bits it
// gives without autocast, a reduced one stays reduced.
TEST_F(MixedPrecisionBatchNormTest, AutocastLeavesBatchNormInItsInputsDType) {
  const cudaStream_t stream = current_stream();
  const std::vector<float> values = testing::random_uniform(400, static_cast<std::size_t>(kShape.numel()), -2, 2);
  const auto outputs = [&](DType dtype) {
    const Tensor x = testing::storage_tensor(values, kShape, dtype, stream);
    BatchNormRunningStats running{.mean = Tensor::zeros(kChannels, DType::f32, stream), .var = ones(stream)};
    const Tensor weight = ones(stream);
    const Tensor bias = Tensor::zeros(kChannels, DType::f32, stream);
    return std::vector<Tensor>{F::batch_norm2d(x, weight, bias, running, true, {}, Engine::custom),
                               F::batch_norm2d_activation(x, weight, bias, running, true), running.mean};
  };
  for (const DType input : {DType::f32, DType::bf16, DType::f16}) {
    SCOPED_TRACE(std::string(dtype_name(input)));
    const std::vector<Tensor> plain = outputs(input);
    std::vector<Tensor> autocast;
    {
      AutocastGuard guard(DType::bf16);
      autocast = outputs(input);
    }
    for (std::size_t i = 0; i < plain.size(); ++i) {
      EXPECT_EQ(autocast[i].dtype(), plain[i].dtype());
      EXPECT_EQ(bits_of(autocast[i]), bits_of(plain[i])) << "output " << i;
    }
    EXPECT_EQ(plain[0].dtype(), input);
    EXPECT_EQ(plain[2].dtype(), DType::f32);
  }
}

TEST_F(MixedPrecisionBatchNormTest, DTypeErrorsNameTheOpAndOperand) {
  const cudaStream_t stream = current_stream();
  const Tensor x = Tensor::zeros(kShape, DType::bf16, stream);
  const Tensor f32_channels = Tensor::zeros(kChannels, DType::f32, stream);
  const Tensor bf16_channels = Tensor::zeros(kChannels, DType::bf16, stream);
  BatchNormRunningStats running{.mean = Tensor::zeros(kChannels, DType::f32, stream), .var = ones(stream)};
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { F::batch_norm2d(x, bf16_channels, f32_channels, running, true, {}, Engine::custom); }),
              HasSubstr("batch_norm2d: weight must have dtype f32 (batch norm's weight, bias and statistics stay f32 "
                        "whatever x's dtype), got Tensor("));
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { F::batch_norm2d_activation(x, f32_channels, bf16_channels, running, false); }),
              HasSubstr("batch_norm2d_activation: bias must have dtype f32"));
  const Tensor integer = Tensor::zeros(kShape, DType::i32, stream);
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { F::batch_norm2d(integer, f32_channels, f32_channels, running, true); }),
              HasSubstr("batch_norm2d: x must have dtype f32, f16 or bf16, got Tensor("));
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { F::batch_norm2d_activation(integer, f32_channels, f32_channels, running, true); }),
              HasSubstr("batch_norm2d_activation: x must have dtype f32, f16 or bf16, got Tensor("));
}

}  // namespace
}  // namespace strata
