// cuDNN loaded at run time (core/cudnn_loader.h): dlopen, the version check, one dlsym per
// function of core/cudnn_symbols.inc, and the forwarding functions with cuDNN's own names
// that the rest of the library calls. The forwarding functions are hidden: libstrata.so
// neither exports cuDNN's names nor interposes on a cuDNN another library of the process
// loads.
#include "core/cudnn_loader.h"

#include <dlfcn.h>

#include <array>
#include <cstddef>
#include <cstdlib>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

namespace strata::detail {
namespace {

// The functions of core/cudnn_symbols.inc, by index.
enum class CudnnFunction : std::size_t {
#define STRATA_CUDNN_FUNCTION(result, name, parameters, arguments) name,
#include "core/cudnn_symbols.inc"
#undef STRATA_CUDNN_FUNCTION
  count
};
constexpr std::size_t kFunctionCount = static_cast<std::size_t>(CudnnFunction::count);

constexpr std::array<const char*, kFunctionCount> kFunctionNames = {
#define STRATA_CUDNN_FUNCTION(result, name, parameters, arguments) #name,
#include "core/cudnn_symbols.inc"
#undef STRATA_CUDNN_FUNCTION
};

// cudnnGetVersion() and CUDNN_VERSION encode 9.x.y as 9xxyy, and 8.x.y as 8xyy.
struct CudnnVersion {
  std::size_t major, minor, patch;
  explicit CudnnVersion(std::size_t encoded)
      : major(encoded >= 10000 ? encoded / 10000 : encoded / 1000),
        minor(encoded >= 10000 ? encoded % 10000 / 100 : encoded % 1000 / 100),
        patch(encoded % 100) {}
  std::string text() const { return fmt::format("{}.{}.{}", major, minor, patch); }
};

// The file name dlopen looks for: the soname of the headers' major version.
std::string library_name() { return fmt::format("libcudnn.so.{}", CUDNN_MAJOR); }

// What to do about a library that cannot serve Strata, for the end of a failure message.
std::string remedy() {
  return fmt::format(
      "install cuDNN {0} for CUDA {1} (NVIDIA's cudnn{0}-cuda-{1} package, or pip's nvidia-cudnn-cu{1}) and put the "
      "folder holding {2} on LD_LIBRARY_PATH, or set {3} to the library file",
      CUDNN_MAJOR, CUDART_VERSION / 1000, library_name(), kCudnnLibraryVariable);
}

std::string last_dl_error() {
  const char* text = dlerror();
  return text != nullptr ? text : "no error text";
}

struct Library {
  CudnnLoadResult result;
  void* handle = nullptr;
  std::array<void*, kFunctionCount> functions{};
};

// Checks the library dlopen returned as handle and looks up every function, into library.
void resolve(void* handle, const std::string& opened_as, Library& library) {
  library.handle = handle;
  CudnnLoadResult& result = library.result;
  result.library_path = opened_as;
  // The version first: a library of another major version lacks functions, and its version
  // says why better than the first missing name would.
  dlerror();
  void* const get_version = dlsym(handle, "cudnnGetVersion");
  if (get_version == nullptr) {
    result.failure = fmt::format("{} is not a cuDNN library: it has no cudnnGetVersion ({}); {}", opened_as,
                                 last_dl_error(), remedy());
    return;
  }
  if (Dl_info info{}; dladdr(get_version, &info) != 0 && info.dli_fname != nullptr) {
    result.library_path = info.dli_fname;
  }
  result.version = reinterpret_cast<std::size_t (*)()>(get_version)();
  const CudnnVersion headers(CUDNN_VERSION);
  const CudnnVersion loaded(result.version);
  if (loaded.major != headers.major || loaded.major < 9) {
    result.failure = fmt::format(
        "the cuDNN library loaded at run time ({}) is version {}, but Strata was built with the cuDNN {} headers and "
        "needs a cuDNN {}.x library (at least 9): {}",
        result.library_path, loaded.text(), headers.text(), headers.major, remedy());
    return;
  }
  for (std::size_t i = 0; i < kFunctionCount; ++i) {
    dlerror();
    library.functions[i] = dlsym(handle, kFunctionNames[i]);
    if (library.functions[i] == nullptr) {
      result.failure = fmt::format(
          "the cuDNN library loaded at run time ({}, version {}) has no function {}, which Strata calls ({}); a cuDNN "
          "older than the {} headers Strata was built with can lack some: {}",
          result.library_path, loaded.text(), kFunctionNames[i], last_dl_error(), headers.text(), remedy());
      return;
    }
  }
}

// dlopen(path), or nullptr with dlerror's text in error.
void* open(const std::string& path, std::string& error) {
  dlerror();
  void* const handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) error = last_dl_error();
  return handle;
}

Library load_process_library() {
  Library library;
  const char* override_path = std::getenv(kCudnnLibraryVariable);
  if (override_path != nullptr && *override_path != '\0') {
    std::string error;
    void* const handle = open(override_path, error);
    if (handle == nullptr) {
      library.result.failure = fmt::format(
          "cuDNN could not be loaded: {}={} names a file dlopen cannot load ({}); set it to the path of {} of a "
          "cuDNN {} installation, or unset it to search LD_LIBRARY_PATH and the system's library folders",
          kCudnnLibraryVariable, override_path, error, library_name(), CUDNN_MAJOR);
      return library;
    }
    resolve(handle, override_path, library);
    return library;
  }

  // The soname as dlopen searches for it, then the folder CMake found cuDNN in at build time
  // (what the RUNPATH of a library linked to cuDNN would have added).
  std::vector<std::string> candidates = {library_name()};
#ifdef STRATA_CUDNN_BUILD_LIBRARY_DIR
  candidates.push_back(fmt::format("{}/{}", STRATA_CUDNN_BUILD_LIBRARY_DIR, library_name()));
#endif
  std::vector<std::string> failures;
  for (const std::string& candidate : candidates) {
    std::string error;
    if (void* const handle = open(candidate, error)) {
      resolve(handle, candidate, library);
      return library;
    }
    failures.push_back(fmt::format("dlopen(\"{}\") failed: {}", candidate, error));
  }
  library.result.failure = fmt::format("cuDNN could not be loaded: {}; {}", fmt::join(failures, "; "), remedy());
  return library;
}

const Library& process_library() {
  static const Library library = load_process_library();  // thread-safe; never unloaded
  return library;
}

// The function at index of the process's cuDNN, or nullptr when cuDNN could not be loaded.
void* loaded_function(CudnnFunction function) noexcept {
  const Library& library = process_library();
  if (!library.result.failure.empty()) return nullptr;
  return library.functions[static_cast<std::size_t>(function)];
}

// What a forwarding function returns when cuDNN is not loaded (library code asks
// cudnn_available() first; this keeps a stray call from jumping through a null pointer). A
// new result type in core/cudnn_symbols.inc needs its specialisation here.
template <typename Result>
Result unloaded_result() noexcept;
template <>
cudnnStatus_t unloaded_result<cudnnStatus_t>() noexcept {
  return CUDNN_STATUS_NOT_INITIALIZED;
}
template <>
std::size_t unloaded_result<std::size_t>() noexcept {
  return 0;
}
template <>
const char* unloaded_result<const char*>() noexcept {
  return "cuDNN is not loaded (strata::cudnn_unavailable_reason() says why)";
}

}  // namespace

const CudnnLoadResult& cudnn_library() { return process_library().result; }

CudnnLoadResult try_cudnn_library_for_testing(const std::string& path) {
  Library library;
  std::string error;
  void* const handle = open(path, error);
  if (handle == nullptr) {
    library.result.failure = fmt::format("cuDNN could not be loaded: dlopen(\"{}\") failed: {}", path, error);
    return library.result;
  }
  resolve(handle, path, library);
  dlclose(handle);
  return library.result;
}

}  // namespace strata::detail

// The forwarding functions: cuDNN's names and signatures (checked against cudnn.h's
// declarations by the compiler), each calling what dlsym found.
#define STRATA_CUDNN_FUNCTION(result, name, parameters, arguments)                                        \
  extern "C" __attribute__((visibility("hidden"))) result name parameters {                              \
    using Function = result(*) parameters;                                                                \
    void* const function = ::strata::detail::loaded_function(::strata::detail::CudnnFunction::name);      \
    if (function == nullptr) return ::strata::detail::unloaded_result<result>();                           \
    return reinterpret_cast<Function>(function) arguments;                                                \
  }
#include "core/cudnn_symbols.inc"
#undef STRATA_CUDNN_FUNCTION
