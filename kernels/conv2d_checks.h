// The argument checks of the conv2d launchers, made alike by Strata's kernels
// (conv2d_*.cu) and the cuDNN engine (cudnn/conv2d_cudnn.cpp), so that both engines accept
// the same arguments and refuse the others with the same InvalidArgument, naming the op, the
// argument and the shapes. Host code, both builds.
#pragma once

#include <string_view>

#include "strata/core/tensor.h"
#include "strata/kernels/conv2d.h"

namespace strata::kernels {

// Every launcher's tensors are device tensors of one floating dtype (f32, f16 or bf16); a
// tensor of another dtype than the first operand's is refused naming both and their dtypes.
// Activations (x, y, dL_dy, dL_dx) may be contiguous or channels-last, each in its own
// format; so may the weight; dL_dweight must be contiguous (K, C/groups, R, S) (a
// channels-last one is refused naming its format). Tensors a kernel writes at one index (y and the pre-activation,
// the pooled y and its argmax) share a memory order (expect_same_memory_order, tensor_checks.h).

// A filter gradient, which must be contiguous; else InvalidArgument naming op, its shape and
// format.
void expect_contiguous_conv2d_weight_gradient(const Tensor& dL_dweight, std::string_view op);

// conv2d_forward: x (N, C, H, W), weight (K, C/groups, R, S), bias (K) or undefined and
// y (N, K, P, Q); y overlaps none of the inputs. Returns the shape.
Conv2dShape expect_conv2d_forward_arguments(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                            const Tensor& y, const Conv2dParams& params);

// A conv2d epilogue's per-channel tensors: scale and shift, where defined, f32 device tensors
// of shape (K) for an output (N, K, P, Q) (op names the caller, output_name that output), and
// an activation of the enum.
void expect_conv2d_epilogue(const Conv2dEpilogue& epilogue, const Shape& output, std::string_view op,
                            std::string_view output_name);

// conv2d_forward with an epilogue: expect_conv2d_forward_arguments, expect_conv2d_epilogue
// and, when given, a preactivation of y's dtype, shape and layout that overlaps neither y nor
// an input.
Conv2dShape expect_conv2d_forward_epilogue_arguments(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                                     const Tensor& y, const Conv2dParams& params,
                                                     const Conv2dEpilogue& epilogue, const Tensor* preactivation);

// conv2d_backward_data: dL_dy (N, K, P, Q), weight and dL_dx (N, C, H, W); dL_dx overlaps
// neither input.
Conv2dShape expect_conv2d_backward_data_arguments(const Tensor& dL_dy, const Tensor& weight, const Tensor& dL_dx,
                                                  const Conv2dParams& params);

// conv2d_backward_filter: x, dL_dy and dL_dweight (K, C/groups, R, S); dL_dweight overlaps
// neither input.
Conv2dShape expect_conv2d_backward_filter_arguments(const Tensor& x, const Tensor& dL_dy, const Tensor& dL_dweight,
                                                    const Conv2dParams& params);

// conv2d_backward_bias: dL_dy (N, K, P, Q) with no empty dimension and dL_dbias (K), not
// overlapping it.
void expect_conv2d_backward_bias_arguments(const Tensor& dL_dy, const Tensor& dL_dbias);

}  // namespace strata::kernels
