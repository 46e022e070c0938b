// The default generator: manual_seed restarts the stream, reservations advance it in whole
// Philox groups, seeds drawn from it are reproducible and distinct, and the state restores.
#include <gtest/gtest.h>

#include <cstdint>
#include <set>

#include "strata/core/generator.h"

namespace strata {
namespace {

TEST(GeneratorTest, ReservationsAdvanceInWholeGroups) {
  Generator generator(7);
  EXPECT_EQ(generator.reserve(5), 0u);
  EXPECT_EQ(generator.reserve(1), 8u);
  EXPECT_EQ(generator.reserve(0), 12u);
  EXPECT_EQ(generator.reserve(4), 12u);
  EXPECT_EQ(generator.state(), (GeneratorState{7, 16}));
}

TEST(GeneratorTest, SeedsAreReproducibleAndDistinct) {
  Generator a(42);
  Generator b(42);
  std::set<std::uint64_t> seeds;
  for (int i = 0; i < 100; ++i) {
    const std::uint64_t seed = a.next_seed();
    EXPECT_EQ(seed, b.next_seed());
    seeds.insert(seed);
  }
  EXPECT_EQ(seeds.size(), 100u);
  Generator other(43);
  EXPECT_NE(other.next_seed(), Generator(42).next_seed());
}

TEST(GeneratorTest, StateRestoresTheStream) {
  Generator generator(3);
  generator.reserve(40);
  const GeneratorState saved = generator.state();
  const std::uint64_t next = generator.next_seed();
  generator.set_state(saved);
  EXPECT_EQ(generator.next_seed(), next);
  generator.manual_seed(3);
  EXPECT_EQ(generator.state(), (GeneratorState{3, 0}));
}

TEST(GeneratorTest, ManualSeedResetsTheDefaultGenerator) {
  const GeneratorState before = default_generator().state();
  manual_seed(11);
  const std::uint64_t first = default_generator().next_seed();
  manual_seed(11);
  EXPECT_EQ(default_generator().next_seed(), first);
  default_generator().set_state(before);
}

}  // namespace
}  // namespace strata
