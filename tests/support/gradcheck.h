// Central finite differences in double, to check every backward pass against the
// derivative of its forward reference.
#pragma once

#include <functional>
#include <span>
#include <vector>

namespace strata::testing {

// d f / d x_i ~ (f(x + h e_i) - f(x - h e_i)) / (2 h), for every i.
std::vector<double> numerical_gradient(const std::function<double(std::span<const double>)>& f,
                                       std::vector<double> x, double step = 1e-6);

// sum_i values[i] * weights[i]: turns a tensor-valued forward into the scalar loss whose
// gradient with respect to the output is weights (the dL/dy given to the backward).
double weighted_sum(std::span<const double> values, std::span<const double> weights);

}  // namespace strata::testing
