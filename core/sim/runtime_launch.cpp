// Kernel launches on the simulated device: the driver's checks of a launch configuration,
// per-kernel attributes (cudaFuncSetAttribute), and the queueing of a grid on its stream,
// whose worker hands it to the grid runner and turns a failure into the sticky device error.
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "core/sim/grid_runner.h"
#include "core/sim/runtime.h"
#include "core/sim/runtime_internal.h"

namespace strata::sim {
namespace {

constexpr unsigned kMaxBlockDimXY = 1024;
constexpr unsigned kMaxBlockDimZ = 64;
constexpr unsigned kMaxGridDimX = 0x7fffffffu;  // 2^31 - 1
constexpr unsigned kMaxGridDimYZ = 65535;

class KernelAttributes {
 public:
  static KernelAttributes& instance() {
    // Leaked on purpose: launches may still be validated during static destruction.
    static KernelAttributes* attributes = new KernelAttributes();
    return *attributes;
  }

  void set_max_dynamic_shared_bytes(const void* kernel, size_t bytes) {
    std::lock_guard lock(mutex_);
    max_dynamic_shared_bytes_[kernel] = bytes;
  }

  size_t max_dynamic_shared_bytes(const void* kernel) {
    std::lock_guard lock(mutex_);
    const auto it = max_dynamic_shared_bytes_.find(kernel);
    return it == max_dynamic_shared_bytes_.end() ? kDefaultMaxDynamicSharedBytes : it->second;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<const void*, size_t> max_dynamic_shared_bytes_;
};

cudaError_t check_configuration(const KernelLaunch& launch) {
  const dim3 block = launch.block;
  const dim3 grid = launch.grid;
  if (block.x == 0 || block.y == 0 || block.z == 0 || block.x > kMaxBlockDimXY || block.y > kMaxBlockDimXY ||
      block.z > kMaxBlockDimZ || uint64_t{block.x} * block.y * block.z > kMaxThreadsPerBlock) {
    return cudaErrorInvalidConfiguration;
  }
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > kMaxGridDimX || grid.y > kMaxGridDimYZ ||
      grid.z > kMaxGridDimYZ) {
    return cudaErrorInvalidConfiguration;
  }
  // The driver rejects more dynamic shared memory than the kernel was allowed with
  // cudaErrorInvalidValue, not with a configuration error.
  if (launch.shared_bytes > KernelAttributes::instance().max_dynamic_shared_bytes(launch.kernel)) {
    return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

struct ObserverSlot {
  std::mutex mutex;
  LaunchObserver observer;

  static ObserverSlot& instance() {
    static ObserverSlot slot;
    return slot;
  }
};

}  // namespace

void set_launch_observer(LaunchObserver observer) {
  ObserverSlot& slot = ObserverSlot::instance();
  const std::lock_guard lock(slot.mutex);
  slot.observer = std::move(observer);
}

void launch_kernel(const KernelLaunch& launch, std::function<void()> thread_body) {
  using namespace runtime_internal;
  // Like a real launch, a bad launch sets the thread's last error and queues nothing.
  if (const cudaError_t invalid = check_configuration(launch); invalid != cudaSuccess) {
    fail(invalid);
    return;
  }
  const std::shared_ptr<CUstream_st> stream = resolve_stream(launch.stream);
  if (stream == nullptr) {
    fail(cudaErrorInvalidResourceHandle);
    return;
  }
  {
    ObserverSlot& slot = ObserverSlot::instance();
    const std::lock_guard lock(slot.mutex);
    if (slot.observer) slot.observer(launch);
  }
  // The kernel runs later, perhaps many times when captured: keep its own copy of the name,
  // which the caller may free. The arguments are already a copy (core/launch.cuh).
  std::string name = launch.name != nullptr ? launch.name : "kernel";
  queue_operation(
      stream, cudaGraphNodeTypeKernel,
      [launch, name = std::move(name), body = std::move(thread_body)] {
        KernelLaunch running = launch;
        running.name = name.c_str();
        std::string failure = run_grid(running, body);
        if (!failure.empty()) record_device_failure(cudaErrorLaunchFailure, std::move(failure));
      },
      AfterFailure::skip);
}

}  // namespace strata::sim

// Only the dynamic shared memory limit changes how the simulator behaves; the carveout is a
// performance hint and is accepted for compatibility.
cudaError_t CUDARTAPI cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  using namespace strata::sim;
  if (func == nullptr) return runtime_internal::fail(cudaErrorInvalidDeviceFunction);
  switch (attr) {
    case cudaFuncAttributeMaxDynamicSharedMemorySize:
      if (value < 0 || static_cast<size_t>(value) > kMaxDynamicSharedBytesOptin) {
        return runtime_internal::fail(cudaErrorInvalidValue);
      }
      KernelAttributes::instance().set_max_dynamic_shared_bytes(func, static_cast<size_t>(value));
      return cudaSuccess;
    case cudaFuncAttributePreferredSharedMemoryCarveout:
      return value >= -1 && value <= 100 ? cudaSuccess : runtime_internal::fail(cudaErrorInvalidValue);
    default:
      return runtime_internal::fail(cudaErrorInvalidValue);
  }
}
