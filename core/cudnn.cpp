// The cuDNN runtime of the CUDA build (core/cudnn.h): the version check and the handles.
#include "core/cudnn.h"

#include <cstddef>
#include <string>

#include <fmt/format.h>

#include "core/library_handles.h"
#include "strata/core/device.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"

namespace strata {
namespace detail {
namespace {

// cudnnGetVersion() and CUDNN_VERSION encode 9.x.y as 9xxyy, and 8.x.y as 8xyy.
struct CudnnVersion {
  std::size_t major, minor, patch;
  explicit CudnnVersion(std::size_t encoded)
      : major(encoded >= 10000 ? encoded / 10000 : encoded / 1000),
        minor(encoded >= 10000 ? encoded % 10000 / 100 : encoded % 1000 / 100),
        patch(encoded % 100) {}
  std::string text() const { return fmt::format("{}.{}.{}", major, minor, patch); }
};

// Empty when the loaded library can serve the headers Strata was compiled with: the same
// major version (cuDNN keeps its API within a major version), and at least 9.
std::string check_loaded_library() {
  const CudnnVersion headers(CUDNN_VERSION);
  const CudnnVersion loaded(cudnnGetVersion());
  if (loaded.major == headers.major && loaded.major >= 9) return {};
  return fmt::format(
      "the cuDNN library loaded at run time is version {}, but Strata was built with the cuDNN {} headers and "
      "needs a cuDNN {}.x library (at least 9): install it, or point LD_LIBRARY_PATH at it",
      loaded.text(), headers.text(), headers.major);
}

const std::string& unavailable_reason() {
  static const std::string reason = check_loaded_library();
  return reason;
}

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
