// What the batch norm kernel tests share (batch_norm2d_test.cpp and the fused
// batch_norm2d_activation_test.cpp): the host inputs of one case and their seeded draw, the
// outputs a run wrote, optional per-channel device tensors, bit-for-bit comparison, and for
// f16/bf16 storage (besides storage_dtypes.h): inputs rounded to the dtype (so the reference
// sees exactly the values the kernels read), the tolerance of an output rounded once to its
// dtype, and the comparison with the f32 run of the same inputs.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "strata/core/tensor.h"
#include "strata/kernels/batch_norm2d.h"
#include "tests/kernels/device_values.h"
#include "tests/reference/batch_norm_reference.h"
#include "tests/support/compare.h"
#include "tests/support/storage_dtypes.h"

namespace strata::kernels::batch_norm_test {

// Host inputs of one case; weight and bias are empty when the affine variant has none.
struct BatchNormInputs {
  Shape shape{};  // (N, C, H, W)
  std::vector<float> x{};
  std::vector<float> weight{};
  std::vector<float> bias{};
  std::vector<float> running_mean{};  // empty: not tracked
  std::vector<float> running_var{};
  std::vector<float> dL_dy{};
};

// What a run wrote, on the host, as float whatever the storage dtype. The eval outputs use
// the running statistics after the training forward's update; empty when none are tracked.
struct BatchNormOutputs {
  std::vector<float> y{};
  std::vector<float> saved_mean{};
  std::vector<float> saved_invstd{};
  std::vector<float> running_mean{};
  std::vector<float> running_var{};
  std::vector<float> dL_dx{};
  std::vector<float> dL_dweight{};
  std::vector<float> dL_dbias{};
  std::vector<float> y_eval{};
  std::vector<float> dL_dx_eval{};
  std::vector<float> dL_dweight_eval{};
  std::vector<float> dL_dbias_eval{};
};

// x uniform in [x_low, x_high), weight in [0.5, 1.5), running variance in [0.5, 1.5), bias,
// running mean and dL_dy in [-1, 1).
inline BatchNormInputs random_inputs(std::uint64_t seed, const Shape& shape, BatchNormAffine affine,
                                     bool track_running, float x_low, float x_high) {
  const auto count = static_cast<std::size_t>(shape.numel());
  const auto channels = static_cast<std::size_t>(shape[1]);
  BatchNormInputs in{.shape = shape, .x = testing::random_uniform(seed, count, x_low, x_high)};
  if (affine == BatchNormAffine::weight_and_bias) in.weight = testing::random_uniform(seed + 1, channels, 0.5f, 1.5f);
  if (affine != BatchNormAffine::none) in.bias = testing::random_uniform(seed + 2, channels);
  if (track_running) {
    in.running_mean = testing::random_uniform(seed + 3, channels);
    in.running_var = testing::random_uniform(seed + 4, channels, 0.5f, 1.5f);
  }
  in.dL_dy = testing::random_uniform(seed + 5, count);
  return in;
}

inline reference::BatchNormSizes sizes_of(const Shape& shape) {
  return {.batch = shape[0], .channels = shape[1], .height = shape[2], .width = shape[3]};
}

// A (C) f32 device tensor of values, or undefined when there are none.
inline Tensor optional_tensor(const std::vector<float>& values, const Shape& shape, cudaStream_t stream) {
  return values.empty() ? Tensor() : testing::device_tensor(values, shape, stream);
}

inline std::vector<float> optional_values(const Tensor& tensor, cudaStream_t stream) {
  return tensor.defined() ? tensor.to_vector<float>(stream) : std::vector<float>{};
}

// Poisoned gradients: dL_dx (N, C, H, W) in dtype, dL_dweight and dL_dbias (C, f32) where the
// affine variant has them.
inline BatchNormGradients poisoned_gradients(const Shape& shape, const BatchNormParams& params, DType dtype,
                                             cudaStream_t stream) {
  const Shape channels{shape[1]};
  return {.dL_dx = testing::poisoned_storage(shape, dtype, stream),
          .dL_dweight = params.affine == BatchNormAffine::weight_and_bias ? testing::poisoned_tensor(channels, stream)
                                                                          : Tensor(),
          .dL_dbias = params.affine != BatchNormAffine::none ? testing::poisoned_tensor(channels, stream) : Tensor()};
}

// ---- storage dtypes ------------------------------------------------------------------------

// in with the tensors stored in dtype (x and dL_dy) rounded to it: the values a run in dtype
// reads, which the reference and an f32 run then take as theirs.
inline BatchNormInputs rounded_inputs(const BatchNormInputs& in, DType dtype, cudaStream_t stream) {
  BatchNormInputs rounded = in;
  rounded.x = testing::rounded_to(in.x, dtype, stream);
  rounded.dL_dy = testing::rounded_to(in.dL_dy, dtype, stream);
  return rounded;
}

// The bound of an output computed within f32 and then rounded once to dtype: the f32 bound
// plus one rounding, relative to max(|reference|, a small floor) (normalised outputs near 0).
inline testing::Tolerance storage_tolerance(testing::Tolerance f32, DType dtype) {
  constexpr double kMagnitudeFloor = 1e-3;
  return testing::storage_tolerance(dtype, f32, kMagnitudeFloor);
}

// Every element the same bits (so -0 differs from +0, and NaNs must match in payload).
inline ::testing::AssertionResult bit_identical(const std::vector<float>& actual, const std::vector<float>& expected) {
  if (actual.size() != expected.size()) {
    return ::testing::AssertionFailure() << "sizes differ: " << actual.size() << " against " << expected.size();
  }
  int mismatches = 0;
  ::testing::AssertionResult failure = ::testing::AssertionFailure();
  for (std::size_t i = 0; i < actual.size(); ++i) {
    if (std::memcmp(&actual[i], &expected[i], sizeof(float)) == 0) continue;
    if (++mismatches <= 8) failure << fmt::format("\n  [{}]: {:a} against {:a}", i, actual[i], expected[i]);
  }
  if (mismatches == 0) return ::testing::AssertionSuccess();
  return failure << "\n  " << mismatches << " of " << actual.size() << " elements differ";
}

// A run in a reduced dtype against the f32 run on the same (rounded) inputs: the storage
// outputs (y, dL_dx) are the f32 ones rounded once to dtype, and everything per channel
// (statistics, running statistics, parameter gradients) is the same bits, since the kernels
// compute in float from the same values.
inline void expect_f32_results_rounded_once(const BatchNormOutputs& reduced, const BatchNormOutputs& f32,
                                            DType dtype, cudaStream_t stream) {
  EXPECT_TRUE(bit_identical(reduced.y, testing::rounded_to(f32.y, dtype, stream))) << "y";
  EXPECT_TRUE(bit_identical(reduced.dL_dx, testing::rounded_to(f32.dL_dx, dtype, stream))) << "dL_dx";
  EXPECT_TRUE(bit_identical(reduced.y_eval, testing::rounded_to(f32.y_eval, dtype, stream))) << "y eval";
  EXPECT_TRUE(bit_identical(reduced.dL_dx_eval, testing::rounded_to(f32.dL_dx_eval, dtype, stream))) << "dL_dx eval";
  EXPECT_TRUE(bit_identical(reduced.saved_mean, f32.saved_mean)) << "saved mean";
  EXPECT_TRUE(bit_identical(reduced.saved_invstd, f32.saved_invstd)) << "saved invstd";
  EXPECT_TRUE(bit_identical(reduced.running_mean, f32.running_mean)) << "running mean";
  EXPECT_TRUE(bit_identical(reduced.running_var, f32.running_var)) << "running var";
  EXPECT_TRUE(bit_identical(reduced.dL_dweight, f32.dL_dweight)) << "dL_dweight";
  EXPECT_TRUE(bit_identical(reduced.dL_dbias, f32.dL_dbias)) << "dL_dbias";
  EXPECT_TRUE(bit_identical(reduced.dL_dweight_eval, f32.dL_dweight_eval)) << "dL_dweight eval";
  EXPECT_TRUE(bit_identical(reduced.dL_dbias_eval, f32.dL_dbias_eval)) << "dL_dbias eval";
}

}  // namespace strata::kernels::batch_norm_test
