// conv2d on cuDNN: the same four launchers as strata/kernels/conv2d.h, computed by NVIDIA
// cuDNN's convolution routines, for Engine::cudnn and Engine::automatic
// (strata/core/engine.h). Same arguments, shapes and checks as the custom launchers; groups
// and dilation included. Private to the library; the simulator build has a stub whose
// launchers throw NotSupported (cuDNN is not available there).
//
// Algorithms: cuDNN's heuristics rank the candidates for each direction (no timing runs),
// and the first that succeeds with a workspace of at most kConv2dCudnnWorkspaceLimit is
// taken; while strata::is_deterministic() only those cuDNN reports deterministic count, so
// that the choice depends only on the shapes, the device and the switch. The math type is
// FMA (no TF32 tensor-core rounding), so that results compare with the custom fp32 kernels,
// unless Conv2dParams::math is tf32 or bf16: then TF32 tensor cores are allowed (cuDNN has
// no bf16 rounding of f32 tensors), in whichever direction is called with it (F::conv2d
// passes the forward's math to the data and filter passes).
//
// Dtypes: f32, f16 and bf16 tensors (all of one call in one dtype, as the custom launchers),
// described to cuDNN in that type with a float compute type (f32 accumulation). For f16 and
// bf16 tensor cores are always allowed: their products are exact in float, so they round
// nothing the FMA path would not (cuDNN never converts them to a narrower type here). The
// choice, with cuDNN's descriptors, is made once per shape, dtype, math, device and switch
// setting, and kept for the life of the process. Conv2dParams::deterministic (a request
// to the custom filter kernel) is not consulted: cuDNN follows the switch alone.
//
// Benchmark mode (strata::cudnn_benchmark(), strata/core/engine.h): the first run of each
// direction of a shape times the acceptable candidates with cudnnFind*AlgorithmEx, on
// scratch outputs and with a workspace as large as the largest acceptable candidate needs
// (at most the limit), and keeps the fastest. Not while is_deterministic() (the timing could
// pick differently in another run), and not inside CUDA-graph capture (cudnnFind*
// synchronises): the heuristics' choice then, with a one-time warning for the capture.
//
// Workspaces are allocated from Strata's caching allocator on the op's stream, for the
// duration of the launch, so the host graph measures them as the op's workspace.
//
// Memory formats: activations (x, y, dL_dy, dL_dx) may be contiguous or channels-last, each
// in its own format, as the custom launchers take them; a channels-last one is described to
// cuDNN as NHWC (kernels/cudnn/cudnn_layout.h), the weight always as an NCHW (KCRS) filter.
// The plans are made per pair of formats (the input side: x, dL_dx; the output side: y,
// dL_dy); where cuDNN has no algorithm for a pair, that pair is refused.
#pragma once

#include <cstddef>
#include <string>

#include <cuda_runtime_api.h>

#include "strata/core/memory_format.h"
#include "strata/core/tensor.h"
#include "strata/kernels/conv2d.h"

namespace strata::kernels {

inline constexpr std::size_t kConv2dCudnnWorkspaceLimit = std::size_t{256} << 20;

// The memory orders cuDNN is told for a convolution's activations (cudnn_memory_format):
// input for x and dL_dx, output for y and dL_dy.
struct Conv2dCudnnFormats {
  MemoryFormat input = MemoryFormat::contiguous;
  MemoryFormat output = MemoryFormat::contiguous;
};

// Empty when cuDNN can run this convolution with tensors of dtype (f32, f16 or bf16) and
// every activation laid out in format, in every direction (forward, backward data and
// filter); otherwise why not, in a sentence: no cuDNN in this build or process, a tensor too
// large for cuDNN's 32-bit descriptors, no algorithm within the workspace limit (or none
// deterministic while the switch is on). Queries cuDNN (once per shape) on stream's device.
std::string conv2d_cudnn_refusal(const Conv2dShape& shape, DType dtype, MemoryFormat format, cudaStream_t stream);

// As conv2d_forward, conv2d_backward_data, conv2d_backward_filter and conv2d_backward_bias of
// strata/kernels/conv2d.h. Throw NotSupported, naming the op, the shapes and the reason,
// where conv2d_cudnn_refusal is not empty. backward_bias runs Strata's own fixed-order
// reduction while strata::is_deterministic(), since cuDNN does not document its bias
// reduction as deterministic. An f32 dL_dweight or dL_dbias of f16/bf16 operands (autocast's
// gradient of an f32 parameter) is written by cuDNN in their dtype and widened after it.
void conv2d_cudnn_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y,
                          const Conv2dParams& params, cudaStream_t stream);
void conv2d_cudnn_backward_data(const Tensor& dL_dy, const Tensor& weight, Tensor& dL_dx, const Conv2dParams& params,
                                cudaStream_t stream);
void conv2d_cudnn_backward_filter(const Tensor& x, const Tensor& dL_dy, Tensor& dL_dweight, const Conv2dParams& params,
                                  cudaStream_t stream);
void conv2d_cudnn_backward_bias(const Tensor& dL_dy, Tensor& dL_dbias, cudaStream_t stream);

}  // namespace strata::kernels
