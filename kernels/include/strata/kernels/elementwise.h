// Element-wise arithmetic and concatenation: the residual add (y = a + alpha * b), the
// accumulation autograd needs (y += alpha * x), scaling by a constant, and concat along a
// dimension (channels by default) with its backward, the split. PyTorch's semantics
// (torch.add with alpha, Tensor.add_, torch.cat); no broadcasting.
//
// dtypes: the operands of one call share one of f32, f16 and bf16 (InvalidArgument naming
// both otherwise; F::add promotes mixed dtypes before it gets here). add, accumulate and
// scale compute in f32 and round once to the dtype; concat is a copy, exact. add, accumulate
// and scale take any memory format, one for all operands (see the end of this file); concat
// reads and writes NCHW order and so refuses channels-last tensors (F::cat converts them).
//
// Backward of add: dL_da = dL_dy and dL_db = alpha * dL_dy. No kernel is needed for the
// first (pass dL_dy itself on, or accumulate() it into an existing gradient); the second
// is dL_dy itself for alpha = 1 and scale(dL_dy, dL_db, {.factor = alpha}) otherwise.
//
//   add_forward(x, residual, x, {}, stream);                      // x += residual, in place
//   Tensor y = concat_forward(std::vector{a, b, c}, {.dim = 1}, stream);   // (N, Ca+Cb+Cc, H, W)
//   concat_backward(dL_dy, dL_dxs, {.dim = 1}, stream);           // split dL_dy into dL_dxs
#pragma once

#include <span>
#include <string_view>
#include <vector>

#include <cuda_runtime_api.h>

#include "strata/core/shape.h"
#include "strata/core/tensor.h"

namespace strata::kernels {

struct AddParams {
  float alpha = 1.0f;  // y = a + alpha * b, computed as one fused multiply-add
};

// a, b and y of one shape. y may be a or b itself (in place); other overlaps are errors.
void add_forward(const Tensor& a, const Tensor& b, Tensor& y, const AddParams& params, cudaStream_t stream);
Tensor add_forward(const Tensor& a, const Tensor& b, const AddParams& params, cudaStream_t stream);

// y += alpha * x (Tensor.add_(x, alpha=alpha)): gradient accumulation. x and y of one
// shape; x may be y itself.
void accumulate(const Tensor& x, Tensor& y, const AddParams& params, cudaStream_t stream);

struct ScaleParams {
  float factor = 1.0f;
};

// y = factor * x; y may be x itself.
void scale(const Tensor& x, Tensor& y, const ScaleParams& params, cudaStream_t stream);

struct ConcatParams {
  int dim = 1;  // the dimension to join along; negative counts from the end, as in PyTorch
};

// Shape of the concatenation: the inputs' common shape with dimension dim the sum of
// theirs. Throws InvalidArgument (naming the shapes) for no inputs, a dim out of range,
// different ranks, or sizes that differ outside dim.
Shape concat_shape(std::span<const Shape> input_shapes, const ConcatParams& params);

// y = cat(xs, dim). y must have concat_shape's shape and overlap no input. Inputs may
// have size 0 along dim. One launch joins up to 16 inputs.
void concat_forward(std::span<const Tensor> xs, Tensor& y, const ConcatParams& params, cudaStream_t stream);
Tensor concat_forward(std::span<const Tensor> xs, const ConcatParams& params, cudaStream_t stream);

// The split: dL_dxs[i] = the slice of dL_dy along dim that input i filled. The dL_dxs
// must have the inputs' shapes and overlap neither dL_dy nor each other.
void concat_backward(const Tensor& dL_dy, std::span<Tensor> dL_dxs, const ConcatParams& params, cudaStream_t stream);
std::vector<Tensor> concat_backward(const Tensor& dL_dy, std::span<const Shape> input_shapes,
                                    const ConcatParams& params, cudaStream_t stream);

// ---- memory order of element-wise operands ---------------------------------------------
// The element-wise kernels (add, accumulate, scale, relu, gelu, dropout and their cuDNN
// forms) map element i of each operand to element i of the others in memory, which is right
// for any memory format (strata/core/memory_format.h) as long as the operands share one:
// outputs of the allocating forms take their input's format, and operands of different
// formats are refused (F::add converts one first). cast (strata/kernels/cast.h) is
// element-wise within one format and converts between two. These are their checks, each
// InvalidArgument naming op and the operands.

}  // namespace strata::kernels
