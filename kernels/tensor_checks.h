// Argument checks shared by the kernel launchers: each failure throws InvalidArgument
// naming the operation, the argument and the shapes involved.
#pragma once

#include <string_view>

#include "strata/core/tensor.h"

namespace strata::kernels {

// tensor must be defined, on the device and of dtype.
void expect_device_tensor(const Tensor& tensor, std::string_view op, std::string_view name, DType dtype = DType::f32);
// tensor must be defined, on the device and of a floating dtype (f32, f16 or bf16): the
// dtypes an op's activation tensors may share.
void expect_floating_device_tensor(const Tensor& tensor, std::string_view op, std::string_view name);
// tensor must have reference's dtype: the operands of one op share one dtype. The message
// names both operands and their dtypes and says how to make them agree.
void expect_same_dtype(const Tensor& tensor, const Tensor& reference, std::string_view op, std::string_view name,
                       std::string_view reference_name);
void expect_rank(const Tensor& tensor, int rank, std::string_view op, std::string_view name);
void expect_shape(const Tensor& tensor, const Shape& expected, std::string_view op, std::string_view name);
// Whether a and b (of one shape) put each element at the same place in memory: one memory
// format, or a shape whose two layouts coincide (strata/core/memory_format.h).
bool same_memory_order(const Tensor& a, const Tensor& b);
// Throws InvalidArgument naming both tensors and formats unless same_memory_order: for the
// operands of a kernel that indexes them alike.
void expect_same_memory_order(const Tensor& tensor, const Tensor& reference, std::string_view op,
                              std::string_view name, std::string_view reference_name);
// Outputs must not share memory with inputs unless the op says so (any memory format: the
// byte ranges are compared).
void expect_distinct(const Tensor& output, const Tensor& input, std::string_view op, std::string_view output_name,
                     std::string_view input_name);
// In-place element-wise ops: output may be input itself (same first element and size), but
// must not overlap it in any other way, since a thread would read what another wrote.
void expect_same_or_distinct(const Tensor& output, const Tensor& input, std::string_view op,
                             std::string_view output_name, std::string_view input_name);

}  // namespace strata::kernels
