// Division of a non-negative 64-bit index by a divisor fixed for the whole launch, the way
// PyTorch's IntDivider does it on 32 bits (Granlund and Montgomery, "Division by invariant
// integers using multiplication", 1994), here on 64: the host finds a multiplier m and a
// shift s once, and every division is q = (mulhi(n, m) + n) >> s. On the GPU, n / d on 64-bit
// integers calls a subroutine of some seventy instructions; mulhi is a handful of 32-bit
// multiplies. Kernels that turn each element's memory index back into coordinates (pooling's
// plane, row and column) divide this way.
#pragma once

#include <cuda_runtime_api.h>  // __host__ __device__ in both builds

#include <bit>
#include <cstdint>
#include <string>

#include "strata/core/errors.h"

namespace strata::kernels {

struct QuotientRemainder {
  std::int64_t quotient;
  std::int64_t remainder;
};

// The high 64 bits of the 128-bit product a * b.
__host__ __device__ inline std::uint64_t multiply_high(std::uint64_t a, std::uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __umul64hi(a, b);
#else
  __extension__ using uint128 = unsigned __int128;
  return static_cast<std::uint64_t>((static_cast<uint128>(a) * b) >> 64);
#endif
}

class IndexDivider {
 public:
  IndexDivider() = default;  // divides by 1

  // With s the least shift such that 2^s >= d, m = floor(2^64 (2^s - d) / d) + 1, which is
  // below 2^64 because 2^s - d < d. Host only (128-bit arithmetic); a divisor below 1 is a
  // caller's bug (sizes of empty tensors are never divided: their kernels do not launch).
  explicit IndexDivider(std::int64_t divisor) : divisor_(divisor) {
    if (divisor < 1) throw InvalidArgument("IndexDivider: divisor " + std::to_string(divisor) + " is not positive");
    __extension__ using uint128 = unsigned __int128;
    const auto d = static_cast<std::uint64_t>(divisor);
    shift_ = static_cast<unsigned>(std::bit_width(d - 1));
    const uint128 excess = (uint128{1} << shift_) - d;  // 2^s - d, in [0, d)
    multiplier_ = static_cast<std::uint64_t>((excess << 64) / d) + 1;
  }

  __host__ __device__ std::int64_t divisor() const { return divisor_; }

  // n / d for 0 <= n < 2^63. Exact: the theorem's q = floor((mulhi(n, m) + n) / 2^s) holds for
  // every n below 2^64, and mulhi(n, m) < n keeps the sum below 2^64 here.
  __host__ __device__ std::int64_t divide(std::int64_t n) const {
    const auto value = static_cast<std::uint64_t>(n);
    return static_cast<std::int64_t>((multiply_high(value, multiplier_) + value) >> shift_);
  }

  __host__ __device__ QuotientRemainder divide_with_remainder(std::int64_t n) const {
    const std::int64_t quotient = divide(n);
    return {quotient, n - quotient * divisor_};
  }

 private:
  std::int64_t divisor_ = 1;
  std::uint64_t multiplier_ = 1;
  unsigned shift_ = 0;
};

}  // namespace strata::kernels
