// Parameter initialisers, as torch.nn.init: constants, uniform and normal fills,
// Kaiming (He) and Xavier (Glorot) scaling, Dirac (identity) convolution weights, and
// PyTorch's default initialisation of Conv2d and Linear. Random fills draw from Strata's
// counter-based Philox stream (strata/core/random.h): element i takes element offset + i of
// the stream for seed, so the values are reproducible on any device and launch shape, but
// differ from PyTorch's, whose generator is another. Device tensors are filled by kernels
// on stream; host tensors on the calling thread after stream's queued work.
//
//   init::kaiming_normal_(weight, {.mode = init::FanMode::fan_out, .nonlinearity = init::Nonlinearity::relu,
//                                  .seed = 42}, stream);             // weight (K, C, R, S)
//   init::default_conv2d_init(weight, bias, /*seed=*/7, stream);     // as nn.Conv2d's reset_parameters
#pragma once

#include <cstdint>
#include <string_view>

#include <cuda_runtime_api.h>

#include "strata/core/random.h"
#include "strata/core/shape.h"
#include "strata/core/tensor.h"

namespace strata::init {

// Which fan Kaiming initialisation preserves: fan_in keeps the variance of the
// activations in the forward pass, fan_out that of the gradients in the backward pass.
enum class FanMode : std::uint8_t { fan_in, fan_out };

// The nonlinearities torch.nn.init.calculate_gain knows, by their nn.functional names.
enum class Nonlinearity : std::uint8_t {
  linear,
  conv1d,
  conv2d,
  conv3d,
  conv_transpose1d,
  conv_transpose2d,
  conv_transpose3d,
  sigmoid,
  tanh,
  relu,
  leaky_relu,
  selu,
};

// "leaky_relu", ...: PyTorch's spelling.
std::string_view nonlinearity_name(Nonlinearity nonlinearity) noexcept;

struct Fans {
  std::int64_t fan_in = 0;
  std::int64_t fan_out = 0;
};

// torch.nn.init._calculate_fan_in_and_fan_out: for a weight (out, in, *kernel),
// fan_in = in * prod(kernel) and fan_out = out * prod(kernel). Throws InvalidArgument for
// fewer than 2 dimensions.
Fans calculate_fans(const Shape& shape);

// torch.nn.init.calculate_gain: 1 for linear, convolutions and sigmoid, 5/3 for tanh,
// sqrt(2) for relu, sqrt(2 / (1 + negative_slope^2)) for leaky_relu, 3/4 for selu.
// negative_slope is used by leaky_relu only; PyTorch's default is 0.01.
double calculate_gain(Nonlinearity nonlinearity, double negative_slope = 0.01);

struct KaimingParams {
  double a = 0.0;  // negative slope of the rectifier after this layer (leaky_relu only)
  FanMode mode = FanMode::fan_in;
  Nonlinearity nonlinearity = Nonlinearity::leaky_relu;  // PyTorch's default, with a = 0 the gain of relu
  std::uint64_t seed = 0;
  std::uint64_t offset = 0;  // first element of the Philox stream to use
};

struct XavierParams {
  double gain = 1.0;
  std::uint64_t seed = 0;
  std::uint64_t offset = 0;
};

// The scales the initialisers below use, computed in double exactly as torch.nn.init
// does, for a weight of this shape: Kaiming std = gain / sqrt(fan), its uniform bound
// sqrt(3) * std; Xavier std = gain * sqrt(2 / (fan_in + fan_out)), bound sqrt(3) * std.
// Throw InvalidArgument for fewer than 2 dimensions or a zero fan.
double kaiming_std(const Shape& shape, const KaimingParams& params);
double kaiming_uniform_bound(const Shape& shape, const KaimingParams& params);
double xavier_std(const Shape& shape, const XavierParams& params);
double xavier_uniform_bound(const Shape& shape, const XavierParams& params);

// Every element set to value (converted to the tensor's dtype); any dtype.
void constant_(Tensor& tensor, double value, cudaStream_t stream);
void zeros_(Tensor& tensor, cudaStream_t stream);
void ones_(Tensor& tensor, cudaStream_t stream);

// U[low, high) and N(mean, stddev^2) from the Philox stream: fill_uniform / fill_normal.
// These and the initialisers below need a floating-point tensor (f32, f16, bf16).
void uniform_(Tensor& tensor, const UniformParams& params, cudaStream_t stream);
void normal_(Tensor& tensor, const NormalParams& params, cudaStream_t stream);

// U(-bound, bound) with bound = kaiming_uniform_bound(shape, params), and
// N(0, kaiming_std^2). As in PyTorch, a tensor with no elements is left alone.
void kaiming_uniform_(Tensor& tensor, const KaimingParams& params, cudaStream_t stream);
void kaiming_normal_(Tensor& tensor, const KaimingParams& params, cudaStream_t stream);

// U(-bound, bound) with bound = xavier_uniform_bound(shape, params), and N(0, xavier_std^2).
void xavier_uniform_(Tensor& tensor, const XavierParams& params, cudaStream_t stream);
void xavier_normal_(Tensor& tensor, const XavierParams& params, cudaStream_t stream);

// The identity convolution, as torch.nn.init.dirac_: weight (K, C/groups, *kernel) with 1,
// 2 or 3 kernel dimensions (3-, 4- or 5-D) is zeroed, then for every group g and
// d < min(K/groups, C/groups) the centre tap (kernel_size / 2 in each dimension) of
// output channel g * K/groups + d, input channel d, is set to 1. A convolution with this
// weight copies its input's first channels of each group (zero padding keeps the size).
// Any dtype. Throws InvalidArgument for another rank or K not divisible by groups.
void dirac_(Tensor& weight, int groups, cudaStream_t stream);
inline void dirac_(Tensor& weight, cudaStream_t stream) { dirac_(weight, 1, stream); }

// PyTorch's default initialisation of nn.Conv2d and nn.Linear (their reset_parameters):
// weight from kaiming_uniform_ with a = sqrt(5), which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
// and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Both come from the stream for seed:
// the weight from element 0, the bias from element weight.numel() on. A weight without
// inputs (fan_in 0) gets a zero bias, where PyTorch leaves it uninitialised.
// Conv2d: weight (K, C/groups, R, S), bias (K). Linear: weight (out, in), bias (out).
void default_conv2d_init(Tensor& weight, Tensor& bias, std::uint64_t seed, cudaStream_t stream);
void default_conv2d_init(Tensor& weight, std::uint64_t seed, cudaStream_t stream);  // no bias
void default_linear_init(Tensor& weight, Tensor& bias, std::uint64_t seed, cudaStream_t stream);
void default_linear_init(Tensor& weight, std::uint64_t seed, cudaStream_t stream);  // no bias

}  // namespace strata::init
