// conv2d: 2-D convolution (cross-correlation, as PyTorch's conv2d) on (N, C, H, W) tensors, its
// host-side shape function, and launchers for the forward pass and the three backward
// passes (data, filter, bias). The tensors of one call (x, weight, bias, y, dL_dy, dL_dx,
// dL_dweight, dL_dbias) share one storage dtype T: f32, f16 or bf16. Every pass loads T,
// converts to float and accumulates in f32 (backward_bias in double), and rounds once to T
// (to nearest even) as it stores; f32 results are the same bits whatever else is compiled in.
// A split backward_filter reduction adds its chunks' f32 partial sums before that rounding.
// The forward, backward_data and backward_filter passes may run on the tensor cores when
// Conv2dParams::math allows it (below); backward_bias never does.
//
//   const Conv2dParams params{.stride = {2, 2}, .padding = {1, 1}};
//   Tensor y = conv2d_forward(x, weight, bias, params, stream);  // (N, K, P, Q)
//   conv2d_backward_data(dL_dy, weight, dL_dx, params, stream);
//   conv2d_backward_filter(x, dL_dy, dL_dweight, params, stream);
//   conv2d_backward_bias(dL_dy, dL_dbias, stream);
//
// Kernels: tiled implicit GEMMs, one GEMM per group, never materialising im2col. Each block
// computes a block_m x block_n tile of the GEMM in block_k slices staged in shared memory
// (the im2col operand is gathered on the fly, padding reading as 0); each thread keeps a
// thread_m x thread_n register micro-tile.
//   forward          M = N*P*Q output pixels, N = K/groups, reduction C/groups*R*S
//   backward_data    M = N*H*W input pixels,  N = C/groups, reduction K/groups*R*S
//                    (dL/dx gathers dL/dy at p = (h + pad - r*dil) / stride where divisible)
//   backward_filter  M = K/groups, N = C/groups*R*S, reduction N*P*Q, split into fixed chunks
//   backward_bias    one block per channel, a fixed-order block reduction (in double)
// The block tile is chosen from the GEMM's M and N (kernels/conv2d_plan.h):
//   64x64x8, 4x4 per thread (256 threads)  when M >= 64 and N >= 64
//   128x8x8, 4x2 per thread (128 threads)  when N <= 8 < M   (depthwise forward/data)
//   8x128x8, 2x4 per thread (128 threads)  when M <= 8 < N   (depthwise filter)
//   32x32x8, 4x4 per thread (64 threads)   otherwise
// These are constexpr template parameters of the kernels, to be tuned on the GPU.
//
// Tensor cores (opt-in, as PyTorch's allow_tf32): with Conv2dParams::math tf32 or bf16, the
// forward, backward_data and backward_filter passes run the same implicit GEMMs on the tensor
// cores (conv2d_*_tensor_core.cu, sharing conv2d_tensor_core.cuh: 4 warps, a 64x64 block
// tile, 16 reduction steps a stage; channels-last passes copied asynchronously may take a
// 128x128 tile of 8 warps, Conv2dTensorCoreTile) when the channels the pass produces per group are at
// least kConv2dTensorCoreMinChannelsPerGroup: K/groups for forward and backward_filter,
// C/groups for backward_data. Both operands (x, weight, dL_dy as the pass reads them) are
// rounded to the math type as they are staged in shared memory (tf32: to nearest, ties away,
// 10 mantissa bits; bf16: to nearest even, 7 bits, f32's exponent range in both), multiplied
// by nvcuda::wmma (m16n16k8 tf32, m16n16k16 bf16) into f32 accumulators, the bias added in
// f32. Each product is then within about 2^-10 (tf32) or 2^-7 (bf16) of the exact one,
// relative to its magnitude; the sums are f32. backward_filter splits its N*P*Q reduction into
// chunks exactly as the fp32 kernel does (split_conv2d_reduction with the tensor-core tile),
// so it stays deterministic. Narrower groups (depthwise) would leave most of each 16x16
// fragment idle, so they keep the fp32 kernel, as does a GPU older than compute capability
// 8.0: math is a permission to round, never a demand. Small integers (and other values with
// at most 8 significant bits, 11 for tf32) are not rounded at all, so such convolutions whose
// sums stay below 2^24 give the fp32 kernels' results bit for bit.
//
// Memory formats (strata/core/memory_format.h): the activations x, y, dL_dy and dL_dx (and the
// pre-activation) may each be contiguous or channels-last; so may the weight the forward and
// backward_data read (conv2d_weight_format says which one its kernels read: the other is
// copied per call); dL_dweight must be contiguous (else InvalidArgument). Every kernel
// addresses each activation through its own strides and sums in the same order, so results
// (statistics included) are bit for bit those of contiguous tensors, and formats may differ
// between x and y, dL_dy and dL_dx, x and dL_dy.
// Tensors written at one index share a layout: y and the pre-activation; every tensor of
// conv2d_epilogue_forward/backward. The returning overloads allocate y in x's format and
// backward_data's dL_dx in dL_dy's (the API has no x to follow).
//
// Determinism: forward, backward_data and backward_bias are always bit-reproducible.
// backward_filter with Conv2dParams::deterministic (the default) writes each chunk's partial
// sums to a workspace and adds them in a fixed order; with deterministic = false it adds
// the chunks into dL_dweight with floating-point atomics (faster, not reproducible), unless
// strata::is_deterministic() (strata/core/determinism.h) overrides the request.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <cuda_runtime_api.h>

#include "strata/core/shape.h"
#include "strata/core/tensor.h"
#include "strata/kernels/batch_norm2d_activation.h"
#include "strata/kernels/channel_stats.h"
#include "strata/kernels/size2d.h"

namespace strata::kernels {

// The arithmetic the forward and the data and filter gradients may use (see above): fp32 (the
// default, exact f32 products), tf32 or bf16 inputs on the tensor cores with f32 accumulation.
//
// With f16 or bf16 storage: fp32 runs the CUDA-core kernels (each load converted to float);
// tf32 and bf16 both run the tensor cores with fragments of the storage type (bf16 storage:
// bf16 wmma; f16 storage: half wmma; m16n16k16, f32 accumulators). The stored values are
// exactly representable in that type and their products are exact in float, so this is what
// tf32 math would compute, with no rounding of the inputs at all: the only roundings are the
// f32 sums and the one to T at the store. The routing rule (>= 8 channels per group) is the
// same for every dtype.
enum class ConvMath : std::uint8_t { fp32, tf32, bf16 };

// "fp32", "tf32", "bf16".
std::string_view to_string(ConvMath math);

// Tensor cores only for passes that produce at least this many channels per group (K/groups
// for forward and backward_filter, C/groups for backward_data).
inline constexpr std::int64_t kConv2dTensorCoreMinChannelsPerGroup = 8;

// The block tile of the tensor-core passes that copy their slices asynchronously (channels-last
// activations whose channels fill 16-byte vectors; docs/kernels.md), rows (pixels, or output
// channels for the filter gradient) by columns: automatic (the default) picks the tile with
// the most outputs per warp whose grid still gives every multiprocessor eight warps: 128x128
// (eight warps of 64x32) where both sides of the GEMM fill it, else 128x64 (four warps of
// 64x32; the forward and data passes of 64-channel convs), else 64x64 (four warps of 32x32,
// the only tile of the other tensor-core paths). The others fix it, for benchmarks that
// compare them (the filter gradient takes the square tiles only: 128x64 runs it in 64x64).
// Process-wide, read at each launch. The tile changes no bit of y, its statistics or dL_dx;
// dL_dweight's reduction is split into chunks for the tile's blocks, so it may differ by the
// f32 roundings of another summation order (deterministic for a given tile, as always).
// m128n128_wgmma: 128x128 multiplied by Hopper's warpgroup MMA (wgmma, sm_90a builds on
// H100/H200) in every pass (conv2d, conv2d + max pool, data, filter) on f16/bf16; f32
// storage takes 128x128. m128n128_wgmma_tma: the same, the forward passes (conv2d, conv2d +
// max pool) reading the weights through the Tensor Memory Accelerator instead of cp.async;
// the backward passes run as m128n128_wgmma. The same bits either way. Never chosen
// automatically until GPU measurements say so; setting them where wgmma cannot run
// (wgmma::available()) throws.
enum class Conv2dTensorCoreTile : std::uint8_t {
  automatic,
  m64n64,
  m128n128,
  m128n64,
  m128n128_wgmma,
  m128n128_wgmma_tma
};
void set_conv2d_tensor_core_tile(Conv2dTensorCoreTile tile);
Conv2dTensorCoreTile conv2d_tensor_core_tile();
// Whether m128n128_wgmma and m128n128_wgmma_tma can be set: always in the simulator; on a GPU
// in an sm_90a build (STRATA_WGMMA_BUILT) on a device of compute capability 9.0.
bool conv2d_wgmma_available();

// "automatic", "64x64", "128x128", "128x64", "128x128-wgmma", "128x128-wgmma-tma".
std::string_view to_string(Conv2dTensorCoreTile tile);

struct Conv2dParams {
  Size2d stride{1, 1};    // >= 1
  Size2d padding{0, 0};   // >= 0, zeros on both sides; may exceed the kernel size
  Size2d dilation{1, 1};  // >= 1
  std::int64_t groups = 1;    // divides C and K; groups == C is depthwise
  // backward_filter only: reduce without floating-point atomics, bit-identical run to run.
  // false is a request, ignored while strata::is_deterministic().
  bool deterministic = true;
  // fp32, or permission to round the inputs to tf32 or bf16 for the tensor cores: forward,
  // backward_data and backward_filter (backward_bias ignores it).
  ConvMath math = ConvMath::fp32;
};

// "stride (1, 1), padding (0, 0), dilation (1, 1), groups 1" (then ", math tf32" unless fp32),
// for messages and test names.
std::string to_string(const Conv2dParams& params);

// floor((in + 2*padding - dilation*(kernel - 1) - 1) / stride) + 1, as PyTorch; may be < 1
// (no validation here: conv2d_shape rejects it).
std::int64_t conv2d_output_size(std::int64_t in, std::int64_t kernel, std::int64_t stride, std::int64_t padding,
                                std::int64_t dilation);

// Every size of one convolution, resolved and validated.
struct Conv2dShape {
  std::int64_t batch = 0;         // N
  std::int64_t in_channels = 0;   // C
  std::int64_t in_height = 0;     // H
  std::int64_t in_width = 0;      // W
  std::int64_t out_channels = 0;  // K
  std::int64_t kernel_height = 0; // R
  std::int64_t kernel_width = 0;  // S
  std::int64_t out_height = 0;    // P
  std::int64_t out_width = 0;     // Q
  Conv2dParams params;

  std::int64_t in_channels_per_group() const { return in_channels / params.groups; }
  std::int64_t out_channels_per_group() const { return out_channels / params.groups; }
  Shape input() const { return {batch, in_channels, in_height, in_width}; }
  Shape weight() const { return {out_channels, in_channels_per_group(), kernel_height, kernel_width}; }
  Shape output() const { return {batch, out_channels, out_height, out_width}; }
  Shape bias() const { return {out_channels}; }
};

// The convolution of an input (N, C, H, W) with a weight (K, C/groups, R, S). Throws
// InvalidArgument, naming op, both shapes and the parameters, for a rank other than 4, a
// size < 1, stride or dilation < 1, padding < 0, groups < 1 or not dividing C and K, a
// weight whose second dimension is not C/groups, an output size < 1, or sizes beyond the
// kernels' 32-bit index limits (each of C/groups*R*S, K/groups*R*S, H + 2*padding,
// dilation*(R - 1), N*H*W and N*P*Q below 2^31; channels and tensor sizes are 64-bit).
Conv2dShape conv2d_shape(const Shape& input, const Shape& weight, const Conv2dParams& params,
                         std::string_view op = "conv2d");

// Whether conv2d_forward runs this shape on the tensor cores: params.math is tf32 or bf16,
// K/groups >= kConv2dTensorCoreMinChannelsPerGroup and the current GPU has compute
// capability 8.0 or newer (the simulator's does). Otherwise it runs the fp32 kernel.
bool conv2d_forward_uses_tensor_cores(const Conv2dShape& shape);

// The same for conv2d_backward_data (C/groups >= kConv2dTensorCoreMinChannelsPerGroup) and
// conv2d_backward_filter (K/groups >= kConv2dTensorCoreMinChannelsPerGroup).
bool conv2d_backward_data_uses_tensor_cores(const Conv2dShape& shape);
bool conv2d_backward_filter_uses_tensor_cores(const Conv2dShape& shape);

// The memory format in which conv2d_forward (and the fused conv2d_max_pool2d_forward) reads
// the weight of this shape and storage dtype, for an x in x_format: channels_last, i.e. (K, R,
// S, C/groups) in memory, where the tensor cores copy the weight's slices asynchronously (x
// channels-last, its channels per group filling 16-byte vectors, math multiplying the stored
// values; docs/kernels.md), else contiguous (K, C/groups, R, S). A weight in the other format
// is accepted and copied into this one for the call: the layers cast and lay out each weight
// once per step in this format (strata/layers/functional.h), for the backward_data pass too,
// which reads the same layout wherever its own shape allows.
MemoryFormat conv2d_weight_format(const Conv2dShape& shape, DType dtype, MemoryFormat x_format);

// y (N, K, P, Q) = conv(x (N, C, H, W), weight (K, C/groups, R, S)) + bias (K). bias may be
// an undefined Tensor() for none. All tensors on the device in one dtype (f32, f16 or bf16);
// y must not overlap the inputs. The returning form allocates y in x's dtype and memory format.
// params.math other than fp32 allows the tensor cores (conv2d_forward_uses_tensor_cores).
// statistics (optional; none costs nothing): the per-channel statistics of y as stored, for a
// training batch norm on y (strata/kernels/channel_stats.h), computed in the epilogue of every
// kernel: one slot per block row of the GEMM, ceil(N*P*Q / block_m) slots, block_m being the
// tile's (64 on the tensor cores, whichever Conv2dTensorCoreTile). Deterministic, like y.
void conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y, const Conv2dParams& params,
                    cudaStream_t stream, ChannelStatistics* statistics = nullptr);
Tensor conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& params,
                      cudaStream_t stream, ChannelStatistics* statistics = nullptr);

// What the forward does to each conv + bias value before it stores it (the epilogue), per
// output channel k:
//   z = conv + bias[k]                      (f32, as without an epilogue)
//   v = scale[k] * z + shift[k]             (one fused multiply-add, rounded once to f32)
//   y = activation(v)                       (activation_ops.cuh's maths, in f32), rounded once
//                                           to the storage dtype
// An undefined scale is 1 and an undefined shift 0, and an absent one is skipped, not
// applied: the default epilogue is the identity and gives the plain forward's bits. With
// scale = weight / sqrt(running_var + eps) and shift = beta - running_mean * scale it is an
// eval-mode batch norm after the conv (within a few float roundings of batch_norm2d's
// (x - mean) * invstd * weight + bias). Bit for bit, with f32 storage: a power-of-two scale
// (scale * z exact) gives batch_norm2d_forward_eval's output for weight = scale, bias = shift,
// mean 0 and an invstd of exactly 1 (running_var = 1 - eps); no scale or shift gives
// relu_forward/gelu_forward of the plain forward's y. With f16/bf16 storage v is never
// rounded to the storage dtype before the activation, so y can differ from the unfused pair
// by one rounding.
struct Conv2dEpilogue {
  Tensor scale{};  // (K) f32 on the device, or undefined: 1
  Tensor shift{};  // (K) f32 on the device, or undefined: 0
  FusedActivation activation = FusedActivation::none;

  bool is_identity() const { return !scale.defined() && !shift.defined() && activation == FusedActivation::none; }
};

// conv2d_forward with an epilogue. statistics are of y as stored (after the activation).
// preactivation (optional, (N, K, P, Q) in y's dtype and layout, overlapping nothing else): also stores v
// there, rounded once, for the backward of GELU (ReLU's can use y). Throws InvalidArgument
// for a scale or shift that is not an f32 device tensor of shape (K).
void conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y, const Conv2dParams& params,
                    const Conv2dEpilogue& epilogue, cudaStream_t stream, ChannelStatistics* statistics = nullptr,
                    Tensor* preactivation = nullptr);
Tensor conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& params,
                      const Conv2dEpilogue& epilogue, cudaStream_t stream, ChannelStatistics* statistics = nullptr);

// The epilogue alone, on a conv's stored output z (N, K, P, Q) (cuDNN's, which has no such
// epilogue): y = activation(scale[k] * z + shift[k]) as above, and preactivation = v when
// given. y may be z itself (in place); one dtype and one memory layout for all.
void conv2d_epilogue_forward(const Tensor& z, const Conv2dEpilogue& epilogue, Tensor& y, cudaStream_t stream,
                             Tensor* preactivation = nullptr);

// The epilogue's backward: dL_dz (N, K, P, Q) = scale[k] * (dL_dy * activation'(v)), the
// activation's derivative as relu_backward's and gelu_backward's (the product rounded to f32
// before the scale, as those kernels store it in f32). saved: y for ReLU (y > 0 exactly
// where v > 0), the preactivation v for GELU, unused (may be undefined) for none. Without a
// scale and with f32 storage, the bits of relu_backward/gelu_backward. dL_dz may be dL_dy. One
// memory layout for dL_dy, saved and dL_dz.
void conv2d_epilogue_backward(const Tensor& dL_dy, const Tensor& saved, const Conv2dEpilogue& epilogue,
                              Tensor& dL_dz, cudaStream_t stream);
// The slots of the statistics conv2d_forward writes for shape, so that a caller can allocate
// the partials (channel_statistics_shape) before the forward runs.
std::int64_t conv2d_forward_statistics_slots(const Conv2dShape& shape);

// dL_dx (N, C, H, W) from dL_dy (N, K, P, Q) and weight (K, C/groups, R, S); overwrites dL_dx.
// dL_dx's shape says the input size (with stride > 1 several input sizes give the same P, Q).
// One dtype for all three (the returning form: dL_dy's dtype and memory format).
// params.math other than fp32 allows the tensor cores (conv2d_backward_data_uses_tensor_cores).
void conv2d_backward_data(const Tensor& dL_dy, const Tensor& weight, Tensor& dL_dx, const Conv2dParams& params,
                          cudaStream_t stream);
Tensor conv2d_backward_data(const Tensor& dL_dy, const Tensor& weight, const Shape& input_shape,
                            const Conv2dParams& params, cudaStream_t stream);

// dL_dweight (K, C/groups, R, S) from x (N, C, H, W) and dL_dy (N, K, P, Q); overwrites it.
// Deterministic unless params.deterministic is false (see above; f32 only: f16 and bf16 always
// add the chunks in order, so that they round once). One dtype for all three (the returning
// form: x's), except that dL_dweight may be f32 for f16/bf16 operands: each value rounded to
// their dtype, then stored widened (exactly), which is autocast's gradient of an f32 weight
// without the pass that casts it back. params.math other than fp32 allows the tensor cores
// (conv2d_backward_filter_uses_tensor_cores).
void conv2d_backward_filter(const Tensor& x, const Tensor& dL_dy, Tensor& dL_dweight, const Conv2dParams& params,
                            cudaStream_t stream);
Tensor conv2d_backward_filter(const Tensor& x, const Tensor& dL_dy, const Shape& weight_shape,
                              const Conv2dParams& params, cudaStream_t stream);

// dL_dbias (K) = sum of dL_dy (N, K, P, Q) over N, P and Q, in double, rounded once to their
// dtype (the returning form: dL_dy's; dL_dbias may be f32 for f16/bf16 dL_dy, the rounded sum
// stored widened, as conv2d_backward_filter's dL_dweight); overwrites it. Deterministic.
void conv2d_backward_bias(const Tensor& dL_dy, Tensor& dL_dbias, cudaStream_t stream);
Tensor conv2d_backward_bias(const Tensor& dL_dy, cudaStream_t stream);

}  // namespace strata::kernels
