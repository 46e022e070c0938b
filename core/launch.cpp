// Launch checks shared by every kernel launch (see core/launch.cuh).
#include "core/launch_config.h"

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

}  // namespace strata::detail
