// The one way Strata launches a kernel. Under nvcc it is a <<<...>>> launch followed by a
// check of the launch error; in the simulator build the same call queues the kernel on the
// stream's worker, which runs every block on the CPU. No other file writes <<<.
//
//   launch(max_pool2d_forward_kernel<float>,
//          LaunchConfig{.grid = blocks, .block = 256, .stream = stream, .name = "max_pool2d_forward"},
//          params, x, y, argmax);
#pragma once

#include <cuda_runtime_api.h>

#include <tuple>
#include <type_traits>
#include <utility>

#include "core/launch_config.h"
#include "strata/core/config.h"

#if STRATA_BACKEND_SIM
#include <memory>

#include "core/sim/runtime.h"
#include "core/sim/simt.h"
#endif

namespace strata {

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), const LaunchConfig& config, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "launch: wrong number of kernel arguments");
  detail::check_launch_stream(config);
#if STRATA_BACKEND_SIM
  // Arguments are converted to the kernel's parameter types once, as a real launch does,
  // and shared read-only by all simulated threads.
  auto arguments = std::make_shared<const std::tuple<std::decay_t<Params>...>>(std::forward<Args>(args)...);
  sim::launch_kernel(sim::KernelLaunch{config.grid, config.block, config.shared_bytes, config.stream, config.name,
                                       reinterpret_cast<const void*>(kernel)},
                     [kernel, arguments] { std::apply(kernel, *arguments); });
#else
  kernel<<<config.grid, config.block, config.shared_bytes, config.stream>>>(std::forward<Args>(args)...);
#endif
  detail::check_launch_error(config);
}

// Lets kernel take `bytes` of dynamic shared memory: above 48 KiB a launch needs this opt-in
// (cudaFuncAttributeMaxDynamicSharedMemorySize), per kernel and device, so call it before each
// launch that asks for more (cheap; allowed during stream capture). Throws CudaError naming the
// kernel when the device cannot give that much.
template <typename... Params>
void allow_dynamic_shared_memory(void (*kernel)(Params...), size_t bytes, const char* name) {
  if (bytes > detail::kDefaultDynamicSharedBytes) {
    detail::allow_dynamic_shared_memory(reinterpret_cast<const void*>(kernel), bytes, name);
  }
}

}  // namespace strata

// Dynamic shared memory of the current block as a T*, in both builds:
//   STRATA_DYNAMIC_SHARED(float, tile);  // tile has LaunchConfig::shared_bytes bytes
#if STRATA_BACKEND_SIM
#define STRATA_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(::strata::sim::dynamic_shared_memory())
#else
#define STRATA_DYNAMIC_SHARED(T, name)                            \
  extern __shared__ __align__(128) unsigned char strata_dynamic_shared_[]; \
  T* name = reinterpret_cast<T*>(strata_dynamic_shared_)
#endif
