// The argument checks of the batch norm launchers, made alike by Strata's kernels
// (batch_norm2d.cu, the fused batch_norm2d_activation.cu) and the cuDNN engine
// (cudnn/batch_norm2d_cudnn.cpp), so that every engine and both ops accept the same arguments
// and refuse the others with the same InvalidArgument: its message starts with op, the
// calling op's name, and names the argument and the shapes. Host code, both builds.
//
// Dtypes: x, y, dL_dy and dL_dx share one storage dtype, f32, f16 or bf16 (x's); the weight,
// bias, running and saved statistics and the parameter gradients are always f32.
// Memory formats: y, dL_dy and dL_dx must be laid out as x, contiguous or channels-last (a
// tensor whose layouts coincide matches either); the per-channel tensors are (C).
#pragma once

#include <optional>
#include <string_view>

#include "strata/core/shape.h"
#include "kernels/channel_stats.h"
#include "strata/core/tensor.h"
#include "strata/kernels/batch_norm2d.h"

namespace strata::kernels::batch_norm {

// (C) for x (N, C, H, W): batch_norm2d_channel_shape's checks under op's name.
Shape channel_shape(std::string_view op, const Shape& x, BatchNormMode mode);

// Everything the training forward reads and writes; returns (C).
Shape check_forward_training(std::string_view op, const Tensor& x, const Tensor& weight, const Tensor& bias,
                             const BatchNormRunningStats& running, const Tensor& y, const BatchNormSaved& saved,
                             const BatchNormParams& params);
// Everything the eval forward reads and writes; returns (C).
Shape check_forward_eval(std::string_view op, const Tensor& x, const Tensor& weight, const Tensor& bias,
                         const BatchNormRunningStats& running, const Tensor& y, const BatchNormParams& params);

// dL_dy, x, params, weight and the gradients of either backward (mode); returns (C).
Shape check_backward(std::string_view op, const Tensor& dL_dy, const Tensor& x, const Tensor& weight,
                     const BatchNormGradients& gradients, const BatchNormParams& params, BatchNormMode mode);
// A bias exactly when params.affine has one, (C) then (the fused backward reads it).
void check_bias(std::string_view op, const Tensor& bias, const Shape& channels, const BatchNormParams& params);
// Precomputed statistics of x for the training forward (channel_stats.h): none when
// statistics is null, else the partials, checked to be (6, slots, C).
std::optional<ChannelPartials> precomputed_partials(std::string_view op, const ChannelStatistics* statistics,
                                                    const Shape& channels);
// The training backward's saved statistics, (C) each.
void check_saved(std::string_view op, const BatchNormSaved& saved, const Shape& channels);
// The eval backward's running statistics, (C) each; x is named in the message.
void check_running_for_eval(std::string_view op, const BatchNormRunningStats& running, const Shape& channels,
                            const Shape& x);

}  // namespace strata::kernels::batch_norm
