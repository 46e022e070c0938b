// Helpers of the element-wise kernel tests (activations, dropout, add, concat), besides
// those of device_values.h and storage_dtypes.h: guard elements that must keep the poison
// pattern, tail sizes, the shapes of the f16/bf16 tests, and inputs away from zero for finite
// differences across a kink.
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
#include "tests/support/storage_dtypes.h"

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

// Shapes of the f16/bf16 tests: tails of 1 to 7 after whole 8-element (16-byte) vectors, a 4-D
// shape and a larger count.
inline const std::vector<Shape> kReducedShapes = {Shape{1}, Shape{7}, Shape{9}, Shape{23},
                                                  Shape{2, 3, 5, 7}, Shape{1001}};

}  // namespace strata::testing
