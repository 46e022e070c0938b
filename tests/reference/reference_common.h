// Helpers shared by the CPU references: conversions between float tensors and the double
// vectors the references compute in.
#pragma once

#include <vector>

namespace strata::reference {

std::vector<double> to_double(const std::vector<float>& values);
std::vector<float> to_float(const std::vector<double>& values);

}  // namespace strata::reference
