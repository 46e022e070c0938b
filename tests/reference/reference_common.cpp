#include "tests/reference/reference_common.h"

#include <cstddef>

namespace strata::reference {

std::vector<double> to_double(const std::vector<float>& values) { return {values.begin(), values.end()}; }

std::vector<float> to_float(const std::vector<double>& values) {
  std::vector<float> result(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) result[i] = static_cast<float>(values[i]);
  return result;
}

}  // namespace strata::reference
