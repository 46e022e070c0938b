// Sets the simulator's schedule seed (the seeded thread and block order,
// core/sim/runtime.h) while alive and restores the previous one; in the CUDA build it does
// nothing (the GPU's order is its own). For tests that run a computation under another
// order than the default and expect the same bits.
#pragma once

#include <cstdint>
#include <optional>

#include "strata/core/config.h"

#if STRATA_BACKEND_SIM
#include "core/sim/runtime.h"
#endif

namespace strata::testing {

class ScheduleSeedGuard {
 public:
  explicit ScheduleSeedGuard(std::optional<std::uint64_t> seed) {
#if STRATA_BACKEND_SIM
    previous_ = sim::schedule_seed();
    sim::set_schedule_seed(seed);
#else
    static_cast<void>(seed);
#endif
  }
  ~ScheduleSeedGuard() {
#if STRATA_BACKEND_SIM
    sim::set_schedule_seed(previous_);
#endif
  }
  ScheduleSeedGuard(const ScheduleSeedGuard&) = delete;
  ScheduleSeedGuard& operator=(const ScheduleSeedGuard&) = delete;

 private:
  std::optional<std::uint64_t> previous_;
};

}  // namespace strata::testing
