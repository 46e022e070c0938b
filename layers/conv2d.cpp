// Conv2d: PyTorch's nn.Conv2d over F::conv2d, or F::fused_conv2d with an activation in its
// epilogue (Conv2dOptions::activation).
#include <span>
#include <vector>

#include <fmt/format.h>

#include "core/check.h"
#include "core/format.h"
#include "layers/module_format.h"
#include "strata/core/generator.h"
#include "strata/core/stream.h"
#include "strata/layers/functional.h"
#include "strata/layers/init.h"
#include "strata/layers/modules.h"

namespace strata::nn {

Conv2d::Conv2d(std::int64_t in_channels, std::int64_t out_channels, Pair kernel_size, const Conv2dOptions& options)
    : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size), options_(options) {
  STRATA_CHECK(in_channels >= 1 && out_channels >= 1 && kernel_size.h >= 1 && kernel_size.w >= 1 &&
                   options.stride.h >= 1 && options.stride.w >= 1 && options.dilation.h >= 1 &&
                   options.dilation.w >= 1 && options.padding.h >= 0 && options.padding.w >= 0,
               "Conv2d({}): channels, kernel size, stride and dilation must be at least 1, padding at least 0",
               extra_repr());
  STRATA_CHECK(options.groups >= 1 && in_channels % options.groups == 0 && out_channels % options.groups == 0,
               "Conv2d({}): groups ({}) must divide in_channels ({}) and out_channels ({})", extra_repr(),
               options.groups, in_channels, out_channels);
  const cudaStream_t stream = current_stream();
  Tensor weight =
      Tensor::empty({out_channels, in_channels / options.groups, kernel_size.h, kernel_size.w}, DType::f32, stream);
  const std::uint64_t seed = default_generator().next_seed();
  if (options.bias) {
    Tensor bias = Tensor::empty({out_channels}, DType::f32, stream);
    init::default_conv2d_init(weight, bias, seed, stream);
    weight_ = register_parameter("weight", weight);
    bias_ = register_parameter("bias", bias);
  } else {
    init::default_conv2d_init(weight, seed, stream);
    weight_ = register_parameter("weight", weight);
  }
}

Conv2d::Conv2d(std::int64_t in_channels, std::int64_t out_channels, Pair kernel_size, const Conv2dOptions& options,
               const WithValues& values)
    : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size), options_(options) {
  const cudaStream_t stream = current_stream();
  Tensor weight =
      Tensor::empty({out_channels, in_channels / options.groups, kernel_size.h, kernel_size.w}, DType::f32, stream);
  STRATA_CHECK(static_cast<std::int64_t>(values.weight.size()) == weight.numel() &&
                   (options.bias ? static_cast<std::int64_t>(values.bias.size()) == out_channels : values.bias.empty()),
               "Conv2d({}): {} weight values and {} bias values for weight {}", extra_repr(), values.weight.size(),
               values.bias.size(), weight.shape());
  weight.copy_from_host_async(std::span<const float>(values.weight), stream);
  weight_ = register_parameter("weight", weight);
  if (options.bias) {
    Tensor bias = Tensor::empty({out_channels}, DType::f32, stream);
    bias.copy_from_host_async(std::span<const float>(values.bias), stream);
    bias_ = register_parameter("bias", bias);
  }
}

kernels::Conv2dParams Conv2d::params() const {
  return {.stride = options_.stride, .padding = options_.padding, .dilation = options_.dilation,
          .groups = options_.groups, .math = options_.math};
}

// As nn.Conv2d's extra_repr: padding, dilation and groups only when not the defaults.
std::string Conv2d::extra_repr() const {
  std::string text = fmt::format("{}, {}, kernel_size={}, stride={}", in_channels_, out_channels_,
                                 detail::python_tuple(kernel_size_), detail::python_tuple(options_.stride));
  if (options_.padding.h != 0 || options_.padding.w != 0) text += ", padding=" + detail::python_tuple(options_.padding);
  if (options_.dilation.h != 1 || options_.dilation.w != 1) {
    text += ", dilation=" + detail::python_tuple(options_.dilation);
  }
  if (options_.groups != 1) text += fmt::format(", groups={}", options_.groups);
  if (!options_.bias) text += ", bias=False";
  if (options_.math != kernels::ConvMath::fp32) text += fmt::format(", math={}", kernels::to_string(options_.math));
  if (options_.activation != FusedActivation::none) {
    text += fmt::format(", activation={}", kernels::fused_activation_name(options_.activation));
  }
  return text;
}

std::string Conv2d::summary() const {
  std::string text = fmt::format("Conv2d {}->{}, {}", in_channels_, out_channels_, detail::size_text(kernel_size_));
  if (options_.stride.h != 1 || options_.stride.w != 1) {
    text += ", stride " + (options_.stride.h == options_.stride.w ? std::to_string(options_.stride.h)
                                                                   : detail::size_text(options_.stride));
  }
  if (options_.groups != 1) text += fmt::format(", groups {}", options_.groups);
  if (options_.activation != FusedActivation::none) {
    text += fmt::format(", {}", kernels::fused_activation_name(options_.activation));
  }
  return text;
}

void Conv2d::check_input(const Tensor& x) const {
  STRATA_CHECK(x.dim() == 4, "expected a 4-D input (N, {}, H, W), got input {}", in_channels_, x.shape());
  STRATA_CHECK(x.size(1) == in_channels_, "expected {} input channels, got input {}", in_channels_, x.shape());
}

Tensor Conv2d::forward_impl(const Tensor& x) {
  if (options_.activation == FusedActivation::none) return F::conv2d(x, weight_, bias_, params(), options_.engine);
  return F::fused_conv2d(x, weight_, bias_, params(), {.activation = options_.activation}, options_.engine);
}

bool Conv2d::take_engine(Engine engine) {
  options_.engine = engine;
  return true;
}

}  // namespace strata::nn
