// Runs one kernel grid on the CPU: blocks spread over a pool of OS threads, the threads of
// a block as fibers on one OS thread. Called by a stream's worker (core/sim/runtime.cpp).
#pragma once

#include <functional>
#include <string>

#include "core/sim/runtime.h"

namespace strata::sim {

// Returns "" on success, else a description of the failure naming the kernel, the block
// and the threads involved (a deadlocked barrier, a bad shuffle mask, __trap, ...).
std::string run_grid(const KernelLaunch& launch, const std::function<void()>& thread_body);

}  // namespace strata::sim
