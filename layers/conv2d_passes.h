// What F::conv2d, F::fused_conv2d and F::conv2d_max_pool2d share: their operands lowered as
// their kernels take them (autocast's casts, the weight's layout, the checks), and the
// backward passes (data, filter, bias) their autograd nodes run for the inputs that need one.
#pragma once

#include <optional>
#include <string_view>

#include "strata/core/autograd.h"
#include "strata/core/engine.h"
#include "strata/core/tensor.h"
#include "strata/kernels/conv2d.h"

namespace strata::F::detail {

// A conv's operands as its kernels read them, and what its autograd node records: its inputs
// are {x, weight_input, bias_input}.
struct Conv2dOperands {
  Tensor x;       // autocast-lowered
  Tensor weight;  // autocast-lowered, in the layout the chosen engine reads
  Tensor bias;    // autocast-lowered, or undefined
  // The node's inputs for weight and bias, and the dtypes of the gradients it returns for them:
  // the lowered tensors and the op's dtype; or, for an f32 parameter that autocast cast to a
  // reduced dtype, the f32 parameter itself (the cast not recorded) and f32. The filter and
  // bias passes then write f32 gradients rounded to the op's dtype: the bits the cast's
  // backward would give, without its launch and its copy of the gradient.
  Tensor weight_input;
  Tensor bias_input;
  DType weight_gradient_dtype = DType::f32;
  DType bias_gradient_dtype = DType::f32;
  kernels::Conv2dShape shape;
  bool on_cudnn = false;
};

// x, weight and bias lowered and checked (one dtype for the op), the engine chosen (conv2d's
// rule, layers/engine_choice.h), before anything is queued; errors name op.
Conv2dOperands lowered_conv2d_operands(const Tensor& x_given, const Tensor& weight_given, const Tensor& bias_given,
                                       const kernels::Conv2dParams& params, std::optional<Engine> engine,
                                       std::string_view op);

// What a conv's backward passes read, saved by its forward: only what they will need, so that
// a frozen layer keeps nothing alive.
struct Conv2dBackward {
  Tensor x_saved;       // when dw
  Tensor weight_saved;  // when dx: the lowered weight
  kernels::Conv2dShape shape;
  DType dtype;          // the op's
  MemoryFormat format;  // x's
  bool dx = false;
  bool dw = false;
  bool db = false;
  DType weight_gradient_dtype = DType::f32;
  DType bias_gradient_dtype = DType::f32;
  bool on_cudnn = false;
};
Conv2dBackward conv2d_backward_of(const Conv2dOperands& operands);

// The passes for the inputs that need one, dL_dy (N, K, P, Q) in any format, on the forward's
// engine; dL_dx in x's format, the parameter gradients in their dtypes. Each pass is an op of
// its own (strata/core/op.h), so that the data and filter passes can run side by side.
autograd::Gradients conv2d_backward_passes(const Tensor& dL_dy_detached, const Conv2dBackward& state,
                                           cudaStream_t stream);

}  // namespace strata::F::detail
