// The backend half of gemm(): cuBLAS (gemm_cublas.cpp) or the simulator's CPU GEMM
// (gemm_host.cpp). Arguments are already checked and describe a non-empty product of a
// floating dtype.
#pragma once

#include "strata/core/gemm.h"

namespace strata::detail {

void gemm_backend(const GemmExArgs& args, cudaStream_t stream);

// Simulator build: C = alpha * op(A) * op(B) + beta * C on the CPU, elements read as double,
// accumulating in double, rounded once to the dtype; C is not read when beta == 0.
void gemm_on_host(const GemmExArgs& args) noexcept;

}  // namespace strata::detail
