// conv2d followed by max_pool2d as one call: y = max_pool2d(conv2d(x, weight, bias)). Where
// the shapes allow (conv2d_max_pool2d_fuses: the convolution on the tensor cores, the pool 2x2
// with stride 2), one implicit-GEMM kernel computes the convolution with the four pixels of
// every pooling window in the same block tile and pools them in its epilogue, so that the
// full conv output (N, K, P, Q) is never written: only the pooled y, its argmax and,
// optionally, y's per-channel statistics. Every other shape runs conv2d_forward into a
// temporary and max_pool2d_forward on it, so callers never need to care which.
//
// The results are max_pool2d_forward's applied to conv2d_forward's output as it would be
// stored: each conv value is the tensor-core kernel's sum over the reduction in the same
// order, plus the bias, rounded once to the storage type; then PyTorch's max (NaN wins, ties
// keep the first element in row-major window order). y and argmax are therefore the same bits
// as the composition's, and max_pool2d_backward takes the argmax as it is. With odd P or Q the
// last row or column of the conv output is in no window (floor mode) and is not computed.
//
//   const Conv2dParams conv{.padding = {1, 1}, .math = ConvMath::bf16};
//   const Pool2dParams pool{.kernel = {2, 2}};
//   MaxPool2dResult pooled = conv2d_max_pool2d_forward(x, weight, Tensor(), conv, pool, stream);
//   // pooled.y, pooled.argmax (N, K, P/2, Q/2); the argmax indexes the (P, Q) conv plane
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "strata/core/shape.h"
#include "strata/core/tensor.h"
#include "strata/kernels/channel_stats.h"
#include "strata/kernels/conv2d.h"
#include "strata/kernels/pool2d.h"

namespace strata::kernels {

// Whether conv2d_max_pool2d_forward runs shape with pool as one fused kernel: the forward
// runs on the tensor cores (conv2d_forward_uses_tensor_cores: math tf32 or bf16, any storage
// dtype) and the pool has kernel (2, 2), stride (2, 2), no padding, dilation 1 and floor mode.
bool conv2d_max_pool2d_fuses(const Conv2dShape& shape, const Pool2dParams& pool);

// The pooled output shape (N, K, Ho, Wo) of shape's conv output; throws InvalidArgument (from
// max_pool2d's shape function) when the pool does not fit it.
Shape conv2d_max_pool2d_output_shape(const Conv2dShape& shape, const Pool2dParams& pool);

// y (N, K, Ho, Wo) = max_pool2d(conv2d(x (N, C, H, W), weight (K, C/groups, R, S)) + bias (K,
// or undefined)), all of one dtype (f32, f16 or bf16) on the device; argmax (i64 or i32, or
// undefined when not needed) the index p * Q + q of each maximum in its (P, Q) conv plane, as
// max_pool2d_forward writes it. y and argmax must overlap no input. statistics (optional): the
// per-channel statistics of y as stored (strata/kernels/channel_stats.h). Fused, one slot per
// 16 windows (whichever the block tile): ceil(N*Ho*Wo / 16) slots; otherwise max_pool2d_forward's. x and y
// may each be contiguous or channels-last (the same bits either way); the argmax shares y's
// layout, the weight is contiguous (else InvalidArgument). Summed in
// another order than max_pool2d_forward's, so equal to its statistics only within roundings of
// the double sums. Argument errors throw InvalidArgument naming conv2d_max_pool2d_forward.
void conv2d_max_pool2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y, Tensor& argmax,
                               const Conv2dParams& conv, const Pool2dParams& pool, cudaStream_t stream,
                               ChannelStatistics* statistics = nullptr);
// Allocates y in x's dtype and an i64 argmax, both in x's memory format.
MaxPool2dResult conv2d_max_pool2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                          const Conv2dParams& conv, const Pool2dParams& pool, cudaStream_t stream,
                                          ChannelStatistics* statistics = nullptr);

// The slots of the statistics conv2d_max_pool2d_forward writes, so that a caller can allocate
// the partials (channel_statistics_shape(slots, K)) before the forward runs.
std::int64_t conv2d_max_pool2d_forward_statistics_slots(const Conv2dShape& shape, const Pool2dParams& pool);

}  // namespace strata::kernels
