// Whether the wgmma paths (core/wgmma.cuh) can run here; host code, for the launchers that
// choose them and the tests.
#pragma once

namespace strata::wgmma {

// Always in the simulator; on a GPU when the kernels were built for sm_90a (STRATA_WGMMA_BUILT)
// and the current device has compute capability 9.0 (an sm_90a kernel runs on no other).
bool available();

}  // namespace strata::wgmma
