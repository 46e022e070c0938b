#include "tests/support/compare.h"

#include <bit>
#include <cmath>
#include <random>
#include <sstream>

namespace strata::testing {

float poison_value() { return std::bit_cast<float>(kPoisonBits); }

::testing::AssertionResult all_close(std::span<const float> actual, std::span<const double> expected,
                                     Tolerance tolerance, int max_reported) {
  if (actual.size() != expected.size()) {
    return ::testing::AssertionFailure() << "size mismatch: actual " << actual.size() << ", expected "
                                         << expected.size();
  }
  std::ostringstream report;
  size_t mismatches = 0;
  double worst_excess = 0.0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double a = actual[i];
    const double e = expected[i];
    bool ok;
    if (std::isnan(e)) {
      ok = std::isnan(a) && std::bit_cast<uint32_t>(actual[i]) != kPoisonBits;
    } else {
      ok = std::isfinite(a) == std::isfinite(e) && (std::isinf(e) ? a == e : std::abs(a - e) <= tolerance.abs_tol + tolerance.rel_tol * std::abs(e));
    }
    if (!ok) {
      if (static_cast<int>(mismatches) < max_reported) {
        report << "\n  [" << i << "] actual " << a << (std::bit_cast<uint32_t>(actual[i]) == kPoisonBits ? " (poison: never written)" : "")
               << ", expected " << e << ", |diff| " << std::abs(a - e);
      }
      ++mismatches;
      if (std::isfinite(a - e)) worst_excess = std::max(worst_excess, std::abs(a - e));
    }
  }
  if (mismatches == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << mismatches << " of " << actual.size() << " elements differ (abs_tol "
                                       << tolerance.abs_tol << ", rel_tol " << tolerance.rel_tol
                                       << ", largest finite |diff| " << worst_excess << "):" << report.str();
}

::testing::AssertionResult all_equal(std::span<const float> actual, std::span<const float> expected,
                                     int max_reported) {
  std::vector<double> expected_double(expected.begin(), expected.end());
  return all_close(actual, expected_double, Tolerance{}, max_reported);
}

std::vector<float> random_uniform(uint64_t seed, size_t count, float low, float high) {
  std::mt19937_64 generator(seed);
  std::uniform_real_distribution<float> distribution(low, high);
  std::vector<float> values(count);
  for (float& v : values) v = distribution(generator);
  return values;
}

}  // namespace strata::testing
