// Hooks for Nsight: NVTX ranges around the sample's phases (Strata marks its ops and layers
// itself, but has no public NVTX API, so the sample calls NVTX3 directly) and the
// --profile-steps window, which brackets steps with cudaProfilerStart/Stop for
// `nsys profile --capture-range=cudaProfilerApi` and `ncu --profile-from-start off`
// (docs/profiling.md). Both do nothing in the simulator build.
#pragma once

#include <cstdint>
#include <optional>

#include <cuda_runtime_api.h>

namespace cifar10 {

// An NVTX range for the scope: "cifar10.train_step", "cifar10.evaluate", ... (dots, not
// slashes: Nsight Compute's --nvtx-include reads a slash as the nesting of ranges).
class NvtxScope {
 public:
  explicit NvtxScope(const char* name) noexcept;
  ~NvtxScope();
  NvtxScope(const NvtxScope&) = delete;
  NvtxScope& operator=(const NvtxScope&) = delete;
};

// Steps [first, last) of the whole run (--profile-steps first:last).
struct StepWindow {
  std::int64_t first = 0;
  std::int64_t last = 0;
};

// Whether this build can start and stop the CUDA profiler (false in the simulator).
bool profiler_control_available() noexcept;

class ProfilerWindow {
 public:
  explicit ProfilerWindow(std::optional<StepWindow> window) : window_(window) {}
  ~ProfilerWindow();  // stops the profiler if the run ended inside the window
  ProfilerWindow(const ProfilerWindow&) = delete;
  ProfilerWindow& operator=(const ProfilerWindow&) = delete;

  // Before step runs: at the window's first step, waits for stream (earlier steps stay out
  // of the capture) and starts the profiler.
  void before_step(std::int64_t step, cudaStream_t stream);
  // After step was queued: after the window's last step, waits for stream (the window's work
  // completes inside the capture) and stops the profiler.
  void after_step(std::int64_t step, cudaStream_t stream);

 private:
  std::optional<StepWindow> window_;
  bool active_ = false;
};

}  // namespace cifar10
