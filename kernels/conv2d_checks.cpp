// The argument checks of the conv2d launchers (kernels/conv2d_checks.h).
#include "kernels/conv2d_checks.h"

#include <string_view>

#include "core/check.h"
#include "kernels/tensor_checks.h"

namespace strata::kernels {

namespace {

// An operand after the first: a floating device tensor of the first operand's dtype (one
// dtype per call, f32, f16 or bf16).
void expect_operand(const Tensor& tensor, const Tensor& first, std::string_view op, std::string_view name,
                    std::string_view first_name) {
  expect_floating_device_tensor(tensor, op, name);
  expect_same_dtype(tensor, first, op, name, first_name);
}

// A parameter's gradient: in the operands' dtype, or f32 for f16/bf16 operands (rounded to
// their dtype first: the gradient of the f32 parameter autocast cast, written without the cast
// back's pass).
void expect_parameter_gradient(const Tensor& gradient, const Tensor& first, std::string_view op,
                               std::string_view name, std::string_view first_name) {
  if (gradient.defined() && gradient.dtype() == DType::f32) {
    expect_floating_device_tensor(gradient, op, name);
    return;
  }
  expect_operand(gradient, first, op, name, first_name);
}

// The weight of a pass: an operand, in either format (the launchers copy it into the
// order their kernels read where it is not in it: kernels/conv2d_weight_layout.h).
void expect_weight(const Tensor& weight, const Tensor& first, std::string_view op, std::string_view first_name) {
  expect_operand(weight, first, op, "weight", first_name);
}

}  // namespace

void expect_contiguous_conv2d_weight_gradient(const Tensor& dL_dweight, std::string_view op) {
  STRATA_CHECK(dL_dweight.is_contiguous(),
               "{}: dL_dweight {} must be contiguous (K, C/groups, R, S), not {}: the filter gradient is written in "
               "that order (convert it after the call)",
               op, dL_dweight.shape().to_string(), memory_format_name(dL_dweight.memory_format()));
}

Conv2dShape expect_conv2d_forward_arguments(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                            const Tensor& y, const Conv2dParams& params) {
  constexpr std::string_view kOp = "conv2d_forward";
  expect_floating_device_tensor(x, kOp, "x");
  expect_weight(weight, x, kOp, "x");
  const Conv2dShape shape = conv2d_shape(x.shape(), weight.shape(), params, kOp);
  if (bias.defined()) {
    expect_operand(bias, x, kOp, "bias", "x");
    expect_shape(bias, shape.bias(), kOp, "bias");
  }
  expect_operand(y, x, kOp, "y", "x");
  expect_shape(y, shape.output(), kOp, "y");
  expect_distinct(y, x, kOp, "y", "x");
  expect_distinct(y, weight, kOp, "y", "weight");
  if (bias.defined()) expect_distinct(y, bias, kOp, "y", "bias");
  return shape;
}

void expect_conv2d_epilogue(const Conv2dEpilogue& epilogue, const Shape& output, std::string_view op,
                            std::string_view output_name) {
  STRATA_CHECK(epilogue.activation == FusedActivation::none || epilogue.activation == FusedActivation::relu ||
                   epilogue.activation == FusedActivation::gelu || epilogue.activation == FusedActivation::gelu_tanh,
               "{}: unknown epilogue activation {}", op, static_cast<int>(epilogue.activation));
  const auto expect_channel_tensor = [&](const Tensor& tensor, std::string_view name) {
    if (!tensor.defined()) return;
    expect_device_tensor(tensor, op, name, DType::f32);
    STRATA_CHECK(output.rank() == 4 && tensor.shape() == Shape{output[1]},
                 "{}: {} {} must be (K) for the {} {}: one f32 value per output channel", op, name,
                 tensor.shape().to_string(), output_name, output.to_string());
  };
  expect_channel_tensor(epilogue.scale, "epilogue scale");
  expect_channel_tensor(epilogue.shift, "epilogue shift");
}

Conv2dShape expect_conv2d_forward_epilogue_arguments(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                                     const Tensor& y, const Conv2dParams& params,
                                                     const Conv2dEpilogue& epilogue, const Tensor* preactivation) {
  constexpr std::string_view kOp = "conv2d_forward";
  const Conv2dShape shape = expect_conv2d_forward_arguments(x, weight, bias, y, params);
  expect_conv2d_epilogue(epilogue, shape.output(), kOp, "y");
  for (const Tensor* channel_tensor : {&epilogue.scale, &epilogue.shift}) {
    if (channel_tensor->defined()) {
      expect_distinct(y, *channel_tensor, kOp, "y", "the epilogue's scale or shift");
    }
  }
  if (preactivation != nullptr) {
    expect_operand(*preactivation, x, kOp, "preactivation", "x");
    expect_shape(*preactivation, shape.output(), kOp, "preactivation");
    expect_same_memory_order(*preactivation, y, kOp, "preactivation", "y");
    expect_distinct(*preactivation, y, kOp, "preactivation", "y");
    expect_distinct(*preactivation, x, kOp, "preactivation", "x");
    expect_distinct(*preactivation, weight, kOp, "preactivation", "weight");
    if (bias.defined()) expect_distinct(*preactivation, bias, kOp, "preactivation", "bias");
  }
  return shape;
}

Conv2dShape expect_conv2d_backward_data_arguments(const Tensor& dL_dy, const Tensor& weight, const Tensor& dL_dx,
                                                  const Conv2dParams& params) {
  constexpr std::string_view kOp = "conv2d_backward_data";
  expect_floating_device_tensor(dL_dy, kOp, "dL_dy");
  expect_weight(weight, dL_dy, kOp, "dL_dy");
  expect_operand(dL_dx, dL_dy, kOp, "dL_dx", "dL_dy");
  const Conv2dShape shape = conv2d_shape(dL_dx.shape(), weight.shape(), params, kOp);
  expect_shape(dL_dy, shape.output(), kOp, "dL_dy");
  expect_distinct(dL_dx, dL_dy, kOp, "dL_dx", "dL_dy");
  expect_distinct(dL_dx, weight, kOp, "dL_dx", "weight");
  return shape;
}

Conv2dShape expect_conv2d_backward_filter_arguments(const Tensor& x, const Tensor& dL_dy, const Tensor& dL_dweight,
                                                    const Conv2dParams& params) {
  constexpr std::string_view kOp = "conv2d_backward_filter";
  expect_floating_device_tensor(x, kOp, "x");
  expect_operand(dL_dy, x, kOp, "dL_dy", "x");
  expect_parameter_gradient(dL_dweight, x, kOp, "dL_dweight", "x");
  expect_contiguous_conv2d_weight_gradient(dL_dweight, kOp);
  const Conv2dShape shape = conv2d_shape(x.shape(), dL_dweight.shape(), params, kOp);
  expect_shape(dL_dy, shape.output(), kOp, "dL_dy");
  expect_distinct(dL_dweight, x, kOp, "dL_dweight", "x");
  expect_distinct(dL_dweight, dL_dy, kOp, "dL_dweight", "dL_dy");
  return shape;
}

void expect_conv2d_backward_bias_arguments(const Tensor& dL_dy, const Tensor& dL_dbias) {
  constexpr std::string_view kOp = "conv2d_backward_bias";
  expect_floating_device_tensor(dL_dy, kOp, "dL_dy");
  expect_parameter_gradient(dL_dbias, dL_dy, kOp, "dL_dbias", "dL_dy");
  expect_rank(dL_dy, 4, kOp, "dL_dy");
  for (int dim = 0; dim < 4; ++dim) {
    STRATA_CHECK(dL_dy.size(dim) >= 1, "{}: dL_dy {} must not be empty", kOp, dL_dy.shape().to_string());
  }
  expect_shape(dL_dbias, Shape{dL_dy.size(1)}, kOp, "dL_dbias");
  expect_distinct(dL_dbias, dL_dy, kOp, "dL_dbias", "dL_dy");
}

}  // namespace strata::kernels
