// The GPUs Strata can use: how many there are, which one the calling thread works on, and
// what each can do (the limits kernels size their launches by).
#pragma once

#include <cstddef>
#include <string>

namespace strata {

struct DeviceProperties {
  int index = 0;
  std::string name;
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  int multiprocessor_count = 0;
  int warp_size = 0;
  int max_threads_per_block = 0;
  int max_threads_per_multiprocessor = 0;
  std::size_t total_memory_bytes = 0;
  std::size_t l2_cache_bytes = 0;
  std::size_t shared_memory_per_block_bytes = 0;        // without opt-in
  std::size_t shared_memory_per_block_optin_bytes = 0;  // after cudaFuncSetAttribute(MaxDynamicSharedMemorySize)
  std::size_t shared_memory_per_multiprocessor_bytes = 0;
};

// Number of usable devices; 0 (not an error) on a machine without a GPU or driver. The
// simulator build always has one.
int device_count();

// The calling thread's device, as cudaGetDevice/cudaSetDevice; set_device throws
// InvalidArgument for an index that does not exist.
int current_device();
void set_device(int device);

// Properties of a device, queried once and cached for the life of the process.
const DeviceProperties& device_properties(int device);
inline const DeviceProperties& device_properties() { return device_properties(current_device()); }

// One line for logs: "cuda:0 NVIDIA H200: compute capability 9.0, 132 SMs, 139.8 GiB,
// L2 60.0 MiB, shared memory 227 KiB per block (opt-in), warp 32".
std::string describe(const DeviceProperties& properties);

// Makes device current for the guard's scope, then restores the previous device.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_;
};

}  // namespace strata
