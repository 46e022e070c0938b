// adaptive_avg_pool2d and adaptive_max_pool2d over (N, C, H, W) tensors, forward and
// backward, with PyTorch's bins: output row i pools input rows [floor(i * H / Ho),
// ceil((i + 1) * H / Ho)), and likewise for columns. Bins overlap when H is not a multiple
// of Ho and repeat rows when Ho > H. Global average pooling is output_size {1, 1}.
// dtypes as pool2d.h says: f32, f16 or bf16, one for all operands; max exact, sums in f32.
// Memory formats as pool2d.h says: contiguous or channels-last, one for all tensors of a call.
//
//   AdaptivePool2dParams params{.output_size = {1, 1}};
//   Tensor pooled = adaptive_avg_pool2d_forward(x, params, stream);  // (N, C, 1, 1)
#pragma once

#include <cuda_runtime_api.h>

#include "strata/core/shape.h"
#include "strata/core/tensor.h"
#include "strata/kernels/pool2d.h"

namespace strata::kernels {

struct AdaptivePool2dParams {
  Size2d output_size{};  // (Ho, Wo), each at least 1
};

// (N, C, Ho, Wo) for an input (N, C, H, W); throws InvalidArgument naming the op and the
// shapes for a wrong rank, an empty channel or spatial dimension, or an output size < 1
// (PyTorch returns an empty tensor for an output size of 0; no CNN means that). N may be 0.
Shape adaptive_avg_pool2d_output_shape(const Shape& x, const AdaptivePool2dParams& params);
Shape adaptive_max_pool2d_output_shape(const Shape& x, const AdaptivePool2dParams& params);

// y (N, C, Ho, Wo) = the mean of each bin.
void adaptive_avg_pool2d_forward(const Tensor& x, Tensor& y, const AdaptivePool2dParams& params,
                                 cudaStream_t stream);
Tensor adaptive_avg_pool2d_forward(const Tensor& x, const AdaptivePool2dParams& params, cudaStream_t stream);

// dL_dx (N, C, H, W): the sum, over the bins that contain the element, of dL_dy / bin area;
// deterministic (a gather, no atomics).
void adaptive_avg_pool2d_backward(const Tensor& dL_dy, Tensor& dL_dx, const AdaptivePool2dParams& params,
                                  cudaStream_t stream);
Tensor adaptive_avg_pool2d_backward(const Tensor& dL_dy, const Shape& x_shape, const AdaptivePool2dParams& params,
                                    cudaStream_t stream);

// y = the maximum of each bin; argmax (i64 or i32, or undefined when not needed) as in
// max_pool2d_forward: index h * W + w in the input plane, the first maximum in row-major
// order, a NaN winning (the last NaN, as PyTorch).
void adaptive_max_pool2d_forward(const Tensor& x, Tensor& y, Tensor& argmax, const AdaptivePool2dParams& params,
                                 cudaStream_t stream);
MaxPool2dResult adaptive_max_pool2d_forward(const Tensor& x, const AdaptivePool2dParams& params,
                                            cudaStream_t stream);

// dL_dx (N, C, H, W): for each input element, the sum of dL_dy over the bins whose argmax
// is that element; deterministic (a gather, no atomics).
void adaptive_max_pool2d_backward(const Tensor& dL_dy, const Tensor& argmax, Tensor& dL_dx,
                                  const AdaptivePool2dParams& params, cudaStream_t stream);
Tensor adaptive_max_pool2d_backward(const Tensor& dL_dy, const Tensor& argmax, const Shape& x_shape,
                                    const AdaptivePool2dParams& params, cudaStream_t stream);

}  // namespace strata::kernels
