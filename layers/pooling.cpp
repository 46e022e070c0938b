// The pooling layers: MaxPool2d, AvgPool2d and their adaptive forms over F::'s pooling.
#include <fmt/format.h>

#include "core/check.h"
#include "core/format.h"
#include "layers/module_format.h"
#include "strata/layers/functional.h"
#include "strata/layers/modules.h"

namespace strata::nn {

namespace {

// PyTorch's stride=None: the kernel size, as given.
Pair stride_or_kernel(const Pair& stride, const Pair& kernel_size) {
  return stride.h == 0 && stride.w == 0 ? kernel_size : stride;
}

// "MaxPool2d 3x3", with ", stride 1" when the stride is not the kernel size.
std::string pool_summary(const char* type, const Pair& kernel_size, const Pair& stride) {
  std::string text = fmt::format("{} {}", type, detail::size_text(kernel_size));
  if (stride.h != kernel_size.h || stride.w != kernel_size.w) text += ", stride " + detail::size_text(stride);
  return text;
}

void check_4d_input(const Tensor& x) {
  STRATA_CHECK(x.dim() == 4, "expected a 4-D input (N, C, H, W), got input {}", x.shape());
}

}  // namespace

MaxPool2d::MaxPool2d(Pair kernel_size, const MaxPool2dOptions& options)
    : kernel_size_(kernel_size),
      stride_(stride_or_kernel(options.stride, kernel_size)),
      options_(options),
      params_{.kernel = kernel_size_,
              .stride = kernels::Size2d(stride_),
              .padding = options.padding,
              .dilation = options.dilation,
              .ceil_mode = options.ceil_mode} {}

std::string MaxPool2d::extra_repr() const {
  return fmt::format("kernel_size={}, stride={}, padding={}, dilation={}, ceil_mode={}",
                     detail::python_int_or_tuple(kernel_size_), detail::python_int_or_tuple(stride_),
                     detail::python_int_or_tuple(options_.padding), detail::python_int_or_tuple(options_.dilation),
                     detail::python_bool(options_.ceil_mode));
}

std::string MaxPool2d::summary() const { return pool_summary("MaxPool2d", kernel_size_, stride_); }

void MaxPool2d::check_input(const Tensor& x) const { check_4d_input(x); }

Tensor MaxPool2d::forward_impl(const Tensor& x) { return F::max_pool2d(x, params_, options_.engine); }

bool MaxPool2d::take_engine(Engine engine) {
  options_.engine = engine;
  return true;
}

AvgPool2d::AvgPool2d(Pair kernel_size, const AvgPool2dOptions& options)
    : kernel_size_(kernel_size),
      stride_(stride_or_kernel(options.stride, kernel_size)),
      options_(options),
      params_{.window = {.kernel = kernel_size_,
                         .stride = kernels::Size2d(stride_),
                         .padding = options.padding,
                         .ceil_mode = options.ceil_mode},
              .count_include_pad = options.count_include_pad,
              .divisor_override = options.divisor_override} {}

// As nn.AvgPool2d's extra_repr, which shows only these three.
std::string AvgPool2d::extra_repr() const {
  return fmt::format("kernel_size={}, stride={}, padding={}", detail::python_int_or_tuple(kernel_size_),
                     detail::python_int_or_tuple(stride_), detail::python_int_or_tuple(options_.padding));
}

std::string AvgPool2d::summary() const { return pool_summary("AvgPool2d", kernel_size_, stride_); }

void AvgPool2d::check_input(const Tensor& x) const { check_4d_input(x); }

Tensor AvgPool2d::forward_impl(const Tensor& x) { return F::avg_pool2d(x, params_, options_.engine); }

bool AvgPool2d::take_engine(Engine engine) {
  options_.engine = engine;
  return true;
}

AdaptiveAvgPool2d::AdaptiveAvgPool2d(Pair output_size, const AdaptivePool2dOptions& options)
    : output_size_(output_size), options_(options) {
  STRATA_CHECK(output_size.h >= 1 && output_size.w >= 1, "AdaptiveAvgPool2d: output_size must be at least 1, got {}",
               detail::python_int_or_tuple(output_size));
}

std::string AdaptiveAvgPool2d::extra_repr() const {
  return "output_size=" + detail::python_int_or_tuple(output_size_);
}

std::string AdaptiveAvgPool2d::summary() const { return "AdaptiveAvgPool2d " + detail::size_text(output_size_); }

void AdaptiveAvgPool2d::check_input(const Tensor& x) const { check_4d_input(x); }

Tensor AdaptiveAvgPool2d::forward_impl(const Tensor& x) {
  return F::adaptive_avg_pool2d(x, output_size_, options_.engine);
}

bool AdaptiveAvgPool2d::take_engine(Engine engine) {
  options_.engine = engine;
  return true;
}

AdaptiveMaxPool2d::AdaptiveMaxPool2d(Pair output_size, const AdaptivePool2dOptions& options)
    : output_size_(output_size), options_(options) {
  STRATA_CHECK(output_size.h >= 1 && output_size.w >= 1, "AdaptiveMaxPool2d: output_size must be at least 1, got {}",
               detail::python_int_or_tuple(output_size));
}

std::string AdaptiveMaxPool2d::extra_repr() const {
  return "output_size=" + detail::python_int_or_tuple(output_size_);
}

std::string AdaptiveMaxPool2d::summary() const { return "AdaptiveMaxPool2d " + detail::size_text(output_size_); }

void AdaptiveMaxPool2d::check_input(const Tensor& x) const { check_4d_input(x); }

Tensor AdaptiveMaxPool2d::forward_impl(const Tensor& x) {
  return F::adaptive_max_pool2d(x, output_size_, options_.engine);
}

bool AdaptiveMaxPool2d::take_engine(Engine engine) {
  options_.engine = engine;
  return true;
}

}  // namespace strata::nn
