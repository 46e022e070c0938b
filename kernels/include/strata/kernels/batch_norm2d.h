// Batch normalisation over (N, H, W) for every channel of x (N, C, H, W), as PyTorch's
// BatchNorm2d: training normalises with the batch statistics, saves them for the backward
// and updates the running statistics with momentum (the variance unbiased, n / (n - 1));
// eval normalises with the running statistics. The affine transform is optional, and
// there is a bias-only variant (weight fixed at 1), as some training recipes use.
//
// Dtypes: x, y, dL_dy and dL_dx share one storage dtype, f32, f16 or bf16 (mixed precision,
// "BN statistics in fp32"); the weight, bias, running and saved statistics and dL_dweight,
// dL_dbias are always f32. Each element is read as float and every result is computed as in
// f32 (float arithmetic, per-channel sums in double), then y and dL_dx are rounded once to
// their dtype: f16/bf16 give the f32 results of the same input values, rounded, and f32 is
// unchanged. A dtype mismatch is an InvalidArgument naming the operands and their dtypes.
//
// Memory formats: x, y, dL_dy and dL_dx may be contiguous or channels-last, all in one format
// (a mix is an InvalidArgument; a tensor whose layouts coincide matches either). Channels-last
// keeps the contiguous summation order of every per-channel sum, so every result is bit for
// bit the contiguous one (docs/kernels.md).
//
//   BatchNormSaved saved{Tensor::empty({C}, DType::f32, stream), Tensor::empty({C}, DType::f32, stream)};
//   batch_norm2d_forward_training(x, weight, bias, running, y, saved, {}, stream);
//   batch_norm2d_backward(dL_dy, x, weight, saved, gradients, {}, stream);
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "strata/core/shape.h"
#include "strata/core/tensor.h"
#include "strata/kernels/channel_stats.h"

namespace strata::kernels {

// Which learned per-channel tensors y = weight * x_hat + bias has.
enum class BatchNormAffine : std::uint8_t {
  none,             // y = x_hat
  bias_only,        // y = x_hat + bias (weight fixed at 1, not a tensor)
  weight_and_bias,  // y = weight * x_hat + bias, PyTorch's affine=True
};

// "none", "bias_only", "weight_and_bias".
const char* batch_norm_affine_name(BatchNormAffine affine);

enum class BatchNormMode : std::uint8_t { training, eval };

struct BatchNormParams {
  float eps = 1e-5f;       // added to the variance before the square root
  float momentum = 0.1f;   // running = (1 - momentum) * running + momentum * batch statistic
  BatchNormAffine affine = BatchNormAffine::weight_and_bias;
};

// Running statistics, (C) each. In training both may be undefined (not tracked, as
// PyTorch's track_running_stats=False); eval needs both. num_batches_tracked, a () i64
// device tensor or undefined, is PyTorch's buffer of that name: the training forward adds 1
// to it on the device (the custom kernels in their statistics kernel, no launch of its own).
struct BatchNormRunningStats {
  Tensor mean{};
  Tensor var{};
  Tensor num_batches_tracked{};
};

// What the training forward saves for the backward, (C) each.
struct BatchNormSaved {
  Tensor mean{};    // batch mean
  Tensor invstd{};  // 1 / sqrt(biased batch variance + eps)
};

// Gradients the backward writes; each undefined one is skipped. dL_dweight only with
// BatchNormAffine::weight_and_bias, dL_dbias not with BatchNormAffine::none.
struct BatchNormGradients {
  Tensor dL_dx{};       // (N, C, H, W)
  Tensor dL_dweight{};  // (C)
  Tensor dL_dbias{};    // (C)
};

// The shape of the per-channel tensors, (C), for x (N, C, H, W). Throws InvalidArgument
// naming the shape when x is not 4-D with sizes >= 1, or in training when a channel has
// a single value (N * H * W == 1), whose variance PyTorch also refuses to estimate.
Shape batch_norm2d_channel_shape(const Shape& x, BatchNormMode mode);

// weight (C): only with weight_and_bias, else undefined; bias (C): unless affine is none.
// Writes y (N, C, H, W) and saved; updates running in place when it is defined, and counts
// the batch in running.num_batches_tracked when that is.
// statistics (optional): the per-channel statistics of x that x's producer computed
// (conv2d_forward, max_pool2d_forward; strata/kernels/channel_stats.h), which must be of x as
// it is now. Their partials are combined in double in a fixed order instead of a pass over x;
// mean, the biased variance for normalising and the unbiased one for the running update are
// then finalised exactly as without. The summation order differs from the pass over x, so
// saved and running statistics may differ from that path's in the last bits of a float
// (both are within a few float roundings of the exact statistics); deterministic either way.
void batch_norm2d_forward_training(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                   BatchNormRunningStats& running, Tensor& y, BatchNormSaved& saved,
                                   const BatchNormParams& params, cudaStream_t stream,
                                   const ChannelStatistics* statistics = nullptr);

// y = (x - running.mean) / sqrt(running.var + eps) * weight + bias.
void batch_norm2d_forward_eval(const Tensor& x, const Tensor& weight, const Tensor& bias,
                               const BatchNormRunningStats& running, Tensor& y, const BatchNormParams& params,
                               cudaStream_t stream);

// The backward of the eval forward, the running statistics being constants (as PyTorch's
// eval-mode backward, for fine-tuning with frozen batch norm): dL_dx = dL_dy * weight /
// sqrt(running.var + eps), dL_dweight = sum of dL_dy * x_hat, dL_dbias = sum of dL_dy.
void batch_norm2d_backward_eval(const Tensor& dL_dy, const Tensor& x, const Tensor& weight,
                                const BatchNormRunningStats& running, BatchNormGradients& gradients,
                                const BatchNormParams& params, cudaStream_t stream);
// The backward of the training forward, from its input x and what it saved.
void batch_norm2d_backward(const Tensor& dL_dy, const Tensor& x, const Tensor& weight, const BatchNormSaved& saved,
                           BatchNormGradients& gradients, const BatchNormParams& params, cudaStream_t stream);

}  // namespace strata::kernels
