// main() of every test suite: GoogleTest, plus a line saying which flavour of Strata runs
// and, in the simulator, the thread-order seed (so a failure can be reproduced).
#include <cstdio>

#include <gtest/gtest.h>

#include "strata/core/config.h"
#if STRATA_BACKEND_SIM
#include "core/sim/runtime.h"
#endif

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
#if STRATA_BACKEND_SIM
  const auto seed = strata::sim::schedule_seed();
  if (seed && !GTEST_FLAG_GET(list_tests)) {
    std::printf("strata: simulator, random thread order with STRATA_SIM_SEED=%llu\n",
                static_cast<unsigned long long>(*seed));
  }
#endif
  return RUN_ALL_TESTS();
}
