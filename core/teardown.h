// STRATA_CUDA_WARN for destructors that may run while the process exits: once the CUDA
// runtime has begun unloading, every call fails with cudaErrorCudartUnloading and there
// is nothing left to release or warn about.
#pragma once

#include "core/check.h"

#define STRATA_CUDA_WARN_UNLESS_EXITING(call)                                                  \
  do {                                                                                         \
    const cudaError_t strata_status_ = (call);                                                 \
    if (strata_status_ != cudaSuccess && strata_status_ != cudaErrorCudartUnloading)           \
      ::strata::detail::warn_cuda_error(strata_status_, #call, __FILE__, __LINE__);            \
  } while (0)
