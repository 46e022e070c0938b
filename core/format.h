// fmt formatters for Strata's value types, so library code can write
// STRATA_CHECK(ok, "conv2d: input {} is not 4-D", x.shape()). Private: fmt never appears
// in public headers.
#pragma once

#include <string_view>

#include <fmt/format.h>

#include "strata/core/dtype.h"
#include "strata/core/shape.h"

template <>
struct fmt::formatter<strata::Shape> : fmt::formatter<std::string_view> {
  auto format(const strata::Shape& shape, format_context& context) const {
    return fmt::formatter<std::string_view>::format(shape.to_string(), context);
  }
};

template <>
struct fmt::formatter<strata::DType> : fmt::formatter<std::string_view> {
  auto format(strata::DType dtype, format_context& context) const {
    return fmt::formatter<std::string_view>::format(strata::dtype_name(dtype), context);
  }
};
