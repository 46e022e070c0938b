// NVTX ranges so Nsight Systems shows what Strata runs: every kernel launcher and layer
// opens one. In the simulator build they compile to nothing.
#pragma once

#include "strata/core/config.h"

#if !STRATA_BACKEND_SIM
#include <nvtx3/nvToolsExt.h>
#endif

namespace strata {

class NvtxRange {
 public:
  explicit NvtxRange(const char* name) noexcept {
#if !STRATA_BACKEND_SIM
    nvtxRangePushA(name);
#else
    (void)name;
#endif
  }
  ~NvtxRange() {
#if !STRATA_BACKEND_SIM
    nvtxRangePop();
#endif
  }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

}  // namespace strata
