// Error reporting of the simulated CUDA runtime: the calling thread's last error, the sticky
// error a failed kernel leaves on the device, and CUDA's names and descriptions of error codes.
#include <atomic>
#include <mutex>
#include <string>
#include <utility>

#include "core/sim/runtime.h"
#include "core/sim/runtime_internal.h"

namespace strata::sim {
namespace runtime_internal {
namespace {

thread_local cudaError_t last_error = cudaSuccess;

// The device-wide failure: set by a stream worker, read by every host thread.
struct DeviceFailure {
  std::mutex mutex;
  cudaError_t code = cudaSuccess;
  std::string detail;
  std::atomic<bool> failed{false};  // lets queued work check cheaply whether to skip
};

DeviceFailure& device_failure() {
  // Leaked: stream workers may still report failures during static destruction.
  static DeviceFailure* failure = new DeviceFailure();
  return *failure;
}

}  // namespace

cudaError_t fail(cudaError_t code) {
  if (code != cudaSuccess && code != cudaErrorNotReady) last_error = code;
  return code;
}

bool device_failed() { return device_failure().failed.load(std::memory_order_acquire); }

cudaError_t sticky_error() {
  if (!device_failed()) return cudaSuccess;
  DeviceFailure& failure = device_failure();
  std::lock_guard lock(failure.mutex);
  return failure.code;
}

void record_device_failure(cudaError_t code, std::string detail) {
  DeviceFailure& failure = device_failure();
  std::lock_guard lock(failure.mutex);
  if (failure.code != cudaSuccess) return;  // the first failure is the one worth reporting
  failure.code = code;
  failure.detail = std::move(detail);
  failure.failed.store(true, std::memory_order_release);
}

}  // namespace runtime_internal

std::string failure_detail() {
  auto& failure = runtime_internal::device_failure();
  std::lock_guard lock(failure.mutex);
  return failure.detail;
}

void clear_device_error() {
  auto& failure = runtime_internal::device_failure();
  std::lock_guard lock(failure.mutex);
  failure.code = cudaSuccess;
  failure.detail.clear();
  failure.failed.store(false, std::memory_order_release);
  runtime_internal::last_error = cudaSuccess;
}

}  // namespace strata::sim

namespace {

struct ErrorText {
  cudaError_t code;
  const char* name;
  const char* description;  // what cudaGetErrorString returns for it
};

// The codes a Strata program can meet, with the CUDA runtime's own wording.
constexpr ErrorText kErrorTexts[] = {
    {cudaSuccess, "cudaSuccess", "no error"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory"},
    {cudaErrorInitializationError, "cudaErrorInitializationError", "initialization error"},
    {cudaErrorCudartUnloading, "cudaErrorCudartUnloading", "driver shutting down"},
    {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration", "invalid configuration argument"},
    {cudaErrorInvalidPitchValue, "cudaErrorInvalidPitchValue", "invalid pitch argument"},
    {cudaErrorInvalidSymbol, "cudaErrorInvalidSymbol", "invalid device symbol"},
    {cudaErrorInvalidHostPointer, "cudaErrorInvalidHostPointer", "invalid host pointer"},
    {cudaErrorInvalidDevicePointer, "cudaErrorInvalidDevicePointer", "invalid device pointer"},
    {cudaErrorInvalidMemcpyDirection, "cudaErrorInvalidMemcpyDirection", "invalid copy direction for memcpy"},
    {cudaErrorInsufficientDriver, "cudaErrorInsufficientDriver", "CUDA driver version is insufficient for CUDA runtime version"},
    {cudaErrorMissingConfiguration, "cudaErrorMissingConfiguration", "__global__ function call is not configured"},
    {cudaErrorPriorLaunchFailure, "cudaErrorPriorLaunchFailure", "unspecified launch failure in prior launch"},
    {cudaErrorInvalidDeviceFunction, "cudaErrorInvalidDeviceFunction", "invalid device function"},
    {cudaErrorNoDevice, "cudaErrorNoDevice", "no CUDA-capable device is detected"},
    {cudaErrorInvalidDevice, "cudaErrorInvalidDevice", "invalid device ordinal"},
    {cudaErrorStartupFailure, "cudaErrorStartupFailure", "system not yet initialized"},
    {cudaErrorInvalidKernelImage, "cudaErrorInvalidKernelImage", "device kernel image is invalid"},
    {cudaErrorNoKernelImageForDevice, "cudaErrorNoKernelImageForDevice", "no kernel image is available for execution on the device"},
    {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle", "invalid resource handle"},
    {cudaErrorIllegalState, "cudaErrorIllegalState", "the operation cannot be performed in the present state"},
    {cudaErrorSymbolNotFound, "cudaErrorSymbolNotFound", "named symbol not found"},
    {cudaErrorNotReady, "cudaErrorNotReady", "device not ready"},
    {cudaErrorIllegalAddress, "cudaErrorIllegalAddress", "an illegal memory access was encountered"},
    {cudaErrorLaunchOutOfResources, "cudaErrorLaunchOutOfResources", "too many resources requested for launch"},
    {cudaErrorLaunchTimeout, "cudaErrorLaunchTimeout", "the launch timed out and was terminated"},
    {cudaErrorContextIsDestroyed, "cudaErrorContextIsDestroyed", "context is destroyed"},
    {cudaErrorAssert, "cudaErrorAssert", "device-side assert triggered"},
    {cudaErrorHostMemoryAlreadyRegistered, "cudaErrorHostMemoryAlreadyRegistered", "part or all of the requested memory range is already mapped"},
    {cudaErrorHostMemoryNotRegistered, "cudaErrorHostMemoryNotRegistered", "pointer does not correspond to a registered memory region"},
    {cudaErrorHardwareStackError, "cudaErrorHardwareStackError", "hardware stack error"},
    {cudaErrorIllegalInstruction, "cudaErrorIllegalInstruction", "an illegal instruction was encountered"},
    {cudaErrorMisalignedAddress, "cudaErrorMisalignedAddress", "misaligned address"},
    {cudaErrorInvalidAddressSpace, "cudaErrorInvalidAddressSpace", "operation not supported on global/shared address space"},
    {cudaErrorInvalidPc, "cudaErrorInvalidPc", "invalid program counter"},
    {cudaErrorLaunchFailure, "cudaErrorLaunchFailure", "unspecified launch failure"},
    {cudaErrorCooperativeLaunchTooLarge, "cudaErrorCooperativeLaunchTooLarge", "too many blocks in cooperative launch"},
    {cudaErrorNotPermitted, "cudaErrorNotPermitted", "operation not permitted"},
    {cudaErrorNotSupported, "cudaErrorNotSupported", "operation not supported"},
    {cudaErrorStreamCaptureUnsupported, "cudaErrorStreamCaptureUnsupported", "operation not permitted when stream is capturing"},
    {cudaErrorStreamCaptureInvalidated, "cudaErrorStreamCaptureInvalidated", "operation failed due to a previous error during capture"},
    {cudaErrorStreamCaptureMerge, "cudaErrorStreamCaptureMerge", "operation would result in a merge of separate capture sequences"},
    {cudaErrorStreamCaptureUnmatched, "cudaErrorStreamCaptureUnmatched", "capture was not ended in the same stream as it began"},
    {cudaErrorStreamCaptureUnjoined, "cudaErrorStreamCaptureUnjoined", "capturing stream has unjoined work"},
    {cudaErrorStreamCaptureIsolation, "cudaErrorStreamCaptureIsolation", "dependency created on uncaptured work in another stream"},
    {cudaErrorStreamCaptureImplicit, "cudaErrorStreamCaptureImplicit", "operation would make the legacy stream depend on a capturing blocking stream"},
    {cudaErrorCapturedEvent, "cudaErrorCapturedEvent", "operation not permitted on an event last recorded in a capturing stream"},
    {cudaErrorStreamCaptureWrongThread, "cudaErrorStreamCaptureWrongThread", "attempt to terminate a thread-local capture sequence from another thread"},
    {cudaErrorTimeout, "cudaErrorTimeout", "wait operation timed out"},
    {cudaErrorUnknown, "cudaErrorUnknown", "unknown error"},
};

const ErrorText* find_error_text(cudaError_t code) {
  for (const ErrorText& text : kErrorTexts) {
    if (text.code == code) return &text;
  }
  return nullptr;
}

}  // namespace

cudaError_t CUDARTAPI cudaGetLastError(void) {
  using namespace strata::sim::runtime_internal;
  const cudaError_t own = std::exchange(last_error, cudaSuccess);
  // A sticky error cannot be cleared by reading it: it stays until clear_device_error().
  if (const cudaError_t sticky = sticky_error(); sticky != cudaSuccess) return sticky;
  return own;
}

cudaError_t CUDARTAPI cudaPeekAtLastError(void) {
  using namespace strata::sim::runtime_internal;
  if (const cudaError_t sticky = sticky_error(); sticky != cudaSuccess) return sticky;
  return last_error;
}

// Codes outside the table get CUDA's answer for a value it does not know.
const char* CUDARTAPI cudaGetErrorName(cudaError_t error) {
  const ErrorText* text = find_error_text(error);
  return text != nullptr ? text->name : "unrecognized error code";
}

const char* CUDARTAPI cudaGetErrorString(cudaError_t error) {
  const ErrorText* text = find_error_text(error);
  return text != nullptr ? text->description : "unrecognized error code";
}
