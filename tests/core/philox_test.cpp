// Philox4x32-10 against the Random123 known-answer vectors, and the maps from its words to
// floats (host only).
#include <cmath>
#include <cstdint>

#include <gtest/gtest.h>

#include "strata/core/philox.h"

namespace strata {
namespace {

void expect_words(const Philox4x32& actual, std::uint32_t w0, std::uint32_t w1, std::uint32_t w2, std::uint32_t w3) {
  EXPECT_EQ(actual.x[0], w0);
  EXPECT_EQ(actual.x[1], w1);
  EXPECT_EQ(actual.x[2], w2);
  EXPECT_EQ(actual.x[3], w3);
}

// Random123's kat_vectors for philox4x32_10.
TEST(Philox, MatchesTheRandom123KnownAnswers) {
  expect_words(philox4x32_10(Philox4x32{{0, 0, 0, 0}}, 0, 0), 0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u);
  const Philox4x32 all_ones{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}};
  expect_words(philox4x32_10(all_ones, 0xffffffffu, 0xffffffffu), 0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu);
  const Philox4x32 pi_digits{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}};
  expect_words(philox4x32_10(pi_digits, 0xa4093822u, 0x299f31d0u), 0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u);
}

TEST(Philox, GroupsAreCountersAndSeedsAreKeys) {
  const std::uint64_t seed = 0x0123456789abcdefull, group = 0xfedcba9876543210ull;
  const Philox4x32 expected =
      philox4x32_10(Philox4x32{{0x76543210u, 0xfedcba98u, 0u, 0u}}, 0x89abcdefu, 0x01234567u);
  const Philox4x32 actual = philox_group(seed, group);
  expect_words(actual, expected.x[0], expected.x[1], expected.x[2], expected.x[3]);
}

TEST(Philox, UniformCoversTheUnitIntervalWithoutReachingOne) {
  EXPECT_EQ(uniform_from_bits(0u), 0.0f);
  EXPECT_EQ(uniform_from_bits(0xffffffffu), 1.0f - 1.0f / 16777216.0f);
  EXPECT_EQ(uniform_from_bits(0x80000000u), 0.5f);
  EXPECT_EQ(uniform_in(0x80000000u, -2.0f, 4.0f), 1.0f);
  EXPECT_LT(uniform_in(0xffffffffu, -1.0f, 1.0f), 1.0f);
}

TEST(Philox, NormalIsFiniteAtTheExtremes) {
  // Radius word 0: the smallest u of 2^-32, radius sqrt(64 ln 2).
  EXPECT_FLOAT_EQ(normal_from_bits(0u, 0u, false), static_cast<float>(std::sqrt(64.0 * std::log(2.0))));
  EXPECT_EQ(normal_from_bits(0xffffffffu, 0u, false), 0.0f);  // u = 1: radius 0
  EXPECT_TRUE(std::isfinite(normal_from_bits(0u, 0xffffffffu, true)));
}

TEST(Philox, ElementsDependOnlyOnSeedAndIndex) {
  const std::uint64_t seed = 99;
  for (std::uint64_t index : {0ull, 1ull, 2ull, 3ull, 4ull, 1000003ull, (1ull << 40) + 3}) {
    const Philox4x32 words = philox_group(seed, index / 4);
    EXPECT_EQ(philox_uniform(seed, index, 0.0f, 1.0f), uniform_from_bits(words.x[index % 4])) << index;
    const unsigned lane = static_cast<unsigned>(index % 4);
    EXPECT_EQ(philox_normal(seed, index, 0.0f, 1.0f),
              normal_from_bits(words.x[lane & ~1u], words.x[lane | 1u], (lane & 1u) != 0))
        << index;
  }
  EXPECT_NE(philox_uniform(1, 0, 0.0f, 1.0f), philox_uniform(2, 0, 0.0f, 1.0f));
  EXPECT_NE(philox_uniform(1, 0, 0.0f, 1.0f), philox_uniform(1, 1, 0.0f, 1.0f));
}

}  // namespace
}  // namespace strata
