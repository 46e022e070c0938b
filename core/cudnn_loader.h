// cuDNN loaded at run time (CUDA build only): libstrata.so does not link libcudnn, so that a
// machine without cuDNN can still load Strata and run the custom kernels. The first use of
// cuDNN dlopen()s the library and looks up every function Strata calls (core/cudnn_symbols.inc);
// library code calls cudnnXxx(...) as usual, through forwarding functions of the same names.
//
// Where from: the file named by the environment variable STRATA_CUDNN_LIBRARY when it is set
// (and nothing else); otherwise libcudnn.so.<major of the headers Strata was built with>, as
// dlopen searches for it (LD_LIBRARY_PATH, the system's library folders), then the folder
// where CMake found cuDNN at build time. Loaded once per process, never unloaded.
#pragma once

#include <cstddef>
#include <string>

namespace strata::detail {

inline constexpr const char* kCudnnLibraryVariable = "STRATA_CUDNN_LIBRARY";

// What loading cuDNN came to.
struct CudnnLoadResult {
  std::string failure;       // empty when the library loaded and can serve Strata; else why not
  std::string library_path;  // the file dlopen loaded, when it loaded one
  std::size_t version = 0;   // its cudnnGetVersion(), when it has one (9.x.y is 9xxyy)
};

// The process's cuDNN, loaded on the first call (thread-safe). A failure is kept: a process
// that could not load cuDNN does not try again.
const CudnnLoadResult& cudnn_library();

// Loads the file at path as cuDNN would be loaded, checks it as cudnn_library() does, and
// unloads it, leaving the process's cuDNN alone: for tests of the failure messages.
CudnnLoadResult try_cudnn_library_for_testing(const std::string& path);

}  // namespace strata::detail
