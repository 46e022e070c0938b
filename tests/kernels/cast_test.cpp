// Casts between f32, f16 and bf16 (kernels::cast, the conversion behind Tensor::to_dtype)
// against a CPU reference that rounds in double: every f16 and bf16 value exhaustively, and
// f32 values chosen at the edges (ties to even, subnormals, overflow to infinity, NaN, signed
// zeros) and at random, on odd sizes and unaligned views, with outputs poisoned first.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "strata/core/stream.h"
#include "strata/kernels/cast.h"
#include "tests/kernels/device_values.h"

namespace strata::kernels {
namespace {

// An IEEE 754 binary format: bits of exponent and of stored mantissa.
struct FloatFormat {
  int exponent_bits;
  int mantissa_bits;

  int bias() const { return (1 << (exponent_bits - 1)) - 1; }
  int min_exponent() const { return 1 - bias(); }  // of the normal numbers
  double max_finite() const { return std::ldexp(2.0 - std::ldexp(1.0, -mantissa_bits), bias()); }
};

FloatFormat format_of(DType dtype) {
  switch (dtype) {
    case DType::f32: return {8, 23};
    case DType::f16: return {5, 10};
    case DType::bf16: return {8, 7};
    default: break;
  }
  ADD_FAILURE() << "not a floating-point dtype: " << dtype;
  return {8, 23};
}

// The value of a bit pattern of format, exactly, in double.
double decode(std::uint32_t bits, FloatFormat format) {
  const int total = 1 + format.exponent_bits + format.mantissa_bits;
  const bool negative = ((bits >> (total - 1)) & 1u) != 0;
  const std::uint32_t exponent = (bits >> format.mantissa_bits) & ((1u << format.exponent_bits) - 1);
  const std::uint32_t mantissa = bits & ((1u << format.mantissa_bits) - 1);
  double magnitude;
  if (exponent == (1u << format.exponent_bits) - 1) {
    magnitude = mantissa != 0 ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  } else if (exponent == 0) {
    magnitude = std::ldexp(static_cast<double>(mantissa), format.min_exponent() - format.mantissa_bits);
  } else {
    magnitude = std::ldexp(static_cast<double>(mantissa + (1u << format.mantissa_bits)),
                           static_cast<int>(exponent) - format.bias() - format.mantissa_bits);
  }
  return negative ? -magnitude : magnitude;
}

// x rounded to format: to nearest, ties to even (nearbyint in the default rounding mode);
// the quantum of the subnormals below the normal range; beyond the largest finite value
// after rounding, infinity. Exact: x / quantum is a scaling by a power of two.
double round_to_format(double x, FloatFormat format) {
  if (std::isnan(x) || std::isinf(x) || x == 0.0) return x;
  const int exponent = std::max(std::ilogb(x), format.min_exponent());
  const double quantum = std::ldexp(1.0, exponent - format.mantissa_bits);
  const double rounded = std::nearbyint(x / quantum) * quantum;
  if (std::fabs(rounded) > format.max_finite()) return std::copysign(std::numeric_limits<double>::infinity(), x);
  return std::copysign(rounded, x);  // an underflow to zero keeps the sign
}

// Host values of one dtype as bit patterns (f16 and bf16 in the low 16 bits).
struct BitValues {
  DType dtype;
  std::vector<std::uint32_t> bits;
};

Tensor device_tensor_of(const BitValues& values, cudaStream_t stream) {
  const auto count = static_cast<std::int64_t>(values.bits.size());
  Tensor host = Tensor::empty_host({count}, values.dtype);
  auto* bytes = static_cast<unsigned char*>(host.data_ptr());
  for (std::size_t i = 0; i < values.bits.size(); ++i) {
    if (element_size(values.dtype) == 4) {
      std::memcpy(bytes + 4 * i, &values.bits[i], 4);
    } else {
      const auto half_bits = static_cast<std::uint16_t>(values.bits[i]);
      std::memcpy(bytes + 2 * i, &half_bits, 2);
    }
  }
  return host.to_device(stream);
}

std::vector<std::uint32_t> bits_of(const Tensor& tensor, cudaStream_t stream) {
  const Tensor host = tensor.to_host(stream);
  const auto* bytes = static_cast<const unsigned char*>(host.data_ptr());
  std::vector<std::uint32_t> bits(static_cast<std::size_t>(host.numel()));
  for (std::size_t i = 0; i < bits.size(); ++i) {
    if (element_size(host.dtype()) == 4) {
      std::memcpy(&bits[i], bytes + 4 * i, 4);
    } else {
      std::uint16_t half_bits = 0;
      std::memcpy(&half_bits, bytes + 2 * i, 2);
      bits[i] = half_bits;
    }
  }
  return bits;
}

std::string hex(std::uint32_t bits) {
  std::ostringstream out;
  out << "0x" << std::hex << bits;
  return out.str();
}

// Every output element decodes to the reference rounding of its input, with the sign of a
// zero, and NaN for NaN (any NaN pattern, as on the GPU).
::testing::AssertionResult matches_reference(const BitValues& input, DType target,
                                             const std::vector<std::uint32_t>& output) {
  const FloatFormat from = format_of(input.dtype);
  const FloatFormat to = format_of(target);
  int mismatches = 0;
  std::ostringstream report;
  for (std::size_t i = 0; i < input.bits.size(); ++i) {
    const double expected = round_to_format(decode(input.bits[i], from), to);
    const double actual = decode(output[i], to);
    const bool same = std::isnan(expected) ? std::isnan(actual)
                                           : actual == expected && std::signbit(actual) == std::signbit(expected);
    if (same) continue;
    if (++mismatches <= 8) {
      report << "\n  [" << i << "] input " << hex(input.bits[i]) << " (" << decode(input.bits[i], from)
             << "): expected " << expected << ", got " << hex(output[i]) << " (" << actual << ")";
    }
  }
  if (mismatches == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << mismatches << " of " << input.bits.size() << " elements differ, "
                                       << input.dtype << " -> " << target << ":" << report.str();
}

constexpr DType kFloatingDTypes[] = {DType::f32, DType::f16, DType::bf16};

std::vector<std::uint32_t> every_16_bit_pattern() {
  std::vector<std::uint32_t> bits(65536);
  for (std::uint32_t i = 0; i < bits.size(); ++i) bits[i] = i;
  return bits;
}

std::uint32_t f32_bits(float value) {
  std::uint32_t bits = 0;
  std::memcpy(&bits, &value, 4);
  return bits;
}

// f32 inputs at the edges of f16 and bf16, and random ones: seeded.
std::vector<std::uint32_t> f32_edge_and_random_patterns(std::uint64_t seed) {
  const float bf16_tie_above_max = static_cast<float>(std::ldexp(511.0, 119));
  const std::vector<double> values = {
      0.0, -0.0, 1.0, -1.0, std::numeric_limits<float>::max(), std::numeric_limits<float>::min(),
      std::numeric_limits<float>::denorm_min(), -std::numeric_limits<float>::denorm_min(),
      // f16: the largest finite, the tie above it (to even: infinity), just below the tie.
      65504.0, 65519.0, 65520.0, -65520.0, std::nextafter(65520.0f, 0.0f), 65536.0, 1e30,
      // f16 ties to even: 1 + half an ulp stays 1; 1 + 3 half ulps goes up to the even 1 + 2^-9.
      1.0 + std::ldexp(1.0, -11), 1.0 + 3.0 * std::ldexp(1.0, -11), -(1.0 + 3.0 * std::ldexp(1.0, -11)),
      // f16 subnormals: the smallest, half of it (a tie: to zero, the even), 1.5 of it (up).
      std::ldexp(1.0, -24), std::ldexp(1.0, -25), -std::ldexp(1.0, -25), 3.0 * std::ldexp(1.0, -26),
      std::ldexp(1.0, -14) - std::ldexp(1.0, -25), std::ldexp(1023.0, -24), std::ldexp(1.0, -30),
      // bf16 ties, and its largest finite value and the tie above it.
      1.0 + std::ldexp(1.0, -8), 1.0 + 3.0 * std::ldexp(1.0, -8), std::ldexp(255.0, 120), bf16_tie_above_max,
      -bf16_tie_above_max, std::nextafter(bf16_tie_above_max, 0.0f)};
  std::vector<std::uint32_t> bits;
  for (const double value : values) bits.push_back(f32_bits(static_cast<float>(value)));
  bits.push_back(0x7f800000u);  // inf
  bits.push_back(0xff800000u);  // -inf
  bits.push_back(0x7fc00000u);  // quiet NaN
  bits.push_back(0xffc00001u);  // negative NaN with a payload
  bits.push_back(0x7f800001u);  // signalling NaN
  std::mt19937_64 random(seed);
  std::uniform_int_distribution<std::uint32_t> any_bits;
  for (int i = 0; i < 20000; ++i) bits.push_back(any_bits(random));
  // Exponents where f16 rounds, overflows and goes subnormal, with random mantissas.
  std::uniform_int_distribution<int> exponent(-28, 17);
  for (int i = 0; i < 20000; ++i) {
    const std::uint32_t sign = any_bits(random) & 0x80000000u;
    const auto biased = static_cast<std::uint32_t>(exponent(random) + 127);
    bits.push_back(sign | (biased << 23) | (any_bits(random) & 0x7fffffu));
  }
  // Exact midpoints between neighbouring f16 and bf16 values: ties for both.
  for (int i = 0; i < 4000; ++i) {
    const std::uint32_t half_bits = any_bits(random) & 0x7bffu;  // finite, below the largest
    const double low = decode(half_bits, format_of(DType::f16));
    const double high = decode(half_bits + 1, format_of(DType::f16));
    bits.push_back(f32_bits(static_cast<float>((low + high) / 2)));
    const std::uint32_t bfloat_bits = any_bits(random) & 0x7f7eu;
    const double bf_low = decode(bfloat_bits, format_of(DType::bf16));
    const double bf_high = decode(bfloat_bits + 1, format_of(DType::bf16));
    bits.push_back(f32_bits(static_cast<float>(-(bf_low + bf_high) / 2)));
  }
  bits.push_back(f32_bits(1.0f));  // an odd count: the scalar tail runs too
  return bits;
}

BitValues inputs_of(DType dtype) {
  if (dtype == DType::f32) return {dtype, f32_edge_and_random_patterns(8100)};
  return {dtype, every_16_bit_pattern()};
}

// The reference's own edges, so that a wrong reference cannot hide a wrong kernel.
TEST(CastReference, RoundsTiesToEvenOverflowsAndKeepsSigns) {
  const FloatFormat half = format_of(DType::f16);
  EXPECT_EQ(round_to_format(65519.0, half), 65504.0);
  EXPECT_TRUE(std::isinf(round_to_format(65520.0, half)));
  EXPECT_EQ(round_to_format(1.0 + std::ldexp(1.0, -11), half), 1.0);
  EXPECT_EQ(round_to_format(1.0 + 3.0 * std::ldexp(1.0, -11), half), 1.0 + std::ldexp(1.0, -9));
  EXPECT_EQ(round_to_format(std::ldexp(1.0, -25), half), 0.0);
  EXPECT_EQ(round_to_format(3.0 * std::ldexp(1.0, -26), half), std::ldexp(1.0, -24));
  EXPECT_TRUE(std::signbit(round_to_format(-std::ldexp(1.0, -26), half)));
  EXPECT_EQ(decode(0x7bffu, half), 65504.0);
  EXPECT_EQ(decode(0x0001u, half), std::ldexp(1.0, -24));
  EXPECT_EQ(decode(0x7f7fu, format_of(DType::bf16)), std::ldexp(255.0, 120));
  EXPECT_TRUE(std::isinf(round_to_format(std::ldexp(511.0, 119), format_of(DType::bf16))));
}

// All nine pairs, twice with different poisons (an unwritten element equals the poison in
// both runs, which no reference value does).
TEST(Cast, EveryPairMatchesReferenceExactly) {
  const cudaStream_t stream = current_stream();
  for (const DType source : kFloatingDTypes) {
    const BitValues input = inputs_of(source);
    const Tensor input_device = device_tensor_of(input, stream);
    for (const DType target : kFloatingDTypes) {
      SCOPED_TRACE(std::string(dtype_name(source)) + " -> " + std::string(dtype_name(target)));
      for (const double poison : {3.0, -5.0}) {
        Tensor output = Tensor::empty(input_device.shape(), target, stream);
        output.fill(poison, stream);
        cast(input_device, output, stream);
        EXPECT_TRUE(matches_reference(input, target, bits_of(output, stream))) << "poison " << poison;
      }
      EXPECT_TRUE(matches_reference(input, target, bits_of(input_device.to_dtype(target, stream), stream)))
          << "Tensor::to_dtype";
    }
  }
}

// Odd sizes, and views one element in (not 4-element aligned): the scalar path, and the
// vector path with a tail.
TEST(Cast, OddSizesAndUnalignedViews) {
  const cudaStream_t stream = current_stream();
  const BitValues all = inputs_of(DType::f32);
  for (const std::size_t count : {1u, 3u, 5u, 8u, 4099u}) {
    const BitValues input{DType::f32, {all.bits.begin(), all.bits.begin() + static_cast<std::ptrdiff_t>(count)}};
    const Tensor input_device = device_tensor_of(input, stream);
    for (const DType target : {DType::f16, DType::bf16}) {
      SCOPED_TRACE("count " + std::to_string(count) + ", " + std::string(dtype_name(target)));
      Tensor output = Tensor::empty(input_device.shape(), target, stream);
      output.fill(7.0, stream);
      cast(input_device, output, stream);
      EXPECT_TRUE(matches_reference(input, target, bits_of(output, stream)));
      // And back, from the unaligned view one element in.
      if (count < 2) continue;
      const Tensor view = output.narrow(0, 1, static_cast<std::int64_t>(count) - 1);
      const BitValues view_values{target, bits_of(view, stream)};
      Tensor widened = Tensor::empty(view.shape(), DType::f32, stream);
      widened.fill(7.0, stream);
      cast(view, widened, stream);
      EXPECT_TRUE(matches_reference(view_values, DType::f32, bits_of(widened, stream)));
    }
  }
}

TEST(Cast, EmptyTensorsAndInPlaceCopyOfOneDType) {
  const cudaStream_t stream = current_stream();
  const Tensor empty = Tensor::empty({0}, DType::f32, stream);
  EXPECT_EQ(cast(empty, DType::f16, stream).numel(), 0);
  Tensor x = testing::device_tensor({1.5f, -2.0f}, Shape{2}, stream);
  cast(x, x, stream);  // itself, same dtype: nothing to do
  EXPECT_EQ(x.to_vector<float>(stream), (std::vector<float>{1.5f, -2.0f}));
}

TEST(Cast, RejectsWhatItCannotCast) {
  const cudaStream_t stream = current_stream();
  const Tensor x = testing::device_tensor({1.0f, 2.0f, 3.0f}, Shape{3}, stream);
  EXPECT_NE(testing::invalid_argument_message([&] { cast(x, DType::i32, stream); }).find("target dtype is i32"),
            std::string::npos);
  Tensor wrong_shape = Tensor::empty({2}, DType::f16, stream);
  EXPECT_NE(testing::invalid_argument_message([&] { cast(x, wrong_shape, stream); }).find("output"),
            std::string::npos);
  const Tensor host = Tensor::from_vector(std::vector<float>{1.0f}, Shape{1});
  EXPECT_NE(testing::invalid_argument_message([&] { cast(host, DType::f16, stream); }).find("device"),
            std::string::npos);
  // Overlapping memory, other than the input itself, would read what the cast wrote.
  const Tensor halves = Tensor::empty({4}, DType::f16, stream);
  const Tensor first_two = halves.narrow(0, 0, 2);
  Tensor middle_two = halves.narrow(0, 1, 2);
  EXPECT_NE(testing::invalid_argument_message([&] { cast(first_two, middle_two, stream); }).find("overlap"),
            std::string::npos);
}

}  // namespace
}  // namespace strata::kernels
