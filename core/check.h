// Checking macros for library code: every CUDA runtime, cuBLAS and cuDNN call goes through
// one of these, and every failed precondition throws with a message a user can act on.
// Private to the library (uses fmt); users see only the exceptions of strata/core/errors.h.
#pragma once

#include <string>

#include <fmt/format.h>

#include "strata/core/errors.h"

namespace strata::detail {

[[noreturn]] void throw_cuda_error(cudaError_t code, const char* call, const char* file, int line,
                                   const std::string& context);
[[noreturn]] void throw_cublas_error(int status, const char* call, const char* file, int line,
                                     const std::string& context);
[[noreturn]] void throw_cudnn_error(int status, const char* call, const char* file, int line,
                                    const std::string& context);
[[noreturn]] void throw_invalid_argument(const char* file, int line, const std::string& message);
void warn_cuda_error(cudaError_t code, const char* call, const char* file, int line) noexcept;

// Formats the optional context arguments of a check macro ("" when there are none).
inline std::string format_context() { return {}; }
template <typename... Args>
std::string format_context(fmt::format_string<Args...> format, Args&&... args) {
  return fmt::format(format, std::forward<Args>(args)...);
}

}  // namespace strata::detail

// STRATA_CUDA_CHECK(cudaMemcpyAsync(...), "copying {} bytes", n): throws CudaError naming the
// call, file:line, CUDA's error string and the optional context.
#define STRATA_CUDA_CHECK(call, ...)                                                           \
  do {                                                                                         \
    const cudaError_t strata_status_ = (call);                                                 \
    if (strata_status_ != cudaSuccess)                                                         \
      ::strata::detail::throw_cuda_error(strata_status_, #call, __FILE__, __LINE__,            \
                                         ::strata::detail::format_context(__VA_ARGS__));       \
  } while (0)

#define STRATA_CUBLAS_CHECK(call, ...)                                                         \
  do {                                                                                         \
    const int strata_status_ = static_cast<int>(call);                                         \
    if (strata_status_ != 0)                                                                   \
      ::strata::detail::throw_cublas_error(strata_status_, #call, __FILE__, __LINE__,          \
                                           ::strata::detail::format_context(__VA_ARGS__));     \
  } while (0)

#define STRATA_CUDNN_CHECK(call, ...)                                                          \
  do {                                                                                         \
    const int strata_status_ = static_cast<int>(call);                                         \
    if (strata_status_ != 0)                                                                   \
      ::strata::detail::throw_cudnn_error(strata_status_, #call, __FILE__, __LINE__,           \
                                          ::strata::detail::format_context(__VA_ARGS__));      \
  } while (0)

// For destructors and other places that must not throw: logs the failure and goes on
// (silently when the runtime is unloading at process exit).
#define STRATA_CUDA_WARN(call)                                                                 \
  do {                                                                                         \
    const cudaError_t strata_status_ = (call);                                                 \
    if (strata_status_ != cudaSuccess)                                                         \
      ::strata::detail::warn_cuda_error(strata_status_, #call, __FILE__, __LINE__);            \
  } while (0)

// STRATA_CHECK(h > 0, "max_pool2d: input height must be positive, got shape {}", shape):
// throws InvalidArgument with the formatted message and file:line.
#define STRATA_CHECK(condition, ...)                                                           \
  do {                                                                                         \
    if (!(condition))                                                                          \
      ::strata::detail::throw_invalid_argument(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__)); \
  } while (0)
