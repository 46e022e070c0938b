// Comparison helpers for kernel tests: element-wise |actual - expected| <= abs_tol +
// rel_tol * |expected|, reporting the first few mismatches with their index.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include <gtest/gtest.h>

namespace strata::testing {

struct Tolerance {
  double abs_tol = 0.0;
  double rel_tol = 0.0;
};

// Success when every element is within tolerance (NaN matches NaN; an unwritten poisoned
// element fails), else a failure listing up to max_reported mismatches.
::testing::AssertionResult all_close(std::span<const float> actual, std::span<const double> expected,
                                     Tolerance tolerance, int max_reported = 8);
::testing::AssertionResult all_equal(std::span<const float> actual, std::span<const float> expected,
                                     int max_reported = 8);

// Value written into outputs before a kernel runs, so an element the kernel forgot to
// write fails the comparison. A signalling-looking NaN pattern that no kernel produces.
inline constexpr uint32_t kPoisonBits = 0x7fbadbadu;
float poison_value();

// Fresh seeded random inputs in [low, high). Tests pass their own seed so a failure
// reproduces; suites print it.
std::vector<float> random_uniform(uint64_t seed, size_t count, float low = -1.0f, float high = 1.0f);

}  // namespace strata::testing
