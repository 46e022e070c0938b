// Host side of the SIMT simulator: what the rest of Strata (launch helper, error
// formatting, tests) asks of the simulated device beyond the CUDA runtime API itself.
// The CUDA runtime functions the project calls (cudaMalloc, cudaMemcpyAsync, streams,
// events, ...) are defined by the simulator with the toolkit's own declarations.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace strata::sim {

// Limits of the simulated device, modelled on an H100/H200 (compute capability 9.0).
inline constexpr int kWarpSize = 32;
inline constexpr int kMaxThreadsPerBlock = 1024;
inline constexpr size_t kDefaultMaxDynamicSharedBytes = 48 * 1024;  // without opt-in
inline constexpr size_t kMaxDynamicSharedBytesOptin = 227 * 1024;   // with cudaFuncSetAttribute

struct KernelLaunch {
  dim3 grid;
  dim3 block;
  size_t shared_bytes = 0;
  cudaStream_t stream = nullptr;
  const char* name = "kernel";
  const void* kernel = nullptr;  // identity, for per-kernel attributes (cudaFuncSetAttribute)
};

// Validates the configuration as the driver would (setting the thread's last CUDA error on
// failure, like a real launch), then queues the grid on the stream. thread_body runs once
// per simulated thread.
void launch_kernel(const KernelLaunch& launch, std::function<void()> thread_body);

// Sets the function called with every launch that passes launch_kernel's checks, on the
// launching thread as it queues the grid (launch.name valid during the call only; the
// observer must not launch kernels itself); an empty function removes it. How tests see which
// kernels a call launched, and in what configuration.
using LaunchObserver = std::function<void(const KernelLaunch&)>;
void set_launch_observer(LaunchObserver observer);

// Why the last kernel failed on the simulated device (deadlock, misuse of a warp
// primitive, __trap, ...), or "" when nothing failed. The failure is sticky, as on a GPU:
// later synchronising calls return cudaErrorLaunchFailure until clear_device_error().
std::string failure_detail();
void clear_device_error();

// Randomised, seeded order of threads within a block and of blocks within a grid, so that
// a missing __syncthreads shows up as a wrong result: between two barriers of a block either
// every thread in turn in a shuffled order, or whole warps running ahead of the others
// (docs/simulator.md). nullopt: fixed order, round by round in index order. The environment
// variable STRATA_SIM_SEED sets it at start-up.
void set_schedule_seed(std::optional<uint64_t> seed);
std::optional<uint64_t> schedule_seed();

// OS threads that execute blocks (default: STRATA_SIM_THREADS, else hardware threads).
void set_worker_threads(int count);
int worker_threads();

// Size of the simulated device memory (default: STRATA_SIM_DEVICE_MEMORY bytes, else
// 16 GiB); cudaMalloc beyond it fails with cudaErrorMemoryAllocation, as on a GPU.
void set_device_memory_limit(size_t bytes);
size_t device_memory_limit();

}  // namespace strata::sim
