// The cuDNN runtime of the CUDA build (core/cudnn.h): availability (from the run-time loader,
// core/cudnn_loader.h) and the handles.
#include "core/cudnn.h"

#include <string>

#include <fmt/format.h>

#include "core/cudnn_loader.h"
#include "core/library_handles.h"
#include "strata/core/device.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"

namespace strata {
namespace detail {
namespace {

// Empty when cuDNN loaded and can serve the headers Strata was compiled with (the same
// major version, at least 9, with every function Strata calls); else why not.
const std::string& unavailable_reason() { return cudnn_library().failure; }

struct CudnnHandles {
  static cudnnHandle_t create(int device) {
    cudnnHandle_t handle = nullptr;
    STRATA_CUDNN_CHECK(cudnnCreate(&handle), "creating a cuDNN handle for device {}", device);
    return handle;
  }
};

thread_local ThreadHandles<cudnnHandle_t, CudnnHandles> thread_handles;

}  // namespace

void require_cudnn(std::string_view what) {
  if (!unavailable_reason().empty()) throw NotSupported(fmt::format("{}: {}", what, unavailable_reason()));
}

cudnnHandle_t cudnn_handle(cudaStream_t stream) {
  require_cudnn("cuDNN");
  STRATA_CHECK(stream != nullptr, "cuDNN work must run on a stream of Strata's, not the default stream");
  const int device = current_device();
  const cudnnHandle_t handle = thread_handles.handle_for(device);
  // Cheap (it only stores the stream), so set on every use: one handle serves every stream.
  STRATA_CUDNN_CHECK(cudnnSetStream(handle, stream), "setting the stream of the cuDNN handle for device {}", device);
  return handle;
}

}  // namespace detail

bool cudnn_available() { return detail::unavailable_reason().empty(); }

std::string_view cudnn_unavailable_reason() { return detail::unavailable_reason(); }

}  // namespace strata
