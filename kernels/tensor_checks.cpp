#include "kernels/tensor_checks.h"

#include "core/check.h"

namespace strata::kernels {

void expect_device_tensor(const Tensor& tensor, std::string_view op, std::string_view name, DType dtype) {
  STRATA_CHECK(tensor.defined(), "{}: {} is an undefined tensor", op, name);
  STRATA_CHECK(tensor.is_device(), "{}: {} must be a device tensor, got {}", op, name, tensor.to_string());
  STRATA_CHECK(tensor.dtype() == dtype, "{}: {} must have dtype {}, got {}", op, name, dtype_name(dtype),
               tensor.to_string());
}

void expect_floating_device_tensor(const Tensor& tensor, std::string_view op, std::string_view name) {
  STRATA_CHECK(tensor.defined(), "{}: {} is an undefined tensor", op, name);
  STRATA_CHECK(tensor.is_device(), "{}: {} must be a device tensor, got {}", op, name, tensor.to_string());
  STRATA_CHECK(is_floating_point(tensor.dtype()), "{}: {} must have dtype f32, f16 or bf16, got {}", op, name,
               tensor.to_string());
}

void expect_same_dtype(const Tensor& tensor, const Tensor& reference, std::string_view op, std::string_view name,
                       std::string_view reference_name) {
  STRATA_CHECK(tensor.dtype() == reference.dtype(),
               "{}: {} has dtype {} but {} has dtype {}; the operands must share one dtype (cast one with "
               "F::to_dtype, or run the model under strata::AutocastGuard)",
               op, name, dtype_name(tensor.dtype()), reference_name, dtype_name(reference.dtype()));
}

void expect_rank(const Tensor& tensor, int rank, std::string_view op, std::string_view name) {
  STRATA_CHECK(tensor.dim() == rank, "{}: {} must have {} dimensions, got shape {}", op, name, rank,
               tensor.shape().to_string());
}

void expect_shape(const Tensor& tensor, const Shape& expected, std::string_view op, std::string_view name) {
  STRATA_CHECK(tensor.shape() == expected, "{}: {} must have shape {}, got {}", op, name, expected.to_string(),
               tensor.shape().to_string());
}

bool same_memory_order(const Tensor& a, const Tensor& b) {
  return a.memory_format() == b.memory_format() || layouts_coincide(a.shape());
}

void expect_same_memory_order(const Tensor& tensor, const Tensor& reference, std::string_view op,
                              std::string_view name, std::string_view reference_name) {
  STRATA_CHECK(same_memory_order(tensor, reference),
               "{}: {} {} is {} but {} is {}; the operands of this kernel share one memory format (convert one with "
               "Tensor::to_memory_format, or use the F:: op, which does)",
               op, name, tensor.shape().to_string(), memory_format_name(tensor.memory_format()), reference_name,
               memory_format_name(reference.memory_format()));
}

void expect_distinct(const Tensor& output, const Tensor& input, std::string_view op, std::string_view output_name,
                     std::string_view input_name) {
  // Byte ranges through memory_ptr(): a memory format only reorders elements inside them.
  const auto* out_begin = static_cast<const char*>(output.memory_ptr());
  const auto* in_begin = static_cast<const char*>(input.memory_ptr());
  const bool overlap = out_begin < in_begin + input.nbytes() && in_begin < out_begin + output.nbytes();
  STRATA_CHECK(!overlap, "{}: {} {} overlaps {} {} in memory", op, output_name, output.shape().to_string(), input_name,
               input.shape().to_string());
}

void expect_same_or_distinct(const Tensor& output, const Tensor& input, std::string_view op,
                             std::string_view output_name, std::string_view input_name) {
  if (output.memory_ptr() == input.memory_ptr() && output.nbytes() == input.nbytes()) return;
  expect_distinct(output, input, op, output_name, input_name);
}

}  // namespace strata::kernels
