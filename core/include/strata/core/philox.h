// Philox4x32-10, the counter-based generator of Random123 and cuRAND (Salmon et al., "Parallel
// random numbers: as easy as 1, 2, 3", SC'11), and the maps from its bits to floats that
// Strata's random fills use. Host and device code call the same functions, so a CPU
// reference reproduces a kernel's numbers exactly, whatever the launch shape.
//
// Element j of the stream for a seed comes from philox4x32_10(counter = j / 4, key = seed),
// word j % 4: its value depends only on (seed, j).
#pragma once

#include <cuda_runtime_api.h>  // __host__ __device__ in both builds

#include <cmath>
#include <cstdint>

namespace strata {

struct Philox4x32 {
  std::uint32_t x[4];
};

namespace philox_detail {
inline constexpr std::uint32_t kMultiplier0 = 0xD2511F53u;
inline constexpr std::uint32_t kMultiplier1 = 0xCD9E8D57u;
inline constexpr std::uint32_t kWeyl0 = 0x9E3779B9u;  // golden ratio
inline constexpr std::uint32_t kWeyl1 = 0xBB67AE85u;  // sqrt(3) - 1
}  // namespace philox_detail

// Ten rounds of Philox4x32 on counter with key, as Random123's philox4x32_R(10, ...).
__host__ __device__ inline Philox4x32 philox4x32_10(Philox4x32 counter, std::uint32_t key0, std::uint32_t key1) {
  using namespace philox_detail;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key0 += kWeyl0;
      key1 += kWeyl1;
    }
    const std::uint64_t product0 = static_cast<std::uint64_t>(kMultiplier0) * counter.x[0];
    const std::uint64_t product1 = static_cast<std::uint64_t>(kMultiplier1) * counter.x[2];
    const auto hi0 = static_cast<std::uint32_t>(product0 >> 32), lo0 = static_cast<std::uint32_t>(product0);
    const auto hi1 = static_cast<std::uint32_t>(product1 >> 32), lo1 = static_cast<std::uint32_t>(product1);
    counter = Philox4x32{{hi1 ^ counter.x[1] ^ key0, lo1, hi0 ^ counter.x[3] ^ key1, lo0}};
  }
  return counter;
}

// The four words of group `group` (elements 4 * group .. 4 * group + 3) for seed.
__host__ __device__ inline Philox4x32 philox_group(std::uint64_t seed, std::uint64_t group) {
  const Philox4x32 counter{{static_cast<std::uint32_t>(group), static_cast<std::uint32_t>(group >> 32), 0u, 0u}};
  return philox4x32_10(counter, static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
}

// Uniform in [0, 1) from the top 24 bits: every float of the form k / 2^24.
__host__ __device__ inline float uniform_from_bits(std::uint32_t bits) {
  return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);
}

// low + (high - low) * u with one rounding (fmaf), so host and device agree bit for bit.
__host__ __device__ inline float uniform_in(std::uint32_t bits, float low, float high) {
  return fmaf(uniform_from_bits(bits), high - low, low);
}

// Standard normal by Box-Muller from two words; `second` picks the sine branch. Computed in
// double so that the float result is the same with the host's and the device's libm.
__host__ __device__ inline float normal_from_bits(std::uint32_t bits_radius, std::uint32_t bits_angle, bool second) {
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  constexpr double kTwoToMinus32 = 1.0 / 4294967296.0;
  const double u_radius = (static_cast<double>(bits_radius) + 1.0) * kTwoToMinus32;  // (0, 1]: log is finite
  const double u_angle = static_cast<double>(bits_angle) * kTwoToMinus32;            // [0, 1)
  const double radius = sqrt(-2.0 * log(u_radius));
  const double angle = kTwoPi * u_angle;
  return static_cast<float>(second ? radius * sin(angle) : radius * cos(angle));
}

// Element `lane` (0..3) of a group of the normal stream: words 0, 1 give lanes 0, 1 (cosine,
// sine), words 2, 3 give lanes 2, 3.
__host__ __device__ inline float normal_in(const Philox4x32& words, unsigned lane, float mean, float stddev) {
  const unsigned pair = lane & ~1u;
  return fmaf(normal_from_bits(words.x[pair], words.x[pair + 1], (lane & 1u) != 0), stddev, mean);
}

// Element `index` of the uniform stream of seed, in [low, high).
__host__ __device__ inline float philox_uniform(std::uint64_t seed, std::uint64_t index, float low, float high) {
  return uniform_in(philox_group(seed, index / 4).x[index % 4], low, high);
}

// Element `index` of the normal stream of seed.
__host__ __device__ inline float philox_normal(std::uint64_t seed, std::uint64_t index, float mean, float stddev) {
  return normal_in(philox_group(seed, index / 4), static_cast<unsigned>(index % 4), mean, stddev);
}

}  // namespace strata
