// The pooling ops on cuDNN: max_pool2d, avg_pool2d and the adaptive pools of
// strata/kernels/pool2d.h and adaptive_pool2d.h computed by cuDNN's pooling routines, for
// Engine::cudnn and Engine::automatic (strata/core/engine.h). Private to the library; the
// simulator build refuses every call (cuDNN is not available there).
//
// cuDNN runs exactly PyTorch's op or refuses, with the reason:
//  - cuDNN rounds output sizes down: ceil_mode is accepted where it does not change the
//    output size (then the windows are the same), refused where it does;
//  - cuDNN pooling has no dilation (refused unless 1) and no divisor_override (refused);
//  - count_include_pad maps to CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING, its absence to
//    EXCLUDE_PADDING: without ceil_mode growing the output, every window lies inside the
//    padded input, so PyTorch's divisors are cuDNN's;
//  - an adaptive pool runs when every bin is one fixed window (the input size a multiple of
//    the output size: kernel = stride = input / output, no padding), and is refused otherwise.
// Max pooling propagates NaN (CUDNN_PROPAGATE_NAN), as PyTorch. Its backward takes x and y,
// not an argmax, so the F:: node of a cuDNN pool saves both. While strata::is_deterministic()
// it runs CUDNN_POOLING_MAX_DETERMINISTIC, else CUDNN_POOLING_MAX; cuDNN does not document
// which element of a tie receives the gradient (the custom kernels: the first in row-major
// order, as PyTorch), so gradients may differ where a window holds its maximum twice.
//
// Memory formats: x, y, dL_dy and dL_dx may be contiguous or channels-last, all four in x's
// memory order (one pair of descriptors serves them; InvalidArgument otherwise); a
// channels-last one is described to cuDNN as NHWC (kernels/cudnn/cudnn_layout.h), which
// cuDNN's pooling takes as it takes NCHW (the same windows and modes).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "strata/core/memory_format.h"
#include "strata/core/shape.h"
#include "strata/core/tensor.h"
#include "strata/kernels/adaptive_pool2d.h"
#include "strata/kernels/pool2d.h"
#include "strata/kernels/size2d.h"

namespace strata::kernels {

enum class CudnnPoolMode : std::uint8_t { max, average_count_include_padding, average_count_exclude_padding };

// One cuDNN pooling over (N, C, H, W): the window, the mode, and the output it gives.
struct CudnnPoolWindow {
  Shape input;   // (N, C, H, W)
  Shape output;  // (N, C, Ho, Wo), by cuDNN's rule: floor((H + 2 p - k) / s) + 1
  Size2d kernel{};
  Size2d stride{};
  Size2d padding{};
  CudnnPoolMode mode = CudnnPoolMode::max;
  // The memory order of the input and the output (and their gradients), as cuDNN is told it
  // (cudnn_memory_format); the launchers set it from x, the refusals do not depend on it.
  MemoryFormat format = MemoryFormat::contiguous;
};

// What cuDNN would run for an op: the window, or why no cuDNN window computes the op (then
// window is not meaningful). Host arithmetic only, the same in both builds; the shapes and
// parameters are those the custom kernels accept (the caller has validated them).
struct CudnnPoolMapping {
  Shape output;             // the op's output (N, C, Ho, Wo), as the custom kernels compute it
  CudnnPoolWindow window;   // window.output == output where accepted
  std::string refusal;      // empty when the window computes the op exactly
  std::string description;  // the op's input and parameters, for messages
};
CudnnPoolMapping max_pool2d_cudnn_window(const Shape& x, const Pool2dParams& params);
CudnnPoolMapping avg_pool2d_cudnn_window(const Shape& x, const AvgPool2dParams& params);
CudnnPoolMapping adaptive_avg_pool2d_cudnn_window(const Shape& x, const AdaptivePool2dParams& params);
CudnnPoolMapping adaptive_max_pool2d_cudnn_window(const Shape& x, const AdaptivePool2dParams& params);

// Empty when cuDNN can run the op on an input of shape x; otherwise why not, in a sentence:
// no cuDNN in this build or process, a configuration cuDNN cannot express (above), a tensor
// of 2^31 elements or more. Throws InvalidArgument, as the custom launchers, for parameters
// that are wrong for any engine.
std::string max_pool2d_cudnn_refusal(const Shape& x, const Pool2dParams& params);
std::string avg_pool2d_cudnn_refusal(const Shape& x, const AvgPool2dParams& params);
std::string adaptive_avg_pool2d_cudnn_refusal(const Shape& x, const AdaptivePool2dParams& params);
std::string adaptive_max_pool2d_cudnn_refusal(const Shape& x, const AdaptivePool2dParams& params);

// Forward: y (N, C, Ho, Wo) from x (N, C, H, W). Backward: dL_dx (N, C, H, W) from the
// forward's x and y and dL_dy (N, C, Ho, Wo). Arguments are checked as the custom launchers
// check them (device tensors of one dtype, f32, f16 or bf16, described to cuDNN as FLOAT,
// HALF or BFLOAT16 and computed in f32; shapes; no overlap of an output with an input); each
// throws NotSupported naming the op, the shapes and the reason where the refusal is not empty.
void max_pool2d_cudnn_forward(const Tensor& x, Tensor& y, const Pool2dParams& params, cudaStream_t stream);
void max_pool2d_cudnn_backward(const Tensor& x, const Tensor& y, const Tensor& dL_dy, Tensor& dL_dx,
                               const Pool2dParams& params, cudaStream_t stream);
void avg_pool2d_cudnn_forward(const Tensor& x, Tensor& y, const AvgPool2dParams& params, cudaStream_t stream);
void avg_pool2d_cudnn_backward(const Tensor& x, const Tensor& y, const Tensor& dL_dy, Tensor& dL_dx,
                               const AvgPool2dParams& params, cudaStream_t stream);
void adaptive_avg_pool2d_cudnn_forward(const Tensor& x, Tensor& y, const AdaptivePool2dParams& params,
                                       cudaStream_t stream);
void adaptive_avg_pool2d_cudnn_backward(const Tensor& x, const Tensor& y, const Tensor& dL_dy, Tensor& dL_dx,
                                        const AdaptivePool2dParams& params, cudaStream_t stream);
void adaptive_max_pool2d_cudnn_forward(const Tensor& x, Tensor& y, const AdaptivePool2dParams& params,
                                       cudaStream_t stream);
void adaptive_max_pool2d_cudnn_backward(const Tensor& x, const Tensor& y, const Tensor& dL_dy, Tensor& dL_dx,
                                        const AdaptivePool2dParams& params, cudaStream_t stream);

}  // namespace strata::kernels
