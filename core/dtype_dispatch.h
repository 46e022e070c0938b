// Private helpers for code that handles every dtype: dispatch from a DType value to its
// C++ type, and element conversion between dtypes that gives the same result on the host
// and on the device.
#pragma once

#include <cuda_runtime_api.h>  // __host__ __device__ in both builds

#include <cstdint>
#include <type_traits>

#include "strata/core/dtype.h"

namespace strata::detail {

// Calls f(std::type_identity<T>{}) with the C++ type T of dtype.
template <typename F>
decltype(auto) dispatch_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: return f(std::type_identity<float>{});
    case DType::f16: return f(std::type_identity<__half>{});
    case DType::bf16: return f(std::type_identity<__nv_bfloat16>{});
    case DType::i32: return f(std::type_identity<std::int32_t>{});
    case DType::i64: return f(std::type_identity<std::int64_t>{});
    case DType::u8: return f(std::type_identity<std::uint8_t>{});
  }
  return f(std::type_identity<std::uint8_t>{});  // unreachable for valid enum values
}

template <typename T>
inline constexpr bool kIsReducedFloat = std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;

// Bounds of the integer element types as doubles, for saturating conversion.
template <typename T> struct IntegerBounds;
template <> struct IntegerBounds<std::int32_t> {
  static constexpr double kLow = -2147483648.0, kHigh = 2147483647.0;
};
template <> struct IntegerBounds<std::int64_t> {
  static constexpr double kLow = -9223372036854775808.0, kHigh = 9223372036854775807.0;  // kHigh rounds to 2^63
};
template <> struct IntegerBounds<std::uint8_t> {
  static constexpr double kLow = 0.0, kHigh = 255.0;
};

// A numeric value of any element type as double (exact except for i64 beyond 2^53).
template <typename From>
__host__ __device__ inline double to_double(From value) {
  if constexpr (std::is_same_v<From, __half>) {
    return static_cast<double>(__half2float(value));
  } else if constexpr (std::is_same_v<From, __nv_bfloat16>) {
    return static_cast<double>(__bfloat162float(value));
  } else {
    return static_cast<double>(value);
  }
}

// Converts one element. Floating to floating and integer to floating round to nearest;
// floating to integer truncates toward zero and saturates, NaN giving 0 (as the GPU's
// saturating conversion, and defined on the host too); integer to integer wraps.
template <typename To, typename From>
__host__ __device__ inline To convert_element(From value) {
  if constexpr (std::is_same_v<To, From>) {
    return value;
  } else if constexpr (std::is_same_v<To, __half>) {
    if constexpr (std::is_same_v<From, double> || std::is_same_v<From, std::int64_t>) {
      return __double2half(to_double(value));  // one rounding, not two through float
    } else {
      return __float2half_rn(static_cast<float>(to_double(value)));
    }
  } else if constexpr (std::is_same_v<To, __nv_bfloat16>) {
    if constexpr (std::is_same_v<From, double> || std::is_same_v<From, std::int64_t>) {
      return __double2bfloat16(to_double(value));
    } else {
      return __float2bfloat16_rn(static_cast<float>(to_double(value)));
    }
  } else if constexpr (std::is_same_v<To, float> && std::is_same_v<From, __half>) {
    return __half2float(value);  // exact; no detour through double in the kernels' hot loops
  } else if constexpr (std::is_same_v<To, float> && std::is_same_v<From, __nv_bfloat16>) {
    return __bfloat162float(value);
  } else if constexpr (std::is_floating_point_v<To>) {
    if constexpr (kIsReducedFloat<From>) {
      return static_cast<To>(to_double(value));
    } else {
      return static_cast<To>(value);
    }
  } else if constexpr (std::is_floating_point_v<From> || kIsReducedFloat<From>) {
    const double x = to_double(value);
    if (x != x) return To{0};
    if (x <= IntegerBounds<To>::kLow) return static_cast<To>(IntegerBounds<To>::kLow);
    if (x >= IntegerBounds<To>::kHigh) {
      if constexpr (std::is_same_v<To, std::int64_t>) {
        return To{9223372036854775807};
      } else {
        return static_cast<To>(IntegerBounds<To>::kHigh);
      }
    }
    return static_cast<To>(x);
  } else {
    return static_cast<To>(value);
  }
}

}  // namespace strata::detail
