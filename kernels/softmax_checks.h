// The argument checks of the softmax and log_softmax launchers, made alike by Strata's
// kernels (softmax.cu) and the cuDNN engine (cudnn/softmax_cudnn.cpp), so that both engines
// accept the same arguments and refuse the others with the same InvalidArgument. Host code,
// both builds.
#pragma once

#include <cstdint>
#include <string_view>

#include "strata/core/tensor.h"

namespace strata::kernels {

// Forward of op ("softmax" or "log_softmax") over the last dimension: x (..., C) with at
// least one dimension and one element, and y of x's shape, device tensors of one floating
// dtype (f32, f16 or bf16); y does not overlap x. Returns the rows, x's element count over C.
std::int64_t expect_softmax_forward_arguments(const Tensor& x, const Tensor& y, std::string_view op);

// Backward of op from y (..., C), checked as x above: dL_dy and dL_dx of y's shape and dtype;
// dL_dx overlaps neither y nor dL_dy. Returns y's rows.
std::int64_t expect_softmax_backward_arguments(const Tensor& dL_dy, const Tensor& y, const Tensor& dL_dx,
                                               std::string_view op);

}  // namespace strata::kernels
