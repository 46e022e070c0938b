// Device enumeration, selection and cached properties.
#include "strata/core/device.h"

#include <map>
#include <memory>
#include <mutex>

#include <cuda_runtime_api.h>

#include "core/check.h"

namespace strata {

int device_count() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status == cudaErrorNoDevice || status == cudaErrorInsufficientDriver) {
    static_cast<void>(cudaGetLastError());  // not a failure of anything later: clear it
    return 0;
  }
  STRATA_CUDA_CHECK(status, "counting CUDA devices");
  return count;
}

int current_device() {
  int device = 0;
  STRATA_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

void set_device(int device) {
  const int count = device_count();
  STRATA_CHECK(device >= 0 && device < count, "set_device({}): this machine has {} CUDA device(s)", device, count);
  STRATA_CUDA_CHECK(cudaSetDevice(device), "device {}", device);
}

const DeviceProperties& device_properties(int device) {
  // Leaked so that code running during static destruction can still ask.
  static auto& mutex = *new std::mutex;
  static auto& cache = *new std::map<int, std::unique_ptr<const DeviceProperties>>;
  std::lock_guard lock(mutex);
  if (const auto it = cache.find(device); it != cache.end()) return *it->second;

  const int count = device_count();
  STRATA_CHECK(device >= 0 && device < count, "device_properties({}): this machine has {} CUDA device(s)", device,
               count);
  cudaDeviceProp raw{};
  STRATA_CUDA_CHECK(cudaGetDeviceProperties(&raw, device), "device {}", device);
  auto properties = std::make_unique<DeviceProperties>();
  properties->index = device;
  properties->name = raw.name;
  properties->compute_capability_major = raw.major;
  properties->compute_capability_minor = raw.minor;
  properties->multiprocessor_count = raw.multiProcessorCount;
  properties->warp_size = raw.warpSize;
  properties->max_threads_per_block = raw.maxThreadsPerBlock;
  properties->max_threads_per_multiprocessor = raw.maxThreadsPerMultiProcessor;
  properties->total_memory_bytes = raw.totalGlobalMem;
  properties->l2_cache_bytes = static_cast<std::size_t>(raw.l2CacheSize);
  properties->shared_memory_per_block_bytes = raw.sharedMemPerBlock;
  properties->shared_memory_per_block_optin_bytes = raw.sharedMemPerBlockOptin;
  properties->shared_memory_per_multiprocessor_bytes = raw.sharedMemPerMultiprocessor;
  return *cache.emplace(device, std::move(properties)).first->second;
}

std::string describe(const DeviceProperties& properties) {
  constexpr double kKiB = 1024.0, kMiB = kKiB * 1024.0, kGiB = kMiB * 1024.0;
  return fmt::format(
      "cuda:{} {}: compute capability {}.{}, {} SMs, {:.1f} GiB, L2 {:.1f} MiB, shared memory {} KiB per block "
      "(opt-in), warp {}",
      properties.index, properties.name, properties.compute_capability_major, properties.compute_capability_minor,
      properties.multiprocessor_count, static_cast<double>(properties.total_memory_bytes) / kGiB,
      static_cast<double>(properties.l2_cache_bytes) / kMiB,
      static_cast<double>(properties.shared_memory_per_block_optin_bytes) / kKiB, properties.warp_size);
}

DeviceGuard::DeviceGuard(int device) : previous_(current_device()) {
  if (device != previous_) set_device(device);
}

DeviceGuard::~DeviceGuard() { STRATA_CUDA_WARN(cudaSetDevice(previous_)); }

}  // namespace strata
