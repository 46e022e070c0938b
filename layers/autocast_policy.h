// The casts autocast (strata/core/autocast.h) asks of the functional ops: each F:: op calls
// the one of its class on its floating inputs before it checks dtypes and queues kernels.
// The casts are F::to_dtype, so they record autograd nodes that cast gradients back.
#pragma once

#include "strata/core/memory_format.h"
#include "strata/core/tensor.h"

namespace strata::detail {

// conv2d, linear: under autocast, a defined f32 tensor cast to the autocast dtype; anything
// else (autocast off, undefined, already reduced, integer) as it is. The cast of a leaf that
// requires grad (a parameter) comes from the autocast cache after its first use in the
// outermost guard (strata/core/autocast.h).
Tensor autocast_lower(const Tensor& tensor);
// The same, the cast laid out in format in the same pass; a tensor autocast leaves alone keeps
// its format.
Tensor autocast_lower(const Tensor& tensor, MemoryFormat format);

// conv2d's weight as its kernels read it: autocast_lower'ed into format (under autocast one
// cast per region for a parameter, straight into the layout), else converted to format by
// F::to_memory_format (its gradient returned in the weight's own format). format is
// kernels::conv2d_weight_format's on the custom kernels, contiguous on cuDNN, so that the
// forward and the backward-data pass read the weight of one conversion, not one each.
Tensor lower_conv2d_weight(const Tensor& weight, MemoryFormat format);

// softmax, log_softmax: under autocast, a defined f16/bf16 tensor cast to f32; anything else
// as it is.
Tensor autocast_f32(const Tensor& tensor);

// The dtype a binary element-wise op of a and b runs in (PyTorch's promotion among floating
// dtypes): their dtype when equal, f32 when they differ (f16 with bf16 included).
DType promote_floating(DType a, DType b) noexcept;

}  // namespace strata::detail
