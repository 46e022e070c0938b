// The branching containers: Residual (body plus shortcut) and Concat (branches joined).
#include <fmt/format.h>

#include <string>

#include "core/check.h"
#include "strata/layers/functional.h"
#include "strata/layers/modules.h"

namespace strata::nn {

Residual::Residual(AnyModule body) : body_(register_module("body", body.get())) {}

Residual::Residual(AnyModule body, AnyModule shortcut)
    : body_(register_module("body", body.get())), shortcut_(register_module("shortcut", shortcut.get())) {}

Tensor Residual::forward_impl(const Tensor& x) {
  Tensor y = body_->forward(x);
  return F::add(y, shortcut_ != nullptr ? shortcut_->forward(x) : x);
}

Concat::Concat(std::vector<AnyModule> branches, int dim) : dim_(dim) {
  STRATA_CHECK(!branches.empty(), "Concat: needs at least one branch");
  for (const AnyModule& branch : branches) {
    branches_.push_back(register_module(std::to_string(branches_.size()), branch.get()));
  }
}

std::string Concat::extra_repr() const { return fmt::format("dim={}", dim_); }

Tensor Concat::forward_impl(const Tensor& x) {
  std::vector<Tensor> ys;
  ys.reserve(branches_.size());
  for (const auto& branch : branches_) ys.push_back(branch->forward(x));
  return F::cat(ys, dim_);
}

}  // namespace strata::nn
