// The launch configuration of core/launch.cuh and the checks around every launch, in a
// plain C++ header so that host-only code can use them without nvcc.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

namespace strata {

struct LaunchConfig {
  dim3 grid;
  dim3 block;
  size_t shared_bytes = 0;        // dynamic shared memory, see STRATA_DYNAMIC_SHARED
  cudaStream_t stream = nullptr;  // required: library code never uses the default stream
  const char* name = "kernel";    // for error messages, the simulator's reports and profiles
};

namespace detail {
// Throws InvalidArgument for a null stream, CudaError for a failed launch; both name the
// kernel and its configuration.
void check_launch_stream(const LaunchConfig& config);
void check_launch_error(const LaunchConfig& config);

// The dynamic shared memory every kernel may take without opting in, and the opt-in (see
// allow_dynamic_shared_memory in core/launch.cuh).
inline constexpr size_t kDefaultDynamicSharedBytes = 48 * 1024;
void allow_dynamic_shared_memory(const void* kernel, size_t bytes, const char* name);
}  // namespace detail

}  // namespace strata
