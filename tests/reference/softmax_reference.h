// CPU references of softmax, log-softmax and softmax cross-entropy, in double: plain loops
// over rows of `columns` values, written from the definitions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "strata/kernels/softmax_cross_entropy.h"

namespace strata::reference {

// x (rows, columns) -> (rows, columns), along each row.
std::vector<double> softmax(std::span<const double> x, std::int64_t columns);
std::vector<double> log_softmax(std::span<const double> x, std::int64_t columns);
// Backwards from the forward's output y.
std::vector<double> softmax_backward(std::span<const double> dL_dy, std::span<const double> y, std::int64_t columns);
std::vector<double> log_softmax_backward(std::span<const double> dL_dy, std::span<const double> y,
                                         std::int64_t columns);

// PyTorch's F.cross_entropy on logits (N, classes): per row -(1 - eps) log p_t - eps / C
// sum_j log p_j, 0 for ignored rows; mean divides by the rows not ignored (NaN if none).
// Returns one value for mean and sum, N for none. Targets must be valid or ignore_index.
std::vector<double> cross_entropy(std::span<const double> logits, std::span<const std::int64_t> targets,
                                  std::int64_t classes, const kernels::CrossEntropyParams& params);
// dL/dlogits (N, classes) for dL_dloss (1 value, or N for none).
std::vector<double> cross_entropy_backward(std::span<const double> dL_dloss, std::span<const double> logits,
                                           std::span<const std::int64_t> targets, std::int64_t classes,
                                           const kernels::CrossEntropyParams& params);

}  // namespace strata::reference
