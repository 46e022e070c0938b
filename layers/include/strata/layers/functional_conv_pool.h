// F::conv2d_max_pool2d: a convolution followed by a max pool as one op of the functional API
// (strata/layers/functional.h includes this header), the same results as
// F::max_pool2d(F::conv2d(...)) bit for bit, gradients included. On the custom kernels, where
// kernels::conv2d_max_pool2d_fuses accepts the shapes (tensor-core math, a 2x2 pool of stride
// 2), one kernel writes the pooled y and its argmax without the full conv output
// (strata/kernels/conv2d_max_pool2d.h); elsewhere (another engine, fp32 math, other pools) the
// op is F::conv2d then F::max_pool2d.
//
//   const Tensor y = F::conv2d_max_pool2d(x, weight, Tensor(), {.padding = {1, 1}, .math = ConvMath::bf16},
//                                         {.kernel = {2, 2}});   // (N, K, P/2, Q/2)
#pragma once

#include <optional>

#include "strata/core/engine.h"
#include "strata/core/tensor.h"
#include "strata/kernels/channel_stats.h"
#include "strata/kernels/conv2d.h"
#include "strata/kernels/pool2d.h"

namespace strata::F {

// y (N, K, Ho, Wo) = max_pool2d(conv2d(x (N, C, H, W), weight (K, C/groups, R, S)) + bias (K,
// or undefined)). Gradients: dL/dx, dL/dweight, dL/dbias for those that require them, through
// max_pool2d's backward and then conv2d's backward passes, as the composition computes them.
// engine as F::conv2d's (the default engine when none); under autocast in the autocast dtype,
// as F::conv2d. statistics (optional): y's per-channel statistics for a batch norm on it, as
// F::max_pool2d's (undefined on cuDNN).
Tensor conv2d_max_pool2d(const Tensor& x, const Tensor& weight, const Tensor& bias,
                         const kernels::Conv2dParams& conv_params, const kernels::Pool2dParams& pool_params,
                         std::optional<Engine> engine = std::nullopt,
                         kernels::ChannelStatistics* statistics = nullptr);

}  // namespace strata::F
