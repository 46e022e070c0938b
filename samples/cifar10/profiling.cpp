#include "profiling.h"

#include <strata/core/config.h>
#include <strata/core/stream.h>

#if !STRATA_BACKEND_SIM
#include <cuda_profiler_api.h>
#include <nvtx3/nvToolsExt.h>
#endif

#include <cstdio>

namespace cifar10 {

namespace {

#if !STRATA_BACKEND_SIM
void check(cudaError_t status, const char* call) {
  if (status != cudaSuccess) std::fprintf(stderr, "strata_cifar10: %s failed: %s\n", call, cudaGetErrorString(status));
}
#endif

// The simulator's CUDA runtime has no profiler calls: nothing to capture there.
void start_profiler() {
#if !STRATA_BACKEND_SIM
  check(cudaProfilerStart(), "cudaProfilerStart");
#endif
}

void stop_profiler() {
#if !STRATA_BACKEND_SIM
  check(cudaProfilerStop(), "cudaProfilerStop");
#endif
}

}  // namespace

NvtxScope::NvtxScope(const char* name) noexcept {
#if !STRATA_BACKEND_SIM
  nvtxRangePushA(name);
#else
  (void)name;
#endif
}

NvtxScope::~NvtxScope() {
#if !STRATA_BACKEND_SIM
  nvtxRangePop();
#endif
}

bool profiler_control_available() noexcept { return !STRATA_BACKEND_SIM; }

ProfilerWindow::~ProfilerWindow() {
  if (active_) stop_profiler();
}

void ProfilerWindow::before_step(std::int64_t step, cudaStream_t stream) {
  if (!window_ || active_ || step != window_->first) return;
  strata::stream_synchronize(stream);
  start_profiler();
  active_ = true;
}

void ProfilerWindow::after_step(std::int64_t step, cudaStream_t stream) {
  if (!active_ || step + 1 != window_->last) return;
  strata::stream_synchronize(stream);
  stop_profiler();
  active_ = false;
}

}  // namespace cifar10
