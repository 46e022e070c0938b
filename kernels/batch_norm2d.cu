// batch_norm2d: per-channel statistics and backward sums with one block per channel
// (reduced in a fixed order, in double: deterministic and accurate), and element-wise
// kernels that normalise and compute dL/dx.
#include "strata/kernels/batch_norm2d.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include "core/check.h"
#include "core/format.h"
#include "core/nvtx.h"
#include "kernels/common.cuh"
#include "kernels/tensor_checks.h"

namespace strata::kernels {

namespace {

constexpr const char* kOp = "batch_norm2d";
constexpr int kChannelThreads = 256;  // one block per channel reduces its N * H * W values
constexpr int kElementThreads = 256;

// x (N, C, H, W) seen as C channels of N planes of H * W values.
struct ChannelLayout {
  std::int64_t batch;
  std::int64_t channels;
  std::int64_t plane;  // H * W

  // Index in x of the k-th value of channel c, k in [0, N * H * W).
  __host__ __device__ std::int64_t element(std::int64_t k, std::int64_t c) const {
    const std::int64_t n = k / plane;
    return (n * channels + c) * plane + (k - n * plane);
  }
  __host__ __device__ std::int64_t channel_of(std::int64_t index) const { return (index / plane) % channels; }
  __host__ __device__ std::int64_t values_per_channel() const { return batch * plane; }
  __host__ __device__ std::int64_t size() const { return batch * channels * plane; }
};

// Block c: mean and biased variance of channel c, saved as mean and 1 / sqrt(var + eps), and
// the running statistics updated (unbiased variance). The sums are of x - x[0, c, 0, 0] in
// double, so that a mean far from zero does not cancel the variance away.
__global__ void batch_norm_statistics_kernel(const float* x /* (N, C, H, W) */, ChannelLayout layout, float eps,
                                             float momentum, float* saved_mean /* (C) */,
                                             float* saved_invstd /* (C) */, float* running_mean /* (C) or null */,
                                             float* running_var /* (C) or null */) {
  __shared__ double scratch[kWarpSize];
  const std::int64_t c = blockIdx.x;
  const std::int64_t count = layout.values_per_channel();
  const double shift = x[layout.element(0, c)];
  double sum = 0.0;
  double sum_of_squares = 0.0;
  for (std::int64_t k = threadIdx.x; k < count; k += blockDim.x) {
    const double shifted = static_cast<double>(x[layout.element(k, c)]) - shift;
    sum += shifted;
    sum_of_squares += shifted * shifted;
  }
  sum = block_sum(sum, scratch);
  sum_of_squares = block_sum(sum_of_squares, scratch);
  if (threadIdx.x != 0) return;
  const double n = static_cast<double>(count);
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
}

// y = (x - mean) * invstd * weight + bias. spread holds invstd (training) or, when
// spread_is_variance, the running variance (eval), turned into invstd here. A null mean is
// 0: the eval backward's dL/dx = dL/dy * invstd * weight is this map of dL/dy.
__global__ void batch_norm_normalize_kernel(const float* x /* (N, C, H, W) */, ChannelLayout layout,
                                            const float* mean /* (C) or null */, const float* spread /* (C) */,
                                            bool spread_is_variance, float eps, const float* weight /* (C) or null */,
                                            const float* bias /* (C) or null */, float* y /* (N, C, H, W) */) {
  const std::int64_t size = layout.size();
  for (std::int64_t i = global_thread_index(); i < size; i += global_thread_count()) {
    const std::int64_t c = layout.channel_of(i);
    const float invstd = spread_is_variance ? 1.0f / sqrtf(spread[c] + eps) : spread[c];
    float value = (mean != nullptr ? x[i] - mean[c] : x[i]) * invstd;
    if (weight != nullptr) value *= weight[c];
    if (bias != nullptr) value += bias[c];
    y[i] = value;
  }
}

// Block c: sum of dL/dy and of dL/dy * x_hat over channel c, in double. They are dL/dbias
// and dL/dweight; their means over the channel go to channel_terms for the dL/dx kernel.
// spread as in batch_norm_normalize_kernel: the saved invstd, or the running variance (eval).
__global__ void batch_norm_backward_reduce_kernel(const float* dL_dy /* (N, C, H, W) */,
                                                  const float* x /* (N, C, H, W) */, ChannelLayout layout,
                                                  const float* saved_mean /* (C) */, const float* spread /* (C) */,
                                                  bool spread_is_variance, float eps,
                                                  float* dL_dweight /* (C) or null */,
                                                  float* dL_dbias /* (C) or null */,
                                                  float* channel_terms /* (2, C) */) {
  __shared__ double scratch[kWarpSize];
  const std::int64_t c = blockIdx.x;
  const std::int64_t count = layout.values_per_channel();
  const double mean = saved_mean[c];
  double sum_dy = 0.0;
  double sum_dy_centered = 0.0;  // sum of dL/dy * (x - mean)
  for (std::int64_t k = threadIdx.x; k < count; k += blockDim.x) {
    const std::int64_t index = layout.element(k, c);
    const double dy = dL_dy[index];
    sum_dy += dy;
    sum_dy_centered += dy * (static_cast<double>(x[index]) - mean);
  }
  sum_dy = block_sum(sum_dy, scratch);
  sum_dy_centered = block_sum(sum_dy_centered, scratch);
  if (threadIdx.x != 0) return;
  // The same float invstd as the forward used.
  const float invstd = spread_is_variance ? 1.0f / sqrtf(spread[c] + eps) : spread[c];
  const double sum_dy_normalized = sum_dy_centered * static_cast<double>(invstd);
  if (dL_dweight != nullptr) dL_dweight[c] = static_cast<float>(sum_dy_normalized);
  if (dL_dbias != nullptr) dL_dbias[c] = static_cast<float>(sum_dy);
  const double n = static_cast<double>(count);
  channel_terms[c] = static_cast<float>(sum_dy / n);
  channel_terms[layout.channels + c] = static_cast<float>(sum_dy_normalized / n);
}

// dL/dx = weight * invstd * (dL/dy - mean(dL/dy) - x_hat * mean(dL/dy * x_hat)).
__global__ void batch_norm_backward_data_kernel(const float* dL_dy /* (N, C, H, W) */,
                                                const float* x /* (N, C, H, W) */, ChannelLayout layout,
                                                const float* saved_mean /* (C) */, const float* saved_invstd /* (C) */,
                                                const float* weight /* (C) or null */,
                                                const float* channel_terms /* (2, C) */,
                                                float* dL_dx /* (N, C, H, W) */) {
  const std::int64_t size = layout.size();
  for (std::int64_t i = global_thread_index(); i < size; i += global_thread_count()) {
    const std::int64_t c = layout.channel_of(i);
    const float invstd = saved_invstd[c];
    const float normalized = (x[i] - saved_mean[c]) * invstd;
    const float scale = weight != nullptr ? weight[c] * invstd : invstd;
    dL_dx[i] = scale * (dL_dy[i] - channel_terms[c] - normalized * channel_terms[layout.channels + c]);
  }
}

const char* affine_name(BatchNormAffine affine) {
  switch (affine) {
    case BatchNormAffine::none: return "none";
    case BatchNormAffine::bias_only: return "bias_only";
    case BatchNormAffine::weight_and_bias: return "weight_and_bias";
  }
  return "invalid";
}

bool has_weight(const BatchNormParams& params) { return params.affine == BatchNormAffine::weight_and_bias; }
bool has_bias(const BatchNormParams& params) { return params.affine != BatchNormAffine::none; }

ChannelLayout layout_of(const Tensor& x) {
  return ChannelLayout{.batch = x.size(0), .channels = x.size(1), .plane = x.size(2) * x.size(3)};
}

// A (C) f32 device tensor.
void expect_channel_tensor(const Tensor& tensor, const Shape& channels, const char* name) {
  expect_device_tensor(tensor, kOp, name);
  expect_shape(tensor, channels, kOp, name);
}

// A weight exactly when params.affine has one.
void check_weight(const Tensor& weight, const BatchNormParams& params) {
  STRATA_CHECK(weight.defined() == has_weight(params), "{}: affine {} {}, got {}", kOp, affine_name(params.affine),
               has_weight(params) ? "needs a weight" : "takes no weight (it is fixed at 1)",
               weight.defined() ? weight.to_string() : "none");
}

// weight and bias as params.affine asks: defined (C) tensors, or undefined.
void check_affine(const Tensor& weight, const Tensor& bias, const Shape& channels, const BatchNormParams& params) {
  check_weight(weight, params);
  STRATA_CHECK(bias.defined() == has_bias(params), "{}: affine {} {}, got {}", kOp, affine_name(params.affine),
               has_bias(params) ? "needs a bias" : "takes no bias", bias.defined() ? bias.to_string() : "none");
  if (weight.defined()) expect_channel_tensor(weight, channels, "weight");
  if (bias.defined()) expect_channel_tensor(bias, channels, "bias");
}

void check_params(const BatchNormParams& params, const Shape& x) {
  STRATA_CHECK(std::isfinite(params.eps) && params.eps >= 0.0f, "{}: eps must be finite and >= 0, got {} (x {})",
               kOp, params.eps, x);
  STRATA_CHECK(std::isfinite(params.momentum), "{}: momentum must be finite, got {} (x {})", kOp, params.momentum, x);
}

const float* data_or_null(const Tensor& tensor) { return tensor.defined() ? tensor.data<float>() : nullptr; }
float* data_or_null(Tensor& tensor) { return tensor.defined() ? tensor.data<float>() : nullptr; }

}  // namespace

Shape batch_norm2d_channel_shape(const Shape& x, BatchNormMode mode) {
  STRATA_CHECK(x.rank() == 4, "{}: x must be (N, C, H, W), got {}", kOp, x);
  STRATA_CHECK(x.numel() >= 1, "{}: sizes must be at least 1, got x {}", kOp, x);
  STRATA_CHECK(x[1] <= std::numeric_limits<int>::max(), "{}: more channels than a grid has blocks, got x {}", kOp, x);
  STRATA_CHECK(mode != BatchNormMode::training || x[0] * x[2] * x[3] > 1,
               "{}: expected more than 1 value per channel when training, got x {}", kOp, x);
  return Shape{x[1]};
}

void batch_norm2d_forward_training(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                   BatchNormRunningStats& running, Tensor& y, BatchNormSaved& saved,
                                   const BatchNormParams& params, cudaStream_t stream) {
  NvtxRange range("batch_norm2d_forward_training");
  expect_device_tensor(x, kOp, "x");
  const Shape channels = batch_norm2d_channel_shape(x.shape(), BatchNormMode::training);
  check_params(params, x.shape());
  check_affine(weight, bias, channels, params);
  STRATA_CHECK(running.mean.defined() == running.var.defined(),
               "{}: running mean and variance must both be given or both be omitted (x {})", kOp, x.shape());
  if (running.mean.defined()) {
    expect_channel_tensor(running.mean, channels, "running mean");
    expect_channel_tensor(running.var, channels, "running var");
    expect_distinct(running.var, running.mean, kOp, "running var", "running mean");
  }
  expect_device_tensor(y, kOp, "y");
  expect_shape(y, x.shape(), kOp, "y");
  expect_distinct(y, x, kOp, "y", "x");
  expect_channel_tensor(saved.mean, channels, "saved mean");
  expect_channel_tensor(saved.invstd, channels, "saved invstd");
  expect_distinct(saved.invstd, saved.mean, kOp, "saved invstd", "saved mean");

  const ChannelLayout layout = layout_of(x);
  launch(batch_norm_statistics_kernel,
         LaunchConfig{.grid = static_cast<unsigned>(layout.channels), .block = kChannelThreads, .stream = stream,
                      .name = "batch_norm2d_statistics"},
         x.data<float>(), layout, params.eps, params.momentum, saved.mean.data<float>(), saved.invstd.data<float>(),
         data_or_null(running.mean), data_or_null(running.var));
  launch(batch_norm_normalize_kernel,
         LaunchConfig{.grid = grid_stride_blocks(layout.size(), kElementThreads), .block = kElementThreads,
                      .stream = stream, .name = "batch_norm2d_normalize"},
         x.data<float>(), layout, saved.mean.data<float>(), saved.invstd.data<float>(), false, params.eps,
         data_or_null(weight), data_or_null(bias), y.data<float>());
}

void batch_norm2d_forward_eval(const Tensor& x, const Tensor& weight, const Tensor& bias,
                               const BatchNormRunningStats& running, Tensor& y, const BatchNormParams& params,
                               cudaStream_t stream) {
  NvtxRange range("batch_norm2d_forward_eval");
  expect_device_tensor(x, kOp, "x");
  const Shape channels = batch_norm2d_channel_shape(x.shape(), BatchNormMode::eval);
  check_params(params, x.shape());
  check_affine(weight, bias, channels, params);
  STRATA_CHECK(running.mean.defined() && running.var.defined(),
               "{}: eval needs the running mean and variance (x {})", kOp, x.shape());
  expect_channel_tensor(running.mean, channels, "running mean");
  expect_channel_tensor(running.var, channels, "running var");
  expect_device_tensor(y, kOp, "y");
  expect_shape(y, x.shape(), kOp, "y");
  expect_distinct(y, x, kOp, "y", "x");

  const ChannelLayout layout = layout_of(x);
  launch(batch_norm_normalize_kernel,
         LaunchConfig{.grid = grid_stride_blocks(layout.size(), kElementThreads), .block = kElementThreads,
                      .stream = stream, .name = "batch_norm2d_normalize"},
         x.data<float>(), layout, running.mean.data<float>(), running.var.data<float>(), true, params.eps,
         data_or_null(weight), data_or_null(bias), y.data<float>());
}

namespace {

// The checks both backwards share; throws InvalidArgument naming what is wrong. Returns the
// channel shape, (C).
Shape check_backward(const char* op, const Tensor& dL_dy, const Tensor& x, const Tensor& weight,
                     const BatchNormGradients& gradients, const BatchNormParams& params, BatchNormMode mode) {
  expect_device_tensor(x, op, "x");
  const Shape channels = batch_norm2d_channel_shape(x.shape(), mode);
  expect_device_tensor(dL_dy, op, "dL_dy");
  expect_shape(dL_dy, x.shape(), op, "dL_dy");
  check_weight(weight, params);
  if (weight.defined()) expect_channel_tensor(weight, channels, "weight");
  STRATA_CHECK(!gradients.dL_dweight.defined() || has_weight(params),
               "{}: affine {} has no weight, so no dL_dweight (got {})", op, affine_name(params.affine),
               gradients.dL_dweight.to_string());
  STRATA_CHECK(!gradients.dL_dbias.defined() || has_bias(params), "{}: affine {} has no bias, so no dL_dbias (got {})",
               op, affine_name(params.affine), gradients.dL_dbias.to_string());
  if (gradients.dL_dx.defined()) {
    expect_device_tensor(gradients.dL_dx, op, "dL_dx");
    expect_shape(gradients.dL_dx, x.shape(), op, "dL_dx");
    expect_distinct(gradients.dL_dx, x, op, "dL_dx", "x");
    expect_distinct(gradients.dL_dx, dL_dy, op, "dL_dx", "dL_dy");
  }
  if (gradients.dL_dweight.defined()) expect_channel_tensor(gradients.dL_dweight, channels, "dL_dweight");
  if (gradients.dL_dbias.defined()) expect_channel_tensor(gradients.dL_dbias, channels, "dL_dbias");
  if (gradients.dL_dweight.defined() && gradients.dL_dbias.defined()) {
    expect_distinct(gradients.dL_dbias, gradients.dL_dweight, op, "dL_dbias", "dL_dweight");
  }
  return channels;
}

}  // namespace

void batch_norm2d_backward(const Tensor& dL_dy, const Tensor& x, const Tensor& weight, const BatchNormSaved& saved,
                           BatchNormGradients& gradients, const BatchNormParams& params, cudaStream_t stream) {
  NvtxRange range("batch_norm2d_backward");
  const Shape channels = check_backward(kOp, dL_dy, x, weight, gradients, params, BatchNormMode::training);
  expect_channel_tensor(saved.mean, channels, "saved mean");
  expect_channel_tensor(saved.invstd, channels, "saved invstd");
  if (!gradients.dL_dx.defined() && !gradients.dL_dweight.defined() && !gradients.dL_dbias.defined()) return;

  const ChannelLayout layout = layout_of(x);
  Tensor channel_terms = Tensor::empty({2, layout.channels}, DType::f32, stream);  // (2, C)
  launch(batch_norm_backward_reduce_kernel,
         LaunchConfig{.grid = static_cast<unsigned>(layout.channels), .block = kChannelThreads, .stream = stream,
                      .name = "batch_norm2d_backward_reduce"},
         dL_dy.data<float>(), x.data<float>(), layout, saved.mean.data<float>(), saved.invstd.data<float>(), false,
         params.eps, data_or_null(gradients.dL_dweight), data_or_null(gradients.dL_dbias),
         channel_terms.data<float>());
  if (!gradients.dL_dx.defined()) return;
  launch(batch_norm_backward_data_kernel,
         LaunchConfig{.grid = grid_stride_blocks(layout.size(), kElementThreads), .block = kElementThreads,
                      .stream = stream, .name = "batch_norm2d_backward_data"},
         dL_dy.data<float>(), x.data<float>(), layout, saved.mean.data<float>(), saved.invstd.data<float>(),
         data_or_null(weight), channel_terms.data<float>(), gradients.dL_dx.data<float>());
}

void batch_norm2d_backward_eval(const Tensor& dL_dy, const Tensor& x, const Tensor& weight,
                                const BatchNormRunningStats& running, BatchNormGradients& gradients,
                                const BatchNormParams& params, cudaStream_t stream) {
  NvtxRange range("batch_norm2d_backward_eval");
  const Shape channels = check_backward(kOp, dL_dy, x, weight, gradients, params, BatchNormMode::eval);
  check_params(params, x.shape());
  STRATA_CHECK(running.mean.defined() && running.var.defined(),
               "{}: the eval backward needs the running mean and variance (x {})", kOp, x.shape());
  expect_channel_tensor(running.mean, channels, "running mean");
  expect_channel_tensor(running.var, channels, "running var");
  if (!gradients.dL_dx.defined() && !gradients.dL_dweight.defined() && !gradients.dL_dbias.defined()) return;

  const ChannelLayout layout = layout_of(x);
  if (gradients.dL_dweight.defined() || gradients.dL_dbias.defined()) {
    Tensor channel_terms = Tensor::empty({2, layout.channels}, DType::f32, stream);  // (2, C), unused here
    launch(batch_norm_backward_reduce_kernel,
           LaunchConfig{.grid = static_cast<unsigned>(layout.channels), .block = kChannelThreads, .stream = stream,
                        .name = "batch_norm2d_backward_reduce"},
           dL_dy.data<float>(), x.data<float>(), layout, running.mean.data<float>(), running.var.data<float>(), true,
           params.eps, data_or_null(gradients.dL_dweight), data_or_null(gradients.dL_dbias),
           channel_terms.data<float>());
  }
  if (!gradients.dL_dx.defined()) return;
  // The statistics are constants in eval: y is an affine map of x, and dL/dx is that map's
  // slope times dL/dy, dL/dy * invstd * weight.
  const float* no_mean = nullptr;
  const float* no_bias = nullptr;
  launch(batch_norm_normalize_kernel,
         LaunchConfig{.grid = grid_stride_blocks(layout.size(), kElementThreads), .block = kElementThreads,
                      .stream = stream, .name = "batch_norm2d_backward_eval_data"},
         dL_dy.data<float>(), layout, no_mean, running.var.data<float>(), true, params.eps, data_or_null(weight),
         no_bias, gradients.dL_dx.data<float>());
}

}  // namespace strata::kernels
