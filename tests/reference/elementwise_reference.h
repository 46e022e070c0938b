// CPU references of the element-wise kernels (relu, gelu, dropout, add, concat and split),
// in double with plain loops, written from the definitions rather than from the kernels.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace strata::reference {

// x where x >= 0 or NaN, else 0.
std::vector<double> relu_forward(std::span<const double> x);
// dL_dx = 0 where x <= 0, else dL_dy (0 at x = 0 and NaN passing, as in PyTorch).
std::vector<double> relu_backward(std::span<const double> dL_dy, std::span<const double> x);

// tanh_form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); otherwise x Phi(x).
std::vector<double> gelu_forward(std::span<const double> x, bool tanh_form);
std::vector<double> gelu_backward(std::span<const double> dL_dy, std::span<const double> x, bool tanh_form);

// Element i kept (1) iff the uniform of word offset + i of the Philox stream for seed is
// below 1 - p (in float), per strata/kernels/dropout.h.
std::vector<std::uint8_t> dropout_mask(std::uint64_t seed, std::uint64_t offset, std::size_t count, float p);
// x * mask / (1 - p); 0 everywhere for p = 1.
std::vector<double> dropout_forward(std::span<const double> x, std::span<const std::uint8_t> mask, double p);
std::vector<double> dropout_backward(std::span<const double> dL_dy, std::span<const std::uint8_t> mask, double p);

// a + alpha * b.
std::vector<double> add(std::span<const double> a, std::span<const double> b, double alpha);

// Concatenation of row-major tensors of the given shapes along dim, and the split of a
// concatenation back into pieces of those shapes.
std::vector<double> concat(const std::vector<std::vector<double>>& xs,
                           const std::vector<std::vector<std::int64_t>>& shapes, int dim);
std::vector<std::vector<double>> split(std::span<const double> y, const std::vector<std::vector<std::int64_t>>& shapes,
                                       int dim);

}  // namespace strata::reference
