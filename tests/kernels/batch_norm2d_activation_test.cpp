// batch_norm2d_activation (batch norm + none/ReLU/GELU/GELU-tanh in one pass) against:
// - the unfused kernels, batch_norm2d then relu/gelu (F::relu's backward reads the output,
//   F::gelu's the input): bit-identical in every output (y, saved and running statistics,
//   dL_dx, dL_dweight, dL_dbias; training and eval), since the fused op runs the same kernel
//   code with the same rounding and the same fixed-order double sums;
// - the CPU double reference (batch_norm_reference then elementwise_reference), within
//   float tolerance;
// - central finite differences in double of that reference, for every gradient, in
//   training and eval;
// with outputs poisoned first, every affine variant, odd shapes (C = 3, H * W = 1, N = 1,
// 33 channels, more values per channel than a block has threads), bit-identical reruns
// under several simulator schedules, gradient subsets and argument errors naming the op.
// In f16 and bf16 storage (x, y, dL_dy, dL_dx): the double reference of the rounded inputs
// within the f32 bound plus one rounding, the fused f32 run on the same inputs rounded once
// (bit for bit), and the dtype errors.
#include <cstdint>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "strata/core/stream.h"
#include "strata/kernels/activations.h"
#include "strata/kernels/batch_norm2d.h"
#include "strata/kernels/batch_norm2d_activation.h"
#include "tests/kernels/batch_norm2d_test_support.h"
#include "tests/kernels/device_values.h"
#include "tests/reference/batch_norm_reference.h"
#include "tests/reference/elementwise_reference.h"
#include "tests/support/compare.h"
#include "tests/support/gradcheck.h"
#include "tests/support/storage_dtypes.h"

namespace strata::kernels {
namespace {

using ::testing::HasSubstr;
using testing::Tolerance;

// Float arithmetic (statistics, erf, exp) against double.
constexpr Tolerance kForwardTolerance{.abs_tol = 1e-5, .rel_tol = 1e-5};
constexpr Tolerance kGradientTolerance{.abs_tol = 2e-5, .rel_tol = 1e-4};

constexpr BatchNormAffine kAffines[] = {BatchNormAffine::weight_and_bias, BatchNormAffine::bias_only,
                                        BatchNormAffine::none};

using Inputs = batch_norm_test::BatchNormInputs;
using Outputs = batch_norm_test::BatchNormOutputs;
using batch_norm_test::bit_identical;
using batch_norm_test::optional_tensor;
using batch_norm_test::poisoned_gradients;
using batch_norm_test::optional_values;
using batch_norm_test::sizes_of;
using testing::storage_values;

Inputs random_inputs(std::uint64_t seed, const Shape& shape, BatchNormAffine affine, bool track_running) {
  return batch_norm_test::random_inputs(seed, shape, affine, track_running, -1.5f, 2.5f);
}

// Device tensors of one case, x and dL_dy stored in dtype, the running statistics fresh
// copies for each run.
struct DeviceInputs {
  Tensor x, weight, bias, dL_dy;
  BatchNormRunningStats running;

  DeviceInputs(const Inputs& in, cudaStream_t stream, DType dtype = DType::f32)
      : x(testing::storage_tensor(in.x, in.shape, dtype, stream)),
        weight(optional_tensor(in.weight, Shape{in.shape[1]}, stream)),
        bias(optional_tensor(in.bias, Shape{in.shape[1]}, stream)),
        dL_dy(testing::storage_tensor(in.dL_dy, in.shape, dtype, stream)),
        running{.mean = optional_tensor(in.running_mean, Shape{in.shape[1]}, stream),
                .var = optional_tensor(in.running_var, Shape{in.shape[1]}, stream)} {}
};

void store_gradients(const BatchNormGradients& gradients, std::vector<float>& dL_dx, std::vector<float>& dL_dweight,
                     std::vector<float>& dL_dbias, cudaStream_t stream) {
  dL_dx = storage_values(gradients.dL_dx, stream);
  dL_dweight = optional_values(gradients.dL_dweight, stream);
  dL_dbias = optional_values(gradients.dL_dbias, stream);
}

// The fused op: training forward, backward, and (running statistics tracked) eval forward and
// backward, every output poisoned first; x, y, dL_dy and dL_dx stored in dtype.
Outputs run_fused(const Inputs& in, const BatchNormActivationParams& params, cudaStream_t stream,
                  DType dtype = DType::f32) {
  const Shape channels{in.shape[1]};
  DeviceInputs device(in, stream, dtype);
  Tensor y = testing::poisoned_storage(in.shape, dtype, stream);
  BatchNormSaved saved{.mean = testing::poisoned_tensor(channels, stream),
                       .invstd = testing::poisoned_tensor(channels, stream)};
  batch_norm2d_activation_forward_training(device.x, device.weight, device.bias, device.running, y, saved, params,
                                           stream);
  BatchNormGradients gradients = poisoned_gradients(in.shape, params.norm, dtype, stream);
  batch_norm2d_activation_backward(device.dL_dy, device.x, device.weight, device.bias, saved, gradients, params,
                                   stream);
  Outputs out{.y = storage_values(y, stream),
              .saved_mean = saved.mean.to_vector<float>(stream),
              .saved_invstd = saved.invstd.to_vector<float>(stream),
              .running_mean = optional_values(device.running.mean, stream),
              .running_var = optional_values(device.running.var, stream)};
  store_gradients(gradients, out.dL_dx, out.dL_dweight, out.dL_dbias, stream);
  if (device.running.mean.defined()) {
    Tensor y_eval = testing::poisoned_storage(in.shape, dtype, stream);
    batch_norm2d_activation_forward_eval(device.x, device.weight, device.bias, device.running, y_eval, params, stream);
    out.y_eval = storage_values(y_eval, stream);
    BatchNormGradients eval_gradients = poisoned_gradients(in.shape, params.norm, dtype, stream);
    batch_norm2d_activation_backward_eval(device.dL_dy, device.x, device.weight, device.bias, device.running,
                                          eval_gradients, params, stream);
    store_gradients(eval_gradients, out.dL_dx_eval, out.dL_dweight_eval, out.dL_dbias_eval, stream);
  }
  return out;
}

// y = act(z) on the activation's own kernels, as F::relu / F::gelu run them.
Tensor activation_forward(const Tensor& z, FusedActivation activation, cudaStream_t stream) {
  switch (activation) {
    case FusedActivation::none: return z;
    case FusedActivation::relu: return relu_forward(z, {}, stream);
    case FusedActivation::gelu: return gelu_forward(z, {.approximation = GeluApproximation::none}, stream);
    case FusedActivation::gelu_tanh: return gelu_forward(z, {.approximation = GeluApproximation::tanh}, stream);
  }
  return Tensor();
}

// dL/dz from dL/dy: ReLU's backward from the output y (what F::relu saves), GELU's from z.
Tensor activation_backward(const Tensor& dL_dy, const Tensor& z, const Tensor& y, FusedActivation activation,
                           cudaStream_t stream) {
  switch (activation) {
    case FusedActivation::none: return dL_dy;
    case FusedActivation::relu: return relu_backward(dL_dy, y, {}, stream);
    case FusedActivation::gelu: return gelu_backward(dL_dy, z, {.approximation = GeluApproximation::none}, stream);
    case FusedActivation::gelu_tanh:
      return gelu_backward(dL_dy, z, {.approximation = GeluApproximation::tanh}, stream);
  }
  return Tensor();
}

// The same steps unfused: batch_norm2d's kernels, then the activation's.
Outputs run_unfused(const Inputs& in, const BatchNormActivationParams& params, cudaStream_t stream) {
  const Shape channels{in.shape[1]};
  DeviceInputs device(in, stream);
  Tensor z = Tensor::empty(in.shape, DType::f32, stream);  // (N, C, H, W), the pre-activation
  BatchNormSaved saved{.mean = Tensor::empty(channels, DType::f32, stream),
                       .invstd = Tensor::empty(channels, DType::f32, stream)};
  batch_norm2d_forward_training(device.x, device.weight, device.bias, device.running, z, saved, params.norm, stream);
  const Tensor y = activation_forward(z, params.activation, stream);
  BatchNormGradients gradients = poisoned_gradients(in.shape, params.norm, DType::f32, stream);
  batch_norm2d_backward(activation_backward(device.dL_dy, z, y, params.activation, stream), device.x, device.weight,
                        saved, gradients, params.norm, stream);
  Outputs out{.y = y.to_vector<float>(stream),
              .saved_mean = saved.mean.to_vector<float>(stream),
              .saved_invstd = saved.invstd.to_vector<float>(stream),
              .running_mean = optional_values(device.running.mean, stream),
              .running_var = optional_values(device.running.var, stream)};
  store_gradients(gradients, out.dL_dx, out.dL_dweight, out.dL_dbias, stream);
  if (device.running.mean.defined()) {
    Tensor z_eval = Tensor::empty(in.shape, DType::f32, stream);
    batch_norm2d_forward_eval(device.x, device.weight, device.bias, device.running, z_eval, params.norm, stream);
    const Tensor y_eval = activation_forward(z_eval, params.activation, stream);
    out.y_eval = y_eval.to_vector<float>(stream);
    BatchNormGradients eval_gradients = poisoned_gradients(in.shape, params.norm, DType::f32, stream);
    batch_norm2d_backward_eval(activation_backward(device.dL_dy, z_eval, y_eval, params.activation, stream),
                               device.x, device.weight, device.running, eval_gradients, params.norm, stream);
    store_gradients(eval_gradients, out.dL_dx_eval, out.dL_dweight_eval, out.dL_dbias_eval, stream);
  }
  return out;
}

void expect_bit_identical(const Outputs& fused, const Outputs& unfused) {
  EXPECT_TRUE(bit_identical(fused.y, unfused.y)) << "y";
  EXPECT_TRUE(bit_identical(fused.saved_mean, unfused.saved_mean)) << "saved mean";
  EXPECT_TRUE(bit_identical(fused.saved_invstd, unfused.saved_invstd)) << "saved invstd";
  EXPECT_TRUE(bit_identical(fused.running_mean, unfused.running_mean)) << "running mean";
  EXPECT_TRUE(bit_identical(fused.running_var, unfused.running_var)) << "running var";
  EXPECT_TRUE(bit_identical(fused.dL_dx, unfused.dL_dx)) << "dL_dx";
  EXPECT_TRUE(bit_identical(fused.dL_dweight, unfused.dL_dweight)) << "dL_dweight";
  EXPECT_TRUE(bit_identical(fused.dL_dbias, unfused.dL_dbias)) << "dL_dbias";
  EXPECT_TRUE(bit_identical(fused.y_eval, unfused.y_eval)) << "y eval";
  EXPECT_TRUE(bit_identical(fused.dL_dx_eval, unfused.dL_dx_eval)) << "dL_dx eval";
  EXPECT_TRUE(bit_identical(fused.dL_dweight_eval, unfused.dL_dweight_eval)) << "dL_dweight eval";
  EXPECT_TRUE(bit_identical(fused.dL_dbias_eval, unfused.dL_dbias_eval)) << "dL_dbias eval";
}

// ---- the double reference ------------------------------------------------------------------

std::vector<double> activation_reference(std::span<const double> z, FusedActivation activation) {
  switch (activation) {
    case FusedActivation::none: return {z.begin(), z.end()};
    case FusedActivation::relu: return reference::relu_forward(z);
    case FusedActivation::gelu: return reference::gelu_forward(z, /*tanh_form=*/false);
    case FusedActivation::gelu_tanh: return reference::gelu_forward(z, /*tanh_form=*/true);
  }
  return {};
}

std::vector<double> activation_gradient_reference(std::span<const double> dL_dy, std::span<const double> z,
                                                  FusedActivation activation) {
  switch (activation) {
    case FusedActivation::none: return {dL_dy.begin(), dL_dy.end()};
    case FusedActivation::relu: return reference::relu_backward(dL_dy, z);
    case FusedActivation::gelu: return reference::gelu_backward(dL_dy, z, /*tanh_form=*/false);
    case FusedActivation::gelu_tanh: return reference::gelu_backward(dL_dy, z, /*tanh_form=*/true);
  }
  return {};
}

// act(BN(x)) in training mode, in double; the statistics and running statistics too.
reference::BatchNormTrainingResult training_reference(std::span<const double> x, std::span<const double> weight,
                                                      std::span<const double> bias, const Inputs& in,
                                                      const BatchNormActivationParams& params) {
  reference::BatchNormTrainingResult result = reference::batch_norm2d_training(
      x, weight, bias, testing::to_doubles(in.running_mean), testing::to_doubles(in.running_var), sizes_of(in.shape),
      params.norm.eps, params.norm.momentum);
  result.y = activation_reference(result.y, params.activation);
  return result;
}

std::vector<double> eval_reference(std::span<const double> x, std::span<const double> weight,
                                   std::span<const double> bias, std::span<const double> running_mean,
                                   std::span<const double> running_var, const Shape& shape,
                                   const BatchNormActivationParams& params) {
  return activation_reference(
      reference::batch_norm2d_eval(x, weight, bias, running_mean, running_var, sizes_of(shape), params.norm.eps),
      params.activation);
}

// y and dL_dx, stored in dtype, get one rounding more than the f32 bounds.
void expect_matches_reference(const Inputs& in, const Outputs& out, const BatchNormActivationParams& params,
                              DType dtype = DType::f32) {
  const Tolerance forward_stored = batch_norm_test::storage_tolerance(kForwardTolerance, dtype);
  const Tolerance gradient_stored = batch_norm_test::storage_tolerance(kGradientTolerance, dtype);
  const std::vector<double> x = testing::to_doubles(in.x), weight = testing::to_doubles(in.weight),
                            bias = testing::to_doubles(in.bias);
  const reference::BatchNormTrainingResult expected = training_reference(x, weight, bias, in, params);
  EXPECT_TRUE(testing::all_close(out.y, expected.y, forward_stored)) << "y";
  EXPECT_TRUE(testing::all_close(out.saved_mean, expected.mean, kForwardTolerance)) << "saved mean";
  EXPECT_TRUE(testing::all_close(out.saved_invstd, expected.invstd, kForwardTolerance)) << "saved invstd";
  EXPECT_TRUE(testing::all_close(out.running_mean, expected.running_mean, kForwardTolerance)) << "running mean";
  EXPECT_TRUE(testing::all_close(out.running_var, expected.running_var, kForwardTolerance)) << "running var";
  // The backward: dL/dz = dL/dy * act'(z) at the double z, then batch norm's backward.
  const reference::BatchNormTrainingResult plain = reference::batch_norm2d_training(
      x, weight, bias, {}, {}, sizes_of(in.shape), params.norm.eps, params.norm.momentum);
  const std::vector<double> dL_dz =
      activation_gradient_reference(testing::to_doubles(in.dL_dy), plain.y, params.activation);
  const reference::BatchNormGradientsResult gradients =
      reference::batch_norm2d_backward(dL_dz, x, weight, sizes_of(in.shape), params.norm.eps);
  EXPECT_TRUE(testing::all_close(out.dL_dx, gradients.dL_dx, gradient_stored)) << "dL_dx";
  if (!in.weight.empty()) {
    EXPECT_TRUE(testing::all_close(out.dL_dweight, gradients.dL_dweight, kGradientTolerance)) << "dL_dweight";
  }
  if (!in.bias.empty()) {
    EXPECT_TRUE(testing::all_close(out.dL_dbias, gradients.dL_dbias, kGradientTolerance)) << "dL_dbias";
  }
  if (!in.running_mean.empty()) {
    EXPECT_TRUE(testing::all_close(out.y_eval,
                                   eval_reference(x, weight, bias, expected.running_mean, expected.running_var,
                                                  in.shape, params),
                                   forward_stored))
        << "y eval";
  }
}

// ---- tests -----------------------------------------------------------------------------------

class BatchNorm2dActivationTest : public ::testing::TestWithParam<FusedActivation> {};

INSTANTIATE_TEST_SUITE_P(BatchNorm2dActivation, BatchNorm2dActivationTest,
                         ::testing::Values(FusedActivation::none, FusedActivation::relu, FusedActivation::gelu,
                                           FusedActivation::gelu_tanh),
                         [](const auto& test_info) { return std::string(fused_activation_name(test_info.param)); });

// Shapes: C = 3 with H * W = 1, N = 1, 33 channels, 544 values per channel (more than a
// block's 256 threads), and the smallest a training batch norm takes, two values.
const std::vector<Shape> kShapes{Shape{2, 3, 4, 5}, Shape{4, 3, 1, 1}, Shape{1, 3, 3, 7},
                                 Shape{4, 33, 2, 3}, Shape{2, 2, 16, 17}, Shape{2, 1, 1, 1}};

TEST_P(BatchNorm2dActivationTest, BitIdenticalToBatchNormThenTheActivationsKernels) {
  Stream stream;
  std::uint64_t seed = 1000;
  for (const BatchNormAffine affine : kAffines) {
    const BatchNormActivationParams params{.norm = {.eps = 1e-5f, .momentum = 0.1f, .affine = affine},
                                           .activation = GetParam()};
    for (const Shape& shape : kShapes) {
      for (const bool track_running : {true, false}) {
        SCOPED_TRACE(fmt::format("x {}, affine {}, running statistics {}, seed {}", shape.to_string(),
                                 batch_norm_affine_name(affine), track_running, seed));
        const Inputs in = random_inputs(seed, shape, affine, track_running);
        seed += 10;
        expect_bit_identical(run_fused(in, params, stream), run_unfused(in, params, stream));
      }
    }
  }
}

TEST_P(BatchNorm2dActivationTest, MatchesTheDoubleReference) {
  Stream stream;
  std::uint64_t seed = 2000;
  for (const BatchNormAffine affine : kAffines) {
    // airbench94's eps and a larger momentum, besides the defaults.
    for (const BatchNormParams norm : {BatchNormParams{.affine = affine},
                                       BatchNormParams{.eps = 1e-12f, .momentum = 0.6f, .affine = affine}}) {
      const BatchNormActivationParams params{.norm = norm, .activation = GetParam()};
      for (const Shape& shape : kShapes) {
        SCOPED_TRACE(fmt::format("x {}, affine {}, eps {}, seed {}", shape.to_string(),
                                 batch_norm_affine_name(affine), norm.eps, seed));
        const Inputs in = random_inputs(seed, shape, affine, /*track_running=*/true);
        seed += 10;
        expect_matches_reference(in, run_fused(in, params, stream), params);
      }
    }
  }
}

TEST_P(BatchNorm2dActivationTest, TrainingBackwardMatchesFiniteDifferences) {
  Stream stream;
  const Shape shape{2, 3, 3, 2};
  const Tolerance tolerance{.abs_tol = 1e-5, .rel_tol = 1e-4};
  std::uint64_t seed = 3000;
  for (const BatchNormAffine affine : kAffines) {
    SCOPED_TRACE(fmt::format("affine {}, seed {}", batch_norm_affine_name(affine), seed));
    const BatchNormActivationParams params{.norm = {.eps = 1e-3f, .affine = affine}, .activation = GetParam()};
    const Inputs in = random_inputs(seed, shape, affine, /*track_running=*/false);
    seed += 10;
    const Outputs out = run_fused(in, params, stream);
    const std::vector<double> weights = testing::to_doubles(in.dL_dy);
    const std::vector<double> x = testing::to_doubles(in.x), weight = testing::to_doubles(in.weight),
                              bias = testing::to_doubles(in.bias);
    const auto loss = [&](std::span<const double> x_in, std::span<const double> weight_in,
                          std::span<const double> bias_in) {
      return testing::weighted_sum(training_reference(x_in, weight_in, bias_in, in, params).y, weights);
    };
    EXPECT_TRUE(testing::all_close(
        out.dL_dx, testing::numerical_gradient([&](std::span<const double> v) { return loss(v, weight, bias); }, x),
        tolerance))
        << "dL_dx";
    if (!weight.empty()) {
      EXPECT_TRUE(testing::all_close(
          out.dL_dweight,
          testing::numerical_gradient([&](std::span<const double> v) { return loss(x, v, bias); }, weight),
          tolerance))
          << "dL_dweight";
    }
    if (!bias.empty()) {
      EXPECT_TRUE(testing::all_close(
          out.dL_dbias,
          testing::numerical_gradient([&](std::span<const double> v) { return loss(x, weight, v); }, bias),
          tolerance))
          << "dL_dbias";
    }
  }
}

// Eval: the running statistics are constants (frozen batch norm).
TEST_P(BatchNorm2dActivationTest, EvalBackwardMatchesFiniteDifferences) {
  Stream stream;
  const Shape shape{2, 3, 3, 2};
  const Tolerance tolerance{.abs_tol = 1e-5, .rel_tol = 1e-4};
  std::uint64_t seed = 4000;
  for (const BatchNormAffine affine : kAffines) {
    SCOPED_TRACE(fmt::format("affine {}, seed {}", batch_norm_affine_name(affine), seed));
    const BatchNormActivationParams params{.norm = {.eps = 1e-3f, .affine = affine}, .activation = GetParam()};
    const Inputs in = random_inputs(seed, shape, affine, /*track_running=*/true);
    seed += 10;
    DeviceInputs device(in, stream);
    BatchNormGradients gradients = poisoned_gradients(shape, params.norm, DType::f32, stream);
    batch_norm2d_activation_backward_eval(device.dL_dy, device.x, device.weight, device.bias, device.running,
                                          gradients, params, stream);
    const std::vector<double> weights = testing::to_doubles(in.dL_dy);
    const std::vector<double> x = testing::to_doubles(in.x), weight = testing::to_doubles(in.weight),
                              bias = testing::to_doubles(in.bias);
    const std::vector<double> mean = testing::to_doubles(in.running_mean), var = testing::to_doubles(in.running_var);
    const auto loss = [&](std::span<const double> x_in, std::span<const double> weight_in,
                          std::span<const double> bias_in) {
      return testing::weighted_sum(eval_reference(x_in, weight_in, bias_in, mean, var, shape, params), weights);
    };
    EXPECT_TRUE(testing::all_close(
        gradients.dL_dx.to_vector<float>(stream),
        testing::numerical_gradient([&](std::span<const double> v) { return loss(v, weight, bias); }, x), tolerance))
        << "dL_dx";
    if (gradients.dL_dweight.defined()) {
      EXPECT_TRUE(testing::all_close(
          gradients.dL_dweight.to_vector<float>(stream),
          testing::numerical_gradient([&](std::span<const double> v) { return loss(x, v, bias); }, weight),
          tolerance))
          << "dL_dweight";
    }
    if (gradients.dL_dbias.defined()) {
      EXPECT_TRUE(testing::all_close(
          gradients.dL_dbias.to_vector<float>(stream),
          testing::numerical_gradient([&](std::span<const double> v) { return loss(x, weight, v); }, bias),
          tolerance))
          << "dL_dbias";
    }
  }
}

TEST_P(BatchNorm2dActivationTest, RerunsAreBitIdentical) {
  Stream stream;
  const BatchNormActivationParams params{.activation = GetParam()};
  const Inputs in = random_inputs(5000, {3, 5, 13, 11}, BatchNormAffine::weight_and_bias, true);
  const auto results = testing::run_with_schedule_seeds<std::vector<std::uint32_t>>([&] {
    const Outputs out = run_fused(in, params, stream);
    std::vector<float> values;
    for (const std::vector<float>* part :
         {&out.y, &out.saved_mean, &out.saved_invstd, &out.running_mean, &out.running_var, &out.dL_dx, &out.dL_dweight,
          &out.dL_dbias, &out.y_eval, &out.dL_dx_eval, &out.dL_dweight_eval, &out.dL_dbias_eval}) {
      values.insert(values.end(), part->begin(), part->end());
    }
    return testing::bit_patterns(values);
  });
  for (std::size_t i = 1; i < results.size(); ++i) EXPECT_EQ(results[i], results[0]) << "rerun " << i;
}

// Any subset of the gradients: each the same bits as when all are asked for.
TEST_P(BatchNorm2dActivationTest, GradientSubsetsMatchTheFullBackward) {
  Stream stream;
  const BatchNormActivationParams params{.activation = GetParam()};
  const Inputs in = random_inputs(6000, {2, 4, 3, 5}, BatchNormAffine::weight_and_bias, true);
  const Outputs full = run_fused(in, params, stream);
  DeviceInputs device(in, stream);
  const Shape channels{in.shape[1]};
  BatchNormSaved saved{.mean = Tensor::empty(channels, DType::f32, stream),
                       .invstd = Tensor::empty(channels, DType::f32, stream)};
  Tensor y = Tensor::empty(in.shape, DType::f32, stream);
  BatchNormRunningStats untracked;
  batch_norm2d_activation_forward_training(device.x, device.weight, device.bias, untracked, y, saved, params, stream);
  const std::vector<float> none;  // a gradient not asked for
  for (const int subset : {1, 2, 4, 3, 6}) {  // bits: dL_dx, dL_dweight, dL_dbias
    SCOPED_TRACE(fmt::format("subset {}", subset));
    BatchNormGradients gradients{
        .dL_dx = (subset & 1) != 0 ? testing::poisoned_tensor(in.shape, stream) : Tensor(),
        .dL_dweight = (subset & 2) != 0 ? testing::poisoned_tensor(channels, stream) : Tensor(),
        .dL_dbias = (subset & 4) != 0 ? testing::poisoned_tensor(channels, stream) : Tensor()};
    batch_norm2d_activation_backward(device.dL_dy, device.x, device.weight, device.bias, saved, gradients, params,
                                     stream);
    EXPECT_TRUE(bit_identical(optional_values(gradients.dL_dx, stream), (subset & 1) != 0 ? full.dL_dx : none));
    EXPECT_TRUE(
        bit_identical(optional_values(gradients.dL_dweight, stream), (subset & 2) != 0 ? full.dL_dweight : none));
    EXPECT_TRUE(bit_identical(optional_values(gradients.dL_dbias, stream), (subset & 4) != 0 ? full.dL_dbias : none));
  }
}

// ---- f16 and bf16 storage -------------------------------------------------------------------

class BatchNorm2dActivationStorageTest
    : public ::testing::TestWithParam<std::tuple<DType, FusedActivation>> {};

INSTANTIATE_TEST_SUITE_P(BatchNorm2dActivation, BatchNorm2dActivationStorageTest,
                         ::testing::Combine(::testing::ValuesIn(testing::kReducedDtypes),
                                            ::testing::Values(FusedActivation::none, FusedActivation::relu,
                                                              FusedActivation::gelu, FusedActivation::gelu_tanh)),
                         [](const auto& test_info) {
                           return fmt::format("{}_{}", dtype_name(std::get<0>(test_info.param)),
                                              fused_activation_name(std::get<1>(test_info.param)));
                         });

// kShapes but the two-value one, whose outputs are only +-1 (and bias): little to round.
const std::vector<Shape> kStorageShapes{Shape{2, 3, 4, 5}, Shape{4, 3, 1, 1}, Shape{1, 3, 3, 7}, Shape{4, 33, 2, 3},
                                        Shape{2, 2, 16, 17}};

// Inputs rounded to the dtype first: the reference sees the values the kernels read.
TEST_P(BatchNorm2dActivationStorageTest, MatchesTheDoubleReferenceOfTheRoundedInputs) {
  const auto [dtype, activation] = GetParam();
  Stream stream;
  std::uint64_t seed = 7000;
  for (const BatchNormAffine affine : kAffines) {
    const BatchNormActivationParams params{.norm = {.eps = 1e-5f, .momentum = 0.1f, .affine = affine},
                                           .activation = activation};
    for (const Shape& shape : kStorageShapes) {
      SCOPED_TRACE(fmt::format("x {}, affine {}, seed {}", shape.to_string(), batch_norm_affine_name(affine), seed));
      const Inputs in =
          batch_norm_test::rounded_inputs(random_inputs(seed, shape, affine, /*track_running=*/true), dtype, stream);
      seed += 10;
      expect_matches_reference(in, run_fused(in, params, stream, dtype), params, dtype);
    }
  }
}

// The activation is applied to the float z, never rounded: y is the f32 op's y rounded once
// (unlike batch_norm2d then the activation in the dtype, which round z too).
TEST_P(BatchNorm2dActivationStorageTest, IsTheF32ResultOfTheRoundedInputsRoundedOnce) {
  const auto [dtype, activation] = GetParam();
  Stream stream;
  std::uint64_t seed = 7500;
  for (const BatchNormAffine affine : kAffines) {
    const BatchNormActivationParams params{.norm = {.eps = 1e-5f, .momentum = 0.1f, .affine = affine},
                                           .activation = activation};
    for (const Shape& shape : kStorageShapes) {
      SCOPED_TRACE(fmt::format("x {}, affine {}, seed {}", shape.to_string(), batch_norm_affine_name(affine), seed));
      const Inputs in =
          batch_norm_test::rounded_inputs(random_inputs(seed, shape, affine, /*track_running=*/true), dtype, stream);
      seed += 10;
      batch_norm_test::expect_f32_results_rounded_once(run_fused(in, params, stream, dtype),
                                                       run_fused(in, params, stream), dtype, stream);
    }
  }
}

TEST_P(BatchNorm2dActivationStorageTest, DTypeErrorsNameTheOperands) {
  const auto [dtype, activation] = GetParam();
  const BatchNormActivationParams params{.activation = activation};
  Stream stream;
  const Shape shape{2, 3, 2, 2};
  const Tensor x = Tensor::zeros(shape, dtype, stream);
  const Tensor channels = Tensor::zeros({3}, DType::f32, stream);
  Tensor y_f32 = Tensor::zeros(shape, DType::f32, stream);
  BatchNormSaved saved{.mean = Tensor::zeros({3}, DType::f32, stream),
                       .invstd = Tensor::zeros({3}, DType::f32, stream)};
  BatchNormRunningStats none;
  const std::string name(dtype_name(dtype));
  EXPECT_THAT(testing::invalid_argument_message([&] {
                batch_norm2d_activation_forward_training(x, channels, channels, none, y_f32, saved, params, stream);
              }),
              HasSubstr("batch_norm2d_activation: y has dtype f32 but x has dtype " + name +
                        "; the operands must share one dtype (cast one with F::to_dtype, or run the model "
                        "under strata::AutocastGuard)"));
  const Tensor reduced_bias = Tensor::zeros({3}, dtype, stream);
  Tensor y = Tensor::zeros(shape, dtype, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] {
                batch_norm2d_activation_forward_training(x, channels, reduced_bias, none, y, saved, params, stream);
              }),
              HasSubstr("batch_norm2d_activation: bias must have dtype f32"));
  BatchNormGradients gradients{.dL_dx = Tensor::zeros(shape, dtype, stream)};
  EXPECT_THAT(testing::invalid_argument_message([&] {
                batch_norm2d_activation_backward(y_f32, x, channels, channels, saved, gradients, params, stream);
              }),
              HasSubstr("batch_norm2d_activation: dL_dy has dtype f32 but x has dtype " + name));
}

// Small integers where every step is exact: x (1, 2, 1, 2), channel 0 {1, 3} (mean 2,
// variance 1), channel 1 {-2, 6} (mean 2, variance 16), eps 0, weight (2, 3), bias (1, -1):
// z = {-1, 3, -4, 2}, as in batch_norm2d_test.
TEST(BatchNorm2dActivation, ReluOfSmallIntegersIsExact) {
  Stream stream;
  const BatchNormActivationParams params{.norm = {.eps = 0.0f, .momentum = 1.0f},
                                         .activation = FusedActivation::relu};
  const Inputs in{.shape = {1, 2, 1, 2},
                  .x = {1, 3, -2, 6},
                  .weight = {2, 3},
                  .bias = {1, -1},
                  .running_mean = {7, 7},
                  .running_var = {7, 7},
                  .dL_dy = {1, 1, 2, -2}};
  const Outputs out = run_fused(in, params, stream);
  EXPECT_TRUE(testing::all_equal(out.y, std::vector<float>{0, 3, 0, 2}));
  EXPECT_TRUE(testing::all_equal(out.saved_mean, std::vector<float>{2, 2}));
  EXPECT_TRUE(testing::all_equal(out.saved_invstd, std::vector<float>{1, 0.25f}));
  // dL/dz = {0, 1, 0, -2}; x_hat = {-1, 1, -1, 1}. Channel 0: dL_dbias 1, dL_dweight 1,
  // dL/dx = 2 * 1 * ({0, 1} - 0.5 - x_hat * 0.5) = {0, 0}. Channel 1: dL_dbias -2,
  // dL_dweight -2, dL/dx = 3 * 0.25 * ({0, -2} + 1 - x_hat * -1) = {0, 0}.
  EXPECT_TRUE(testing::all_equal(out.dL_dx, std::vector<float>{0, 0, 0, 0}));
  EXPECT_TRUE(testing::all_equal(out.dL_dweight, std::vector<float>{1, -2}));
  EXPECT_TRUE(testing::all_equal(out.dL_dbias, std::vector<float>{1, -2}));
}

TEST(BatchNorm2dActivation, ActivationNames) {
  EXPECT_STREQ(fused_activation_name(FusedActivation::none), "none");
  EXPECT_STREQ(fused_activation_name(FusedActivation::relu), "relu");
  EXPECT_STREQ(fused_activation_name(FusedActivation::gelu), "gelu");
  EXPECT_STREQ(fused_activation_name(FusedActivation::gelu_tanh), "gelu_tanh");
}

TEST(BatchNorm2dActivation, ArgumentErrorsNameTheOpAndShapes) {
  Stream stream;
  const Tensor x = Tensor::zeros({2, 3, 2, 2}, DType::f32, stream);
  const Tensor channels = Tensor::zeros({3}, DType::f32, stream);
  const Tensor four = Tensor::zeros({4}, DType::f32, stream);
  Tensor y = Tensor::zeros({2, 3, 2, 2}, DType::f32, stream);
  BatchNormSaved saved{.mean = Tensor::zeros({3}, DType::f32, stream),
                       .invstd = Tensor::zeros({3}, DType::f32, stream)};
  BatchNormRunningStats none;
  const BatchNormActivationParams bias_only{.norm = {.affine = BatchNormAffine::bias_only}};
  EXPECT_THAT(
      testing::invalid_argument_message(
          [] { batch_norm2d_activation_channel_shape({1, 3, 1, 1}, BatchNormMode::training); }),
      HasSubstr("batch_norm2d_activation: expected more than 1 value per channel when training, got x (1, 3, 1, 1)"));
  EXPECT_THAT(testing::invalid_argument_message([&] {
                batch_norm2d_activation_forward_training(x, channels, channels, none, y, saved, bias_only, stream);
              }),
              HasSubstr("batch_norm2d_activation: affine bias_only takes no weight (it is fixed at 1), got Tensor("));
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { batch_norm2d_activation_forward_training(x, four, channels, none, y, saved, {}, stream); }),
              HasSubstr("batch_norm2d_activation: weight must have shape (3), got (4)"));
  EXPECT_THAT(testing::invalid_argument_message(
                  [&] { batch_norm2d_activation_forward_eval(x, channels, channels, none, y, {}, stream); }),
              HasSubstr("batch_norm2d_activation: eval needs the running mean and variance (x (2, 3, 2, 2))"));
  Tensor aliased = x;
  EXPECT_THAT(testing::invalid_argument_message([&] {
                batch_norm2d_activation_forward_training(x, channels, channels, none, aliased, saved, {}, stream);
              }),
              HasSubstr("batch_norm2d_activation: y (2, 3, 2, 2) overlaps x (2, 3, 2, 2)"));
  // The backward recomputes z, so it needs the bias the forward had.
  BatchNormGradients gradients{.dL_dx = Tensor::zeros({2, 3, 2, 2}, DType::f32, stream)};
  EXPECT_THAT(testing::invalid_argument_message([&] {
                batch_norm2d_activation_backward(y, x, channels, Tensor(), saved, gradients, {}, stream);
              }),
              HasSubstr("batch_norm2d_activation: affine weight_and_bias needs a bias, got none"));
  EXPECT_THAT(testing::invalid_argument_message([&] {
                batch_norm2d_activation_backward(y, x, channels, four, saved, gradients, {}, stream);
              }),
              HasSubstr("batch_norm2d_activation: bias must have shape (3), got (4)"));
  const Tensor wrong_dL_dy = Tensor::zeros({2, 3, 2, 3}, DType::f32, stream);
  EXPECT_THAT(testing::invalid_argument_message([&] {
                batch_norm2d_activation_backward(wrong_dL_dy, x, channels, channels, saved, gradients, {}, stream);
              }),
              HasSubstr("batch_norm2d_activation: dL_dy must have shape (2, 3, 2, 2), got (2, 3, 2, 3)"));
}

}  // namespace
}  // namespace strata::kernels
