// batch_norm2d: per-channel statistics and backward sums in double in a fixed order, the same
// in both layouts (channel_reduction.cuh: deterministic and accurate), or the statistics from
// the partials a producer of x wrote (channel_stats.h), and element-wise
// kernels that normalise and compute dL/dx. The kernels other than the statistics live in
// batch_norm2d_kernels.cuh, shared with the fused batch norm + activation, and run here with
// the identity activation; the argument checks are batch_norm2d_checks.h's, shared with it
// and the cuDNN engine.
#include "strata/kernels/batch_norm2d.h"

#include <cstdint>
#include <optional>

#include "core/nvtx.h"
#include "kernels/batch_norm2d_checks.h"
#include "kernels/batch_norm2d_kernels.cuh"
#include "kernels/channel_reduction.cuh"
#include "kernels/channel_stats.cuh"
#include "kernels/common.cuh"

namespace strata::kernels {

namespace batch_norm {

namespace {

// Where the statistics of a channel go: saved (mean, invstd), and the running statistics when
// tracked (both null otherwise); the batch is counted in num_batches_tracked when that is
// given, by the thread that stores channel 0 (store runs once per channel).
struct StatisticsOutputs {
  float eps;
  float momentum;
  float* saved_mean;                  // (C)
  float* saved_invstd;                // (C)
  float* running_mean;                // (C) or null
  float* running_var;                 // (C) or null
  std::int64_t* num_batches_tracked;  // () or null

  // Channel c's n values, whose differences from shift sum to sum and their squares to
  // sum_of_squares: the mean and biased variance from those, saved as mean and
  // 1 / sqrt(var + eps), and the running statistics updated with the unbiased variance,
  // var * n / (n - 1).
  __device__ void store(std::int64_t c, double n, double shift, double sum, double sum_of_squares) const {
    const double shifted_mean = sum / n;
    const double variance = fmax(sum_of_squares / n - shifted_mean * shifted_mean, 0.0);  // biased
    const double mean = shift + shifted_mean;
    saved_mean[c] = static_cast<float>(mean);
    saved_invstd[c] = static_cast<float>(1.0 / sqrt(variance + static_cast<double>(eps)));
    if (running_mean != nullptr) {
      const double m = momentum;
      running_mean[c] = static_cast<float>((1.0 - m) * running_mean[c] + m * mean);
      running_var[c] = static_cast<float>((1.0 - m) * running_var[c] + m * variance * n / (n - 1.0));
    }
    if (c == 0 && num_batches_tracked != nullptr) *num_batches_tracked += 1;
  }
};

// The mean and biased variance of each channel (channel_reduction.cuh). The sums are of
// x - x[0, c, 0, 0] in double, so that a mean far from zero does not cancel the variance
// away. x is read as float whatever its storage T; the statistics are float.
template <typename T>
struct StatisticsReduction {
  static constexpr int kSums = 2;  // sum, sum of squares
  struct Channel {
    double shift;
  };

  const T* x;  // (N, C, H, W)
  ChannelLayout layout;
  StatisticsOutputs outputs;

  __device__ Channel channel(std::int64_t c) const { return {load_as_float(x, layout.element(0, c))}; }
  __device__ void add(const Channel& channel, std::int64_t index, std::int64_t /*c*/, double (&sums)[kSums]) const {
    const double shifted = static_cast<double>(load_as_float(x, index)) - channel.shift;
    sums[0] += shifted;
    sums[1] += shifted * shifted;
  }
  __device__ void finish(const Channel& channel, std::int64_t c, const double (&sums)[kSums]) const {
    outputs.store(c, static_cast<double>(layout.values_per_channel()), channel.shift, sums[0], sums[1]);
  }
};

// Block c: the same from the partial sums a producer wrote (channel_stats.cuh), combined in
// double in a fixed order (each thread takes every blockDim.x-th slot in turn, then the
// block's tree) about the first slot's shift. No pass over x.
__global__ void batch_norm_statistics_from_partials_kernel(ChannelPartials partials /* (6, slots, C) */,
                                                           StatisticsOutputs outputs) {
  __shared__ channel_stats::ShiftedSums scratch[kChannelThreads];
  const std::int64_t c = blockIdx.x;
  channel_stats::ShiftedSums sums = channel_stats::empty_sums();
  for (std::int64_t slot = threadIdx.x; slot < partials.slots; slot += blockDim.x) {
    sums = channel_stats::combine(sums, channel_stats::load_partial(partials, slot, c));
  }
  sums = channel_stats::combine_block(sums, scratch);
  if (threadIdx.x != 0) return;
  outputs.store(c, sums.count, sums.shift, sums.sum, sums.sum_of_squares);
}

float* data_or_null(Tensor& tensor) { return tensor.defined() ? tensor.data<float>() : nullptr; }

}  // namespace

void launch_statistics(const Tensor& x, const BatchNormParams& params, const ChannelPartials* partials,
                       BatchNormSaved& saved, BatchNormRunningStats& running, cudaStream_t stream) {
  const ChannelLayout layout = layout_of(x);
  const StatisticsOutputs outputs{.eps = params.eps,
                                  .momentum = params.momentum,
                                  .saved_mean = saved.mean.data<float>(),
                                  .saved_invstd = saved.invstd.data<float>(),
                                  .running_mean = data_or_null(running.mean),
                                  .running_var = data_or_null(running.var),
                                  .num_batches_tracked = running.num_batches_tracked.defined()
                                                             ? running.num_batches_tracked.data<std::int64_t>()
                                                             : nullptr};
  if (partials != nullptr) {
    launch(batch_norm_statistics_from_partials_kernel,
           LaunchConfig{.grid = static_cast<unsigned>(layout.channels), .block = kChannelThreads, .stream = stream,
                        .name = "batch_norm2d_statistics_from_partials"},
           *partials, outputs);
    return;
  }
  dispatch_floating_dtype(x.dtype(), "batch_norm2d_statistics", [&](auto type) {
    using T = typename decltype(type)::type;
    channel_reduction::launch(StatisticsReduction<T>{memory_elements<T>(x), layout, outputs},
                              layout.reduction_extent(), stream, "batch_norm2d_statistics");
  });
}

}  // namespace batch_norm

namespace {

constexpr const char* kOp = "batch_norm2d";
constexpr batch_norm::BackwardKernelNames kBackwardNames{.reduce = "batch_norm2d_backward_reduce",
                                                         .data = "batch_norm2d_backward_data"};
constexpr batch_norm::BackwardKernelNames kEvalBackwardNames{.reduce = "batch_norm2d_backward_reduce",
                                                             .data = "batch_norm2d_backward_eval_data"};

}  // namespace

const char* batch_norm_affine_name(BatchNormAffine affine) {
  switch (affine) {
    case BatchNormAffine::none: return "none";
    case BatchNormAffine::bias_only: return "bias_only";
    case BatchNormAffine::weight_and_bias: return "weight_and_bias";
  }
  return "invalid";
}

Shape batch_norm2d_channel_shape(const Shape& x, BatchNormMode mode) { return batch_norm::channel_shape(kOp, x, mode); }

void batch_norm2d_forward_training(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                   BatchNormRunningStats& running, Tensor& y, BatchNormSaved& saved,
                                   const BatchNormParams& params, cudaStream_t stream,
                                   const ChannelStatistics* statistics) {
  NvtxRange range("batch_norm2d_forward_training");
  const Shape channels = batch_norm::check_forward_training(kOp, x, weight, bias, running, y, saved, params);
  const std::optional<ChannelPartials> partials = batch_norm::precomputed_partials(kOp, statistics, channels);
  batch_norm::launch_statistics(x, params, partials ? &*partials : nullptr, saved, running, stream);
  const batch_norm::ChannelTransform transform{.mean = saved.mean.data<float>(),
                                               .spread = saved.invstd.data<float>(),
                                               .spread_is_variance = false,
                                               .eps = params.eps,
                                               .weight = batch_norm::data_or_null(weight),
                                               .bias = batch_norm::data_or_null(bias)};
  batch_norm::launch_apply(x, transform, batch_norm::IdentityActivation{}, y, "batch_norm2d_normalize", stream);
}

void batch_norm2d_forward_eval(const Tensor& x, const Tensor& weight, const Tensor& bias,
                               const BatchNormRunningStats& running, Tensor& y, const BatchNormParams& params,
                               cudaStream_t stream) {
  NvtxRange range("batch_norm2d_forward_eval");
  batch_norm::check_forward_eval(kOp, x, weight, bias, running, y, params);
  const batch_norm::ChannelTransform transform{.mean = running.mean.data<float>(),
                                               .spread = running.var.data<float>(),
                                               .spread_is_variance = true,
                                               .eps = params.eps,
                                               .weight = batch_norm::data_or_null(weight),
                                               .bias = batch_norm::data_or_null(bias)};
  batch_norm::launch_apply(x, transform, batch_norm::IdentityActivation{}, y, "batch_norm2d_normalize", stream);
}

void batch_norm2d_backward(const Tensor& dL_dy, const Tensor& x, const Tensor& weight, const BatchNormSaved& saved,
                           BatchNormGradients& gradients, const BatchNormParams& params, cudaStream_t stream) {
  NvtxRange range("batch_norm2d_backward");
  const Shape channels =
      batch_norm::check_backward(kOp, dL_dy, x, weight, gradients, params, BatchNormMode::training);
  batch_norm::check_saved(kOp, saved, channels);
  // The identity activation never reads the pre-activation, so the bias is not needed.
  const batch_norm::ChannelTransform transform{.mean = saved.mean.data<float>(),
                                               .spread = saved.invstd.data<float>(),
                                               .spread_is_variance = false,
                                               .eps = params.eps,
                                               .weight = batch_norm::data_or_null(weight),
                                               .bias = nullptr};
  batch_norm::launch_backward(dL_dy, x, transform, batch_norm::IdentityActivation{}, gradients, kBackwardNames,
                              stream);
}

void batch_norm2d_backward_eval(const Tensor& dL_dy, const Tensor& x, const Tensor& weight,
                                const BatchNormRunningStats& running, BatchNormGradients& gradients,
                                const BatchNormParams& params, cudaStream_t stream) {
  NvtxRange range("batch_norm2d_backward_eval");
  const Shape channels = batch_norm::check_backward(kOp, dL_dy, x, weight, gradients, params, BatchNormMode::eval);
  batch_norm::check_running_for_eval(kOp, running, channels, x.shape());
  const batch_norm::ChannelTransform transform{.mean = running.mean.data<float>(),
                                               .spread = running.var.data<float>(),
                                               .spread_is_variance = true,
                                               .eps = params.eps,
                                               .weight = batch_norm::data_or_null(weight),
                                               .bias = nullptr};
  batch_norm::launch_backward(dL_dy, x, transform, batch_norm::IdentityActivation{}, gradients, kEvalBackwardNames,
                              stream);
}

}  // namespace strata::kernels
