// Bit-for-bit comparisons of tensors in any memory format, for the tests that check that a
// kernel's layout (channels-last or contiguous) or its block tile changes none of its results:
// seeded inputs and poisoned outputs in a given format, and the elements' bits in logical
// (N, C, H, W) order.
#pragma once

#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "strata/core/memory_format.h"
#include "strata/core/tensor.h"
#include "tests/support/compare.h"
#include "tests/support/storage_dtypes.h"

namespace strata::testing {

// Seeded random values of dtype in format (values uniform in [-1, 1), rounded to dtype).
inline Tensor random_in(std::uint64_t seed, const Shape& shape, DType dtype, MemoryFormat format,
                        cudaStream_t stream) {
  return storage_tensor(random_uniform(seed, static_cast<std::size_t>(shape.numel())), shape, dtype, stream)
      .to_memory_format(format, stream);
}

// A poisoned output of dtype in format.
inline Tensor poisoned_in(const Shape& shape, DType dtype, MemoryFormat format, cudaStream_t stream) {
  return poisoned_storage(shape, dtype, stream).to_memory_format(format, stream);
}

// The bits of a tensor's elements in logical (N, C, H, W) order, whatever its format.
inline std::vector<std::uint32_t> logical_bits(const Tensor& tensor, cudaStream_t stream) {
  std::vector<std::uint32_t> bits;
  if (tensor.dtype() == DType::i64) {
    for (const std::int64_t value : tensor.to_vector<std::int64_t>(stream)) {
      bits.push_back(static_cast<std::uint32_t>(value));
    }
  } else if (tensor.dtype() == DType::i32) {
    for (const std::int32_t value : tensor.to_vector<std::int32_t>(stream)) {
      bits.push_back(static_cast<std::uint32_t>(value));
    }
  } else {
    for (const float value : storage_values(tensor, stream)) {
      bits.push_back(std::bit_cast<std::uint32_t>(value));
    }
  }
  return bits;
}

// actual (any format) holds the bits of expected (another run, whose every element was
// written: no poison), element by element in logical order; the first mismatches reported.
inline ::testing::AssertionResult same_bits(const Tensor& actual, const Tensor& expected, cudaStream_t stream) {
  const std::vector<std::uint32_t> got = logical_bits(actual, stream);
  const std::vector<std::uint32_t> want = logical_bits(expected, stream);
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << got.size() << " vs " << want.size() << " elements";
  }
  const bool floating = expected.dtype() != DType::i32 && expected.dtype() != DType::i64;
  std::string mismatches;
  int count = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const bool unwritten = floating && std::bit_cast<float>(want[i]) != std::bit_cast<float>(want[i]);  // NaN
    if (got[i] == want[i] && !unwritten) continue;
    if (count++ < 8) {
      mismatches += fmt::format("\n  [{}] {:#010x}, expected {:#010x}{}", i, got[i], want[i],
                                unwritten ? " (NaN in the reference: unwritten)" : "");
    }
  }
  if (count == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << count << " of " << got.size() << " elements differ:" << mismatches;
}

}  // namespace strata::testing
