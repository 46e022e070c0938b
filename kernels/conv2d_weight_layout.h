// The layouts in which the conv kernels read a weight (K, C/groups, R, S): the fp32 kernels
// and the tensor cores' register path read it as (K, C/groups, R, S) in memory, the
// asynchronous path (the wgmma tile too) as (K, R, S, C/groups), which is the weight's
// channels-last format. A weight may come in either format (strata/kernels/conv2d.h,
// conv2d_weight_format); these give it in the order a path reads, copying (on stream) only
// when it is not so already.
#pragma once

#include <cuda_runtime_api.h>

#include "strata/core/tensor.h"

namespace strata::kernels {

// weight itself when it reads as (K, C/groups, R, S) (contiguous, or channels-last where the
// layouts coincide: R = S = 1), else a contiguous copy.
Tensor weight_in_kcrs_order(const Tensor& weight, cudaStream_t stream);

// weight itself when it is laid out as (K, R, S, C/groups) (channels-last, or a 1x1 kernel in
// either format) at a 16-byte aligned address, as the asynchronous copies need; else a
// channels-last copy (fresh allocations are aligned).
Tensor weight_in_krsc_order(const Tensor& weight, cudaStream_t stream);

}  // namespace strata::kernels
