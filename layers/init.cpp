// The initialisers of strata/layers/init.h: fans, gains and scales in double, computed in
// the same order as torch.nn.init so they agree to the last bit; the random fills go to
// core's Philox fills, Dirac's ones to its kernel (init_kernels.cu) or the host.
#include "strata/layers/init.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "core/check.h"
#include "core/dtype_dispatch.h"
#include "core/format.h"
#include "core/nvtx.h"
#include "layers/init_kernels.h"
#include "strata/core/op.h"

namespace strata::init {

namespace {

Fans fans_for(const Shape& shape, const char* operation) {
  STRATA_CHECK(shape.rank() >= 2,
               "{}: fan in and fan out cannot be computed for a tensor with fewer than 2 dimensions, got shape {} "
               "(a weight is (out, in, *kernel))",
               operation, shape);
  std::int64_t receptive_field = 1;
  for (int dim = 2; dim < shape.rank(); ++dim) receptive_field *= shape[dim];
  return {.fan_in = shape[1] * receptive_field, .fan_out = shape[0] * receptive_field};
}

void check_tensor(const Tensor& tensor, const char* operation) {
  STRATA_CHECK(tensor.defined(), "{}: the tensor is undefined", operation);
}

// The random initialisers fill floating-point tensors only.
void check_floating_tensor(const Tensor& tensor, const char* operation) {
  check_tensor(tensor, operation);
  STRATA_CHECK(is_floating_point(tensor.dtype()),
               "{}: needs a floating-point tensor (f32, f16, bf16), got dtype {} (shape {})", operation,
               tensor.dtype(), tensor.shape());
}

// Finite, non-negative scales only: a NaN bound would otherwise reach the fill as
// "low <= high" failing with a less helpful message.
void check_scale(double scale, const char* what, const char* operation, const Shape& shape) {
  STRATA_CHECK(std::isfinite(scale) && scale >= 0.0, "{}: {} must be finite and non-negative, got {} (tensor shape {})",
               operation, what, scale, shape);
}

double kaiming_std_for(const Shape& shape, const KaimingParams& params, const char* operation) {
  STRATA_CHECK(std::isfinite(params.a), "{}: a (the negative slope) must be finite, got {}", operation, params.a);
  const Fans fans = fans_for(shape, operation);
  const std::int64_t fan = params.mode == FanMode::fan_in ? fans.fan_in : fans.fan_out;
  STRATA_CHECK(fan > 0, "{}: {} of shape {} is 0, so no standard deviation exists", operation,
               params.mode == FanMode::fan_in ? "fan_in" : "fan_out", shape);
  return calculate_gain(params.nonlinearity, params.a) / std::sqrt(static_cast<double>(fan));
}

double xavier_std_for(const Shape& shape, const XavierParams& params, const char* operation) {
  STRATA_CHECK(std::isfinite(params.gain), "{}: gain must be finite, got {}", operation, params.gain);
  const Fans fans = fans_for(shape, operation);
  STRATA_CHECK(fans.fan_in + fans.fan_out > 0, "{}: fan_in + fan_out of shape {} is 0", operation, shape);
  return params.gain * std::sqrt(2.0 / static_cast<double>(fans.fan_in + fans.fan_out));
}

// U(-bound, bound) from the stream; bound is rounded to float, the precision of the fill.
void symmetric_uniform(Tensor& tensor, double bound, std::uint64_t seed, std::uint64_t offset, const char* operation,
                       cudaStream_t stream) {
  check_scale(bound, "the bound", operation, tensor.shape());
  const auto bound_f = static_cast<float>(bound);
  fill_uniform(tensor, {.low = -bound_f, .high = bound_f, .seed = seed, .offset = offset}, stream);
}

void zero_mean_normal(Tensor& tensor, double stddev, std::uint64_t seed, std::uint64_t offset, const char* operation,
                      cudaStream_t stream) {
  check_scale(stddev, "the standard deviation", operation, tensor.shape());
  fill_normal(tensor, {.mean = 0.0f, .stddev = static_cast<float>(stddev), .seed = seed, .offset = offset}, stream);
}

// nn.Conv2d / nn.Linear reset_parameters; bias may be undefined (no bias).
void default_init(Tensor& weight, Tensor* bias, std::uint64_t seed, int rank, const char* operation,
                  cudaStream_t stream) {
  check_floating_tensor(weight, operation);
  STRATA_CHECK(weight.dim() == rank, "{}: the weight must be {}, got shape {}", operation,
               rank == 4 ? "(K, C/groups, R, S)" : "(out_features, in_features)", weight.shape());
  if (bias != nullptr) {
    check_floating_tensor(*bias, operation);
    STRATA_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0),
                 "{}: the bias must be ({}) for a weight of shape {}, got shape {}", operation, weight.size(0),
                 weight.shape(), bias->shape());
  }
  // a = sqrt(5) makes Kaiming's bound sqrt(3) * sqrt(2 / 6) / sqrt(fan_in) = 1 / sqrt(fan_in).
  kaiming_uniform_(weight, {.a = std::sqrt(5.0), .seed = seed, .offset = 0}, stream);
  if (bias == nullptr) return;
  const std::int64_t fan_in = calculate_fans(weight.shape()).fan_in;
  if (fan_in == 0) {
    zeros_(*bias, stream);
    return;
  }
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  symmetric_uniform(*bias, bound, seed, static_cast<std::uint64_t>(weight.numel()), operation, stream);
}

}  // namespace

std::string_view nonlinearity_name(Nonlinearity nonlinearity) noexcept {
  switch (nonlinearity) {
    case Nonlinearity::linear: return "linear";
    case Nonlinearity::conv1d: return "conv1d";
    case Nonlinearity::conv2d: return "conv2d";
    case Nonlinearity::conv3d: return "conv3d";
    case Nonlinearity::conv_transpose1d: return "conv_transpose1d";
    case Nonlinearity::conv_transpose2d: return "conv_transpose2d";
    case Nonlinearity::conv_transpose3d: return "conv_transpose3d";
    case Nonlinearity::sigmoid: return "sigmoid";
    case Nonlinearity::tanh: return "tanh";
    case Nonlinearity::relu: return "relu";
    case Nonlinearity::leaky_relu: return "leaky_relu";
    case Nonlinearity::selu: return "selu";
  }
  return "invalid";
}

Fans calculate_fans(const Shape& shape) { return fans_for(shape, "calculate_fans"); }

double calculate_gain(Nonlinearity nonlinearity, double negative_slope) {
  switch (nonlinearity) {
    case Nonlinearity::linear:
    case Nonlinearity::conv1d:
    case Nonlinearity::conv2d:
    case Nonlinearity::conv3d:
    case Nonlinearity::conv_transpose1d:
    case Nonlinearity::conv_transpose2d:
    case Nonlinearity::conv_transpose3d:
    case Nonlinearity::sigmoid: return 1.0;
    case Nonlinearity::tanh: return 5.0 / 3;
    case Nonlinearity::relu: return std::sqrt(2.0);
    case Nonlinearity::leaky_relu:
      STRATA_CHECK(std::isfinite(negative_slope), "calculate_gain: leaky_relu needs a finite negative slope, got {}",
                   negative_slope);
      return std::sqrt(2.0 / (1 + negative_slope * negative_slope));
    case Nonlinearity::selu: return 3.0 / 4;
  }
  STRATA_CHECK(false, "calculate_gain: unknown nonlinearity {}", static_cast<int>(nonlinearity));
  return 0.0;
}

double kaiming_std(const Shape& shape, const KaimingParams& params) {
  return kaiming_std_for(shape, params, "kaiming_std");
}

double kaiming_uniform_bound(const Shape& shape, const KaimingParams& params) {
  return std::sqrt(3.0) * kaiming_std_for(shape, params, "kaiming_uniform_bound");
}

double xavier_std(const Shape& shape, const XavierParams& params) {
  return xavier_std_for(shape, params, "xavier_std");
}

double xavier_uniform_bound(const Shape& shape, const XavierParams& params) {
  return std::sqrt(3.0) * xavier_std_for(shape, params, "xavier_uniform_bound");
}

void constant_(Tensor& tensor, double value, cudaStream_t stream) {
  check_tensor(tensor, "constant_");
  tensor.fill(value, stream);
}

void zeros_(Tensor& tensor, cudaStream_t stream) { constant_(tensor, 0.0, stream); }

void ones_(Tensor& tensor, cudaStream_t stream) { constant_(tensor, 1.0, stream); }

void uniform_(Tensor& tensor, const UniformParams& params, cudaStream_t stream) {
  check_floating_tensor(tensor, "uniform_");
  fill_uniform(tensor, params, stream);
}

void normal_(Tensor& tensor, const NormalParams& params, cudaStream_t stream) {
  check_floating_tensor(tensor, "normal_");
  fill_normal(tensor, params, stream);
}

void kaiming_uniform_(Tensor& tensor, const KaimingParams& params, cudaStream_t stream) {
  check_floating_tensor(tensor, "kaiming_uniform_");
  fans_for(tensor.shape(), "kaiming_uniform_");  // the rank error comes first, also for empty tensors
  if (tensor.numel() == 0) return;
  const double bound = std::sqrt(3.0) * kaiming_std_for(tensor.shape(), params, "kaiming_uniform_");
  symmetric_uniform(tensor, bound, params.seed, params.offset, "kaiming_uniform_", stream);
}

void kaiming_normal_(Tensor& tensor, const KaimingParams& params, cudaStream_t stream) {
  check_floating_tensor(tensor, "kaiming_normal_");
  fans_for(tensor.shape(), "kaiming_normal_");
  if (tensor.numel() == 0) return;
  zero_mean_normal(tensor, kaiming_std_for(tensor.shape(), params, "kaiming_normal_"), params.seed, params.offset,
                   "kaiming_normal_", stream);
}

void xavier_uniform_(Tensor& tensor, const XavierParams& params, cudaStream_t stream) {
  check_floating_tensor(tensor, "xavier_uniform_");
  fans_for(tensor.shape(), "xavier_uniform_");
  if (tensor.numel() == 0) return;
  const double bound = std::sqrt(3.0) * xavier_std_for(tensor.shape(), params, "xavier_uniform_");
  symmetric_uniform(tensor, bound, params.seed, params.offset, "xavier_uniform_", stream);
}

void xavier_normal_(Tensor& tensor, const XavierParams& params, cudaStream_t stream) {
  check_floating_tensor(tensor, "xavier_normal_");
  fans_for(tensor.shape(), "xavier_normal_");
  if (tensor.numel() == 0) return;
  zero_mean_normal(tensor, xavier_std_for(tensor.shape(), params, "xavier_normal_"), params.seed, params.offset,
                   "xavier_normal_", stream);
}

void dirac_(Tensor& weight, int groups, cudaStream_t stream) {
  NvtxRange range("dirac_");
  check_tensor(weight, "dirac_");
  const Shape& shape = weight.shape();
  STRATA_CHECK(shape.rank() >= 3 && shape.rank() <= 5,
               "dirac_: needs a convolution weight (K, C/groups, *kernel) with 3, 4 or 5 dimensions, got shape {}",
               shape);
  STRATA_CHECK(groups >= 1, "dirac_: groups must be at least 1, got {} (weight shape {})", groups, shape);
  STRATA_CHECK(shape[0] % groups == 0, "dirac_: the {} output channels of weight {} are not divisible by groups {}",
               shape[0], shape, groups);
  STRATA_CHECK(!weight.is_device() || stream != nullptr,
               "dirac_: no stream given for a device weight of shape {}; Strata never uses the default stream", shape);

  detail::DiracLayout layout;
  layout.out_channels_per_group = shape[0] / groups;
  layout.ones_per_group = std::min(layout.out_channels_per_group, shape[1]);
  layout.output_channel_stride = shape.stride(0);
  layout.input_channel_stride = shape.stride(1);
  for (int dim = 2; dim < shape.rank(); ++dim) layout.centre_offset += (shape[dim] / 2) * shape.stride(dim);
  const std::int64_t ones = weight.numel() == 0 ? 0 : groups * layout.ones_per_group;

  if (weight.is_device()) {
    graph::run_op_on(stream, "dirac", {}, {weight}, [target = weight.detach(), layout, ones](cudaStream_t s) mutable {
      target.fill(0.0, s);  // part of this op (strata/core/op.h)
      detail::launch_dirac_ones(target.data_ptr(), target.dtype(), layout, ones, s);
      target.record_stream(s);
    });
    return;
  }
  // Host weight: zeros_ waits for stream's work, then fills on this thread.
  zeros_(weight, stream);
  strata::detail::dispatch_dtype(weight.dtype(), [&]<typename T>(std::type_identity<T>) {
    T* elements = weight.data<T>();
    for (std::int64_t i = 0; i < ones; ++i) {
      elements[detail::dirac_element(layout, i)] = strata::detail::convert_element<T>(1.0f);
    }
  });
}

void default_conv2d_init(Tensor& weight, Tensor& bias, std::uint64_t seed, cudaStream_t stream) {
  default_init(weight, &bias, seed, 4, "default_conv2d_init", stream);
}

void default_conv2d_init(Tensor& weight, std::uint64_t seed, cudaStream_t stream) {
  default_init(weight, nullptr, seed, 4, "default_conv2d_init", stream);
}

void default_linear_init(Tensor& weight, Tensor& bias, std::uint64_t seed, cudaStream_t stream) {
  default_init(weight, &bias, seed, 2, "default_linear_init", stream);
}

void default_linear_init(Tensor& weight, std::uint64_t seed, cudaStream_t stream) {
  default_init(weight, nullptr, seed, 2, "default_linear_init", stream);
}

}  // namespace strata::init
