// Formatting of Strata's error messages: the failed call, file:line, the library's error
// string and the caller's context, in one line a user can act on.
#include <cstdio>

#include <fmt/format.h>

#include "core/check.h"
#include "strata/core/config.h"

#if STRATA_BACKEND_SIM
#include "core/sim/runtime.h"
#else
#include <cublas_v2.h>
#include <cudnn.h>
#endif

namespace strata {

void log_warning(const std::string& message) noexcept {
  std::fprintf(stderr, "strata: warning: %s\n", message.c_str());
}

namespace detail {
namespace {

// "core/tensor.cpp:42": paths relative to the source tree (STRATA_SOURCE_DIR), not the
// build machine's.
std::string short_location(const char* file, int line) {
  std::string_view path(file);
  if (const std::string_view root = STRATA_SOURCE_DIR; path.starts_with(root)) path.remove_prefix(root.size());
  return fmt::format("{}:{}", path, line);
}

std::string with_context(const std::string& context) { return context.empty() ? "" : fmt::format(" ({})", context); }

}  // namespace

void throw_cuda_error(cudaError_t code, const char* call, const char* file, int line, const std::string& context) {
  std::string message = fmt::format("CUDA error {} '{}' in {} at {}{}", cudaGetErrorName(code), cudaGetErrorString(code),
                                    call, short_location(file, line), with_context(context));
#if STRATA_BACKEND_SIM
  // The simulator knows which kernel failed and why (deadlock, bad shuffle, ...).
  if (const std::string detail = sim::failure_detail(); !detail.empty()) message += fmt::format("; simulator: {}", detail);
#endif
  if (code == cudaErrorMemoryAllocation) {
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
      message += fmt::format("; device memory free {} of {} bytes", free_bytes, total_bytes);
    }
    throw OutOfMemoryError(message, 0, 0, free_bytes);
  }
  throw CudaError(message, code);
}

void throw_cublas_error(int status, const char* call, const char* file, int line, const std::string& context) {
#if STRATA_BACKEND_SIM
  const char* description = "cuBLAS is not used by the simulator build";
#else
  const char* description = cublasGetStatusString(static_cast<cublasStatus_t>(status));
#endif
  throw CublasError(fmt::format("cuBLAS error {} '{}' in {} at {}{}", status, description, call,
                                short_location(file, line), with_context(context)),
                    status);
}

void throw_cudnn_error(int status, const char* call, const char* file, int line, const std::string& context) {
#if STRATA_BACKEND_SIM
  const char* description = "cuDNN is not available in the simulator build";
#else
  const char* description = cudnnGetErrorString(static_cast<cudnnStatus_t>(status));
#endif
  throw CudnnError(fmt::format("cuDNN error {} '{}' in {} at {}{}", status, description, call,
                               short_location(file, line), with_context(context)),
                   status);
}

void throw_invalid_argument(const char* file, int line, const std::string& message) {
  throw InvalidArgument(fmt::format("{} [{}]", message, short_location(file, line)));
}

void warn_cuda_error(cudaError_t code, const char* call, const char* file, int line) noexcept {
  // While the process exits the runtime unloads and every call fails: nothing to report.
  if (code == cudaErrorCudartUnloading) return;
  try {
    log_warning(fmt::format("CUDA error {} '{}' in {} at {} (ignored: cannot throw here)", cudaGetErrorName(code),
                            cudaGetErrorString(code), call, short_location(file, line)));
  } catch (...) {
    std::fprintf(stderr, "strata: warning: CUDA error %d in %s (ignored)\n", static_cast<int>(code), call);
  }
}

}  // namespace detail
}  // namespace strata
