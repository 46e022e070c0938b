// Helpers of the element-wise kernel tests (activations, dropout, add, concat), besides
// those of device_values.h: guard elements that must keep the poison pattern, tail sizes,
// inputs away from zero for finite differences across a kink, and f16/bf16 tensors (also
// used by the pooling and functional tests): values rounded to the dtype, read back, and
// the tolerance one rounding adds.
#pragma once

#include <bit>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "strata/core/errors.h"
#include "strata/core/tensor.h"
#include "tests/kernels/device_values.h"
#include "tests/support/compare.h"

namespace strata::testing {

// True when every value still holds the poison bits: for the guard elements after a view,
// which a kernel overrunning its tail would write (the caching allocator rounds blocks to
// 512 bytes, so AddressSanitizer cannot see small overruns).
inline ::testing::AssertionResult all_poison(std::span<const float> values) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (std::bit_cast<std::uint32_t>(values[i]) != kPoisonBits) {
      return ::testing::AssertionFailure() << "guard element " << i << " was written: " << values[i];
    }
  }
  return ::testing::AssertionSuccess();
}

// Sizes with every tail length after whole float4 groups.
inline constexpr std::int64_t kTailSizes[] = {1, 2, 3, 5, 6, 7, 9};
inline constexpr std::int64_t kGuardElements = 8;

inline std::vector<double> doubles(const std::vector<float>& values) { return {values.begin(), values.end()}; }

// Values in [low, high) with random signs: magnitudes bounded away from 0, for finite
// differences across a kink at 0.
inline std::vector<float> random_away_from_zero(std::uint64_t seed, std::size_t count, float low, float high) {
  std::vector<float> values = random_uniform(seed, count, low, high);
  const std::vector<float> signs = random_uniform(seed + 1, count);
  for (std::size_t i = 0; i < count; ++i) values[i] = signs[i] < 0 ? -values[i] : values[i];
  return values;
}

// ---- reduced-precision storage -------------------------------------------------------

inline constexpr DType kReducedDtypes[] = {DType::f16, DType::bf16};

// The elements of a floating tensor as floats (exact for f16 and bf16).
inline std::vector<float> float_values(const Tensor& tensor, cudaStream_t stream) {
  return (tensor.dtype() == DType::f32 ? tensor : tensor.to_dtype(DType::f32, stream)).to_vector<float>(stream);
}

// A device tensor of dtype holding values rounded to it (to nearest even), and the values it
// holds as floats: exactly what a kernel reads, for its reference.
struct RoundedTensor {
  Tensor tensor;
  std::vector<float> values;
};
inline RoundedTensor rounded_device(const std::vector<float>& values, const Shape& shape, DType dtype,
                                    cudaStream_t stream) {
  Tensor tensor = device_tensor(values, shape, stream).to_dtype(dtype, stream);
  std::vector<float> rounded = float_values(tensor, stream);
  return {std::move(tensor), std::move(rounded)};
}

// An output of dtype whose every element is NaN (the poison, rounded): an element a kernel
// leaves unwritten fails against a finite reference value.
inline Tensor poisoned_of(DType dtype, const Shape& shape, cudaStream_t stream) {
  const Tensor poison = poisoned_tensor(shape, stream);
  return dtype == DType::f32 ? poison : poison.to_dtype(dtype, stream);
}

// f32_bound widened by one rounding of the result to dtype: 2^-8 relative for bf16, 2^-11
// for f16 (plus its smallest subnormal, where relative precision ends), nothing for f32.
inline Tolerance rounded_tolerance(DType dtype, Tolerance f32_bound) {
  if (dtype == DType::bf16) return {f32_bound.abs_tol, f32_bound.rel_tol + 0x1p-8};
  if (dtype == DType::f16) return {f32_bound.abs_tol + 0x1p-24, f32_bound.rel_tol + 0x1p-11};
  return f32_bound;
}

}  // namespace strata::testing
