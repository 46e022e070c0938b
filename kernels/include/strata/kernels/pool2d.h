// max_pool2d and avg_pool2d over (N, C, H, W) tensors, forward and backward, with PyTorch's
// semantics: window geometry, ceil_mode, padding rules, NaN propagation, tie breaking and
// the averaging divisor. Parameters mirror torch.nn.functional's arguments.
//
// dtypes: x, y, dL_dy and dL_dx share one of f32, f16 and bf16 (InvalidArgument naming both
// operands otherwise). Max pooling is exact in each (y copies an input element; argmax is the
// f32 run's on the same values); its backward and average pooling sum and divide in f32 and
// round once to the dtype.
//
// Memory formats: x, y, argmax, dL_dy and dL_dx may be contiguous or channels-last, one format
// for all the tensors of a call (a mix is an InvalidArgument naming both; a tensor whose
// layouts coincide matches either). argmax is h * W + w in the input plane either way, and
// every result is bit for bit the contiguous one. The returning overloads allocate in x's
// format (the backward's in dL_dy's).
//
//   Pool2dParams params{.kernel = {3, 3}, .stride = Size2d{2, 2}, .padding = {1, 1}};
//   MaxPool2dResult pooled = max_pool2d_forward(x, params, stream);  // y, argmax (N, C, Ho, Wo)
//   Tensor dL_dx = max_pool2d_backward(dL_dy, pooled.argmax, x.shape(), params, stream);
#pragma once

#include <cstdint>
#include <optional>

#include <cuda_runtime_api.h>

#include "strata/core/shape.h"
#include "strata/core/tensor.h"
#include "strata/kernels/channel_stats.h"
#include "strata/kernels/size2d.h"

namespace strata::kernels {

// Window geometry of max_pool2d (all fields) and avg_pool2d (no dilation: it must stay 1).
struct Pool2dParams {
  Size2d kernel{};                 // required: (0, 0) is rejected
  std::optional<Size2d> stride{};  // absent: the kernel size, as PyTorch's stride=None
  Size2d padding{0, 0};            // implicit padding on both sides, at most kernel / 2
  Size2d dilation{1, 1};
  // Rounds the output size up; the last window must still start inside the input or its
  // left padding (PyTorch's rule).
  bool ceil_mode = false;

  Size2d effective_stride() const { return stride.value_or(kernel); }
};

struct AvgPool2dParams {
  Pool2dParams window{};
  // Divide by the window area including padding (clipped to the padded input), or by the
  // number of input elements in the window.
  bool count_include_pad = true;
  std::optional<std::int64_t> divisor_override{};  // when set, the divisor of every window; not 0
};

// (N, C, Ho, Wo) for an input (N, C, H, W); throws InvalidArgument naming the op, the input
// shape and the parameters for a wrong rank, an empty channel or spatial dimension, a
// kernel, stride or dilation < 1, padding < 0 or > kernel / 2, an output size < 1, and for
// avg_pool2d a dilation other than 1 or a divisor_override of 0. N may be 0.
Shape max_pool2d_output_shape(const Shape& x, const Pool2dParams& params);
Shape avg_pool2d_output_shape(const Shape& x, const AvgPool2dParams& params);

struct MaxPool2dResult {
  Tensor y;       // (N, C, Ho, Wo)
  Tensor argmax;  // (N, C, Ho, Wo) i64
};

// y = the maximum of each window. argmax (i64 or i32, or undefined when not needed) gets the
// index h * W + w of that maximum in its (H, W) input plane, as PyTorch's indices: the first
// maximum in row-major window order; a NaN wins over any number (the last NaN, as PyTorch).
// A window that holds no input element (possible only with dilation) gives -inf and argmax -1.
// statistics (optional; none costs nothing): the per-channel statistics of y as stored, for a
// training batch norm on y (strata/kernels/channel_stats.h). The forward then runs a form whose
// blocks each take 2048 consecutive outputs of one channel (over the batch): ceil(N*Ho*Wo /
// 2048) slots. y and argmax are the same either way.
void max_pool2d_forward(const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dParams& params,
                        cudaStream_t stream, ChannelStatistics* statistics = nullptr);
MaxPool2dResult max_pool2d_forward(const Tensor& x, const Pool2dParams& params, cudaStream_t stream,
                                   ChannelStatistics* statistics = nullptr);
// The slots of the statistics max_pool2d_forward writes for y (N, C, Ho, Wo), so that a caller
// can allocate the partials (channel_statistics_shape) before the forward runs.
std::int64_t max_pool2d_forward_statistics_slots(const Shape& y);

// dL_dx (N, C, H, W) = for each input element, the sum of dL_dy over the outputs whose argmax
// is that element; deterministic (a gather, no atomics). argmax as max_pool2d_forward wrote it.
void max_pool2d_backward(const Tensor& dL_dy, const Tensor& argmax, Tensor& dL_dx, const Pool2dParams& params,
                         cudaStream_t stream);
Tensor max_pool2d_backward(const Tensor& dL_dy, const Tensor& argmax, const Shape& x_shape,
                           const Pool2dParams& params, cudaStream_t stream);

// y = the mean of each window, with PyTorch's divisor (see AvgPool2dParams).
void avg_pool2d_forward(const Tensor& x, Tensor& y, const AvgPool2dParams& params, cudaStream_t stream);
Tensor avg_pool2d_forward(const Tensor& x, const AvgPool2dParams& params, cudaStream_t stream);

// dL_dx (N, C, H, W): each window's dL_dy / divisor, summed over the windows that contain
// the element; deterministic (a gather, no atomics).
void avg_pool2d_backward(const Tensor& dL_dy, Tensor& dL_dx, const AvgPool2dParams& params, cudaStream_t stream);
Tensor avg_pool2d_backward(const Tensor& dL_dy, const Shape& x_shape, const AvgPool2dParams& params,
                           cudaStream_t stream);

}  // namespace strata::kernels
