// Division of a non-negative index by a divisor fixed for the whole launch, the way PyTorch's
// IntDivider does it on 32 bits (Granlund and Montgomery, "Division by invariant integers using
// multiplication", 1994), here on 32 or 64: the host finds a multiplier m and a shift s once,
// and every division is q = (mulhi(n, m) + n) >> s. On the GPU, n / d calls a subroutine of
// some seventy instructions on 64-bit integers and takes some twenty on 32-bit ones; mulhi is
// one instruction on 32 bits and a handful on 64. Kernels that turn an element's or a GEMM
// row's index back into coordinates (pooling's plane, row and column; the conv loaders' pixel
// and filter tap) divide this way.
#pragma once

#include <cuda_runtime_api.h>  // __host__ __device__ in both builds

#include <bit>
#include <cstdint>
#include <string>
#include <type_traits>

#include "strata/core/errors.h"

namespace strata::kernels {

template <typename Index>
struct QuotientRemainderOf {
  Index quotient;
  Index remainder;
};
using QuotientRemainder = QuotientRemainderOf<std::int64_t>;

// The high half of the double-width product a * b.
__host__ __device__ inline std::uint32_t multiply_high(std::uint32_t a, std::uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<std::uint32_t>((static_cast<std::uint64_t>(a) * b) >> 32);
#endif
}
__host__ __device__ inline std::uint64_t multiply_high(std::uint64_t a, std::uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __umul64hi(a, b);
#else
  __extension__ using uint128 = unsigned __int128;
  return static_cast<std::uint64_t>((static_cast<uint128>(a) * b) >> 64);
#endif
}

// Division of indices 0 <= n <= max(Index) by a divisor in [1, max(Index)], for Index int64_t
// (IndexDivider: memory indices) or int32_t (IndexDivider32: the conv kernels' pixel and
// reduction indices, whose sizes conv2d_shape bounds to int).
template <typename Index>
class BasicIndexDivider {
  static_assert(std::is_same_v<Index, std::int32_t> || std::is_same_v<Index, std::int64_t>, "32 or 64 bits");
  using Unsigned = std::make_unsigned_t<Index>;
  static constexpr int kBits = 8 * sizeof(Index);

 public:
  BasicIndexDivider() = default;  // divides by 1

  // With s the least shift such that 2^s >= d, m = floor(2^bits (2^s - d) / d) + 1, which is
  // below 2^bits because 2^s - d < d. Host only (double-width arithmetic); a divisor below 1
  // is a caller's bug (sizes of empty tensors are never divided: their kernels do not launch).
  explicit BasicIndexDivider(Index divisor) : divisor_(divisor) {
    if (divisor < 1) throw InvalidArgument("IndexDivider: divisor " + std::to_string(divisor) + " is not positive");
    __extension__ using Wide = std::conditional_t<kBits == 32, std::uint64_t, unsigned __int128>;
    const auto d = static_cast<Unsigned>(divisor);
    shift_ = static_cast<unsigned>(std::bit_width(static_cast<Unsigned>(d - 1)));
    const Wide excess = (Wide{1} << shift_) - d;  // 2^s - d, in [0, d)
    multiplier_ = static_cast<Unsigned>((excess << kBits) / d) + 1;
  }

  __host__ __device__ Index divisor() const { return divisor_; }

  // n / d for 0 <= n <= max(Index). Exact: the theorem's q = floor((mulhi(n, m) + n) / 2^s)
  // holds for every n below 2^bits, and mulhi(n, m) < n keeps the sum below 2^bits here.
  __host__ __device__ Index divide(Index n) const {
    const auto value = static_cast<Unsigned>(n);
    return static_cast<Index>((multiply_high(value, multiplier_) + value) >> shift_);
  }

  __host__ __device__ QuotientRemainderOf<Index> divide_with_remainder(Index n) const {
    const Index quotient = divide(n);
    return {quotient, n - quotient * divisor_};
  }

 private:
  Index divisor_ = 1;
  Unsigned multiplier_ = 1;
  unsigned shift_ = 0;
};

using IndexDivider = BasicIndexDivider<std::int64_t>;
using IndexDivider32 = BasicIndexDivider<std::int32_t>;

}  // namespace strata::kernels
