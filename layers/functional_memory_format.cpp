// F::to_memory_format and F::contiguous (strata/layers/functional.h): Tensor::to_memory_format
// recorded by autograd, whose backward converts the gradient back to the input's format, so
// that a gradient always reaches a tensor in that tensor's format. F::contiguous is also how
// the ops that read NCHW order accept a channels-last input (PyTorch's rule: every op takes
// any format).
#include "core/check.h"
#include "core/format.h"
#include "strata/core/autograd.h"
#include "strata/core/stream.h"
#include "strata/layers/functional.h"

namespace strata::F {

Tensor to_memory_format(const Tensor& x, MemoryFormat format) {
  STRATA_CHECK(x.defined(), "F::to_memory_format: x is an undefined tensor");
  STRATA_CHECK(format == MemoryFormat::contiguous || x.dim() == 4,
               "F::to_memory_format: {} needs a 4-D tensor (N, C, H, W), got x of shape {}",
               memory_format_name(format), x.shape());
  if (x.memory_format() == format) return x;  // as torch.Tensor.to(memory_format=...): x itself
  Tensor y = x.detach().to_memory_format(format, current_stream());
  if (autograd::needs_grad({x})) {
    autograd::record("ToMemoryFormatBackward", {x}, y,
                     [input_format = x.memory_format()](autograd::Gradients dL_dy, cudaStream_t stream) {
                       return autograd::Gradients{dL_dy[0].detach().to_memory_format(input_format, stream)};
                     });
  }
  return y;
}

Tensor contiguous(const Tensor& x) {
  // An undefined x passes, so that the op calling this reports it in its own words; a
  // channels-last tensor whose layouts coincide already reads in NCHW order: no copy.
  if (!x.defined() || x.is_contiguous()) return x;
  return to_memory_format(x, MemoryFormat::contiguous);
}

}  // namespace strata::F
