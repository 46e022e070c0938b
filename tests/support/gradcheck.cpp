#include "tests/support/gradcheck.h"

#include <stdexcept>

namespace strata::testing {

std::vector<double> numerical_gradient(const std::function<double(std::span<const double>)>& f,
                                       std::vector<double> x, double step) {
  std::vector<double> gradient(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double original = x[i];
    x[i] = original + step;
    const double plus = f(x);
    x[i] = original - step;
    const double minus = f(x);
    x[i] = original;
    gradient[i] = (plus - minus) / (2 * step);
  }
  return gradient;
}

double weighted_sum(std::span<const double> values, std::span<const double> weights) {
  if (values.size() != weights.size()) throw std::invalid_argument("weighted_sum: sizes differ");
  double sum = 0;
  for (size_t i = 0; i < values.size(); ++i) sum += values[i] * weights[i];
  return sum;
}

}  // namespace strata::testing
