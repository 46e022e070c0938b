// The autograd history of views: reshape/flatten and narrow of a tensor that requires
// gradients, made while recording, route their gradient back to the viewed tensor.
#pragma once

#include <cstdint>

#include "strata/core/tensor.h"

namespace strata::detail {

// No-ops unless autograd::needs_grad({base}).
void record_reshape_history(const Tensor& base, Tensor& view);
void record_narrow_history(const Tensor& base, Tensor& view, int dim, std::int64_t start);

}  // namespace strata::detail
