// conv2d on cuDNN (kernels/cudnn/conv2d_cudnn.h): the argument checks, the custom launchers'
// own (kernels/conv2d_checks.h), and the refusal, shared by both builds; cuDNN itself is
// behind kernels/cudnn/conv2d_cudnn_backend.h.
#include "kernels/cudnn/conv2d_cudnn.h"

#include <string>
#include <string_view>

#include <fmt/format.h>

#include "core/nvtx.h"
#include "kernels/conv2d_checks.h"
#include "kernels/conv2d_weight_layout.h"
#include "kernels/cudnn/conv2d_cudnn_backend.h"
#include "kernels/cudnn/cudnn_layout.h"
#include "strata/core/determinism.h"
#include "strata/core/errors.h"
#include "strata/kernels/cast.h"

namespace strata::kernels {

namespace {

// Throws NotSupported "<op> on cuDNN (input ..., weight ... with ...): <reason>" when cuDNN
// cannot run this convolution with its activations in formats.
void require_accepted(const Conv2dShape& shape, DType dtype, Conv2dCudnnFormats formats, std::string_view op,
                      cudaStream_t stream) {
  const std::string reason = cudnn_backend::refusal(shape, dtype, formats, stream);
  if (!reason.empty()) {
    throw NotSupported(fmt::format("{} on cuDNN (input {}, weight {}, {}, {}, input side {}, output side {}): {}", op,
                                   shape.input().to_string(), shape.weight().to_string(), to_string(shape.params),
                                   dtype_name(dtype), memory_format_name(formats.input),
                                   memory_format_name(formats.output), reason));
  }
}

// The formats of a direction whose input-side activation is input (x or dL_dx) and
// output-side one is output (y or dL_dy).
Conv2dCudnnFormats formats_of(const Tensor& input, const Tensor& output) {
  return {.input = cudnn_memory_format(input), .output = cudnn_memory_format(output)};
}

}  // namespace

std::string conv2d_cudnn_refusal(const Conv2dShape& shape, DType dtype, MemoryFormat format, cudaStream_t stream) {
  // A format whose layouts coincide for one side is described as NCHW there (cudnn_memory_format).
  const auto on = [format](const Shape& side) {
    return format == MemoryFormat::channels_last && !layouts_coincide(side) ? MemoryFormat::channels_last
                                                                            : MemoryFormat::contiguous;
  };
  return cudnn_backend::refusal(shape, dtype, {.input = on(shape.input()), .output = on(shape.output())}, stream);
}

void conv2d_cudnn_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y,
                          const Conv2dParams& params, cudaStream_t stream) {
  NvtxRange range("conv2d_forward (cuDNN)");
  const Conv2dShape shape = expect_conv2d_forward_arguments(x, weight, bias, y, params);
  const Conv2dCudnnFormats formats = formats_of(x, y);
  require_accepted(shape, x.dtype(), formats, "conv2d_forward", stream);
  // cuDNN is described an NCHW filter (cudnn_layout.h): a channels-last weight is copied for the call.
  cudnn_backend::forward(shape, x.dtype(), formats, x.memory_ptr(), weight_in_kcrs_order(weight, stream).data_ptr(),
                         bias.defined() ? bias.data_ptr() : nullptr, y.memory_ptr(), stream);
}

void conv2d_cudnn_backward_data(const Tensor& dL_dy, const Tensor& weight, Tensor& dL_dx, const Conv2dParams& params,
                                cudaStream_t stream) {
  NvtxRange range("conv2d_backward_data (cuDNN)");
  const Conv2dShape shape = expect_conv2d_backward_data_arguments(dL_dy, weight, dL_dx, params);
  const Conv2dCudnnFormats formats = formats_of(dL_dx, dL_dy);
  require_accepted(shape, dL_dy.dtype(), formats, "conv2d_backward_data", stream);
  cudnn_backend::backward_data(shape, dL_dy.dtype(), formats, dL_dy.memory_ptr(),
                               weight_in_kcrs_order(weight, stream).data_ptr(), dL_dx.memory_ptr(), stream);
}

void conv2d_cudnn_backward_filter(const Tensor& x, const Tensor& dL_dy, Tensor& dL_dweight, const Conv2dParams& params,
                                  cudaStream_t stream) {
  NvtxRange range("conv2d_backward_filter (cuDNN)");
  const Conv2dShape shape = expect_conv2d_backward_filter_arguments(x, dL_dy, dL_dweight, params);
  const Conv2dCudnnFormats formats = formats_of(x, dL_dy);
  require_accepted(shape, x.dtype(), formats, "conv2d_backward_filter", stream);
  if (dL_dweight.dtype() != x.dtype()) {
    // An f32 gradient of reduced operands: cuDNN writes their dtype, widened after it.
    Tensor in_dtype = Tensor::empty(dL_dweight.shape(), x.dtype(), stream);
    cudnn_backend::backward_filter(shape, x.dtype(), formats, x.memory_ptr(), dL_dy.memory_ptr(), in_dtype.data_ptr(),
                                   stream);
    cast(in_dtype, dL_dweight, stream);
    return;
  }
  cudnn_backend::backward_filter(shape, x.dtype(), formats, x.memory_ptr(), dL_dy.memory_ptr(),
                                 dL_dweight.data_ptr(), stream);
}

void conv2d_cudnn_backward_bias(const Tensor& dL_dy, Tensor& dL_dbias, cudaStream_t stream) {
  // The switch asks for a guarantee cuDNN does not document for its bias reduction.
  if (is_deterministic()) {
    conv2d_backward_bias(dL_dy, dL_dbias, stream);
    return;
  }
  NvtxRange range("conv2d_backward_bias (cuDNN)");
  expect_conv2d_backward_bias_arguments(dL_dy, dL_dbias);
  if (dL_dbias.dtype() != dL_dy.dtype()) {
    Tensor in_dtype = Tensor::empty(dL_dbias.shape(), dL_dy.dtype(), stream);  // widened below, as the filter's
    cudnn_backend::backward_bias(dL_dy.shape(), dL_dy.dtype(), cudnn_memory_format(dL_dy), dL_dy.memory_ptr(),
                                 in_dtype.data_ptr(), stream);
    cast(in_dtype, dL_dbias, stream);
    return;
  }
  cudnn_backend::backward_bias(dL_dy.shape(), dL_dy.dtype(), cudnn_memory_format(dL_dy), dL_dy.memory_ptr(),
                               dL_dbias.data_ptr(), stream);
}

}  // namespace strata::kernels
