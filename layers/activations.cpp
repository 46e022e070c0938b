// The parameter-free element-wise layers: ReLU, GELU, Dropout and Scale.
#include <fmt/format.h>

#include "core/check.h"
#include "layers/module_format.h"
#include "strata/layers/functional.h"
#include "strata/layers/modules.h"

namespace strata::nn {

Tensor ReLU::forward_impl(const Tensor& x) { return F::relu(x, options_.engine); }

bool ReLU::take_engine(Engine engine) {
  options_.engine = engine;
  return true;
}

std::string GELU::extra_repr() const {
  return options_.approximate == GeluApproximation::tanh ? "approximate='tanh'" : "approximate='none'";
}

Tensor GELU::forward_impl(const Tensor& x) { return F::gelu(x, options_.approximate, options_.engine); }

bool GELU::take_engine(Engine engine) {
  options_.engine = engine;
  return true;
}

Dropout::Dropout(float p) : p_(p) {
  STRATA_CHECK(p >= 0.0f && p <= 1.0f, "Dropout: p must be between 0 and 1, got {}", p);
}

std::string Dropout::extra_repr() const { return "p=" + detail::python_float(p_) + ", inplace=False"; }

std::string Dropout::summary() const { return "Dropout p=" + detail::python_float(p_); }

Tensor Dropout::forward_impl(const Tensor& x) { return F::dropout(x, p_, is_training()); }

std::string Scale::extra_repr() const { return "factor=" + detail::python_float(factor_); }

std::string Scale::summary() const { return "Scale " + detail::python_float(factor_); }

Tensor Scale::forward_impl(const Tensor& x) { return F::mul(x, factor_); }

}  // namespace strata::nn
