// Launch checks shared by every kernel launch (see core/launch.cuh).
#include "core/launch_config.h"

#include <limits>

#include "core/check.h"
#include "core/op_recording.h"

namespace strata::detail {

namespace {
std::string describe(const LaunchConfig& config) {
  return fmt::format("kernel {} with grid ({}, {}, {}), block ({}, {}, {}), {} bytes of dynamic shared memory",
                     config.name, config.grid.x, config.grid.y, config.grid.z, config.block.x, config.block.y,
                     config.block.z, config.shared_bytes);
}
}  // namespace

void check_launch_stream(const LaunchConfig& config) {
  STRATA_CHECK(config.stream != nullptr, "launch of {}: no stream given (Strata never uses the default stream)",
               describe(config));
  graph::detail::check_inside_op("kernel", config.name);
}

void check_launch_error(const LaunchConfig& config) {
  const cudaError_t code = cudaGetLastError();
  if (code != cudaSuccess) throw_cuda_error(code, "kernel launch", __FILE__, __LINE__, describe(config));
}

void allow_dynamic_shared_memory(const void* kernel, size_t bytes, const char* name) {
  STRATA_CHECK(bytes <= static_cast<size_t>(std::numeric_limits<int>::max()),
               "kernel {}: {} bytes of dynamic shared memory", name, bytes);
  const cudaError_t code =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  if (code != cudaSuccess) {
    (void)cudaGetLastError();  // not sticky: the next launch must not report it
    throw_cuda_error(code, "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)", __FILE__, __LINE__,
                     fmt::format("kernel {} asks for {} bytes of dynamic shared memory", name, bytes));
  }
}

}  // namespace strata::detail
