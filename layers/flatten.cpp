// Flatten: PyTorch's nn.Flatten (end_dim always the last) over F::flatten.
#include <fmt/format.h>

#include "core/check.h"
#include "core/format.h"
#include "strata/layers/functional.h"
#include "strata/layers/modules.h"

namespace strata::nn {

std::string Flatten::extra_repr() const { return fmt::format("start_dim={}, end_dim=-1", start_dim_); }

void Flatten::check_input(const Tensor& x) const {
  STRATA_CHECK(start_dim_ >= 0 && start_dim_ < x.dim(), "cannot flatten from dimension {} an input {}", start_dim_,
               x.shape());
}

Tensor Flatten::forward_impl(const Tensor& x) { return F::flatten(x, start_dim_); }

}  // namespace strata::nn
