// main() of every test suite: GoogleTest, plus a line saying which flavour of Strata runs
// and, in the simulator, the thread-order seed (so a failure can be reproduced). Work a
// test left queued (a test that never reads its result) is finished before the process
// exits, so that it neither runs during teardown nor leaks what it holds.
#include <cstdio>

#include <cuda_runtime_api.h>
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
  const int result = RUN_ALL_TESTS();
  int devices = 0;
  // Only draining: an error it returns belongs to a test that has already reported.
  if (cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0) static_cast<void>(cudaDeviceSynchronize());
  return result;
}
