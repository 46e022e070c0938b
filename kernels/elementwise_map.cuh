// Private building blocks of the element-wise kernels (relu, gelu, add, scale): the
// vectorised maps of core/elementwise_map.cuh, plus the dtype dispatch that their launchers,
// and those of dropout and concat, share (their in-place check, expect_same_or_distinct, is
// in kernels/tensor_checks.h), and what makes them format-agnostic: they touch every element
// once, so they read and write any memory format in memory order (memory_elements) as long
// as all their operands share one order (expect_same_memory_order, kernels/tensor_checks.h).
#pragma once

#include <cstdint>
#include <string_view>
#include <type_traits>
#include <utility>

#include "core/check.h"
#include "core/elementwise_map.cuh"
#include "core/dtype_dispatch.h"
#include "kernels/common.cuh"
#include "kernels/memory_elements.h"
#include "kernels/tensor_checks.h"
#include "strata/core/tensor.h"
#include "strata/kernels/elementwise.h"

namespace strata::kernels {

using detail::FmaAddOp;
using detail::is_16_byte_aligned;
using detail::kElementwiseThreads;
using detail::kVectorLanes;
using detail::launch_binary_map;
using detail::launch_unary_map;
using detail::load_as_float;
using detail::map_launch_config;
using detail::store_from_float;

// Calls f(std::type_identity<T>{}) with the C++ type of dtype (float, __half or
// __nv_bfloat16) for the element types the element-wise kernels are instantiated for: one
// template per kernel, which loads and stores through convert_element and computes in float.
// Any other dtype throws InvalidArgument naming op.
template <typename F>
void dispatch_elementwise_dtype(DType dtype, std::string_view op, F&& f) {
  detail::dispatch_floating_dtype(dtype, op, std::forward<F>(f));
}

}  // namespace strata::kernels
